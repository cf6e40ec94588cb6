package actions

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The fast paths of the hottest decoding: the action payload, and the inputs of checkPermission
// and recordUsage. Hasura's action payloads have one plain form: the four fields below spelt
// exactly, each once, strings without escapes where a value is kept. For that form, decodePayload
// reads the fields directly, without encoding/json's reflection; for anything else (another
// spelling of a key, a duplicate, an escape, a null, invalid UTF-8, a syntax error) it hands the
// body to encoding/json, which then decides, so the result, errors included, is always what
// encoding/json would produce. An input's decodePlain keeps the same contract for its own plain
// form. plainjson_test.go compares the two on every form.

// decodePayload decodes body as json.NewDecoder(bytes.NewReader(body)).Decode(p) does: the first
// JSON value, anything after it ignored.
func decodePayload(body []byte, p *payload) error {
	if plainPayload(body, p) {
		return nil
	}
	*p = payload{}
	return json.NewDecoder(bytes.NewReader(body)).Decode(p)
}

// plainPayload decodes body into p when its first value is a payload in the plain form, and
// reports whether it did (false: p may be partly filled).
func plainPayload(body []byte, p *payload) bool {
	start := skipSpace(body, 0)
	if start == len(body) || body[start] != '{' {
		return false
	}
	end, ok := valueEnd(body, start)
	if !ok {
		return false
	}
	// Every byte of body[start:end] is checked below, strictly: a plain object (plainObject) whose
	// values are plain strings, plain objects, an input json.Valid accepts, or request_query's
	// string (validString). So when it succeeds body[start:end] is valid JSON, the first value.
	var seen [4]bool
	return plainObject(body[start:end], func(key string, v []byte) bool {
		var i int
		switch key {
		case "action":
			i = 0
			var named bool
			if !plainObject(v, func(key string, v []byte) bool {
				name, ok := plainString(v)
				if key != "name" || !ok || named {
					return false
				}
				p.Action.Name, named = name, true
				return true
			}) {
				return false
			}
		case "input":
			i = 1
			if v[0] != '{' {
				return false
			}
			if !plainObject(v, func(_ string, v []byte) bool { _, ok := plainString(v); return ok }) && !json.Valid(v) {
				return false
			}
			p.Input = bytes.Clone(v)
		case "session_variables":
			i = 2
			vars := map[string]string{}
			if !plainObject(v, func(key string, v []byte) bool {
				s, ok := plainString(v)
				vars[key] = s
				return ok
			}) {
				return false
			}
			p.SessionVariables = vars
		case "request_query":
			i = 3
			if !validString(v) && string(v) != "null" {
				return false
			}
		default:
			return false
		}
		if seen[i] {
			return false
		}
		seen[i] = true
		return true
	})
}

// plainObject calls field for each member of obj, a valid JSON object, in order, and reports
// whether obj is an object whose keys are plain strings (see plainString) and field returned true
// for every member. v is the member's value, without surrounding space.
func plainObject(obj []byte, field func(key string, v []byte) bool) bool {
	return plainMembers(obj, func(key, v []byte) bool { return field(string(key), v) })
}

// plainMembers is plainObject with each key as the bytes of its plain string, unquoted (see
// plainBytes): they are obj's, for reading only.
func plainMembers(obj []byte, field func(key, v []byte) bool) bool {
	return plainSequence(obj, '{', '}', func(i int) (int, bool) {
		kEnd, ok := valueEnd(obj, i)
		if !ok {
			return 0, false
		}
		key, ok := plainBytes(obj[i:kEnd])
		if !ok {
			return 0, false
		}
		i = skipSpace(obj, kEnd)
		if i == len(obj) || obj[i] != ':' {
			return 0, false
		}
		i = skipSpace(obj, i+1)
		vEnd, ok := valueEnd(obj, i)
		return vEnd, ok && field(key, obj[i:vEnd])
	})
}

// plainArray calls elem for each element of arr in order, and reports whether arr is exactly a
// JSON array (its elements aside) and elem returned true for every element. v is the element,
// without surrounding space, as valueEnd delimits it: elem must check every byte of it.
func plainArray(arr []byte, elem func(v []byte) bool) bool {
	return plainSequence(arr, '[', ']', func(i int) (int, bool) {
		end, ok := valueEnd(arr, i)
		return end, ok && elem(arr[i:end])
	})
}

// plainSequence reports whether b is exactly a JSON object or array (opening and closing its
// brackets) whose items, separated by commas, item reads: item(i) checks the one that starts at
// b[i] (no space before it) and returns where it ends, and ok false to refuse it.
func plainSequence(b []byte, opening, closing byte, item func(i int) (end int, ok bool)) bool {
	if len(b) == 0 || b[0] != opening {
		return false
	}
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == closing {
		return i == len(b)-1
	}
	for i < len(b) {
		end, ok := item(i)
		if !ok {
			return false
		}
		// What follows an item: the closing bracket as b's last byte, or a comma and the next item.
		switch i = skipSpace(b, end); {
		case i < len(b) && b[i] == closing:
			return i == len(b)-1
		case i < len(b) && b[i] == ',':
			i = skipSpace(b, i+1)
		default:
			return false
		}
	}
	return false
}

// plainString returns the string a JSON string literal holds when it has no escape and is valid
// UTF-8: then its bytes are what encoding/json decodes it to. ok is false for anything else.
func plainString(lit []byte) (string, bool) {
	s, ok := plainBytes(lit)
	if !ok {
		return "", false
	}
	return string(s), true
}

// plainBytes is plainString without the copy: the literal's bytes between its quotes.
func plainBytes(lit []byte) ([]byte, bool) {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return nil, false
	}
	s := lit[1 : len(lit)-1]
	for _, c := range s {
		if c == '\\' || c == '"' || c < 0x20 {
			return nil, false
		}
	}
	if !utf8.Valid(s) {
		return nil, false
	}
	return s, true
}

// validNumber reports whether lit is exactly one JSON number literal:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, nothing around it.
func validNumber(lit []byte) bool {
	digits := func(i int) int {
		for i < len(lit) && '0' <= lit[i] && lit[i] <= '9' {
			i++
		}
		return i
	}
	i := 0
	if i < len(lit) && lit[i] == '-' {
		i++
	}
	switch {
	case i < len(lit) && lit[i] == '0':
		i++
	case i < len(lit) && '1' <= lit[i] && lit[i] <= '9':
		i = digits(i)
	default:
		return false
	}
	if i < len(lit) && lit[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return false
		}
		i = j
	}
	if i < len(lit) && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		if i < len(lit) && (lit[i] == '+' || lit[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return false
		}
		i = j
	}
	return i == len(lit)
}

// validString reports whether lit is exactly one JSON string literal: quotes, no control
// character, and only JSON's escapes.
func validString(lit []byte) bool {
	if len(lit) < 2 || lit[0] != '"' || lit[len(lit)-1] != '"' {
		return false
	}
	s := lit[1 : len(lit)-1]
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"':
			return false
		case c == '\\':
			if i+1 == len(s) {
				return false
			}
			i++
			switch s[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(s) {
					return false
				}
				for _, h := range s[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return true
}

// skipSpace returns the index of the first byte at or after i that is not JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just after the JSON value starting at b[i]: the matching bracket of
// an object or array, the closing quote of a string, or the end of a number or literal. It checks
// nothing else (callers check the value: json.Valid, plainString, validNumber…); ok is false when
// the value does not end in b.
func valueEnd(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, ok := valueEnd(b, j)
				if !ok {
					return 0, false
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j, j > i
}
