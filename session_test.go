package tenantkit_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

func TestParseID(t *testing.T) {
	t.Parallel()
	const id = "0f0f0f0f-abcd-4def-8abc-00000000000a"
	for _, s := range []string{id, strings.ToUpper(id), "0F0f0F0f-AbCd-4DeF-8aBc-00000000000A"} {
		got, err := tenantkit.ParseID("tenantId", s)
		if err != nil || got != id {
			t.Errorf("ParseID(%q) = %q, %v; want %q", s, got, err, id)
		}
	}
	for _, s := range []string{"", "{" + id + "}", "urn:uuid:" + id, strings.ReplaceAll(id, "-", ""), " " + id, id + " ",
		"0f0f0f0f-abcd-4def-8abc-00000000000g", "0f0f0f0fabcd-4def-8abc-00000000000a-"} {
		got, err := tenantkit.ParseID("tenantId", s)
		if tenantkit.ErrorCode(err) != tenantkit.Invalid || tenantkit.ErrorMessage(err) != "tenantId must be a UUID" || got != "" {
			t.Errorf("ParseID(%q) = %q, %v; want invalid naming tenantId", s, got, err)
		}
	}
	var in struct {
		Tenant tenantkit.ID `json:"tenantId"`
	}
	if err := json.Unmarshal([]byte(`{"tenantId":"`+strings.ToUpper(id)+`"}`), &in); err != nil || in.Tenant != id {
		t.Errorf("decoded %q, %v; want %q", in.Tenant, err, id)
	}
	if err := json.Unmarshal([]byte(`{"tenantId":"{`+id+`}"}`), &in); err == nil {
		t.Error("a braced id was decoded")
	}
}

func TestSessionUserIDIsCanonical(t *testing.T) {
	t.Parallel()
	const id = "0f0f0f0f-abcd-4def-8abc-00000000000a"
	s := tenantkit.NewSession(map[string]string{"X-Hasura-User-Id": strings.ToUpper(id), "x-hasura-role": "user"})
	if s.UserID() != id {
		t.Errorf("UserID = %q, want %q", s.UserID(), id)
	}
	// The same id in two spellings under two names is one id, not an ambiguity.
	s = tenantkit.NewSession(map[string]string{"X-Hasura-User-Id": strings.ToUpper(id), "x-hasura-user-id": id})
	if s.UserID() != id {
		t.Errorf("UserID of one id in two spellings = %q, want %q", s.UserID(), id)
	}
	// Anything else is kept as it is, and is nobody's id.
	for _, v := range []string{"{" + id + "}", "u1", ""} {
		if got := tenantkit.NewSession(map[string]string{"x-hasura-user-id": v}).UserID(); got != v {
			t.Errorf("UserID(%q) = %q", v, got)
		}
	}
}

// TestIDUnmarshalJSON: decoding an ID reads the JSON string as encoding/json does (escapes
// included) and accepts what ParseID accepts, with or without the decoder.
func TestIDUnmarshalJSON(t *testing.T) {
	t.Parallel()
	const id = "0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"
	for _, lit := range []string{
		`"` + id + `"`, `"` + strings.ToUpper(id) + `"`, `"\u0030b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"`,
		`"0b4e7c1c\u002d3f0e-4d8a-9e55-0a3b2c1d4e5f"`, `"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5\"`, `"{` + id + `}"`,
		`"` + id + ` "`, `""`, `"x"`, `"`, `x`, `1`, `true`, `{}`, `[]`, `"` + id, id + `"`, `"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5` + "\xff" + `"`,
	} {
		var want tenantkit.ID = "unchanged"
		var wantErr bool
		var s string
		if err := json.Unmarshal([]byte(lit), &s); err != nil {
			wantErr = true
		} else if parsed, err := tenantkit.ParseID("id", s); err != nil {
			wantErr = true
		} else {
			want = parsed
		}
		got := tenantkit.ID("unchanged")
		err := got.UnmarshalJSON([]byte(lit))
		var te *json.UnmarshalTypeError
		if wantErr != (err != nil) || err != nil && !errors.As(err, &te) || got != want {
			t.Errorf("%s: %q (%v), want %q (error %t)", lit, got, err, want, wantErr)
		}
	}
}
