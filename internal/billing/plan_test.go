package billing

import (
	"reflect"
	"testing"
	"time"

	"github.com/tenantkit/tenantkit"
)

func TestPlanItems(t *testing.T) {
	pro := PlanPrice{ID: "p-pro", Key: "professional", Interval: "month", PriceID: "price_pro", APICallsPriceID: "price_pro_calls"}
	basic := PlanPrice{ID: "p-basic", Key: "starter", Interval: "month", PriceID: "price_basic"}
	yearly := PlanPrice{ID: "p-year", Key: "yearly", Interval: "year", PriceID: "price_year"}
	planOf := map[string]string{"price_basic": "p-basic", "price_basic_calls": "p-basic", "price_pro": "p-pro", "price_pro_calls": "p-pro"}
	licensed := Item{ID: "si_l", PriceID: "price_basic", Quantity: 4, Interval: "month"}
	basicCalls := Item{ID: "si_m", PriceID: "price_basic_calls", Metered: true, Interval: "month"}
	proCalls := Item{ID: "si_p", PriceID: "price_pro_calls", Metered: true, Interval: "month"}
	foreign := Item{ID: "si_f", PriceID: "price_dashboard", Metered: true, Interval: "month"}
	for _, tc := range []struct {
		name  string
		items []Item
		plan  PlanPrice
		want  []ItemChange
	}{
		{"licensed and metered follow the plan; quantity kept", []Item{licensed, basicCalls}, pro, []ItemChange{
			{ID: "si_l", PriceID: "price_pro", Quantity: 4},
			{ID: "si_m", Delete: true, ClearUsage: true},
			{PriceID: "price_pro_calls"},
		}},
		{"a plan without metered price drops the metered item", []Item{licensed, proCalls}, basic, []ItemChange{
			{ID: "si_l", PriceID: "price_basic", Quantity: 4},
			{ID: "si_p", Delete: true, ClearUsage: true},
		}},
		{"the plan's own metered item stays", []Item{licensed, proCalls}, pro, []ItemChange{
			{ID: "si_l", PriceID: "price_pro", Quantity: 4},
		}},
		{"a metered item no plan knows stays", []Item{licensed, foreign}, pro, []ItemChange{
			{ID: "si_l", PriceID: "price_pro", Quantity: 4},
			{PriceID: "price_pro_calls"},
		}},
		{"a metered item before the licensed one", []Item{basicCalls, licensed}, basic, []ItemChange{
			{ID: "si_l", PriceID: "price_basic", Quantity: 4},
			{ID: "si_m", Delete: true, ClearUsage: true},
		}},
	} {
		got, err := planItems(Subscription{Items: tc.items}, tc.plan, planOf)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v (%v)\nwant %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := planItems(Subscription{Items: []Item{basicCalls}}, pro, planOf); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("no licensed item: %v", err)
	}
	if _, err := planItems(Subscription{Items: []Item{licensed}}, yearly, planOf); tenantkit.ErrorCode(err) != tenantkit.Invalid {
		t.Errorf("another interval: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	at := time.Date(2024, 2, 10, 0, 0, 0, 0, time.UTC)
	end := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	cur := Subscription{CurrentPeriodEnd: end}
	lines := func(amounts ...int64) []InvoiceLine { // prorations first, then the renewal
		var out []InvoiceLine
		for i, a := range amounts {
			out = append(out, InvoiceLine{Amount: a, Proration: i < len(amounts)-1, PeriodStart: at})
		}
		return out
	}
	for _, tc := range []struct {
		name                      string
		lines                     []InvoiceLine
		balance                   int64
		proration, now, atRenewal int64
	}{
		{"upgrade", lines(-700, 1750, 2500), 0, 1050, 1050, 2500},
		{"upgrade paid partly by credit", lines(-700, 1750, 2500), -400, 1050, 650, 2500},
		{"upgrade fully covered by credit", lines(-700, 1750, 2500), -2000, 1050, 0, 1550},
		{"downgrade: the credit pays the renewal", lines(-1750, 700, 1000), 0, -1050, 0, 0},
		{"small downgrade", lines(-1750, 1500, 1000), 0, -250, 0, 750},
		{"owed balance is charged now", lines(-700, 1750, 2500), 300, 1050, 1350, 2500},
		{"no proration (trial)", lines(2500), 0, 0, 0, 2500},
	} {
		var total int64
		for _, l := range tc.lines {
			total += l.Amount
		}
		p := summarize("p", cur, InvoicePreview{Currency: "usd", Total: total, StartingBalance: tc.balance, ProrationDate: at, Lines: tc.lines})
		if p.Proration != tc.proration || p.AmountDueNow != tc.now || p.AmountDueAtRenewal != tc.atRenewal ||
			!p.ProrationDate.Equal(at) || !p.RenewsAt.Equal(end) || p.Currency != "usd" {
			t.Errorf("%s: %+v, want proration %d, now %d, at renewal %d", tc.name, p, tc.proration, tc.now, tc.atRenewal)
		}
	}
}
