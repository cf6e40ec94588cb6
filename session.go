package tenantkit

import (
	"context"
	"strings"
)

// Session is the caller as Hasura describes it: its session variables with lower-case names
// ("x-hasura-user-id", "x-hasura-role", …). It is trusted only when the request carried the shared
// secret. The zero Session is "nobody".
type Session struct {
	Vars map[string]string
}

// NewSession returns the session for the given variables, with names lower-cased as Hasura does.
// A name given twice in different cases with different values is ambiguous and dropped, as the
// database does (tenantkit.current_user_id).
func NewSession(vars map[string]string) Session {
	s := Session{Vars: make(map[string]string, len(vars))}
	ambiguous := map[string]bool{}
	for k, v := range vars {
		k = strings.ToLower(k)
		if old, seen := s.Vars[k]; seen && old != v {
			ambiguous[k] = true
		}
		s.Vars[k] = v
	}
	for k := range ambiguous {
		delete(s.Vars, k)
	}
	return s
}

// UserSession returns the session of a signed-in user with Hasura role "user".
func UserSession(userID string) Session {
	return NewSession(map[string]string{"x-hasura-user-id": userID, "x-hasura-role": "user"})
}

// UserID returns x-hasura-user-id ("" when absent).
func (s Session) UserID() string { return s.Vars["x-hasura-user-id"] }

// Role returns x-hasura-role ("" when absent).
func (s Session) Role() string { return s.Vars["x-hasura-role"] }

type sessionKey struct{}

// WithSession returns a context carrying s.
func WithSession(ctx context.Context, s Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// SessionFrom returns the session carried by ctx, or the zero Session.
func SessionFrom(ctx context.Context) Session {
	s, _ := ctx.Value(sessionKey{}).(Session)
	return s
}
