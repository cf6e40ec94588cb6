package tenantkit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestRetryUnavailable: it retries unavailable errors only, stops at the first other answer, and
// gives up with the last error once the next call would start after the deadline.
func TestRetryUnavailable(t *testing.T) {
	down := Errorf(Unavailable, "down")
	calls := 0
	answers := func(errs ...error) func(context.Context) error {
		calls = 0
		return func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				t.Fatal("a call without a deadline")
			}
			calls++
			return errs[min(calls, len(errs))-1]
		}
	}
	soon := time.Now().Add(time.Second)
	if err := RetryUnavailable(context.Background(), soon, time.Millisecond, 4*time.Millisecond, answers(down, down, nil)); err != nil || calls != 3 {
		t.Errorf("down, down, up: %v after %d calls, want nil after 3", err, calls)
	}
	other := errors.New("refused")
	if err := RetryUnavailable(context.Background(), soon, time.Millisecond, time.Millisecond, answers(down, other, nil)); err != other || calls != 2 {
		t.Errorf("down, refused: %v after %d calls, want refused after 2", err, calls)
	}
	start := time.Now()
	err := RetryUnavailable(context.Background(), start.Add(50*time.Millisecond), 10*time.Millisecond, 10*time.Millisecond, answers(down))
	if ErrorCode(err) != Unavailable || calls < 3 || calls > 6 || time.Since(start) > time.Second {
		t.Errorf("always down: %v after %d calls in %s, want unavailable after 3 to 6 calls within the deadline", err, calls, time.Since(start))
	}
	if err := RetryUnavailable(context.Background(), time.Now(), 0, 0, answers(down, nil)); ErrorCode(err) != Unavailable || calls != 1 {
		t.Errorf("deadline now: %v after %d calls, want one call", err, calls)
	}
}
