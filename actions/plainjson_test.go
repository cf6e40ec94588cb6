package actions

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

// hasuraBody is a checkPermission payload as Hasura sends it (hasuratest builds the same).
const hasuraBody = `{"action":{"name":"checkPermission"},"input":{"permission":"projects:write","tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"},` +
	`"request_query":"mutation checkPermission($tenantId: uuid!, $permission: String!) {\n  checkPermission(tenantId: $tenantId, permission: $permission) {\n    allowed\n    role\n  }\n}",` +
	`"session_variables":{"x-hasura-role":"user","x-hasura-user-id":"1c4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}}`

// payloadForms are action payloads in the plain form and in every other form the fast path must
// leave to encoding/json (or decode exactly as it would).
var payloadForms = []string{
	hasuraBody,
	hasuraBody + "trailing garbage", // Decode reads the first value only
	" \t\r\n" + hasuraBody + "\n",
	`{}`, ``, ` `, `null`, `[]`, `"x"`, `{`, `}`, `{"action":}`, `{"action":{"name":"x"},}`, `{"action" {"name":"x"}}`,
	`{"action":{"name":"x"}`, `{"action":{"name":"x"}}}`, `{"action":{"name":"x"} "input":{}}`,
	`{"action":{"name":"checkPermission"}}`,
	`{"action":{"name":"checkPermission","name":"other"}}`,
	`{"action":{"name":"a"},"action":{"name":"b"}}`,
	`{"Action":{"name":"checkPermission"}}`, `{"ACTION":{"NAME":"checkPermission"}}`,
	`{"action":{"name":"check\u0050ermission"}}`, `{"action":{"name":"check\"Permission"}}`,
	`{"action":{"name":"caf` + "\xff" + `"}}`, `{"action":{"name":"café"}}`,
	`{"action":{"name":null}}`, `{"action":null}`, `{"action":{"name":1}}`, `{"action":{"kind":"sync","name":"x"}}`,
	`{"action":{}}`, `{"action":[]}`, `{"action":"x"}`,
	`{"input":{"a":"b"}}`, `{"input":{"a":1,"b":[true,false,null,{"c":-1.5e3}]}}`, `{"input":{"a":01}}`,
	`{"input":{"a":"b",}}`, `{"input":{"a":"\x"}}`, `{"input":{"a":"\u12"}}`, `{"input":null}`, `{"input":[1]}`,
	`{"input":"x"}`, `{"input":{"a":"b"},"input":{"c":"d"}}`, `{"input":{ "a" : "b" }}`, `{"input":{"a":"` + "\x01" + `"}}`,
	`{"session_variables":{}}`, `{"session_variables":null}`, `{"session_variables":{"x-hasura-role":null}}`,
	`{"session_variables":{"x-hasura-role":"user","x-hasura-role":"admin"}}`,
	`{"session_variables":{"a":"1"},"session_variables":{"b":"2"}}`,
	`{"session_variables":{"X-Hasura-Role":"user"}}`, `{"session_variables":{"x-hasura-role":1}}`,
	`{"session_variables":{"x\u002dhasura-role":"user"}}`, `{"session_variables":{"x-hasura-role":"us\ter"}}`,
	`{"session_variables":{"x-hasura-role":"` + "\xc3\x28" + `"}}`, `{"session_variables":[]}`,
	`{"request_query":null}`, `{"request_query":"q"}`, `{"request_query":"a\nb\"c\\d\/e\u00e9\ud83d\ude00"}`,
	`{"request_query":"\q"}`, `{"request_query":"\u00g0"}`, `{"request_query":"` + "\n" + `"}`,
	`{"request_query":1}`, `{"request_query":{}}`, `{"request_query":true}`, `{"request_query":"a","request_query":"b"}`,
	`{"Request_Query":"q"}`, `{"unknown":1}`, `{"action":{"name":"x"},"extra":{"a":[1,2]}}`,
	`{"action":{"name":"x"},"input":{},"session_variables":{},"request_query":""}`,
	`{"action":{"name":"x"}  ,  "input":{}  }`,
}

// TestPlainPayloadAgreesWithEncodingJSON: decodePayload gives what encoding/json's Decoder gives,
// value and error alike, for the plain form and every other; and the plain form takes the fast path.
func TestPlainPayloadAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, body := range payloadForms {
		checkPayload(t, []byte(body))
	}
	var p payload
	if !plainPayload([]byte(hasuraBody), &p) {
		t.Error("Hasura's payload does not take the fast path")
	}
}

func FuzzPlainPayload(f *testing.F) {
	for _, body := range payloadForms {
		f.Add([]byte(body))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkPayload(t, body) })
}

func checkPayload(t *testing.T, body []byte) {
	t.Helper()
	var want, got payload
	wantErr := json.NewDecoder(bytes.NewReader(body)).Decode(&want)
	gotErr := decodePayload(body, &got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%q: error %v, encoding/json's %v", body, gotErr, wantErr)
	}
	if wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded %+v, encoding/json %+v", body, got, want)
	}
}

// checkPermissionInputs are inputs in the plain form and others.
var checkPermissionInputs = []string{
	`{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","permission":"projects:write"}`,
	`{"permission":"projects:write","tenantId":"0B4E7C1C-3F0E-4D8A-9E55-0A3B2C1D4E5F"}`,
	`{ "tenantId" : "0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f" , "permission" : "x" }`,
	`{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}`, `{"permission":"p"}`, `{}`, `null`, `[]`, ``,
	`{"tenantId":"not-a-uuid","permission":"p"}`, `{"tenantId":"{0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f}","permission":"p"}`,
	`{"tenantId":"\u0030b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","permission":"p"}`,
	`{"tenantId":null,"permission":"p"}`, `{"tenantId":1,"permission":"p"}`, `{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","permission":null}`,
	`{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","permission":"p","extra":1}`,
	`{"TenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","permission":"p"}`, `{"PERMISSION":"p"}`,
	`{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","tenantId":"1b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}`,
	`{"permission":"a","permission":"b"}`, `{"permission":"a\nb"}`, `{"permission":"` + "\xff" + `"}`,
	`{"permission":"a",}`, `{"permission":"a"} x`, `{"permission":"a"`,
}

// TestPlainCheckPermissionInput: checkPermission's fast path decodes exactly what decodeInput does,
// or leaves the input to it.
func TestPlainCheckPermissionInput(t *testing.T) {
	t.Parallel()
	for _, raw := range checkPermissionInputs {
		checkInput(t, []byte(raw))
	}
	var in checkPermissionInput
	if !in.decodePlain([]byte(checkPermissionInputs[0])) {
		t.Error("Hasura's input does not take the fast path")
	}
}

func FuzzPlainCheckPermissionInput(f *testing.F) {
	for _, raw := range checkPermissionInputs {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkInput(t, raw) })
}

func checkInput(t *testing.T, raw []byte) {
	t.Helper()
	var got, want checkPermissionInput
	if !got.decodePlain(raw) {
		return
	}
	if err := decodeInput(raw, &want); err != nil || got != want {
		t.Fatalf("%q: fast path %+v, decodeInput %+v (%v)", raw, got, want, err)
	}
}

// TestCheckPermissionOutputAsEncodingJSON: the output's fast encoding is encoding/json's, byte for
// byte, or left to it.
func TestCheckPermissionOutputAsEncodingJSON(t *testing.T) {
	t.Parallel()
	role := func(r string) *tenantkit.Role { rr := tenantkit.Role(r); return &rr }
	for _, out := range []checkPermissionOutput{
		{}, {Allowed: true}, {Allowed: true, Role: role("owner")}, {Role: role("guest")}, {Role: role("")},
		{Role: role("a<b")}, {Role: role("mémber")}, {Role: role(`x"y`)},
	} {
		var want bytes.Buffer
		_ = json.NewEncoder(&want).Encode(out)
		b, ok := out.appendJSON(nil)
		if ok && string(b) != want.String() {
			t.Errorf("%+v: %q, encoding/json %q", out, b, want.String())
		}
		if !ok && out.Role != nil && strings.Trim(string(*out.Role), "abcdefghijklmnopqrstuvwxyz") == "" {
			t.Errorf("%+v: left to encoding/json", out)
		}
	}
}
