package maintenance

import (
	"testing"
	"time"
)

func TestUsageCutoff(t *testing.T) {
	for _, c := range []struct {
		now    string
		months int
		want   string
	}{
		{"2032-03-20T12:00:00Z", 13, "2031-02-01"},
		{"2032-03-01T00:00:00Z", 13, "2031-02-01"},
		{"2032-02-29T23:59:59Z", 13, "2031-01-01"},
		{"2032-01-31T23:00:00-05:00", 13, "2031-01-01"}, // 2032-02-01 04:00 UTC
		{"2032-12-15T00:00:00Z", 120, "2022-12-01"},
	} {
		now, _ := time.Parse(time.RFC3339, c.now)
		if got := UsageCutoff(now, c.months).Format(time.DateOnly); got != c.want {
			t.Errorf("UsageCutoff(%s, %d) = %s, want %s", c.now, c.months, got, c.want)
		}
	}
}

func TestValidRetention(t *testing.T) {
	for months, ok := range map[int]bool{0: false, 12: false, 13: true, 24: true, 120: true, 121: false} {
		if err := ValidRetention(months); (err == nil) != ok {
			t.Errorf("ValidRetention(%d) = %v", months, err)
		}
	}
}

// The rules keep what the senders' retries and the dedupe keys need (see the comments of Rules).
func TestRulesKeepEnough(t *testing.T) {
	least := map[Ledger]time.Duration{
		StripeEvents:      31 * day,  // Stripe's 3 days of retries, 30 days of resendable events
		ProcessedEvents:   31 * day,  // Hasura's retries and manual redelivery
		EmailOutbox:       366 * day, // a usage alert's dedupe key over a yearly period
		InvitationSends:   25 * time.Hour,
		StripeOutbox:      2 * day,       // Stripe's idempotency keys live 24 hours
		UsageBoundaryKeys: 2 * time.Hour, // billing.UsageBoundaryWindow on either side of a month's end
	}
	seen := map[Ledger]bool{}
	for _, r := range Rules {
		seen[r.Ledger] = true
		if r.Keep < least[r.Ledger] {
			t.Errorf("%s kept %s, want at least %s", r.Ledger, r.Keep, least[r.Ledger])
		}
	}
	if len(seen) != len(least) {
		t.Errorf("rules for %v, want one for each of %v", seen, least)
	}
}
