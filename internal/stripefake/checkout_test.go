package stripefake

import (
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func TestCheckoutPromotionCodesAndTax(t *testing.T) {
	sf, sc := newFake(t)
	c := makeCatalog(t, sc)
	cus, err := sc.Customers.New(&stripe.CustomerParams{Name: stripe.String("Acme")})
	if err != nil {
		t.Fatal(err)
	}
	params := func() *stripe.CheckoutSessionParams {
		return &stripe.CheckoutSessionParams{Mode: stripe.String("subscription"), Customer: stripe.String(cus.ID),
			LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(c.basic), Quantity: stripe.Int64(1)}},
			SuccessURL: stripe.String("https://app.test/ok"), AllowPromotionCodes: stripe.Bool(true),
			AutomaticTax: &stripe.CheckoutSessionAutomaticTaxParams{Enabled: stripe.Bool(true)}}
	}
	// A customer without an address: Stripe Tax cannot locate it unless Checkout may save one.
	_, err = sc.CheckoutSessions.New(params())
	if se := stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest); se.Code != "customer_tax_location_invalid" {
		t.Fatalf("code %s", se.Code)
	}
	p := params()
	p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
	cs, err := sc.CheckoutSessions.New(p)
	if err != nil {
		t.Fatal(err)
	}
	if !cs.AllowPromotionCodes || !cs.AutomaticTax.Enabled {
		t.Fatalf("session %+v %+v", cs.AllowPromotionCodes, cs.AutomaticTax)
	}
	done, err := sf.CompleteCheckout(cs.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sub := sf.Subscription(done.Subscription.ID); !sub.AutomaticTax.Enabled {
		t.Error("the subscription does not keep automatic tax")
	}
	if a := sf.Customer(cus.ID).Address; a == nil || a.Country != "US" {
		t.Errorf("Checkout did not save the address: %+v", a)
	}
	// Now the customer has an address: no customer_update needed.
	if _, err := sc.CheckoutSessions.New(params()); err != nil {
		t.Fatal(err)
	}
	// customer_update without customer, and a bad value, are refused.
	p = params()
	p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("sometimes")}
	_, err = sc.CheckoutSessions.New(p)
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
	p = params()
	p.Customer, p.CustomerEmail = nil, stripe.String("a@b.test")
	p.CustomerUpdate = &stripe.CheckoutSessionCustomerUpdateParams{Address: stripe.String("auto")}
	_, err = sc.CheckoutSessions.New(p)
	stripeErr(t, err, 400, stripe.ErrorTypeInvalidRequest)
}
