// Package mail sends email: invitations and other transactional messages.
//
// New picks the Sender from the SMTP_URL setting:
//
//   - "" (unset): a LogSender. This is the development mode: emails are written to the log at info
//     level (to, subject, id and the text body), nothing is sent.
//   - smtp://[user:pass@]host[:port][?from=addr&starttls=require|optional|off]: SMTP submission,
//     default port 587. STARTTLS policy:
//     require: the server must offer STARTTLS and the whole session, credentials and message
//     included, runs over TLS; otherwise Send fails without sending.
//     optional: STARTTLS is used when the server offers it (and its certificate must then verify),
//     else the message goes in clear text.
//     off: never STARTTLS (a relay on a trusted network, a local mail catcher).
//     The default is require, except when the host is localhost, 127.0.0.1 or ::1, where it is
//     optional so that a local mail catcher (e.g. Mailpit on smtp://localhost:1025) works as is.
//     Invitation emails carry bearer links, so a stripped STARTTLS must not silently downgrade
//     a production session to clear text.
//   - smtps://[user:pass@]host[:port][?from=addr]: implicit TLS (RFC 8314), default port 465.
//
// Special characters in user and pass must be percent-encoded. from is the envelope sender and
// the From header, either a bare address or a name with an address ("Tenantkit
// <no-reply@example.com>", percent-encoded); it defaults to tenantkit@<host>. When user is set, the
// sender authenticates with AUTH PLAIN, which it does only over TLS or to localhost, 127.0.0.1 or
// ::1 (net/smtp's PlainAuth rule), so credentials never cross a network in clear text.
//
// Each Send opens its own connection: transactional mail is rare enough that pooling connections
// is not worth their failure modes. A send is bounded by the context's deadline, or by 30 seconds
// when the context has none; connecting alone is bounded by 10 seconds.
package mail

import (
	"crypto/tls"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

// Sender sends a tenantkit.Email: it is the tenantkit.Mailer the domain packages use. The email's
// ID becomes the Message-ID header's local part, so that a retried send is recognisable
// downstream; it must consist of RFC 5322 atom characters and dots (a UUID does). An empty ID gets
// a random one. To is one address, bare or with a display name. HTML is optional: when set, the
// email carries both a text and an HTML alternative.
//
// Send returns nil only once the mail server has accepted the message (250 after DATA); nothing
// is queued in the process. Errors are *tenantkit.Error:
//   - Invalid: the message itself is unacceptable and retrying will not help. A To or Subject
//     containing a line break (header injection), a malformed To or ID (nothing is sent), or a
//     5xx reply to RCPT (e.g. 550 no such user) or to the message data.
//   - Unavailable: retry later. Connection failures, timeouts, cancellation, 4xx replies, TLS
//     failures, rejected credentials and any other 5xx reply (those are about the server or our
//     configuration, not about this message).
//
// Errors never contain credentials.
type Sender = tenantkit.Mailer

// New returns the Sender for smtpURL (the SMTP_URL setting, see the package comment): a LogSender
// writing to log when smtpURL is empty, an SMTP sender otherwise. It does not connect. A
// malformed URL is an Invalid *tenantkit.Error that names the problem and never the password.
func New(smtpURL string, log zerolog.Logger) (Sender, error) {
	if smtpURL == "" {
		return LogSender{Log: log}, nil
	}
	cfg, err := parseURL(smtpURL)
	if err != nil {
		return nil, err
	}
	return newSMTPSender(cfg, log), nil
}

// STARTTLS policies of an smtp:// URL.
const (
	startTLSRequire  = "require"
	startTLSOptional = "optional"
	startTLSOff      = "off"
)

// config is a parsed SMTP_URL.
type config struct {
	host        string // without brackets for IPv6
	port        string
	implicitTLS bool   // smtps://
	startTLS    string // for smtp://: require, optional or off
	user, pass  string
	from        *mail.Address
	tls         *tls.Config
}

func (c config) addr() string { return net.JoinHostPort(c.host, c.port) }

// isLocalhost reports whether host is one that net/smtp's PlainAuth trusts without TLS.
func isLocalhost(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

func invalidURL(format string, args ...any) error {
	return tenantkit.Errorf(tenantkit.Invalid, "SMTP_URL "+format, args...)
}

// parseURL parses and validates an SMTP_URL. Its errors never quote the raw URL: url.Parse's own
// error does, password included, so it is replaced by a generic message.
func parseURL(raw string) (config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return config{}, invalidURL("is not a valid URL (want smtp://[user:pass@]host[:port][?from=addr&starttls=require|optional|off] or smtps://…; percent-encode special characters in user and pass)")
	}
	var cfg config
	switch u.Scheme {
	case "smtp":
		cfg.port = "587"
	case "smtps":
		cfg.port = "465"
		cfg.implicitTLS = true
	default:
		return config{}, invalidURL("scheme must be smtp or smtps, not %q", u.Scheme)
	}
	cfg.host = u.Hostname()
	if u.Opaque != "" || cfg.host == "" {
		return config{}, invalidURL("has no host (want %s://host[:port])", u.Scheme)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return config{}, invalidURL("port %q is out of range", p)
		}
		cfg.port = p
	}
	if u.Path != "" && u.Path != "/" {
		return config{}, invalidURL("must not have a path, got %q", u.Path)
	}
	if u.Fragment != "" {
		return config{}, invalidURL("must not have a fragment")
	}
	if u.User != nil {
		cfg.user = u.User.Username()
		cfg.pass, _ = u.User.Password()
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return config{}, invalidURL("has a malformed query")
	}
	for k, vs := range q {
		if k != "from" && k != "starttls" {
			return config{}, invalidURL("has unknown parameter %q (want from or starttls)", k)
		}
		if len(vs) > 1 {
			return config{}, invalidURL("has parameter %q more than once", k)
		}
	}

	cfg.startTLS = startTLSRequire
	if isLocalhost(cfg.host) {
		cfg.startTLS = startTLSOptional
	}
	if q.Has("starttls") {
		if cfg.implicitTLS {
			return config{}, invalidURL("starttls applies to smtp:// only; smtps:// always uses TLS")
		}
		switch v := q.Get("starttls"); v {
		case startTLSRequire, startTLSOptional, startTLSOff:
			cfg.startTLS = v
		default:
			return config{}, invalidURL("starttls must be require, optional or off, not %q", v)
		}
	}
	if cfg.user != "" && !cfg.implicitTLS && cfg.startTLS == startTLSOff && !isLocalhost(cfg.host) {
		return config{}, invalidURL("has credentials but starttls=off: they would cross the network in clear text (use starttls=require or smtps://)")
	}

	from := q.Get("from")
	if !q.Has("from") {
		domain := cfg.host
		if strings.Contains(domain, ":") {
			domain = "[" + domain + "]" // an IPv6 address literal
		}
		from = "tenantkit@" + domain
	}
	if strings.ContainsAny(from, "\r\n") {
		return config{}, invalidURL("from must not contain line breaks")
	}
	if cfg.from, err = mail.ParseAddress(from); err != nil {
		return config{}, invalidURL("from=%q is not an email address: %v", from, err)
	}

	cfg.tls = &tls.Config{ServerName: cfg.host, MinVersion: tls.VersionTLS12}
	return cfg, nil
}
