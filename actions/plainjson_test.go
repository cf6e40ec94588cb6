package actions

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
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

// usageEvent is one event of recordUsage's input as Hasura sends it.
const usageEvent = `{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","metric":"emails_sent","quantity":1,"idempotencyKey":"bench-1"}`

// usageBatch is recordUsage's input with n events as Hasura sends them, every third with an
// occurredAt.
func usageBatch(n int) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","metric":"emails_sent","quantity":%d,"idempotencyKey":"bench-%d"`, i%7, i)
		if i%3 == 0 {
			b.WriteString(`,"occurredAt":"2026-12-07T10:00:00Z"`)
		}
		b.WriteByte('}')
	}
	b.WriteString(`]}`)
	return b.String()
}

// plainRecordUsageInputs are recordUsage inputs in the plain form: each takes the fast path.
var plainRecordUsageInputs = []string{
	`{"events":[` + usageEvent + `]}`,
	usageBatch(5),
	`{"events":[]}`, `{"events":[{}]}`, `{"events":[{},{}]}`, ` {"events":[]} `, "\t{\"events\":[]}\r\n",
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","metric":"emails_sent","quantity":1,"idempotencyKey":"k","occurredAt":"2026-12-07T10:00:00Z"}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","metric":"emails_sent","quantity":1,"idempotencyKey":"k","occurredAt":null}]}`,
	`{"events":[{"occurredAt":"2026-12-07T10:00:00.123456789+02:00","idempotencyKey":"k","quantity":2.5,"metric":"storage_gb","tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"occurredAt":"2026-12-07T10:00:00-05:30"},{"occurredAt":null},{"occurredAt":"2026-01-01T00:00:00Z"}]}`,
	`{ "events" : [ { "tenantId" : "0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f" , "quantity" : 3 } , {"metric":"m"} ] }`,
	"{\n  \"events\": [\n    {\n      \"metric\": \"a\",\n\t\"quantity\": 1\r\n    }\n  ]\n}",
	`{"events":[{"tenantId":"0B4E7C1C-3F0E-4D8A-9E55-0A3B2C1D4E5F"},{"tenantId":"0b4e7c1c-3F0E-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"},{"tenantId":"1b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"},{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"metric":"a"},{"metric":"a"},{"metric":"b"},{"metric":""},{"metric":""},{"metric":"a"}]}`,
	`{"events":[{"quantity":0},{"quantity":-0},{"quantity":-1},{"quantity":1.5e3},{"quantity":1E-3},{"quantity":-0.0e+0},{"quantity":12345678901234567890}]}`,
	`{"events":[{"quantity":1e-400},{"quantity":1.7976931348623157e308},{"quantity":4.9e-324},{"quantity":0.1}]}`,
	`{"events":[{"metric":"café ☕","idempotencyKey":"{[` + "\x7f\u2028" + `]}"}]}`,
	`{"events":[{"metric":"{{{{"},{"metric":"}"}]}`,
}

// recordUsageInputs are recordUsage inputs in the plain form and others.
var recordUsageInputs = append(slices.Clone(plainRecordUsageInputs),
	``, ` `, `null`, `[]`, `{}`, `"events"`, `{"events":null}`, `{"events":{}}`, `{"events":"x"}`, `{"events":1}`,
	`{"events":[null]}`, `{"events":[1]}`, `{"events":[[]]}`, `{"events":["x"]}`, `{"events":[{}],}`, `{"events":[{},]}`,
	`{"events":[,{}]}`, `{"events":[{}{}]}`, `{"events":[{} {}]}`, `{"events":[{}}`, `{"events":[{]}`, `{"events":[{"metric":"a"]}`,
	`{"events":[{"metric":"a"}]`, `{"events":[{"metric":"a"}`, `{"events":[`, `{"events":`, `{"events"`, `{`,
	`{"events":[]} x`, `{"events":[]}}`, `{"events":[]}]`, `{"events":[]},{}`, `{"events":[]}{"events":[{}]}`,
	`{"events":[]]}`, `{"events":[}]}`, `{"events":[{"metric":"a"},{"metric":"b"}]]}`,
	`{"events":[],"events":[]}`, `{"events":[{"metric":"a","quantity":1}],"events":[{"metric":"b"}]}`,
	`{"events":[],"extra":1}`, `{"extra":1,"events":[]}`, `{"Events":[]}`, `{"EVENTS":[{"metric":"a"}]}`, `{"event\u0073":[]}`,
	`{"events":[{"metric":"a","metric":"b"}]}`, `{"events":[{"quantity":1,"quantity":2}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","tenantId":"1b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f","tenantId":null}]}`,
	`{"events":[{"idempotencyKey":"a","idempotencyKey":"b"}]}`,
	`{"events":[{"occurredAt":"2026-12-07T10:00:00Z","occurredAt":null}]}`,
	`{"events":[{"occurredAt":null,"occurredAt":"2026-12-07T10:00:00Z"}]}`,
	`{"events":[{"occurredAt":"2026-12-07T10:00:00Z","occurredAt":"2027-12-07T10:00:00Z"}]}`,
	`{"events":[{"unknown":1}]}`, `{"events":[{"TenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`, `{"events":[{"METRIC":"a"}]}`,
	`{"events":[{"occurredat":null}]}`, `{"events":[{"idempotency_key":"k"}]}`, `{"events":[{"metr\u0069c":"a"}]}`,
	`{"events":[{"metric":"a\nb"}]}`, `{"events":[{"metric":"a\"b"}]}`, `{"events":[{"metric":"\u0061"}]}`, `{"events":[{"metric":"a\/b"}]}`,
	`{"events":[{"metric":"`+"\xff"+`"}]}`, `{"events":[{"idempotencyKey":"`+"\xc3\x28"+`"}]}`, `{"events":[{"metric":"`+"\x01"+`"}]}`,
	`{"events":[{"metric":"a`+"\t"+`b"}]}`, `{"events":[{"metric":"\x"}]}`, `{"events":[{"metric":"a}]}`,
	`{"events":[{"tenantId":"not-a-uuid"}]}`, `{"events":[{"tenantId":""}]}`, `{"events":[{"tenantId":"0b4e7c1c3f0e4d8a9e550a3b2c1d4e5f"}]}`,
	`{"events":[{"tenantId":"{0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f}"}]}`, `{"events":[{"tenantId":"urn:uuid:0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5g"}]}`, `{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f "}]}`,
	`{"events":[{"tenantId":"\u0030b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"}]}`,
	`{"events":[{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"},{"tenantId":"0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5g"}]}`,
	`{"events":[{"tenantId":null}]}`, `{"events":[{"tenantId":1}]}`, `{"events":[{"tenantId":["0b4e7c1c-3f0e-4d8a-9e55-0a3b2c1d4e5f"]}]}`,
	`{"events":[{"metric":null}]}`, `{"events":[{"metric":1}]}`, `{"events":[{"metric":true}]}`, `{"events":[{"idempotencyKey":null}]}`,
	`{"events":[{"quantity":"1"}]}`, `{"events":[{"quantity":null}]}`, `{"events":[{"quantity":true}]}`, `{"events":[{"quantity":[1]}]}`,
	`{"events":[{"quantity":{}}]}`, `{"events":[{"quantity":01}]}`, `{"events":[{"quantity":00}]}`, `{"events":[{"quantity":-01}]}`,
	`{"events":[{"quantity":1e400}]}`, `{"events":[{"quantity":-1e400}]}`, `{"events":[{"quantity":1.8e308}]}`,
	`{"events":[{"quantity":1.}]}`, `{"events":[{"quantity":.5}]}`, `{"events":[{"quantity":+1}]}`, `{"events":[{"quantity":-}]}`,
	`{"events":[{"quantity":1e}]}`, `{"events":[{"quantity":1e+}]}`, `{"events":[{"quantity":1.e3}]}`, `{"events":[{"quantity":0x10}]}`,
	`{"events":[{"quantity":1_000}]}`, `{"events":[{"quantity":NaN}]}`, `{"events":[{"quantity":Infinity}]}`, `{"events":[{"quantity":inf}]}`,
	`{"events":[{"quantity":1/}]}`, `{"events":[{"quantity":1"}]}`, `{"events":[{"quantity":1 2}]}`, `{"events":[{"quantity":}]}`,
	`{"events":[{"quantity":-0.}]}`, `{"events":[{"quantity":1e5.5}]}`, `{"events":[{"quantity":1ee5}]}`, `{"events":[{"quantity":1E+-5}]}`,
	`{"events":[{"occurredAt":"2026-12-07"}]}`, `{"events":[{"occurredAt":"2026-12-07T10:00:00"}]}`, `{"events":[{"occurredAt":""}]}`,
	`{"events":[{"occurredAt":"2026-12-07 10:00:00Z"}]}`, `{"events":[{"occurredAt":"2026-12-07t10:00:00z"}]}`,
	`{"events":[{"occurredAt":"2026-13-07T10:00:00Z"}]}`, `{"events":[{"occurredAt":"2026-12-07T10:00:00+24:00"}]}`,
	`{"events":[{"occurredAt":"2026-12-07T10:00:00\u005a"}]}`, `{"events":[{"occurredAt":"\u0032026-12-07T10:00:00Z"}]}`,
	`{"events":[{"occurredAt":1}]}`, `{"events":[{"occurredAt":{}}]}`, `{"events":[{"occurredAt":"2026-12-07T10:00:00Z`+"\x01"+`"}]}`,
	`{"events":[{"occurredAt":nul}]}`, `{"events":[{"occurredAt":nulll}]}`, `{"events":[{"occurredAt":Null}]}`,
	`{"events":[{"metric":"a","nested":{"x":[1,{"y":null}]}}]}`, `{"events":[{"metric":"a"}],"meta":{"events":[]}}`,
	`{"events":[{"metric":"a",}]}`, `{"events":[{,"metric":"a"}]}`, `{"events":[{"metric" "a"}]}`, `{"events":[{"metric":"a" "quantity":1}]}`,
	`{"events":[{"metric"::"a"}]}`, `{"events":[{metric:"a"}]}`, `{"events":[{'metric':'a'}]}`, `{events:[]}`,
	`{"events":[{"metric":"a"}]`+"\x00"+`}`, `{"events":[{"metric":"a"}],}`,
)

// TestPlainRecordUsageInput: recordUsage's fast path decodes exactly what decodeInput does, or
// leaves the input to it; the plain form, Hasura's, takes it.
func TestPlainRecordUsageInput(t *testing.T) {
	t.Parallel()
	for _, raw := range recordUsageInputs {
		checkRecordUsageInput(t, []byte(raw))
	}
	for _, raw := range append(plainRecordUsageInputs, usageBatch(1000)) {
		var in recordUsageInput
		if !in.decodePlain([]byte(raw)) {
			t.Errorf("%.200q does not take the fast path", raw)
		}
	}
	checkRecordUsageInput(t, []byte(usageBatch(1000)))
}

func FuzzPlainRecordUsageInput(f *testing.F) {
	for _, raw := range recordUsageInputs {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkRecordUsageInput(t, raw) })
}

// checkRecordUsageInput: when the fast path takes raw, decodeInput takes it too, with the same
// value (a quantity's sign of zero included).
func checkRecordUsageInput(t *testing.T, raw []byte) {
	t.Helper()
	var got, want recordUsageInput
	if !got.decodePlain(raw) {
		return
	}
	if err := decodeInput(raw, &want); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%.300q: fast path %+v, decodeInput %+v (%v)", raw, got, want, err)
	}
	for i := range got.Events {
		if math.Float64bits(got.Events[i].Quantity) != math.Float64bits(want.Events[i].Quantity) {
			t.Fatalf("%.300q: event %d: quantity %v, decodeInput %v", raw, i, got.Events[i].Quantity, want.Events[i].Quantity)
		}
	}
}

func BenchmarkRecordUsageInputDecode(b *testing.B) {
	raw := []byte(usageBatch(1000))
	b.Run("decodePlain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in recordUsageInput
			if !in.decodePlain(raw) {
				b.Fatal("not plain")
			}
		}
	})
	b.Run("decodeInput", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var in recordUsageInput
			if err := decodeInput(raw, &in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestPlainSequenceIsExact: an object or array is read to its closing bracket and no further, so a
// caller that hands over more than one value (not delimited by valueEnd) is refused, not read in
// part; items are separated by single commas.
func TestPlainSequenceIsExact(t *testing.T) {
	t.Parallel()
	every := func([]byte) bool { return true }
	for raw, want := range map[string]bool{
		`[]`: true, `[ ]`: true, `[1]`: true, `[1, 2]`: true, `[ 1 ,2 ]`: true,
		`[]x`: false, `[1]x`: false, `[1] `: false, `[1,]`: false, `[,1]`: false, `[1 2]`: false, `[1,,2]`: false, `[1`: false, `[1,`: false,
	} {
		if got := plainArray([]byte(raw), every); got != want {
			t.Errorf("plainArray(%q) = %t, want %t", raw, got, want)
		}
		obj := strings.NewReplacer("1", `"a":1`, "2", `"b":2`, "[", "{", "]", "}").Replace(raw)
		if got := plainMembers([]byte(obj), func(_, _ []byte) bool { return true }); got != want {
			t.Errorf("plainMembers(%q) = %t, want %t", obj, got, want)
		}
	}
	if plainMembers([]byte(`{"a" 1}`), func(_, _ []byte) bool { return true }) {
		t.Error(`plainMembers accepts a member without its colon`)
	}
	if plainArray([]byte(`[1,2]`), func(v []byte) bool { return string(v) == "1" }) {
		t.Error("plainArray accepts an element its callback refused")
	}
}
