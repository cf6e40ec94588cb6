package tenantkit

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"

	"github.com/google/uuid"
)

// Session is the caller as Hasura describes it: its session variables with lower-case names
// ("x-hasura-user-id", "x-hasura-role", …). It is trusted only when the request carried the shared
// secret. The zero Session is "nobody".
type Session struct {
	Vars map[string]string
}

// NewSession returns the session for the given variables, with names lower-cased as Hasura does.
// A name given twice in different cases with different values is ambiguous and dropped, as the
// database does (tenantkit.current_user_id). An x-hasura-user-id that is a UUID (see ParseID) is
// kept in its canonical form, so that UserID is comparable with every other id; any other value
// is kept as it is and is nobody's id (the services answer unauthenticated).
func NewSession(vars map[string]string) Session {
	s := Session{Vars: make(map[string]string, len(vars))}
	ambiguous := map[string]bool{}
	for k, v := range vars {
		k = strings.ToLower(k)
		if k == "x-hasura-user-id" {
			if id, err := ParseID(k, v); err == nil {
				v = string(id)
			}
		}
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

// Authorize reports whether the session holds a permission in a tenant, and its role there
// (empty for a non-member): what the billing and export services ask of the team service
// (team.Service.Check), without depending on it.
type Authorize func(ctx context.Context, s Session, tenantID, permission string) (bool, Role, error)

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

// ID is a UUID in its canonical form: 36 characters, lower-case hexadecimal digits, hyphenated
// 8-4-4-4-12. Ids are canonicalised once, where they enter (an action's input, a remote-schema
// argument, x-hasura-user-id), so that everything downstream may compare them as strings: the same
// tenant always has the same key (the api_calls meter, idempotency keys, "is that me?").
//
// Decoding an ID from JSON accepts exactly what ParseID accepts; anything else is a
// *json.UnmarshalTypeError (encoding/json names the field). JSON null leaves the ID unchanged.
type ID string

// ParseID returns s, a UUID written as 36 characters (hexadecimal digits in either case, hyphens
// at positions 9, 14, 19 and 24), in its canonical form. Other spellings uuid.Parse would take —
// "{…}", "urn:uuid:…", 32 digits without hyphens — are refused like any other non-UUID: the API
// documents ids as UUIDs, and one spelling per id is what makes ids comparable. Errors: invalid,
// naming the argument name.
func ParseID(name, s string) (ID, error) {
	u, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return "", Errorf(Invalid, "%s must be a UUID", name)
	}
	return ID(u.String()), nil
}

// UnmarshalJSON decodes a JSON string holding a UUID (see ParseID) into its canonical form.
func (id *ID) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	// A literal without escapes holds its bytes (ParseID refuses any that are not ASCII): no
	// decoder needed.
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && !bytes.ContainsAny(b[1:len(b)-1], `\"`) {
		if parsed, err := ParseID("id", string(b[1:len(b)-1])); err == nil {
			*id = parsed
			return nil
		}
		return &json.UnmarshalTypeError{Value: "value other than a UUID string", Type: reflect.TypeFor[ID]()}
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if parsed, err := ParseID("id", s); err == nil {
			*id = parsed
			return nil
		}
	}
	return &json.UnmarshalTypeError{Value: "value other than a UUID string", Type: reflect.TypeFor[ID]()}
}
