package tenantkit

import (
	"context"
	"time"
)

// Claim is the outcome of claiming an event id for processing.
type Claim int

const (
	// Claimed: this delivery owns the event until its lease ends; do the work, then Finish.
	Claimed Claim = iota
	// AlreadyDone: an earlier delivery finished the work; answer success and do nothing.
	AlreadyDone
	// InProgress: another delivery holds an unexpired lease; answer "retry later".
	InProgress
)

// EventLog deduplicates at-least-once deliveries (Hasura event triggers) by event id.
type EventLog interface {
	// ClaimEvent claims id for the given lease. Errors: unavailable.
	ClaimEvent(ctx context.Context, id, trigger string, lease time.Duration) (Claim, error)
	// FinishEvent marks id done. Errors: unavailable.
	FinishEvent(ctx context.Context, id string) error
	// ReleaseEvent gives up a claim after a failure, so a retry can claim it at once.
	ReleaseEvent(ctx context.Context, id string) error
}
