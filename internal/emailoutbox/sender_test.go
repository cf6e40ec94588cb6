package emailoutbox_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit/internal/emailoutbox"
	"github.com/tenantkit/tenantkit/internal/mail"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
	"github.com/tenantkit/tenantkit/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// setup returns a sender over a fresh database and a real SMTP server, and a superuser pool.
func setup(t *testing.T) (*emailoutbox.Sender, *mailtest.Server, *pgxpool.Pool) {
	t.Helper()
	db, admin := pgtest.Open(t)
	srv := mailtest.Start(t)
	smtp, err := mail.New(srv.URL(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return &emailoutbox.Sender{Store: db, Mailer: smtp, Log: zerolog.Nop()}, srv, admin
}

func queue(t *testing.T, admin *pgxpool.Pool, to string) string {
	t.Helper()
	var id string
	if err := admin.QueryRow(context.Background(), `INSERT INTO tenantkit.email_outbox (to_email, subject, body)
		VALUES ($1, 'Payment failed', 'Update your card.') RETURNING id::text`, to).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

type row struct {
	Attempts      int
	Sent, Refused bool
	LastError     string
	DueNow        bool
}

func state(t *testing.T, admin *pgxpool.Pool, id string) row {
	t.Helper()
	var r row
	if err := admin.QueryRow(context.Background(), `SELECT attempts, sent_at IS NOT NULL, refused_at IS NOT NULL,
		coalesce(last_error, ''), next_at <= now() FROM tenantkit.email_outbox WHERE id = $1`, id).
		Scan(&r.Attempts, &r.Sent, &r.Refused, &r.LastError, &r.DueNow); err != nil {
		t.Fatal(err)
	}
	return r
}

// A recipient the server refuses for good (550) is tried once and never again; the others in the
// same batch are sent; a temporary failure (451) is retried later.
func TestSenderRefusedAndTemporaryFailures(t *testing.T) {
	ctx := context.Background()
	s, srv, admin := setup(t)
	srv.RejectRecipient("gone@example.com")
	gone := queue(t, admin, "gone@example.com")
	ok := queue(t, admin, "owner@example.com")

	sent, err := s.Flush(ctx)
	if err != nil || sent != 1 {
		t.Fatalf("Flush = %d, %v; want 1 sent", sent, err)
	}
	if r := state(t, admin, gone); !r.Refused || r.Sent || r.Attempts != 1 || r.LastError == "" {
		t.Errorf("refused email: %+v, want refused after one attempt with the server's reply", r)
	}
	if r := state(t, admin, ok); !r.Sent || r.Refused {
		t.Errorf("other email: %+v, want sent", r)
	}

	// Even when it is due again, a refused email is not claimed.
	if _, err := admin.Exec(ctx, `UPDATE tenantkit.email_outbox SET next_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if sent, err := s.Flush(ctx); err != nil || sent != 0 {
		t.Fatalf("second Flush = %d, %v; want nothing", sent, err)
	}
	if r := state(t, admin, gone); r.Attempts != 1 {
		t.Errorf("refused email tried again: %+v", r)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "owner@example.com" {
		t.Errorf("server received %v, want one message to owner@example.com", msgs)
	}

	// A temporary failure stays queued, due later, with the reason kept.
	later := queue(t, admin, "later@example.com")
	srv.FailData(1)
	if sent, err := s.Flush(ctx); err != nil || sent != 0 {
		t.Fatalf("Flush with 451 = %d, %v", sent, err)
	}
	if r := state(t, admin, later); r.Refused || r.Sent || r.DueNow || r.LastError == "" || r.Attempts != 1 {
		t.Errorf("temporarily failed email: %+v, want queued for later with the reason", r)
	}
	// Once due again, it is retried and sent.
	if _, err := admin.Exec(ctx, `UPDATE tenantkit.email_outbox SET next_at = now() WHERE id = $1`, later); err != nil {
		t.Fatal(err)
	}
	if sent, err := s.Flush(ctx); err != nil || sent != 1 {
		t.Fatalf("Flush of the due retry = %d, %v; want 1 sent", sent, err)
	}
	if r := state(t, admin, later); !r.Sent || r.Attempts != 2 {
		t.Errorf("retried email: %+v, want sent on the second attempt", r)
	}
}
