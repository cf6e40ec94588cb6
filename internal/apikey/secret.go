package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"fmt"
	"regexp"
	"strings"
)

// A key is "tk_live_" + 16 characters naming it (its prefix's random part, 80 bits) + "_" + 52
// characters of secret (32 random bytes), both in lower-case base32 (RFC 4648 alphabet, no
// padding):
//
//	tk_live_7f2kq4m9wz3xv5ab_pn4c…(52 characters)
//
// The prefix ("tk_live_7f2kq4m9wz3xv5ab") is stored in clear and shown in listings: it finds the
// key, it is what exchange failures are throttled by, and it lets secret scanners recognise a
// leaked key. The whole key is stored only as its SHA-256 digest. A slow password hash (bcrypt,
// argon2) buys nothing here: it slows an attacker who tries likely passwords, but a key is 256
// random bits, so there is nothing likely to try; and a fast digest keeps the public exchange
// endpoint from becoming a CPU sink.
const (
	// Prefix starts every key.
	Prefix = "tk_live_"
	// prefixChars and secretChars are the lengths of the two random parts.
	prefixChars = 16
	secretChars = 52
)

var (
	encoding   = base32.StdEncoding.WithPadding(base32.NoPadding)
	keyPattern = regexp.MustCompile(`^tk_live_([a-z2-7]{16})_([a-z2-7]{52})$`)
)

// Secret is a newly generated key: the value shown once to its creator, its public prefix and
// the digest that is stored.
type Secret struct {
	Key    string // the whole key; never stored, never logged
	Prefix string // Prefix + the 16-character name
	Hash   []byte // SHA-256 of Key
}

// NewSecret returns a fresh random key. It fails only when the system's random source does.
func NewSecret() (Secret, error) {
	name, err := randomBase32(10) // 80 bits: 16 characters
	if err != nil {
		return Secret{}, err
	}
	secret, err := randomBase32(32) // 256 bits: 52 characters (the last one carries 1 bit)
	if err != nil {
		return Secret{}, err
	}
	key := Prefix + name + "_" + secret
	return Secret{Key: key, Prefix: Prefix + name, Hash: Hash(key)}, nil
}

func randomBase32(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random key: %w", err)
	}
	return strings.ToLower(encoding.EncodeToString(b)), nil
}

// ParseKey returns the prefix of a well-formed key, false for anything else (without saying
// why: the answer to a malformed key is the answer to a wrong one).
func ParseKey(key string) (prefix string, ok bool) {
	m := keyPattern.FindStringSubmatch(key)
	if m == nil {
		return "", false
	}
	return Prefix + m[1], true
}

// Hash is the stored form of a key: its SHA-256 digest.
func Hash(key string) []byte {
	sum := sha256.Sum256([]byte(key))
	return sum[:]
}

// Matches reports, in time independent of where they differ, whether key hashes to stored.
func Matches(key string, stored []byte) bool {
	return subtle.ConstantTimeCompare(Hash(key), stored) == 1
}
