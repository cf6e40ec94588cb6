package hasurarules

import (
	"reflect"

	"github.com/goccy/go-yaml"
)

// APIClientRole is the Hasura role of tokens from POST /auth/token (see internal/apikey).
const APIClientRole = "api_client"

// apiNever are the commands the api_client role never gets: a key never deletes its tenant.
var apiNever = map[[2]string]bool{{"tenants", "delete"}: true} // (the user role has none either)

// withAPIClient adds, after each `user` rule of doc (the metadata of table), the same rule for
// the api_client role with "a membership of the caller allowing perm" replaced by "the caller's
// API key allowing perm": the key is not revoked, one of its scopes covers perm, and its
// creator's membership allows perm — as the api_* RLS policies do. A column holding the caller
// becomes the key's creator, and a caller's own membership (leaving a tenant) has no API form.
func withAPIClient(table string, doc m) m {
	out := make(m, 0, len(doc))
	for _, item := range doc {
		key, _ := item.Key.(string)
		cmd, isPerm := map[string]string{"select_permissions": "select", "insert_permissions": "insert",
			"update_permissions": "update", "delete_permissions": "delete"}[key]
		if !isPerm || apiNever[[2]string{table, cmd}] {
			out = append(out, item)
			continue
		}
		rules, _ := item.Value.([]any)
		rules = append([]any(nil), rules...)
		for _, r := range rules {
			rule, ok := r.(m)
			if !ok || get(rule, "role") != "user" {
				continue
			}
			p := toAPI(get(rule, "permission")).(m)
			if set, ok := get(p, "set").(m); ok {
				newSet := make(m, 0, len(set))
				for _, kv := range set {
					if kv.Value == "X-Hasura-User-Id" {
						kv.Value = "X-Hasura-Api-Key-Creator-Id"
					}
					newSet = append(newSet, kv)
				}
				p = put(p, "set", newSet)
			}
			rules = append(rules, kv("role", APIClientRole, "permission", p))
		}
		out = append(out, yaml.MapItem{Key: item.Key, Value: rules})
	}
	return out
}

func get(x any, key string) any {
	mm, _ := x.(m)
	for _, kv := range mm {
		if kv.Key == key {
			return kv.Value
		}
	}
	return nil
}

func put(x m, key string, v any) m {
	out := make(m, 0, len(x))
	for _, kv := range x {
		if kv.Key == key {
			kv.Value = v
		}
		out = append(out, kv)
	}
	return out
}

var (
	apiKey  = func() m { return kv("id", kv("_eq", "X-Hasura-Api-Key-Id")) }
	apiLive = func() m { return kv("revoked_at", kv("_is_null", true)) }
)

// scopeKeys finds the grant list of a member condition (its permissions._has_keys_any), if any.
func scopeKeys(e any) any {
	switch x := e.(type) {
	case m:
		if p := get(x, "permissions"); p != nil {
			return get(p, "_has_keys_any")
		}
		for _, kv := range x {
			if k := scopeKeys(kv.Value); k != nil {
				return k
			}
		}
	case []any:
		for _, v := range x {
			if k := scopeKeys(v); k != nil {
				return k
			}
		}
	}
	return nil
}

// keyGrant turns memberCond(perm, min) of the caller into: the caller's key, live, with a scope
// covering perm, whose creator's membership satisfies the same condition.
func keyGrant(mc m) m {
	var rest []any
	if !reflect.DeepEqual(mc, me()) {
		for _, c := range get(mc, "_and").([]any) {
			if !reflect.DeepEqual(c, me()) {
				rest = append(rest, c)
			}
		}
	}
	conds := []any{apiKey(), apiLive()}
	if k := scopeKeys(rest); k != nil {
		conds = append(conds, kv("scopes", kv("_has_keys_any", k)))
	}
	var creator any = m{}
	switch {
	case len(rest) == 1:
		creator = rest[0]
	case len(rest) > 1:
		creator = kv("_and", rest)
	}
	return kv("_and", append(conds, kv("creator", creator)))
}

func toAPI(e any) any {
	switch x := e.(type) {
	case []any:
		out := make([]any, len(x))
		for i, v := range x {
			out[i] = toAPI(v)
		}
		return out
	case m:
		out := m{}
		for _, item := range x {
			k, _ := item.Key.(string)
			switch {
			case k == "members":
				out = append(out, yaml.MapItem{Key: "api_keys", Value: keyGrant(item.Value.(m))})
			case k == "_or":
				var items []any
				for _, v := range item.Value.([]any) {
					// a member leaving (their own row) has no API-client form
					if !reflect.DeepEqual(v, me()) && !reflect.DeepEqual(v, leaving()) {
						items = append(items, toAPI(v))
					}
				}
				if len(items) == 1 {
					out = append(out, items[0].(m)...)
				} else {
					out = append(out, yaml.MapItem{Key: "_or", Value: items})
				}
			case reflect.DeepEqual(item.Value, kv("_eq", "X-Hasura-User-Id")):
				// a column holding the caller: the creator of the caller's key
				out = append(out, yaml.MapItem{Key: "tenant", Value: kv("api_keys",
					kv("_and", []any{apiKey(), apiLive(), kv("created_by", kv("_ceq", []any{"$", k}))}))})
			default:
				out = append(out, yaml.MapItem{Key: item.Key, Value: toAPI(item.Value)})
			}
		}
		return out
	}
	return e
}
