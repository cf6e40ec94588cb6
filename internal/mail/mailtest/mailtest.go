// Package mailtest runs a real SMTP server inside a test, for the tests of internal/mail and of
// every package that sends email through it (e.g. the invitation email event handler). The server
// speaks SMTP on 127.0.0.1 (github.com/emersion/go-smtp), records every accepted message, and can
// be told to reject a recipient, fail DATA, hold a message before answering it, require
// authentication, or go away and come back (Stop, Restart).
//
// Typical use:
//
//	srv := mailtest.Start(t)
//	sender, err := mail.New(srv.URL(), zerolog.Nop())
//	// … code under test sends …
//	msgs := srv.Messages()
//	d, err := msgs[0].Decode() // headers, decoded subject, text and HTML bodies
package mailtest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted (250 after DATA).
type Message struct {
	From string   // envelope sender (MAIL FROM)
	To   []string // envelope recipients (RCPT TO)
	Data []byte   // the message as received, CRLF line endings, dot-stuffing removed
}

// Server is an SMTP server listening on 127.0.0.1 for the duration of a test. Its methods are
// safe for concurrent use, including while a client is connected.
type Server struct {
	addr        string
	implicitTLS bool
	roots       *x509.CertPool // nil without TLS
	tlsConfig   *tls.Config    // nil without TLS

	run     sync.Mutex // guards the fields below: the SMTP server currently serving addr, if any
	smtp    *smtp.Server
	ln      net.Listener
	stopped chan struct{} // closed when the current server's Serve has returned

	mu       sync.Mutex
	messages []Message
	rejected map[string]bool  // recipients answered with 550
	failData int              // DATA commands still to fail with 451
	held     map[string]*hold // recipients whose next message waits for a verdict
	user     string           // AUTH PLAIN user required before MAIL when non-empty
	pass     string
}

// Start starts a plain-text server (no TLS) and stops it when the test ends. The sending side may
// authenticate without TLS because the host is 127.0.0.1.
func Start(t testing.TB) *Server {
	return start(t, false, false)
}

// StartTLS starts a server that offers STARTTLS with a self-signed certificate for 127.0.0.1 and
// localhost; RootCAs returns the pool that trusts it.
func StartTLS(t testing.TB) *Server {
	return start(t, true, false)
}

// StartImplicitTLS starts a server that speaks TLS from the first byte (what smtps:// expects),
// with a self-signed certificate for 127.0.0.1 and localhost; RootCAs returns the pool that
// trusts it.
func StartImplicitTLS(t testing.TB) *Server {
	return start(t, true, true)
}

func start(t testing.TB, withTLS, implicitTLS bool) *Server {
	t.Helper()
	s := &Server{rejected: map[string]bool{}, held: map[string]*hold{}, implicitTLS: implicitTLS}
	if withTLS {
		cfg, roots, err := selfSigned()
		if err != nil {
			t.Fatalf("mailtest: certificate: %v", err)
		}
		s.tlsConfig, s.roots = cfg, roots
	}
	addr, err := s.listen("127.0.0.1:0")
	if err != nil {
		t.Fatalf("mailtest: listen: %v", err)
	}
	s.addr = addr // set once: Restart listens on it again
	t.Cleanup(s.Stop)
	return s
}

// listen starts a new SMTP server on addr and returns the address it listens on; s.run must not
// be held.
func (s *Server) listen(addr string) (string, error) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &session{srv: s}, nil
	}))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.ErrorLog = log.New(io.Discard, "", 0) // clients hanging up are expected in tests

	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	if s.tlsConfig != nil {
		if s.implicitTLS {
			l = tls.NewListener(l, s.tlsConfig)
		} else {
			srv.TLSConfig = s.tlsConfig
		}
	}
	done := make(chan struct{})
	s.run.Lock()
	s.smtp, s.ln, s.stopped = srv, l, done
	s.run.Unlock()
	go func() {
		defer close(done)
		srv.Serve(l) // returns once Close is called
	}()
	return l.Addr().String(), nil
}

// Stop takes the server down, as a mail server that crashed or is restarting: it stops listening
// and drops every open connection, so senders get "connection refused" until Restart. Messages
// accepted so far are kept. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.run.Lock()
	srv, l, done := s.smtp, s.ln, s.stopped
	s.smtp, s.ln, s.stopped = nil, nil, nil
	s.run.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	l.Close() // Close misses a listener that Serve has not registered yet
	<-done
}

// Restart brings a stopped server back on the same address (URL is unchanged), with its
// messages and settings. It fails if the port was taken in the meantime.
func (s *Server) Restart() error {
	s.run.Lock()
	running := s.smtp != nil
	s.run.Unlock()
	if running {
		return errors.New("mailtest: Restart: the server is running")
	}
	if _, err := s.listen(s.addr); err != nil {
		return fmt.Errorf("mailtest: listen again on %s: %w", s.addr, err)
	}
	return nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL returns an SMTP_URL for this server that mail.New accepts: smtp://127.0.0.1:port (smtps://
// for StartImplicitTLS), with the credentials of RequireAuth when it was called before. A server
// from StartTLS gets starttls=require, so a client that skipped TLS fails loudly.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.addr}
	if s.implicitTLS {
		u.Scheme = "smtps"
	} else if s.roots != nil {
		u.RawQuery = "starttls=require"
	}
	s.mu.Lock()
	if s.user != "" {
		u.User = url.UserPassword(s.user, s.pass)
	}
	s.mu.Unlock()
	return u.String()
}

// RootCAs returns a pool trusting the server's certificate, nil for a server from Start.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// Messages returns a copy of the messages accepted so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = Message{From: m.From, To: append([]string(nil), m.To...), Data: bytes.Clone(m.Data)}
	}
	return out
}

// RejectRecipient makes the server answer RCPT TO:<addr> with 550 5.1.1 (no such user), as a real
// server does for an unknown mailbox. Addresses compare case-insensitively.
func (s *Server) RejectRecipient(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected[strings.ToLower(addr)] = true
}

// FailData makes the server answer the next n messages with 451 4.3.0 after their data is sent,
// as a server does when it cannot queue a message for now. Failed messages are not recorded.
func (s *Server) FailData(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failData = n
}

// hold is a message kept waiting between its data and the server's answer.
type hold struct {
	arrived chan struct{} // closed when the message's data is in
	verdict chan bool     // true: accept (250), false: refuse for now (451)
}

// HoldRecipient makes the server keep the next message to addr waiting after its data is sent,
// with no answer, until release is called: release(true) accepts it (250), release(false) answers
// 451 4.3.0 (try again later) and records nothing. arrived is closed once the message is waiting;
// this lets a test change the world at the exact moment a sender waits for the verdict. Only the
// first call of release counts; call it (e.g. from t.Cleanup) even when the message never came.
func (s *Server) HoldRecipient(addr string) (arrived <-chan struct{}, release func(accept bool)) {
	h := &hold{arrived: make(chan struct{}), verdict: make(chan bool, 1)}
	s.mu.Lock()
	s.held[strings.ToLower(addr)] = h
	s.mu.Unlock()
	var once sync.Once
	return h.arrived, func(accept bool) { once.Do(func() { h.verdict <- accept }) }
}

// RequireAuth makes the server offer AUTH PLAIN and refuse MAIL FROM (502 5.7.0) until the client
// has authenticated as user with pass; wrong credentials get 535 5.7.8.
func (s *Server) RequireAuth(user, pass string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.user, s.pass = user, pass
}

// session is one SMTP connection.
type session struct {
	srv    *Server
	authed bool
	from   string
	to     []string
}

var _ smtp.AuthSession = (*session)(nil)

func (c *session) AuthMechanisms() []string {
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.srv.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (c *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, user, pass string) error {
		c.srv.mu.Lock()
		defer c.srv.mu.Unlock()
		if c.srv.user == "" || identity != "" && identity != user || user != c.srv.user || pass != c.srv.pass {
			return smtp.ErrAuthFailed
		}
		c.authed = true
		return nil
	}), nil
}

func (c *session) Mail(from string, _ *smtp.MailOptions) error {
	c.srv.mu.Lock()
	needAuth := c.srv.user != ""
	c.srv.mu.Unlock()
	if needAuth && !c.authed {
		return smtp.ErrAuthRequired
	}
	c.from = from
	return nil
}

func (c *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	c.srv.mu.Lock()
	reject := c.srv.rejected[strings.ToLower(to)]
	c.srv.mu.Unlock()
	if reject {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
	}
	c.to = append(c.to, to)
	return nil
}

func (c *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	c.srv.mu.Lock()
	var h *hold
	for _, to := range c.to {
		if h = c.srv.held[strings.ToLower(to)]; h != nil {
			delete(c.srv.held, strings.ToLower(to))
			break
		}
	}
	c.srv.mu.Unlock()
	if h != nil {
		close(h.arrived)
		if !<-h.verdict {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Requested action aborted: try again later"}
		}
	}
	c.srv.mu.Lock()
	defer c.srv.mu.Unlock()
	if c.srv.failData > 0 {
		c.srv.failData--
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Requested action aborted: try again later"}
	}
	c.srv.messages = append(c.srv.messages, Message{From: c.from, To: c.to, Data: data})
	return nil
}

func (c *session) Reset() {
	c.from, c.to = "", nil
}

func (c *session) Logout() error { return nil }

// Decoded is a received message taken apart: its header, the decoded Subject, and the decoded
// text/plain and text/html bodies (HTML empty for a text-only message).
type Decoded struct {
	Header  mail.Header
	Subject string
	Text    string
	HTML    string
}

// Decode parses m.Data as internal/mail builds it: a text/plain body, or a multipart/alternative
// with one text/plain and one text/html part, each in UTF-8 and quoted-printable, 7bit or 8bit.
// Anything else is an error, so a test using Decode also checks the message's structure.
func (m Message) Decode() (Decoded, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return Decoded{}, fmt.Errorf("mailtest: parse message: %w", err)
	}
	d := Decoded{Header: msg.Header}
	if d.Subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		return Decoded{}, fmt.Errorf("mailtest: decode Subject: %w", err)
	}
	if v := msg.Header.Get("MIME-Version"); v != "1.0" {
		return Decoded{}, fmt.Errorf("mailtest: MIME-Version is %q, want 1.0", v)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return Decoded{}, fmt.Errorf("mailtest: Content-Type: %w", err)
	}
	switch mediaType {
	case "text/plain":
		d.Text, err = decodeBody(params, msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
		return d, err
	case "multipart/alternative":
	default:
		return Decoded{}, fmt.Errorf("mailtest: Content-Type is %q, want text/plain or multipart/alternative", mediaType)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var sawText, sawHTML bool
	for {
		// NextRawPart leaves Content-Transfer-Encoding to us, so that it is checked.
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Decoded{}, fmt.Errorf("mailtest: multipart: %w", err)
		}
		partType, partParams, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			return Decoded{}, fmt.Errorf("mailtest: part Content-Type: %w", err)
		}
		body, err := decodeBody(partParams, p.Header.Get("Content-Transfer-Encoding"), p)
		if err != nil {
			return Decoded{}, err
		}
		switch {
		case partType == "text/plain" && !sawText && !sawHTML:
			d.Text, sawText = body, true
		case partType == "text/html" && sawText && !sawHTML:
			d.HTML, sawHTML = body, true
		default:
			return Decoded{}, fmt.Errorf("mailtest: unexpected or misplaced %s part in multipart/alternative", partType)
		}
	}
	if !sawHTML {
		return Decoded{}, errors.New("mailtest: multipart/alternative without text/plain and text/html parts")
	}
	return d, nil
}

func decodeBody(params map[string]string, cte string, r io.Reader) (string, error) {
	if cs := strings.ToLower(params["charset"]); cs != "utf-8" {
		return "", fmt.Errorf("mailtest: charset is %q, want utf-8", cs)
	}
	switch strings.ToLower(cte) {
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	case "", "7bit", "8bit":
	default:
		return "", fmt.Errorf("mailtest: unsupported Content-Transfer-Encoding %q", cte)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("mailtest: read body: %w", err)
	}
	// Bodies travel with CRLF; give tests the line endings they wrote.
	return strings.ReplaceAll(string(b), "\r\n", "\n"), nil
}

// selfSigned returns a server TLS config with a fresh self-signed certificate for 127.0.0.1 and
// localhost, and a pool trusting it.
func selfSigned() (*tls.Config, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
	return cfg, roots, nil
}
