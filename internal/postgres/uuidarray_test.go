package postgres

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDArrayEncodes: the ids reach PostgreSQL as binary uuids, the same values, without pgx's
// failed attempt (which a []string takes), and as text where pgx knows no parameter types (the
// simple protocol, behind a transaction pooler); an id that does not parse goes as the strings.
func TestUUIDArrayEncodes(t *testing.T) {
	ids := []string{"3f1a2b4c-1111-2222-3333-444455556666", "00000000-0000-0000-0000-000000000001"}
	m := pgtype.NewMap()
	if _, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, nil); err == nil {
		t.Log("pgx now encodes a []string as uuid[] in binary: uuidArray may no longer be needed")
	}
	buf, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, uuidArray(ids), nil)
	if err != nil {
		t.Fatalf("uuidArray(%q) does not encode in binary: %v", ids, err)
	}
	var back []string
	if err := m.Scan(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, buf, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back, ids) {
		t.Fatalf("decoded %q, want %q", back, ids)
	}
	// The simple protocol: no parameter type is known (OID 0), and every value goes as text.
	text, err := m.Encode(0, pgtype.TextFormatCode, uuidArray(ids), nil)
	if want := "{" + ids[0] + "," + ids[1] + "}"; err != nil || string(text) != want {
		t.Fatalf("uuidArray(%q) as text for an unknown type: %q (%v), want %q", ids, text, err, want)
	}
	// Anything but the canonical form goes as the strings, for PostgreSQL to read or refuse: also
	// what uuid.Parse accepts and PostgreSQL does not.
	for _, odd := range []string{"not-a-uuid", "urn:uuid:" + ids[1], "{" + ids[1] + "}", strings.ReplaceAll(ids[1], "-", "")} {
		bad := []string{ids[0], odd}
		if got, ok := uuidArray(bad).([]string); !ok || !slices.Equal(got, bad) {
			t.Fatalf("uuidArray(%q) = %#v, want the strings unchanged", bad, uuidArray(bad))
		}
	}
}
