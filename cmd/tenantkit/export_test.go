package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// download GETs an export link on the stack (the link names TENANTKIT_PUBLIC_URL's host; the test
// sends it to the stack's listener) and returns the status and body.
func (s *stack) download(t *testing.T, link string) (int, http.Header, []byte) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse(s.m.HTTP.URL())
	u.Scheme, u.Host = base.Scheme, base.Host
	res, err := http.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	return res.StatusCode, res.Header, body
}

// TestExportTenant: exportTenant through Hasura's metadata (owners only), the link served by
// tenantkit (once, for that owner, altered links refused), the archive's content (the tenant's
// rows only, members' emails, no token material) the same from one export to the next, and the
// export not billed as an API call.
func TestExportTenant(t *testing.T) {
	t.Parallel()
	s := newStack(t, "TENANTKIT_PUBLIC_URL", "https://tenantkit.example.com/", "EXPORT_LINK_MINUTES", "5")
	tenant, owner := s.tenant(t)
	other, otherOwner := s.tenant(t)
	member := s.user(t, "")
	exec(t, s, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, 'member')`, tenant, member)
	s.ok(t, "inviteMember", map[string]any{"tenantId": tenant, "email": "kim@example.com", "role": "member"}, owner)
	s.ok(t, "inviteMember", map[string]any{"tenantId": other, "email": "lee@example.com", "role": "member"}, otherOwner)
	exec(t, s, `INSERT INTO projects (tenant_id, name, owner_id) VALUES ($1, 'Apollo', $2), ($1, 'Gemini', $2)`, tenant, owner)
	s.record(t, map[string]any{"tenantId": tenant, "metric": "api_calls", "quantity": 3, "idempotencyKey": "e1"})
	in := map[string]any{"tenantId": tenant}

	s.fails(t, "forbidden", "exportTenant", in, member)
	s.fails(t, "not_found", "exportTenant", in, otherOwner)
	s.fails(t, "unauthenticated", "exportTenant", in, "")

	apiCalls := func() int {
		if err := s.m.Meter.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s.count(t, `SELECT coalesce(sum(quantity), 0)::int FROM tenantkit.usage_hours($1) WHERE metric = 'api_calls'`, tenant)
	}
	before := apiCalls()
	out := s.ok(t, "exportTenant", in, owner)
	link := out["url"].(string)
	if !strings.HasPrefix(link, "https://tenantkit.example.com/exports/"+out["exportId"].(string)+"?") || out["expiresAt"] == nil {
		t.Fatalf("answer %v", out)
	}
	if after := apiCalls(); after != before {
		t.Errorf("exportTenant was billed as an API call: api_calls %d → %d", before, after)
	}

	status, hdr, body := s.download(t, link)
	if status != 200 || hdr.Get("Content-Type") != "application/json; charset=utf-8" || hdr.Get("Cache-Control") != "no-store" ||
		!strings.HasPrefix(hdr.Get("Content-Disposition"), "attachment; filename=") {
		t.Fatalf("download: %d %v\n%.500s", status, hdr, body)
	}
	var a map[string]json.RawMessage
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("archive: %v", err)
	}
	for _, section := range []string{"export", "tenant", "members", "invitations", "invitationSends", "projects", "usage",
		"usageEvents", "auditLog", "subscription", "stripeSubscriptions", "emails"} {
		if _, ok := a[section]; !ok {
			t.Errorf("archive without %s", section)
		}
	}
	for _, want := range []string{tenant, "kim@example.com", "Apollo", "Gemini", `"idempotency_key": "e1"`, "member.invited"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("archive without %q", want)
		}
	}
	for _, not := range []string{other, otherOwner, "lee@example.com", "token_hash"} {
		if bytes.Contains(body, []byte(not)) {
			t.Errorf("archive holds %q", not)
		}
	}
	var members []map[string]any
	_ = json.Unmarshal(a["members"], &members)
	if len(members) != 2 {
		t.Errorf("members %v", members)
	}
	for _, m := range members {
		if e, _ := m["email"].(string); !strings.HasSuffix(e, "@example.com") {
			t.Errorf("member without email: %v", m)
		}
	}

	// Once: the same link again, and concurrent downloads of a new one.
	if status, _, body := s.download(t, link); status != http.StatusGone || !bytes.Contains(body, []byte("export_link_used")) {
		t.Errorf("second download: %d %s", status, body)
	}
	link2 := s.ok(t, "exportTenant", in, owner)["url"].(string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var second []byte
	for range 5 {
		wg.Go(func() {
			st, _, b := s.download(t, link2)
			mu.Lock()
			defer mu.Unlock()
			statuses[st]++
			if st == 200 {
				second = b
			}
		})
	}
	wg.Wait()
	if statuses[200] != 1 || statuses[200]+statuses[http.StatusGone]+statuses[http.StatusServiceUnavailable] != 5 {
		t.Errorf("5 downloads of one link at once: %v, want one 200", statuses)
	}
	// The same content, but for the header.
	strip := func(b []byte) []byte { return b[bytes.IndexByte(b, '\n'):] }
	if second != nil && !bytes.Equal(strip(body), strip(second)) {
		t.Errorf("two exports differ:\n%.2000s\n%.2000s", strip(body), strip(second))
	}

	// Altered links are refused, and leave the link working.
	link3 := s.ok(t, "exportTenant", in, owner)["url"].(string)
	u, _ := url.Parse(link3)
	q := u.Query()
	for name, alter := range map[string]func(url.Values){
		"signature": func(v url.Values) { v.Set("signature", strings.Repeat("A", 43)) },
		"expiry":    func(v url.Values) { v.Set("expires", "9999999999") },
		"nothing":   func(v url.Values) { v.Del("signature") },
	} {
		v := url.Values{}
		for k, x := range q {
			v[k] = append([]string(nil), x...)
		}
		alter(v)
		bad := *u
		bad.RawQuery = v.Encode()
		if st, _, b := s.download(t, bad.String()); st != http.StatusNotFound || !bytes.Contains(b, []byte("export_link_invalid")) {
			t.Errorf("altered %s: %d %s", name, st, b)
		}
	}
	other3 := *u
	other3.Path = "/exports/" + "0b9f3f0e-7c61-4f43-a6a2-1d4f4d35c2f1"
	if st, _, _ := s.download(t, other3.String()); st != http.StatusNotFound {
		t.Errorf("another export id: %d", st)
	}
	// The owner handing the tenant over before using the link: refused, link used up.
	s.ok(t, "transferOwnership", map[string]any{"tenantId": tenant, "userId": member}, owner)
	if st, _, b := s.download(t, link3); st != http.StatusForbidden {
		t.Errorf("download by a former owner: %d %s", st, b)
	}
	// Exports off (TENANTKIT_PUBLIC_URL unset): unavailable, never forbidden.
	off := newStack(t)
	ot, oo := off.tenant(t)
	if r := off.action(t, "exportTenant", map[string]any{"tenantId": ot}, oo); r.status != http.StatusFailedDependency || r.code != "unavailable" {
		t.Errorf("exports off: %d %s", r.status, r.code)
	}
}
