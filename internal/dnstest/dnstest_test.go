package dnstest

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
)

func TestServerWithGoResolver(t *testing.T) {
	t.Parallel()
	s := Start(t)
	var d net.Dialer
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, s.Addr())
	}}
	long := strings.Repeat("x", 300)
	s.Set("_c.Acme.test.", "one", long)
	s.Set("empty.acme.test")
	got, err := r.LookupTXT(context.Background(), "_c.acme.test")
	if err != nil || !slices.Equal(got, []string{"one", long}) {
		t.Fatalf("LookupTXT: %q, %v", got, err)
	}
	if got, err := r.LookupTXT(context.Background(), "empty.acme.test"); err == nil && len(got) > 0 {
		t.Errorf("a name without TXT records: %q", got)
	}
	_, err = r.LookupTXT(context.Background(), "nowhere.acme.test")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("an unknown name: %v, want not found", err)
	}
	s.Delete("_c.acme.test")
	if _, err := r.LookupTXT(context.Background(), "_c.acme.test"); !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("a deleted name: %v", err)
	}
	if q := s.Queries(); len(q) < 4 {
		t.Errorf("queries seen: %v", q)
	}
}
