package billing

// whileDeleted is what an event does to a deleted tenant (rule 7 of state.go): the decision d
// taken as if it were not deleted keeps only the subscription's own state (so its watermark stays
// true), never the tenant's row, plan or emails; and a subscription that has not ended is
// canceled through the outbox, under the deletion's key, so that a late checkout or a
// cancellation the deletion could not know about never leaves a deleted tenant billed.
func whileDeleted(a Account, d Decision) Decision {
	if d.NeedFetch != "" {
		return d // the state must be learnt first
	}
	d.Account, d.Changed, d.Emails = a, false, nil
	if d.Save != nil && !ended(d.Save.Status) {
		d.Writes = append(d.Writes, CancelWrite(a.TenantID, *a.DeletedAt, d.Save.ID))
	}
	switch d.Outcome {
	case Applied, NotCurrent:
		d.Outcome = TenantDeleted
	}
	return d
}
