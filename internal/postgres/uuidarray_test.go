package postgres

import (
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDArrayEncodesInBinary: the ids reach PostgreSQL as binary uuids, the same values, without
// pgx's failed attempt (which a []string takes); an id that does not parse goes as the strings.
func TestUUIDArrayEncodesInBinary(t *testing.T) {
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
	bad := []string{ids[0], "not-a-uuid"}
	if got, ok := uuidArray(bad).([]string); !ok || !slices.Equal(got, bad) {
		t.Fatalf("uuidArray(%q) = %#v, want the strings unchanged", bad, uuidArray(bad))
	}
}
