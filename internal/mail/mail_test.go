package mail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/mail"
	"github.com/tenantkit/tenantkit/internal/mail/mailtest"
)

// setup starts an SMTP server and returns it with a Sender for it.
func setup(t *testing.T) (*mailtest.Server, mail.Sender) {
	t.Helper()
	srv := mailtest.Start(t)
	return srv, newSender(t, srv.URL())
}

func newSender(t *testing.T, smtpURL string) mail.Sender {
	t.Helper()
	s, err := mail.New(smtpURL, zerolog.Nop())
	if err != nil {
		t.Fatalf("New(%q): %v", smtpURL, err)
	}
	return s
}

// message returns a valid message; opts adjust it.
func message(opts ...func(*tenantkit.Email)) tenantkit.Email {
	m := tenantkit.Email{
		ID:      "evt-7f1c2a",
		To:      "bob@example.com",
		Subject: "You are invited",
		Text:    "Hello Bob,\njoin us: https://app.example.com/invitations/accept?token=abc\n",
		HTML:    `<p>Hello Bob,</p><p><a href="https://app.example.com/invitations/accept?token=abc">Join</a></p>`,
	}
	for _, o := range opts {
		o(&m)
	}
	return m
}

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantCode fails the test unless err is a *tenantkit.Error with code.
func wantCode(t *testing.T, err error, code string) *tenantkit.Error {
	t.Helper()
	var e *tenantkit.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v (%T), want *tenantkit.Error with code %s", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("error code = %s (%v), want %s", e.Code, err, code)
	}
	return e
}

func onlyMessage(t *testing.T, srv *mailtest.Server) (mailtest.Message, mailtest.Decoded) {
	t.Helper()
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d messages, want 1", len(msgs))
	}
	d, err := msgs[0].Decode()
	if err != nil {
		t.Fatalf("decode: %v\n%s", err, msgs[0].Data)
	}
	return msgs[0], d
}

func TestSend(t *testing.T) {
	t.Parallel()

	t.Run("delivers text and HTML with non-ASCII subject and bodies", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		subject := "Einladung: Grüße aus Köln 🎉 – bitte trete dem Team „Straßenbahn Zürich“ bei, es wartet schon"
		text := "Hallo Jürgen,\n\n" +
			".\n" + // a lone dot must survive SMTP's end-of-data marker
			"From the team: ça va? 日本語のテキスト = equals sign, trailing space \n" +
			strings.Repeat("a long line without breaks ", 10) + "\n" +
			"https://app.example.com/invitations/accept?token=a=b&c=d\n"
		html := "<p>Hallo Jürgen,</p>\n<p>Grüße – 日本語 <a href=\"https://app.example.com/?t=a=b\">annehmen</a></p>"
		before := time.Now().Add(-time.Second)
		err := s.Send(ctx(t), message(func(m *tenantkit.Email) {
			m.To, m.Subject, m.Text, m.HTML = "Jürgen Groß <juergen@example.com>", subject, text, html
		}))
		if err != nil {
			t.Fatalf("Send: %v", err)
		}

		got, d := onlyMessage(t, srv)
		if got.From != "tenantkit@127.0.0.1" {
			t.Errorf("envelope from = %q, want tenantkit@127.0.0.1", got.From)
		}
		if len(got.To) != 1 || got.To[0] != "juergen@example.com" {
			t.Errorf("envelope to = %q, want [juergen@example.com]", got.To)
		}
		if d.Subject != subject {
			t.Errorf("subject = %q, want %q", d.Subject, subject)
		}
		if d.Text != text {
			t.Errorf("text = %q, want %q", d.Text, text)
		}
		if d.HTML != html {
			t.Errorf("html = %q, want %q", d.HTML, html)
		}
		to, err := d.Header.AddressList("To")
		if err != nil || len(to) != 1 || to[0].Name != "Jürgen Groß" || to[0].Address != "juergen@example.com" {
			t.Errorf("To header = %v (%v), want Jürgen Groß <juergen@example.com>", to, err)
		}
		from, err := d.Header.AddressList("From")
		if err != nil || len(from) != 1 || from[0].Address != "tenantkit@127.0.0.1" {
			t.Errorf("From header = %v (%v), want tenantkit@127.0.0.1", from, err)
		}
		if id := d.Header.Get("Message-ID"); id != "<evt-7f1c2a@127.0.0.1>" {
			t.Errorf("Message-ID = %q, want <evt-7f1c2a@127.0.0.1>", id)
		}
		date, err := d.Header.Date()
		if err != nil || date.Before(before) || date.After(time.Now().Add(time.Second)) {
			t.Errorf("Date = %v (%v), want about now", date, err)
		}
		if ct := d.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative;") {
			t.Errorf("Content-Type = %q, want multipart/alternative", ct)
		}
		checkWire(t, got.Data)
	})

	t.Run("delivers text only when there is no HTML", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		if err := s.Send(ctx(t), message(func(m *tenantkit.Email) { m.HTML = "" })); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got, d := onlyMessage(t, srv)
		if ct := d.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("Content-Type = %q, want text/plain; charset=utf-8", ct)
		}
		if d.Text != message().Text || d.HTML != "" {
			t.Errorf("text = %q, html = %q; want %q and none", d.Text, d.HTML, message().Text)
		}
		if d.Subject != "You are invited" || d.Header.Get("Subject") != "You are invited" {
			t.Errorf("ASCII subject = %q, want it unencoded", d.Header.Get("Subject"))
		}
		checkWire(t, got.Data)
	})

	t.Run("uses the from parameter for envelope, header and Message-ID", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		s := newSender(t, srv.URL()+"?from="+url.QueryEscape("Tenantkit Team <no-reply@mail.example.com>"))
		if err := s.Send(ctx(t), message()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		got, d := onlyMessage(t, srv)
		if got.From != "no-reply@mail.example.com" {
			t.Errorf("envelope from = %q, want no-reply@mail.example.com", got.From)
		}
		from, err := d.Header.AddressList("From")
		if err != nil || len(from) != 1 || from[0].Name != "Tenantkit Team" || from[0].Address != "no-reply@mail.example.com" {
			t.Errorf("From header = %v (%v)", from, err)
		}
		if id := d.Header.Get("Message-ID"); id != "<evt-7f1c2a@mail.example.com>" {
			t.Errorf("Message-ID = %q, want <evt-7f1c2a@mail.example.com>", id)
		}
	})

	t.Run("the same ID gives the same Message-ID on a retry", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		for range 2 {
			if err := s.Send(ctx(t), message()); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		msgs := srv.Messages()
		a, errA := msgs[0].Decode()
		b, errB := msgs[1].Decode()
		if errA != nil || errB != nil || a.Header.Get("Message-ID") != b.Header.Get("Message-ID") {
			t.Errorf("Message-IDs %q and %q differ (%v, %v)", a.Header.Get("Message-ID"), b.Header.Get("Message-ID"), errA, errB)
		}
	})

	t.Run("an empty ID gets a random Message-ID", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		for range 2 {
			if err := s.Send(ctx(t), message(func(m *tenantkit.Email) { m.ID = "" })); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		msgs := srv.Messages()
		a, _ := msgs[0].Decode()
		b, _ := msgs[1].Decode()
		idA, idB := a.Header.Get("Message-ID"), b.Header.Get("Message-ID")
		if !strings.HasSuffix(idA, "@127.0.0.1>") || len(idA) < 20 || idA == idB {
			t.Errorf("Message-IDs = %q, %q; want distinct random ones", idA, idB)
		}
	})
}

// checkWire checks what RFC 5322 and RFC 2045 ask of the bytes on the wire: CRLF line endings,
// 7-bit data, header lines within 78 characters, quoted-printable lines within 76.
func checkWire(t *testing.T, data []byte) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("message has a bare LF")
	}
	for i, c := range data {
		if c >= 0x80 {
			t.Fatalf("message has a non-ASCII byte at %d: %q", i, data[max(0, i-20):min(len(data), i+20)])
		}
	}
	for line := range strings.SplitSeq(string(data), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line longer than 78 characters: %q", line)
		}
	}
}

func TestSendErrors(t *testing.T) {
	t.Parallel()

	t.Run("a rejected recipient is Invalid and sends nothing", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		srv.RejectRecipient("nobody@example.com")
		err := s.Send(ctx(t), message(func(m *tenantkit.Email) { m.To = "nobody@example.com" }))
		e := wantCode(t, err, tenantkit.Invalid)
		if !strings.Contains(e.Message, "nobody@example.com") || !strings.Contains(err.Error(), "550") {
			t.Errorf("error = %v, want the recipient and the 550 reply", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("server received %d messages, want 0", n)
		}
		if err := s.Send(ctx(t), message()); err != nil {
			t.Fatalf("Send to another recipient: %v", err)
		}
	})

	t.Run("451 after DATA is Unavailable and the next attempt succeeds", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		srv.FailData(1)
		err := s.Send(ctx(t), message())
		wantCode(t, err, tenantkit.Unavailable)
		if !strings.Contains(err.Error(), "451") {
			t.Errorf("error = %v, want the 451 reply in the cause", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Fatalf("server recorded %d messages after 451, want 0", n)
		}
		if err := s.Send(ctx(t), message()); err != nil {
			t.Fatalf("retry: %v", err)
		}
		onlyMessage(t, srv)
	})

	t.Run("a server that is down is Unavailable at once", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		s := newSender(t, "smtp://"+addr)
		start := time.Now()
		err = s.Send(ctx(t), message())
		wantCode(t, err, tenantkit.Unavailable)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send took %v against a closed port", d)
		}
	})

	t.Run("a server that never answers fails within the context deadline", func(t *testing.T) {
		t.Parallel()
		s := newSender(t, "smtp://"+silentServer(t))
		c, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := s.Send(c, message())
		elapsed := time.Since(start)
		wantCode(t, err, tenantkit.Unavailable)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error = %v, want it to wrap context.DeadlineExceeded", err)
		}
		if elapsed < 250*time.Millisecond || elapsed > 2*time.Second {
			t.Errorf("Send returned after %v, want about the 300ms deadline", elapsed)
		}
	})

	t.Run("cancelling the context aborts a pending exchange", func(t *testing.T) {
		t.Parallel()
		s := newSender(t, "smtp://"+silentServer(t))
		c, cancel := context.WithCancel(t.Context())
		time.AfterFunc(200*time.Millisecond, cancel)
		start := time.Now()
		err := s.Send(c, message())
		wantCode(t, err, tenantkit.Unavailable)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want it to wrap context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Send returned after %v, want soon after the 200ms cancel", d)
		}
	})

	t.Run("an already cancelled context sends nothing", func(t *testing.T) {
		t.Parallel()
		srv, s := setup(t)
		c, cancel := context.WithCancel(t.Context())
		cancel()
		wantCode(t, s.Send(c, message()), tenantkit.Unavailable)
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("server received %d messages, want 0", n)
		}
	})
}

// silentServer returns the address of a listener that accepts connections and never says a word.
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestSendHeaderInjection(t *testing.T) {
	t.Parallel()
	srv := mailtest.Start(t)
	// A sender for a closed port as well: if Send connected at all, it would be Unavailable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := newSender(t, "smtp://"+l.Addr().String())
	l.Close()
	senders := map[string]mail.Sender{"up": newSender(t, srv.URL()), "down": down, "log": mail.LogSender{Log: zerolog.Nop()}}

	for name, edit := range map[string]func(*tenantkit.Email){
		"CRLF in To":            func(m *tenantkit.Email) { m.To = "bob@example.com\r\nBcc: eve@example.com" },
		"LF in To":              func(m *tenantkit.Email) { m.To = "bob@example.com\nBcc: eve@example.com" },
		"CR in Subject":         func(m *tenantkit.Email) { m.Subject = "Hi\rBcc: eve@example.com" },
		"CRLF in Subject":       func(m *tenantkit.Email) { m.Subject = "Hi\r\nBcc: eve@example.com" },
		"two recipients":        func(m *tenantkit.Email) { m.To = "bob@example.com, eve@example.com" },
		"not an address":        func(m *tenantkit.Email) { m.To = "bob" },
		"angle bracket in ID":   func(m *tenantkit.Email) { m.ID = "x>\r\nBcc: eve@example.com" },
		"space in ID":           func(m *tenantkit.Email) { m.ID = "a b" },
		"leading dot in ID":     func(m *tenantkit.Email) { m.ID = ".abc" },
		"non-ASCII byte in ID":  func(m *tenantkit.Email) { m.ID = "ä" },
		"at sign in ID":         func(m *tenantkit.Email) { m.ID = "a@b" },
		"consecutive dots (ID)": func(m *tenantkit.Email) { m.ID = "a..b" },
	} {
		t.Run(name+" is Invalid", func(t *testing.T) {
			t.Parallel()
			for sname, s := range senders {
				if err := s.Send(ctx(t), message(edit)); tenantkit.ErrorCode(err) != tenantkit.Invalid {
					t.Errorf("%s sender: error = %v, want Invalid", sname, err)
				}
			}
		})
	}
	t.Cleanup(func() {
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("server received %d messages, want 0", n)
		}
	})
}

func TestSendAuth(t *testing.T) {
	t.Parallel()

	t.Run("correct credentials deliver", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		srv.RequireAuth("alice", "c0rrect-h0rse")
		if !strings.Contains(srv.URL(), "alice:c0rrect-h0rse@") {
			t.Fatalf("URL() = %q, want the credentials in it", srv.URL())
		}
		if err := newSender(t, srv.URL()).Send(ctx(t), message()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		onlyMessage(t, srv)
	})

	t.Run("wrong credentials fail without revealing the password", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		srv.RequireAuth("alice", "c0rrect-h0rse")
		u, _ := url.Parse(srv.URL())
		u.User = url.UserPassword("alice", "wr0ng-pa55w0rd")
		err := newSender(t, u.String()).Send(ctx(t), message())
		wantCode(t, err, tenantkit.Unavailable)
		if !strings.Contains(err.Error(), "535") {
			t.Errorf("error = %v, want the 535 reply in the cause", err)
		}
		if strings.Contains(err.Error(), "wr0ng-pa55w0rd") || strings.Contains(err.Error(), "c0rrect-h0rse") {
			t.Errorf("error reveals a password: %v", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("server received %d messages, want 0", n)
		}
	})

	t.Run("no credentials where the server requires them is Unavailable", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		u := srv.URL()
		srv.RequireAuth("alice", "c0rrect-h0rse")
		wantCode(t, newSender(t, u).Send(ctx(t), message()), tenantkit.Unavailable)
	})

	t.Run("credentials for a server without AUTH are Unavailable", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		u, _ := url.Parse(srv.URL())
		u.User = url.UserPassword("alice", "c0rrect-h0rse")
		err := newSender(t, u.String()).Send(ctx(t), message())
		wantCode(t, err, tenantkit.Unavailable)
		if strings.Contains(err.Error(), "c0rrect-h0rse") {
			t.Errorf("error reveals the password: %v", err)
		}
	})
}

func TestSendTLS(t *testing.T) {
	t.Parallel()

	t.Run("STARTTLS with authentication delivers", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.StartTLS(t)
		srv.RequireAuth("alice", "c0rrect-h0rse")
		s, err := mail.NewTrusting(srv.URL(), zerolog.Nop(), srv.RootCAs())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(ctx(t), message()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		onlyMessage(t, srv)
	})

	t.Run("implicit TLS delivers", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.StartImplicitTLS(t)
		if !strings.HasPrefix(srv.URL(), "smtps://") {
			t.Fatalf("URL() = %q, want smtps://", srv.URL())
		}
		s, err := mail.NewTrusting(srv.URL(), zerolog.Nop(), srv.RootCAs())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(ctx(t), message()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		onlyMessage(t, srv)
	})

	t.Run("an untrusted certificate is Unavailable", func(t *testing.T) {
		t.Parallel()
		for _, srv := range []*mailtest.Server{mailtest.StartTLS(t), mailtest.StartImplicitTLS(t)} {
			err := newSender(t, srv.URL()).Send(ctx(t), message())
			wantCode(t, err, tenantkit.Unavailable)
			if n := len(srv.Messages()); n != 0 {
				t.Errorf("%s: server received %d messages, want 0", srv.URL(), n)
			}
		}
	})

	t.Run("starttls=require against a server without STARTTLS sends nothing", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.Start(t)
		err := newSender(t, srv.URL()+"?starttls=require").Send(ctx(t), message())
		wantCode(t, err, tenantkit.Unavailable)
		if !strings.Contains(err.Error(), "STARTTLS") {
			t.Errorf("error = %v, want it to name STARTTLS", err)
		}
		if n := len(srv.Messages()); n != 0 {
			t.Errorf("server received %d messages, want 0", n)
		}
	})

	t.Run("starttls=off skips an offered STARTTLS", func(t *testing.T) {
		t.Parallel()
		srv := mailtest.StartTLS(t)
		// No trusted roots: had the sender tried TLS, the handshake would fail.
		if err := newSender(t, "smtp://"+srv.Addr()+"?starttls=off").Send(ctx(t), message()); err != nil {
			t.Fatalf("Send: %v", err)
		}
		onlyMessage(t, srv)
	})
}

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("accepts well-formed URLs", func(t *testing.T) {
		t.Parallel()
		for _, u := range []string{
			"smtp://mail.example.com",
			"smtp://mail.example.com:2525/",
			"smtp://user:p%40ss@mail.example.com?starttls=optional",
			"smtp://mail.example.com?starttls=off&from=no-reply@example.com",
			"smtp://user:pass@localhost:1025?starttls=off",
			"smtps://user:pass@mail.example.com",
			"smtps://mail.example.com:4650?from=" + url.QueryEscape("Tenantkit <no-reply@example.com>"),
			"SMTP://[::1]:25",
		} {
			if _, err := mail.New(u, zerolog.Nop()); err != nil {
				t.Errorf("New(%q): %v", u, err)
			}
		}
	})

	t.Run("rejects malformed URLs without echoing the password", func(t *testing.T) {
		t.Parallel()
		const secret = "hunter2secret"
		for _, tc := range []struct{ url, want string }{
			{"http://u:" + secret + "@mail.example.com", "scheme"},
			{"mail.example.com:587", "scheme"},
			{"smtp://u:" + secret + "@", "host"},
			{"smtp:mail.example.com", "host"},
			{"smtp://u:" + secret + "@:25", "host"},
			{"smtp://u:" + secret + "@mail.example.com:99999", "port"},
			{"smtp://u:" + secret + "@mail.example.com:smtp", "valid URL"},
			{"smtp://u:" + secret + "%zz@mail.example.com", "valid URL"},
			{"smtp://u:" + secret + "/x@mail.example.com", "valid URL"},
			{"smtp://u:" + secret + "@mail.example.com/inbox", "path"},
			{"smtp://u:" + secret + "@mail.example.com?from=not-an-address", "from"},
			{"smtp://u:" + secret + "@mail.example.com?from=a@b.com%0D%0ABcc:c@d.com", "from"},
			{"smtp://u:" + secret + "@mail.example.com?starttls=maybe", "starttls"},
			{"smtp://u:" + secret + "@mail.example.com?starttls=off", "clear text"},
			{"smtps://u:" + secret + "@mail.example.com?starttls=require", "starttls"},
			{"smtp://u:" + secret + "@mail.example.com?form=a@b.com", "unknown parameter"},
			{"smtp://u:" + secret + "@mail.example.com?from=a@b.com&from=c@d.com", "more than once"},
		} {
			_, err := mail.New(tc.url, zerolog.Nop())
			if err == nil {
				t.Errorf("New(%q) succeeded, want an error about %s", tc.url, tc.want)
				continue
			}
			if tenantkit.ErrorCode(err) != tenantkit.Invalid || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%q) = %v, want an Invalid error about %s", tc.url, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("New(%q) error echoes the password: %v", tc.url, err)
			}
		}
	})

	t.Run("an empty URL is the log sender", func(t *testing.T) {
		t.Parallel()
		s, err := mail.New("", zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.(mail.LogSender); !ok {
			t.Errorf("New(\"\") = %T, want mail.LogSender", s)
		}
	})
}

func TestLogSender(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s, err := mail.New("", zerolog.New(&buf))
	if err != nil {
		t.Fatal(err)
	}
	m := message(func(m *tenantkit.Email) {
		m.Subject, m.Text = "Grüße", "Hallo,\nklicke https://app.example.com/i?t=abc\n"
	})
	if err := s.Send(ctx(t), m); err != nil {
		t.Fatalf("Send: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("log has %d lines, want 1:\n%s", len(lines), buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, lines[0])
	}
	want := map[string]any{"level": "info", "to": m.To, "subject": m.Subject, "id": m.ID, "text": m.Text, "html": true}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("log field %s = %#v, want %#v", k, got[k], v)
		}
	}

	buf.Reset()
	err = s.Send(ctx(t), message(func(m *tenantkit.Email) { m.Subject = "x\r\nBcc: eve@example.com" }))
	wantCode(t, err, tenantkit.Invalid)
	if buf.Len() != 0 {
		t.Errorf("a refused message was logged: %s", buf.String())
	}

	t.Run("the console gets the text with its links on lines of their own", func(t *testing.T) {
		var log, console bytes.Buffer
		s := mail.LogSender{Log: zerolog.New(&log), Console: &console}
		if err := s.Send(ctx(t), m); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Split(console.String(), "\n"), "klicke https://app.example.com/i?t=abc") {
			t.Errorf("console:\n%s", console.String())
		}
		if !strings.Contains(console.String(), "email to "+m.To+": Grüße") || log.Len() == 0 {
			t.Errorf("console:\n%s\nlog:\n%s", console.String(), log.String())
		}
		if strings.Contains(log.String(), "https://app.example.com/i?t=abc") {
			t.Errorf("the link is in the log line too, escaped:\n%s", log.String())
		}
	})
}
