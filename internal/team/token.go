package team

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// An invitation token is 32 random bytes, shown to the invitee once, in the email link, as
// unpadded base64url. The database stores its SHA-256, and — until the email is accepted by the
// SMTP server — the token sealed with AES-256-GCM under a key derived from the service's secret,
// so the database alone never holds a usable token.

// SealedToken is a fresh token's hash and its sealed form.
type SealedToken struct {
	Hash   []byte
	Sealed []byte
}

// HashToken returns the stored form of a token as the invitee presents it; false when the token
// is not well formed (which then matches nothing).
func HashToken(token string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) != 32 {
		return nil, false
	}
	h := sha256.Sum256(raw)
	return h[:], true
}

// TokenSealer seals invitation tokens for tenantkit.invitation_outbox (where a token waits, sealed,
// until its email is sent) and opens them for the email.
type TokenSealer struct{ aead cipher.AEAD }

// NewTokenSealer derives the outbox key from the service secret.
func NewTokenSealer(secret string) (*TokenSealer, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "tenantkit invitation outbox v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &TokenSealer{aead: aead}, nil
}

// NewToken returns a fresh random token (as the invitee sees it) and its stored forms. The hash is
// bound into the seal, so a sealed token cannot be moved to another invitation row's hash.
func (b *TokenSealer) NewToken() (string, SealedToken, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", SealedToken{}, err
	}
	h := sha256.Sum256(raw)
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", SealedToken{}, err
	}
	sealed := b.aead.Seal(nonce, nonce, raw, h[:])
	return base64.RawURLEncoding.EncodeToString(raw), SealedToken{Hash: h[:], Sealed: sealed}, nil
}

// Open returns the token sealed for the given hash.
func (b *TokenSealer) Open(sealed, hash []byte) (string, error) {
	n := b.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed token too short")
	}
	raw, err := b.aead.Open(nil, sealed[:n], sealed[n:], hash)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(raw), nil
}
