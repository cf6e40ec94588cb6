package export_test

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/export"
	"github.com/tenantkit/tenantkit/internal/pgtest"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/team"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// world is the store over a fresh database, the team service that authorizes exports, and a
// superuser pool to arrange and inspect.
type world struct {
	db    *postgres.DB
	teams *team.Service
	pool  *pgxpool.Pool
}

type tenantRef struct{ id, owner string }

func newWorld(t *testing.T) *world {
	t.Helper()
	db, pool := pgtest.Open(t)
	return &world{db: db, teams: &team.Service{Store: db, TrialPlan: "starter"}, pool: pool}
}

// scan runs q and returns its one text column.
func (w *world) scan(t *testing.T, q string, args ...any) string {
	t.Helper()
	var out string
	if err := w.pool.QueryRow(context.Background(), q, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

func (w *world) user(t *testing.T) string {
	return w.scan(t, `INSERT INTO auth.users (email) VALUES (gen_random_uuid() || '@example.com') RETURNING id::text`)
}

func (w *world) member(t *testing.T, tenant, role string) string {
	return w.scan(t, `INSERT INTO tenant_users (tenant_id, user_id, role) VALUES ($1, $2, $3) RETURNING user_id::text`, tenant, w.user(t), role)
}

// tenant is a tenant with an owner and a few projects, so that its archive has rows.
func (w *world) tenant(t *testing.T) tenantRef {
	t.Helper()
	owner := w.user(t)
	tn, err := w.teams.CreateTenant(context.Background(), tenantkit.UserSession(owner), "Acme", "acme-"+owner[:8])
	if err != nil {
		t.Fatal(err)
	}
	w.scan(t, `WITH p AS (INSERT INTO projects (tenant_id, name, owner_id) SELECT $1, 'p' || i, $2 FROM generate_series(1, 3) i RETURNING id)
		SELECT count(*)::text FROM p`, tn.ID, owner)
	return tenantRef{id: tn.ID, owner: owner}
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestExportLinks: who may ask for an export, what makes a link valid, expiry, single use (also
// under concurrent downloads), and an owner who lost the role downloading nothing.
func TestExportLinks(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	db, teams := w.db, w.teams
	ctx := context.Background()
	tn := w.tenant(t)
	adm, member, outsider := w.member(t, tn.id, "admin"), w.member(t, tn.id, "member"), w.user(t)
	now := time.Now()
	svc, err := export.New(db, teams.Check, "a-secret-of-sixteen-chars", "https://api.example.com", 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	svc.Now = func() time.Time { return now }
	for who, want := range map[string]string{adm: tenantkit.Forbidden, member: tenantkit.Forbidden, outsider: tenantkit.NotFound} {
		if _, err := svc.Request(ctx, tenantkit.UserSession(who), tn.id); tenantkit.ErrorCode(err) != want {
			t.Errorf("request as %s: %v, want %s", who, err, want)
		}
	}
	if _, err := svc.Request(ctx, tenantkit.Session{}, tn.id); tenantkit.ErrorCode(err) != tenantkit.Unauthenticated {
		t.Errorf("request without a user: %v", err)
	}
	off, _ := export.New(db, teams.Check, "a-secret-of-sixteen-chars", "", time.Minute)
	if _, err := off.Request(ctx, tenantkit.UserSession(tn.owner), tn.id); tenantkit.ErrorCode(err) != tenantkit.Unavailable {
		t.Errorf("request without TENANTKIT_PUBLIC_URL: %v", err)
	}
	if n := w.scan(t, `SELECT count(*)::text FROM tenantkit.tenant_exports`); n != "0" {
		t.Errorf("refused requests recorded %s exports", n)
	}
	link := func() (id, expires, sig string) {
		t.Helper()
		l, err := svc.Request(ctx, tenantkit.UserSession(tn.owner), tn.id)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(l.URL)
		if err != nil || u.Host != "api.example.com" || u.Path != "/exports/"+l.ExportID {
			t.Fatalf("link %s (%v)", l.URL, err)
		}
		return l.ExportID, u.Query().Get("expires"), u.Query().Get("signature")
	}
	download := func(id, expires, sig string) (int64, error) {
		e, err := svc.Open(ctx, id, expires, sig)
		if err != nil {
			return 0, err
		}
		var n countWriter
		err = svc.Download(ctx, e, func() (io.Writer, error) { return &n, nil })
		return n.n, err
	}
	id, exp, sig := link()
	_, _, otherSig := link()
	for name, l := range map[string][3]string{
		"another link's signature": {id, exp, otherSig},
		"another expiry":           {id, strconv.FormatInt(now.Add(time.Hour).Unix(), 10), sig},
		"a signature cut short":    {id, exp, sig[:20]},
		"no signature":             {id, exp, ""},
		"not base64":               {id, exp, "!!!"},
		"an unknown export":        {"6f1c1b4e-5b4a-4c3e-9a7b-2c1d0e9f8a7b", exp, sig},
		"not an id":                {"x", exp, sig},
	} {
		if _, err := download(l[0], l[1], l[2]); tenantkit.ErrorCode(err) != export.LinkInvalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	if n, err := download(id, exp, sig); err != nil || n < 500 {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	if _, err := download(id, exp, sig); tenantkit.ErrorCode(err) != export.LinkUsed {
		t.Errorf("second download: %v", err)
	}
	// Expired: the service's clock past the link's expiry.
	svc.Now = func() time.Time { return now.Add(16 * time.Minute) }
	o, oexp, osig := link()
	if _, err := download(o, oexp, osig); tenantkit.ErrorCode(err) != export.LinkExpired {
		t.Errorf("expired link: %v", err)
	}
	svc.Now = func() time.Time { return now }

	// Concurrent downloads of one link: one archive.
	id, exp, sig = link()
	var ok, used atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			switch _, err := download(id, exp, sig); tenantkit.ErrorCode(err) {
			case "":
				ok.Add(1)
			case export.LinkUsed, tenantkit.Unavailable:
				used.Add(1)
			default:
				t.Errorf("concurrent download: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 {
		t.Errorf("%d concurrent downloads of one link succeeded, want 1", ok.Load())
	}
	// An owner who lost the role downloads nothing (the link is used up).
	id, exp, sig = link()
	w.scan(t, `UPDATE tenant_users SET role = 'owner' WHERE tenant_id = $1 AND user_id = $2 RETURNING 'ok'`, tn.id, adm)
	w.scan(t, `UPDATE tenant_users SET role = 'admin' WHERE tenant_id = $1 AND user_id = $2 RETURNING 'ok'`, tn.id, tn.owner)
	if _, err := download(id, exp, sig); tenantkit.ErrorCode(err) != tenantkit.Forbidden {
		t.Errorf("download by a former owner: %v", err)
	}
}

// TestExportDownloadsBounded: beyond MaxDownloads at once, a download is refused (unavailable)
// without using its link up.
func TestExportDownloadsBounded(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	tn := w.tenant(t)
	svc, err := export.New(w.db, w.teams.Check, "a-secret-of-sixteen-chars", "https://x.test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	svc.MaxDownloads = 1
	open := func() export.Export {
		l, err := svc.Request(ctx, tenantkit.UserSession(tn.owner), tn.id)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(l.URL)
		e, err := svc.Open(ctx, l.ExportID, u.Query().Get("expires"), u.Query().Get("signature"))
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first, second := open(), open()
	release := make(chan struct{})
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		err := svc.Download(ctx, first, func() (io.Writer, error) {
			close(started)
			<-release
			return io.Discard, nil
		})
		if err != nil {
			t.Errorf("first download: %v", err)
		}
	})
	<-started
	if err := svc.Download(ctx, second, func() (io.Writer, error) { return io.Discard, nil }); tenantkit.ErrorCode(err) != tenantkit.Unavailable {
		t.Errorf("second download at once: %v", err)
	}
	close(release)
	wg.Wait()
	if err := svc.Download(ctx, second, func() (io.Writer, error) { return io.Discard, nil }); err != nil {
		t.Errorf("the refused link afterwards: %v", err)
	}
}
