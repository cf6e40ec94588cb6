package tenantkit

import (
	"errors"
	"fmt"
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
