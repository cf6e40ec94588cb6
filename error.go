package tenantkit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Error codes. Every transport maps them to its wire format with one table (Hasura actions: a 4xx
// with extensions.code; GraphQL: extensions.code). Anything uncoded is Internal.
const (
	Invalid         = "invalid"         // the input is malformed or out of range
	Unauthenticated = "unauthenticated" // no signed-in user where one is needed
	NotFound        = "not_found"       // the thing does not exist, or the caller may not know it does
	Forbidden       = "forbidden"       // the caller is known but lacks the right
	Conflict        = "conflict"        // the input contradicts existing state (duplicate slug, …)
	PlanLimit       = "plan_limit"      // the tenant's plan does not allow more
	LastOwner       = "last_owner"      // the change would leave a tenant without an owner
	Unavailable     = "unavailable"     // a dependency (database, Stripe, SMTP) cannot be reached; retry later
	Internal        = "internal"        // a bug or an unexpected failure; details are logged, not shown
)

// Error is an application error: a stable machine-readable code and a message safe to show to the
// caller. Err, when set, is the underlying cause, logged but never shown.
type Error struct {
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, Internal for any other error, and
// "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// ErrorMessage returns the message of the first *Error in err's chain, "internal error" for any
// other error (so that unexpected details never reach a caller), and "" for nil.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// RetryUnavailable calls fn until it returns anything but an unavailable error, as long as the
// next call would start before deadline; between calls it waits wait, doubling up to maxWait. Each
// call gets at most 5 s. It returns fn's last error. For the few writes that must be recorded
// once a dependency is back (see actions' settle and team's clearInvitationEmail); pass a context
// that outlives the request (context.WithoutCancel) when the caller may have gone.
func RetryUnavailable(ctx context.Context, deadline time.Time, wait, maxWait time.Duration, fn func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := fn(cctx)
		cancel()
		if ErrorCode(err) != Unavailable || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, maxWait)
	}
}
