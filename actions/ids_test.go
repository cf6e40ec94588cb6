package actions

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tenantkit/tenantkit"
)

var idType = reflect.TypeFor[tenantkit.ID]()

// idInput builds an action input holding an id in every tenantkit.ID field of typ (one element in
// each list), value(path) giving the id at each path, spelt as encoding/json names fields
// ("events.tenantId"). ok is false when typ holds no id.
func idInput(typ reflect.Type, path string, value func(path string) any) (v any, ok bool) {
	switch {
	case typ == idType:
		return value(path), true
	case typ.Kind() == reflect.Pointer:
		return idInput(typ.Elem(), path, value)
	case typ.Kind() == reflect.Slice:
		if e, ok := idInput(typ.Elem(), path, value); ok {
			return []any{e}, true
		}
	case typ.Kind() == reflect.Struct:
		obj := map[string]any{}
		for f := range typ.Fields() {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			p := name
			if path != "" {
				p = path + "." + name
			}
			if e, ok := idInput(f.Type, p, value); ok {
				obj[name] = e
			}
		}
		return obj, len(obj) > 0
	}
	return nil, false
}

// ids returns every tenantkit.ID in v by path.
func ids(v reflect.Value, path string, out map[string]tenantkit.ID) {
	switch {
	case v.Type() == idType:
		out[path] = v.Interface().(tenantkit.ID)
	case v.Kind() == reflect.Pointer && !v.IsNil():
		ids(v.Elem(), path, out)
	case v.Kind() == reflect.Slice:
		for i := range v.Len() {
			ids(v.Index(i), path, out)
		}
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			p := name
			if path != "" {
				p = path + "." + name
			}
			ids(v.Field(i), p, out)
		}
	}
}

// TestInputIDs: every id argument of every action is decoded once, into its canonical spelling,
// whatever the case of its hex digits; any other spelling is refused as invalid, naming the field.
func TestInputIDs(t *testing.T) {
	t.Parallel()
	const canonical = "0f0f0f0f-abcd-4def-8abc-00000000000a"
	h := &Handler{}
	withIDs := 0
	for name, sig := range h.Signatures() {
		if _, ok := idInput(sig.Input, "", func(string) any { return canonical }); !ok {
			continue
		}
		withIDs++
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, spelling := range []string{canonical, strings.ToUpper(canonical), "0F0f0F0f-AbCd-4DeF-8aBc-00000000000A"} {
				in, _ := idInput(sig.Input, "", func(string) any { return spelling })
				raw, _ := json.Marshal(in)
				dst := reflect.New(sig.Input)
				if err := decodeInput(raw, dst.Interface()); err != nil {
					t.Fatalf("%s: %v", raw, err)
				}
				got := map[string]tenantkit.ID{}
				ids(dst, "", got)
				if len(got) == 0 {
					t.Fatalf("%s: no id decoded", raw)
				}
				for path, id := range got {
					if id != canonical {
						t.Errorf("%s: %s decoded as %q, want %q", raw, path, id, canonical)
					}
				}
			}

			for _, bad := range []any{"{" + canonical + "}", "urn:uuid:" + canonical, strings.ReplaceAll(canonical, "-", ""),
				" " + canonical, canonical + "\n", "", "not-a-uuid", 42, true, map[string]any{}} {
				paths := map[string]bool{}
				idInput(sig.Input, "", func(p string) any { paths[p] = true; return canonical })
				for badPath := range paths {
					in, _ := idInput(sig.Input, "", func(p string) any {
						if p == badPath {
							return bad
						}
						return canonical
					})
					raw, _ := json.Marshal(in)
					err := decodeInput(raw, reflect.New(sig.Input).Interface())
					want := "malformed input: field " + badPath + " must be a UUID"
					if tenantkit.ErrorCode(err) != tenantkit.Invalid || tenantkit.ErrorMessage(err) != want {
						t.Errorf("%s: %v, want invalid %q", raw, err, want)
					}
				}
			}
		})
	}
	if withIDs < 10 {
		t.Fatalf("only %d actions take ids", withIDs)
	}
}
