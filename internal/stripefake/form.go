package stripefake

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// fnode is one level of a form-encoded Stripe request: stripe-go (and curl -d) send nested
// parameters as bracketed keys, e.g. items[0][price]=price_1, metadata[tenant_id]=t,
// lookup_keys[0]=k (or lookup_keys[]=k), and an empty value to unset (metadata=).
// https://docs.stripe.com/api/metadata ("All keys can be unset by posting an empty value to
// metadata"), https://docs.stripe.com/api/expanding_objects (expand[]=…).
type fnode struct {
	val  string
	leaf bool // a value was posted for this key itself
	kids map[string]*fnode
}

// parseForm builds the parameter tree of vals. A key with unbalanced brackets, or with several
// values, is an error (Stripe answers 400 invalid_request_error).
func parseForm(vals url.Values) (*fnode, error) {
	root := &fnode{}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		parts, err := splitKey(k)
		if err != nil {
			return nil, err
		}
		vs := vals[k]
		// "x[]" may repeat (x[]=a&x[]=b); any other key must appear once.
		if len(vs) > 1 && parts[len(parts)-1] != "" {
			return nil, errParam(k, "Invalid request: the parameter %s was given %d times", k, len(vs))
		}
		for _, v := range vs {
			n := root
			for i, p := range parts {
				if n.kids == nil {
					n.kids = map[string]*fnode{}
				}
				if p == "" { // "[]": append
					p = strconv.Itoa(len(n.kids))
				}
				c := n.kids[p]
				if c == nil {
					c = &fnode{}
					n.kids[p] = c
				}
				n = c
				if i == len(parts)-1 {
					n.val, n.leaf = v, true
				}
			}
		}
	}
	return root, nil
}

// splitKey splits "a[b][c]" into a, b, c.
func splitKey(k string) ([]string, error) {
	i := strings.IndexByte(k, '[')
	if i < 0 {
		if strings.IndexByte(k, ']') >= 0 || k == "" {
			return nil, errParam("", "Invalid request: malformed parameter name %q", k)
		}
		return []string{k}, nil
	}
	parts := []string{k[:i]}
	rest := k[i:]
	for rest != "" {
		if rest[0] != '[' {
			return nil, errParam("", "Invalid request: malformed parameter name %q", k)
		}
		j := strings.IndexByte(rest, ']')
		if j < 0 {
			return nil, errParam("", "Invalid request: malformed parameter name %q", k)
		}
		parts = append(parts, rest[1:j])
		rest = rest[j+1:]
	}
	if parts[0] == "" {
		return nil, errParam("", "Invalid request: malformed parameter name %q", k)
	}
	return parts, nil
}

func (n *fnode) child(name string) *fnode {
	if n == nil {
		return nil
	}
	return n.kids[name]
}

// has reports whether the parameter was sent at all.
func (n *fnode) has(name string) bool { return n.child(name) != nil }

// str returns a scalar parameter.
func (n *fnode) str(name string) (string, bool) {
	c := n.child(name)
	if c == nil || !c.leaf {
		return "", false
	}
	return c.val, true
}

// names returns the parameter names below n, sorted.
func (n *fnode) names() []string {
	if n == nil {
		return nil
	}
	out := make([]string, 0, len(n.kids))
	for k := range n.kids {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// paramError is a 400 invalid_request_error about one parameter.
type paramError struct {
	param, msg string
}

func (e *paramError) Error() string { return e.msg }

func errParam(param, format string, args ...any) *paramError {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

func joinParam(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "[" + name + "]"
}

// only refuses parameters other than allowed, as Stripe refuses unknown ones
// ("Received unknown parameter: x"). Parameters of Stripe's API that this double does not model
// are refused the same way, so a test never passes because the double ignored what it was sent.
func (n *fnode) only(prefix string, allowed ...string) error {
	for _, k := range n.names() {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			p := joinParam(prefix, k)
			return errParam(p, "Received unknown parameter: %s (stripefake models only: %s)", p, strings.Join(allowed, ", "))
		}
	}
	return nil
}

// scalar refuses a nested value where a string is expected.
func (n *fnode) scalar(prefix, name string) (string, bool, error) {
	c := n.child(name)
	if c == nil {
		return "", false, nil
	}
	if len(c.kids) > 0 {
		return "", false, errParam(joinParam(prefix, name), "Invalid string: %s must be a string, not a hash or array", joinParam(prefix, name))
	}
	return c.val, true, nil
}

// integer parses an integer parameter.
func (n *fnode) integer(prefix, name string) (int64, bool, error) {
	v, ok, err := n.scalar(prefix, name)
	if err != nil || !ok {
		return 0, ok, err
	}
	i, perr := strconv.ParseInt(v, 10, 64)
	if perr != nil {
		return 0, false, errParam(joinParam(prefix, name), "Invalid integer: %s", v)
	}
	return i, true, nil
}

// boolean parses a boolean parameter ("true" or "false").
func (n *fnode) boolean(prefix, name string) (bool, bool, error) {
	v, ok, err := n.scalar(prefix, name)
	if err != nil || !ok {
		return false, ok, err
	}
	switch v {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, errParam(joinParam(prefix, name), "Invalid boolean: %s", v)
}

// list returns the elements of an array parameter (x[0], x[1]… or x[]) in index order.
func (n *fnode) list(prefix, name string) ([]*fnode, error) {
	c := n.child(name)
	if c == nil {
		return nil, nil
	}
	if c.leaf && len(c.kids) == 0 && c.val == "" {
		return []*fnode{}, nil // x= : an emptied array
	}
	idx := make([]int, 0, len(c.kids))
	for k := range c.kids {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 {
			return nil, errParam(joinParam(prefix, name), "Invalid array: %s", joinParam(prefix, name))
		}
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := make([]*fnode, 0, len(idx))
	for _, i := range idx {
		out = append(out, c.kids[strconv.Itoa(i)])
	}
	return out, nil
}

// strings returns an array of strings (lookup_keys[0]=a…, expand[]=b).
func (n *fnode) strs(prefix, name string) ([]string, error) {
	els, err := n.list(prefix, name)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(els))
	for _, e := range els {
		if len(e.kids) > 0 {
			return nil, errParam(joinParam(prefix, name), "Invalid array: %s", joinParam(prefix, name))
		}
		out = append(out, e.val)
	}
	return out, nil
}

// metadata applies a metadata hash to m (nil m: creation). Per
// https://docs.stripe.com/api/metadata: "Individual keys can be unset by posting an empty value to
// them. All keys can be unset by posting an empty value to metadata." Limits from the same page:
// up to 50 keys, names up to 40 characters, values up to 500 characters.
func (n *fnode) metadata(prefix, name string, m map[string]string) (map[string]string, error) {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	c := n.child(name)
	if c == nil {
		return out, nil
	}
	p := joinParam(prefix, name)
	if len(c.kids) == 0 {
		if c.val != "" {
			return nil, errParam(p, "Invalid object: %s must be a hash", p)
		}
		return map[string]string{}, nil
	}
	for _, k := range c.names() {
		kc := c.kids[k]
		if len(kc.kids) > 0 {
			return nil, errParam(joinParam(p, k), "Invalid string: metadata values must be strings")
		}
		if len(k) > 40 {
			return nil, errParam(joinParam(p, k), "Metadata keys can have up to 40 characters: %s", k)
		}
		if len(kc.val) > 500 {
			return nil, errParam(joinParam(p, k), "Metadata values can have up to 500 characters, but you passed in a value that is %d characters.", len(kc.val))
		}
		if kc.val == "" {
			delete(out, k)
		} else {
			out[k] = kc.val
		}
	}
	if len(out) > 50 {
		return nil, errParam(p, "You can specify up to 50 keys in metadata.")
	}
	return out, nil
}
