package billing

import (
	"slices"
	"testing"
	"time"
)

func TestCrossed(t *testing.T) {
	for _, c := range []struct {
		used   float64
		limit  int64
		want   int
		higher []int
	}{
		{0, 100, 0, nil}, {79.99, 100, 0, nil}, {80, 100, 80, []int{100}}, {99, 100, 80, []int{100}},
		{100, 100, 100, []int{}}, {250, 100, 100, []int{}}, {4, 5, 80, []int{100}}, {3.9, 5, 0, nil},
	} {
		got, higher := crossed(c.used, c.limit)
		if got != c.want || !slices.Equal(higher, c.higher) {
			t.Errorf("crossed(%v, %d) = %d %v, want %d %v", c.used, c.limit, got, higher, c.want, c.higher)
		}
	}
}

func TestAllowancePeriod(t *testing.T) {
	now := time.Date(2026, 11, 17, 9, 30, 0, 0, time.UTC)
	ps, pe := time.Date(2026, 11, 3, 8, 0, 0, 0, time.UTC), time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	if f, to := allowancePeriod(&ps, &pe, now); !f.Equal(ps) || !to.Equal(pe) {
		t.Errorf("inside the subscription's period: %s–%s", f, to)
	}
	month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := pe.AddDate(0, -2, 0)
	for name, l := range map[string]UsageLimit{"no subscription": {}, "a period that ended": {PeriodStart: &ps, PeriodEnd: &old}} {
		if f, to := allowancePeriod(l.PeriodStart, l.PeriodEnd, now); !f.Equal(month) || !to.Equal(month.AddDate(0, 1, 0)) {
			t.Errorf("%s: %s–%s, want the calendar month", name, f, to)
		}
	}
	// one key per tenant, metric, threshold and period
	a := usageAlertKey("T", "api_calls", 80, ps)
	for _, b := range []string{usageAlertKey("U", "api_calls", 80, ps), usageAlertKey("T", "storage_gb", 80, ps),
		usageAlertKey("T", "api_calls", 100, ps), usageAlertKey("T", "api_calls", 80, pe)} {
		if a == b {
			t.Errorf("two alerts share the key %s", a)
		}
	}
}

func TestUsagePeriodArithmetic(t *testing.T) {
	p := UsagePeriod{Due: 28, CarriedIn: 4, Reported: 15}
	if p.Owed() != 32 || p.Remainder() != 17 {
		t.Errorf("owed %d, remainder %d; want 32 and 17", p.Owed(), p.Remainder())
	}
	// Stripe holding more than is owed (a total that went down) leaves nothing to carry
	p = UsagePeriod{Due: 10, Reported: 12}
	if p.Owed() != 10 || p.Remainder() != 0 {
		t.Errorf("owed %d, remainder %d; want 10 and 0", p.Owed(), p.Remainder())
	}
	if wholeCalls(6.5) != 7 || wholeCalls(7) != 7 || wholeCalls(0) != 0 {
		t.Error("whole calls round up, exact totals stay")
	}
}
