package billing

import (
	"fmt"
	"strconv"
)

// The wording of billing's emails, sent to every owner of the tenant. Each is queued at most once
// per cause: a payment failure once per invoice attempt, a trial ending once per trial.

func paymentFailedEmail(tenant, invoiceID string, attempt int64) Email {
	return Email{
		Kind:      PaymentFailedEmail,
		DedupeKey: "payment_failed:" + invoiceID + ":" + strconv.FormatInt(attempt, 10),
		Subject:   fmt.Sprintf("Payment failed for %s", tenant),
		Text: fmt.Sprintf("We could not collect the latest payment for %s. Please update the payment method "+
			"in the billing settings to keep the subscription active.\n", tenant),
	}
}

func trialEndingEmail(tenant, subscriptionID string, trialEnd int64) Email {
	return Email{
		Kind:      TrialEndingEmail,
		DedupeKey: "trial_ending:" + subscriptionID + ":" + strconv.FormatInt(trialEnd, 10),
		Subject:   fmt.Sprintf("The trial of %s ends soon", tenant),
		Text: fmt.Sprintf("The trial of %s ends in three days. Choose a plan in the billing settings to keep "+
			"your data and your team's access.\n", tenant),
	}
}
