package hasuratest

// Hasura's JWT authentication, for tokens from a second issuer (tenantkit's POST /auth/token)
// and for tenantkit dev's stand-in for Hasura (an inline HS key, HASURA_GRAPHQL_JWT_SECRET).
//
// # What Hasura does, and where that was checked
//
// Docs: https://hasura.io/docs/latest/auth/authentication/jwt/ and
// https://hasura.io/docs/latest/auth/authentication/multiple-jwt-secrets/; source:
// server/src-lib/Hasura/Server/Auth/JWT.hs (hasura/graphql-engine: JWTConfig's FromJSON,
// processJwt_, processAuthZOrCookieHeader, parseClaimsMap, verifyJwt, parseHasuraClaims), which
// verifies with the Haskell jose library's verifyClaimsAt and defaultJWTValidationSettings.
//   - Configuration (one entry of HASURA_GRAPHQL_JWT_SECRETS, or HASURA_GRAPHQL_JWT_SECRET):
//     exactly one of key (with type: HS256/384/512, RS256/384/512, Ed25519) and jwk_url; at most
//     one of claims_namespace (default "https://hasura.io/jwt/claims") and claims_namespace_path;
//     claims_format json (default) or stringified_json; audience a string or a list; issuer;
//     claims_map; allowed_skew in seconds (default 0); header {type: Authorization | Cookie, name}.
//   - With several entries, a token is matched to the entries whose issuer equals the token's
//     iss, or where either has none; no match is the unauthenticated flow, more than one an error
//     ("ambiguous"). So every entry should name an issuer.
//   - The header is "Authorization: Bearer <jwt>" (exactly two words, "Bearer" as written).
//   - Verification: the signature with a key of the entry (a JWKS fetched from jwk_url, refreshed
//     per Cache-Control max-age); exp (now must not be past exp + allowed_skew), nbf (now +
//     skew must not be before it) and iat (not after now + skew: jose's default checks it); iss,
//     when the entry has an issuer and the token an iss, must equal it; aud, when the entry has an
//     audience and the token an aud, must contain one of the entry's. A token without iss or aud
//     passes those two checks (jose checks present claims only).
//   - Claims: the namespace's value must be an object (claims_format json) or a string holding one
//     (stringified_json); only its x-hasura-* keys count, names case-insensitive (lower-cased
//     here). x-hasura-allowed-roles must be a list of role names and x-hasura-default-role a role
//     name; the requested role (the x-hasura-role request header, else the default role) must be
//     allowed. Every other x-hasura-* claim must be a string: it becomes a session variable, and
//     x-hasura-role the role.
//
// Inline keys: HS256/384/512 (the key itself, at least 32/48/64 characters as parseHmacKey
// requires; the token's alg must be the entry's type). Not emulated: claims_map,
// claims_namespace_path, cookie headers, inline RS and Ed25519 keys (all refused with an error,
// never accepted).

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	_ "crypto/sha512" // HS384, HS512
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// DefaultClaimsNamespace is Hasura's default claims_namespace.
const DefaultClaimsNamespace = "https://hasura.io/jwt/claims"

// JWTSecret is one entry of HASURA_GRAPHQL_JWT_SECRETS, as Hasura reads it.
type JWTSecret struct {
	Type                string          `json:"type"`
	Key                 string          `json:"key"`
	JWKURL              string          `json:"jwk_url"`
	ClaimsNamespace     string          `json:"claims_namespace"`
	ClaimsNamespacePath string          `json:"claims_namespace_path"`
	ClaimsFormat        string          `json:"claims_format"`
	Audience            json.RawMessage `json:"audience"`
	Issuer              string          `json:"issuer"`
	ClaimsMap           json.RawMessage `json:"claims_map"`
	AllowedSkew         float64         `json:"allowed_skew"`
	Header              *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"header"`
}

// ParseJWTSecrets reads the value of HASURA_GRAPHQL_JWT_SECRETS (a JSON list of entries) and checks
// each entry as Hasura does at start-up.
func ParseJWTSecrets(raw string) ([]JWTSecret, error) {
	var list []json.RawMessage
	if err := json.Unmarshal([]byte(raw), &list); err != nil {
		return nil, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRETS: not a JSON list: %w", err)
	}
	out := make([]JWTSecret, 0, len(list))
	for i, entry := range list {
		s, err := ParseJWTSecret(string(entry))
		if err != nil {
			return nil, fmt.Errorf("HASURA_GRAPHQL_JWT_SECRETS[%d]: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// ParseJWTSecret reads one entry, refusing what Hasura refuses and what this emulation does not do.
func ParseJWTSecret(raw string) (JWTSecret, error) {
	var s JWTSecret
	dec := json.NewDecoder(strings.NewReader(raw))
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("jwt secret: %w", err)
	}
	switch {
	case s.Key == "" && s.JWKURL == "":
		return s, errors.New("key and jwk_url both cannot be empty")
	case s.Key != "" && s.JWKURL != "":
		return s, errors.New("key, jwk_url both cannot be present")
	case s.ClaimsNamespace != "" && s.ClaimsNamespacePath != "":
		return s, errors.New("claims_namespace and claims_namespace_path both cannot be set")
	case s.ClaimsNamespacePath != "", len(s.ClaimsMap) > 0 && string(s.ClaimsMap) != "null", s.Header != nil && !strings.EqualFold(s.Header.Type, "Authorization"):
		return s, errors.New("hasuratest: claims_namespace_path, claims_map and cookie headers are not emulated")
	case s.Key != "" && s.Type != "Ed25519" && s.Type != "RS256" && hmacHashes[s.Type] == 0:
		return s, fmt.Errorf("hasuratest: inline keys of type %q are not emulated", s.Type)
	}
	if h := hmacHashes[s.Type]; s.Key != "" && h != 0 && utf8.RuneCountInString(s.Key) < h.Size() {
		return s, fmt.Errorf("%s key size too small: it must have at least %d characters", s.Type, h.Size())
	}
	if s.ClaimsNamespace == "" {
		s.ClaimsNamespace = DefaultClaimsNamespace
	}
	switch s.ClaimsFormat {
	case "":
		s.ClaimsFormat = "json"
	case "json", "stringified_json":
	default:
		return s, fmt.Errorf("claims_format %q: want json or stringified_json", s.ClaimsFormat)
	}
	if _, err := s.Audiences(); err != nil {
		return s, err
	}
	return s, nil
}

// Audiences is the entry's audience as a list (none when it has no audience).
func (s JWTSecret) Audiences() ([]string, error) {
	if len(s.Audience) == 0 || string(s.Audience) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(s.Audience, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(s.Audience, &many); err != nil {
		return nil, errors.New("audience must be a string or a list of strings")
	}
	return many, nil
}

// JWTAuth authenticates requests as Hasura does in JWT mode with the given entries.
type JWTAuth struct {
	Secrets []JWTSecret
	Client  *http.Client // fetches jwk_url; nil: http.DefaultClient
	Now     func() time.Time
}

// JWTError is a refusal, with Hasura's error code (invalid-jwt, invalid-headers, jwt-invalid-claims,
// jwt-missing-role-claims, access-denied).
type JWTError struct {
	Code, Message string
}

func (e *JWTError) Error() string { return e.Code + ": " + e.Message }

// ErrNoMatchingSecret: no entry matched the token's issuer; Hasura then takes the unauthenticated
// role (HASURA_GRAPHQL_UNAUTHORIZED_ROLE) or refuses.
var ErrNoMatchingSecret = errors.New("no JWT secret matches the token's issuer")

// Session authenticates a request's headers: the session variables (lower-case names, with
// x-hasura-role) Hasura would run the request with.
func (a *JWTAuth) Session(ctx context.Context, h http.Header) (map[string]string, error) {
	authz := h.Get("Authorization")
	parts := strings.Fields(authz)
	if len(parts) != 2 || parts[0] != "Bearer" {
		return nil, &JWTError{"invalid-headers", "Malformed Authorization header"}
	}
	token := parts[1]
	_, payload, _, err := splitJWS(token)
	if err != nil {
		return nil, &JWTError{"invalid-jwt", "Could not verify JWT: " + err.Error()}
	}
	var unverified struct {
		Iss *string `json:"iss"`
	}
	_ = json.Unmarshal(payload, &unverified)
	var match []JWTSecret
	for _, s := range a.Secrets {
		if s.Issuer == "" || unverified.Iss == nil || *unverified.Iss == s.Issuer {
			match = append(match, s)
		}
	}
	switch len(match) {
	case 0:
		return nil, ErrNoMatchingSecret
	case 1:
	default:
		return nil, &JWTError{"invalid-jwt", "Could not verify JWT: Multiple JWTs found"}
	}
	s := match[0]
	keys, err := a.keys(ctx, s)
	if err != nil {
		return nil, err
	}
	claims, err := VerifyJWS(token, keys)
	if err != nil {
		return nil, &JWTError{"invalid-jwt", "Could not verify JWT: " + err.Error()}
	}
	if err := a.validate(s, claims); err != nil {
		return nil, &JWTError{"invalid-jwt", "Could not verify JWT: " + err.Error()}
	}
	return jwtSession(s, claims, h.Get("X-Hasura-Role"))
}

// hmacHashes are the HMAC key types and their hashes; a key has at least Size() characters
// (parseHmacKey).
var hmacHashes = map[string]crypto.Hash{"HS256": crypto.SHA256, "HS384": crypto.SHA384, "HS512": crypto.SHA512}

func hmacSum(alg string, key, input []byte) []byte {
	mac := hmac.New(hmacHashes[alg].New, key)
	mac.Write(input)
	return mac.Sum(nil)
}

// SignHMAC returns the JWS signature (base64url) of signingInput with the entry's inline HMAC
// key, as VerifyJWS checks it.
func (s JWTSecret) SignHMAC(signingInput string) (string, error) {
	if s.Key == "" || hmacHashes[s.Type] == 0 {
		return "", fmt.Errorf("type %q: not an inline HS256, HS384 or HS512 key", s.Type)
	}
	return rawURL.EncodeToString(hmacSum(s.Type, []byte(s.Key), []byte(signingInput))), nil
}

// keys returns the entry's verification keys: the inline key, or the JWKS at jwk_url.
func (a *JWTAuth) keys(ctx context.Context, s JWTSecret) ([]JWK, error) {
	if s.Key != "" && hmacHashes[s.Type] != 0 {
		return []JWK{{Kty: "oct", K: rawURL.EncodeToString([]byte(s.Key)), Alg: s.Type}}, nil
	}
	if s.Key != "" {
		return nil, errors.New("hasuratest: inline keys are not emulated yet: use jwk_url")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.JWKURL, nil)
	if err != nil {
		return nil, err
	}
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWK: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, fmt.Errorf("Non-2xx response on fetching JWK from: %s (%d)", s.JWKURL, res.StatusCode)
	}
	var set struct {
		Keys []JWK `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("Error parsing JWK from url: %s: %w", s.JWKURL, err)
	}
	return set.Keys, nil
}

// validate checks the registered claims as jose's verifyClaimsAt does with Hasura's settings.
func (a *JWTAuth) validate(s JWTSecret, claims map[string]json.RawMessage) error {
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	skew := time.Duration(s.AllowedSkew * float64(time.Second))
	date := func(name string) (*time.Time, error) {
		raw, ok := claims[name]
		if !ok {
			return nil, nil
		}
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, fmt.Errorf("JWTClaimsSetDecodeError: %s is not a NumericDate", name)
		}
		f, err := n.Float64()
		if err != nil {
			return nil, fmt.Errorf("JWTClaimsSetDecodeError: %s is not a NumericDate", name)
		}
		t := time.Unix(0, int64(f*float64(time.Second)))
		return &t, nil
	}
	exp, err := date("exp")
	if err != nil {
		return err
	}
	if exp != nil && !now.Before(exp.Add(skew)) { // jose: now < exp + skew
		return errors.New("JWTExpired")
	}
	nbf, err := date("nbf")
	if err != nil {
		return err
	}
	if nbf != nil && now.Add(skew).Before(*nbf) {
		return errors.New("JWTNotYetValid")
	}
	iat, err := date("iat")
	if err != nil {
		return err
	}
	if iat != nil && iat.After(now.Add(skew)) {
		return errors.New("JWTIssuedAtFuture")
	}
	if raw, ok := claims["iss"]; ok && s.Issuer != "" {
		var iss string
		if err := json.Unmarshal(raw, &iss); err != nil || iss != s.Issuer {
			return errors.New("JWTNotInIssuer")
		}
	}
	auds, _ := s.Audiences()
	if raw, ok := claims["aud"]; ok && auds != nil {
		var got []string
		var one string
		if json.Unmarshal(raw, &one) == nil {
			got = []string{one}
		} else if err := json.Unmarshal(raw, &got); err != nil {
			return errors.New("JWTClaimsSetDecodeError: aud")
		}
		found := false
		for _, g := range got {
			for _, want := range auds {
				found = found || g == want
			}
		}
		if !found {
			return errors.New("JWTNotInAudience")
		}
	}
	return nil
}

// jwtSession turns verified claims into Hasura's session variables (parseClaimsMap,
// parseHasuraClaims, processJwt_).
func jwtSession(s JWTSecret, claims map[string]json.RawMessage, requestedRole string) (map[string]string, error) {
	raw, ok := claims[s.ClaimsNamespace]
	if !ok {
		return nil, &JWTError{"jwt-invalid-claims", "claims key: '" + s.ClaimsNamespace + "' not found"}
	}
	if s.ClaimsFormat == "stringified_json" {
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return nil, &JWTError{"jwt-invalid-claims", "expecting a string when claims_format is stringified_json"}
		}
		raw = json.RawMessage(str)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, &JWTError{"jwt-invalid-claims", "expecting a json object when claims_format is json"}
	}
	vars := map[string]json.RawMessage{}
	for k, v := range obj {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-hasura-") {
			vars[lk] = v
		}
	}
	var allowed []string
	rawAllowed, ok := vars["x-hasura-allowed-roles"]
	if !ok {
		return nil, &JWTError{"jwt-missing-role-claims", "JWT claim does not contain x-hasura-allowed-roles"}
	}
	if err := json.Unmarshal(rawAllowed, &allowed); err != nil || allowed == nil {
		return nil, &JWTError{"jwt-invalid-claims", "invalid x-hasura-allowed-roles; should be a list of roles"}
	}
	var def string
	rawDefault, ok := vars["x-hasura-default-role"]
	if !ok {
		return nil, &JWTError{"jwt-missing-role-claims", "JWT claim does not contain x-hasura-default-role"}
	}
	if err := json.Unmarshal(rawDefault, &def); err != nil || def == "" {
		return nil, &JWTError{"jwt-invalid-claims", "invalid x-hasura-default-role; should be a single role name"}
	}
	role := def
	if requestedRole != "" {
		role = requestedRole
	}
	isAllowed := false
	for _, r := range allowed {
		isAllowed = isAllowed || r == role
	}
	if !isAllowed {
		return nil, &JWTError{"access-denied", "Your requested role is not in allowed roles"}
	}
	delete(vars, "x-hasura-allowed-roles")
	delete(vars, "x-hasura-default-role")
	session := map[string]string{}
	for k, v := range vars {
		var str string
		if err := json.Unmarshal(v, &str); err != nil {
			return nil, &JWTError{"jwt-invalid-claims", "x-hasura-* claims: expected Text for " + k}
		}
		session[k] = str
	}
	session["x-hasura-role"] = role
	return session, nil
}

// JWK is a public key of a JWKS.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	N   string `json:"n"`
	K   string `json:"k"` // oct (HMAC) keys
	E   string `json:"e"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

var rawURL = base64.RawURLEncoding

func splitJWS(token string) (header, payload, sig []byte, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, nil, nil, errors.New("CompactDecodeError: not three parts")
	}
	dec := make([][]byte, 3)
	for i, p := range parts {
		if dec[i], err = rawURL.DecodeString(p); err != nil {
			return nil, nil, nil, fmt.Errorf("CompactDecodeError: part %d: %w", i+1, err)
		}
	}
	return dec[0], dec[1], dec[2], nil
}

// VerifyJWS verifies a JWT in JWS compact form with one of keys (see verifySignature) and returns
// its claims.
func VerifyJWS(token string, keys []JWK) (map[string]json.RawMessage, error) {
	payload, err := verifySignature(token, keys)
	if err != nil {
		return nil, err
	}
	var claims map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("JWTClaimsSetDecodeError: the payload is not a JSON object")
	}
	return claims, nil
}

// verifySignature verifies a JWS in compact form with one of keys (those whose kid is the
// header's, when both name one) and returns its payload. Algorithms: EdDSA with an OKP Ed25519 key
// (RFC 8037), RS256 with an RSA key, HS256/384/512 with an oct key (RFC 7518). A key whose alg or
// use says otherwise is skipped.
func verifySignature(token string, keys []JWK) ([]byte, error) {
	header, payload, sig, err := splitJWS(token)
	if err != nil {
		return nil, err
	}
	var h struct {
		Alg  string `json:"alg"`
		Kid  string `json:"kid"`
		Crit any    `json:"crit"`
	}
	if err := json.Unmarshal(header, &h); err != nil {
		return nil, errors.New("JWSHeaderDecodeError")
	}
	if h.Crit != nil {
		return nil, errors.New("unsupported critical header")
	}
	input := []byte(token[:strings.LastIndex(token, ".")])
	tried := 0
	for _, k := range keys {
		if (k.Kid != "" && h.Kid != "" && k.Kid != h.Kid) || (k.Alg != "" && k.Alg != h.Alg) || (k.Use != "" && k.Use != "sig") {
			continue
		}
		ok := false
		switch {
		case h.Alg == "EdDSA" && k.Kty == "OKP" && k.Crv == "Ed25519":
			x, err := rawURL.DecodeString(k.X)
			if err != nil || len(x) != ed25519.PublicKeySize {
				continue
			}
			tried++
			ok = ed25519.Verify(ed25519.PublicKey(x), input, sig)
		case h.Alg == "RS256" && k.Kty == "RSA":
			n, err1 := rawURL.DecodeString(k.N)
			e, err2 := rawURL.DecodeString(k.E)
			if err1 != nil || err2 != nil || len(e) == 0 || len(e) > 4 {
				continue
			}
			pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
			sum := sha256.Sum256(input)
			tried++
			ok = rsa.VerifyPKCS1v15(pub, crypto.SHA256, sum[:], sig) == nil
		case hmacHashes[h.Alg] != 0 && k.Kty == "oct":
			key, err := rawURL.DecodeString(k.K)
			if err != nil || len(key) == 0 {
				continue
			}
			tried++
			ok = hmac.Equal(sig, hmacSum(h.Alg, key, input))
		}
		if ok {
			return payload, nil
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("NoUsableKeys (alg %q, kid %q)", h.Alg, h.Kid)
	}
	return nil, errors.New("JWSInvalidSignature")
}
