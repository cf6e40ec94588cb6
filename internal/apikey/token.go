package apikey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// The tokens an exchange returns are JWTs (RFC 7519) in JWS compact form (RFC 7515), signed with
// tenantkit's own key: Ed25519 (alg EdDSA, RFC 8037) or RSA of at least 2048 bits (alg RS256).
// Hasura v2 verifies both, from the JWKS tenantkit serves (jwt_secrets entry with jwk_url); see
// README "API keys" for the entry.

// Signer signs tokens with the current key and publishes the public keys Hasura may verify them
// with (the current one and, during a rotation, the previous one).
type Signer struct {
	key  crypto.Signer
	alg  string
	kid  string
	jwks []byte
}

// JWK is one public key of a JWKS (RFC 7517), as tenantkit publishes it.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

var b64 = base64.RawURLEncoding

// NewSigner returns a signer for key (an ed25519.PrivateKey or an *rsa.PrivateKey of at least
// 2048 bits) whose JWKS also lists the public keys in previous (tokens signed before a rotation stay
// verifiable until they expire). Errors name what is wrong with a key, never its value.
func NewSigner(key crypto.PrivateKey, previous ...crypto.PublicKey) (*Signer, error) {
	s := &Signer{}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("the signing key is neither Ed25519 nor RSA")
	}
	current, err := publicJWK(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	s.key, s.alg, s.kid = signer, current.Alg, current.Kid
	keys := []JWK{current}
	for i, p := range previous {
		j, err := publicJWK(p)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		if j.Kid != current.Kid {
			keys = append(keys, j)
		}
	}
	s.jwks, err = json.Marshal(map[string][]JWK{"keys": keys})
	return s, err
}

// publicJWK describes a public key as a JWK whose kid is its RFC 7638 thumbprint.
func publicJWK(pub crypto.PublicKey) (JWK, error) {
	var j JWK
	var canonical string // RFC 7638: the required members, in lexicographic order, no spaces
	switch k := pub.(type) {
	case ed25519.PublicKey:
		j = JWK{Kty: "OKP", Crv: "Ed25519", X: b64.EncodeToString(k), Alg: "EdDSA"}
		canonical = `{"crv":"Ed25519","kty":"OKP","x":"` + j.X + `"}`
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return j, fmt.Errorf("an RSA key must have at least 2048 bits, this one has %d", k.N.BitLen())
		}
		j = JWK{Kty: "RSA", N: b64.EncodeToString(k.N.Bytes()), E: b64.EncodeToString(big.NewInt(int64(k.E)).Bytes()), Alg: "RS256"}
		canonical = `{"e":"` + j.E + `","kty":"RSA","n":"` + j.N + `"}`
	default:
		return j, fmt.Errorf("unsupported key type %T (use Ed25519 or RSA)", pub)
	}
	sum := sha256.Sum256([]byte(canonical))
	j.Kid, j.Use = b64.EncodeToString(sum[:]), "sig"
	return j, nil
}

// Alg is the JWS algorithm of the tokens: EdDSA or RS256.
func (s *Signer) Alg() string { return s.alg }

// KeyID is the kid of the current key.
func (s *Signer) KeyID() string { return s.kid }

// JWKS returns the JSON Web Key Set to serve: {"keys": [current, previous…]}.
func (s *Signer) JWKS() []byte { return s.jwks }

// Sign returns claims as a signed JWT (header alg, kid and typ JWT).
func (s *Signer) Sign(claims any) (string, error) {
	header, err := json.Marshal(map[string]string{"alg": s.alg, "kid": s.kid, "typ": "JWT"})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString(header) + "." + b64.EncodeToString(payload)
	var sig []byte
	switch s.alg {
	case "EdDSA":
		sig, err = s.key.Sign(rand.Reader, []byte(input), crypto.Hash(0))
	default:
		sum := sha256.Sum256([]byte(input))
		sig, err = s.key.Sign(rand.Reader, sum[:], crypto.SHA256)
	}
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return input + "." + b64.EncodeToString(sig), nil
}

// ParsePrivateKey reads a PEM private key: PKCS#8 ("PRIVATE KEY", Ed25519 or RSA, what `openssl
// genpkey -algorithm ed25519` writes) or PKCS#1 ("RSA PRIVATE KEY"). Errors never quote the key.
func ParsePrivateKey(data []byte) (crypto.PrivateKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not a PEM private key")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("more than one PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("malformed PKCS#8 private key")
		}
		if _, err := publicOf(k); err != nil {
			return nil, err
		}
		return k, nil
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, errors.New("malformed PKCS#1 RSA private key")
		}
		return k, nil
	}
	return nil, fmt.Errorf("PEM block %q is not a private key (want PRIVATE KEY or RSA PRIVATE KEY)", block.Type)
}

// ParsePublicKey reads a PEM public key ("PUBLIC KEY", PKIX) or the public half of a PEM private
// key: a previous signing key, kept in the JWKS during a rotation.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block != nil && block.Type == "PUBLIC KEY" {
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, errors.New("malformed PKIX public key")
		}
		return k, nil
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	return publicOf(k)
}

func publicOf(k crypto.PrivateKey) (crypto.PublicKey, error) {
	switch k := k.(type) {
	case ed25519.PrivateKey:
		return k.Public(), nil
	case *rsa.PrivateKey:
		return k.Public(), nil
	}
	return nil, fmt.Errorf("unsupported key type %T (use Ed25519 or RSA)", k)
}
