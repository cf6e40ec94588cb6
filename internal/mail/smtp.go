package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantkit/tenantkit"
)

const (
	// defaultTimeout bounds a Send whose context has no deadline.
	defaultTimeout = 30 * time.Second
	// dialTimeout bounds connecting, so that an unreachable server fails fast even under a
	// generous context deadline.
	dialTimeout = 10 * time.Second
)

// smtpSender sends each message over a new SMTP connection.
type smtpSender struct {
	cfg       config
	localName string // the EHLO name
	log       zerolog.Logger
}

func newSMTPSender(cfg config, log zerolog.Logger) *smtpSender {
	name, err := os.Hostname()
	if err != nil || name == "" || strings.ContainsAny(name, " \r\n") {
		name = "localhost"
	}
	return &smtpSender{cfg: cfg, localName: name, log: log}
}

// Send implements Sender.
func (s *smtpSender) Send(ctx context.Context, m tenantkit.Email) error {
	to, id, err := check(m)
	if err != nil {
		return err
	}
	data := build(s.cfg.from, to, id, m, time.Now())
	if err := s.send(ctx, to.Address, data); err != nil {
		return err
	}
	s.log.Debug().Str("id", id).Str("to", to.Address).Msg("email sent")
	return nil
}

// send runs one SMTP transaction. Every step after connecting shares one connection deadline
// (the context's, or defaultTimeout), and cancelling ctx aborts any pending read or write.
func (s *smtpSender) send(ctx context.Context, rcpt string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return s.unavailable(ctx, "send", err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultTimeout)
	}
	dialer := net.Dialer{Timeout: dialTimeout, Deadline: deadline}
	conn, err := dialer.DialContext(ctx, "tcp", s.cfg.addr())
	if err != nil {
		return s.unavailable(ctx, "connect", err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return s.unavailable(ctx, "connect", err)
	}
	// A deadline in the past makes every pending and future I/O on conn fail at once.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if s.cfg.implicitTLS {
		tc := tls.Client(conn, s.cfg.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return s.unavailable(ctx, "TLS handshake", err)
		}
		conn = tc // net/smtp sees a *tls.Conn and treats the session as encrypted
	}
	c, err := smtp.NewClient(conn, s.cfg.host)
	if err != nil {
		return s.fail(ctx, "greeting", err, false)
	}
	defer c.Close()
	if err := c.Hello(s.localName); err != nil {
		return s.fail(ctx, "EHLO", err, false)
	}

	if !s.cfg.implicitTLS && s.cfg.startTLS != startTLSOff {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.cfg.tls); err != nil {
				return s.fail(ctx, "STARTTLS", err, false)
			}
		} else if s.cfg.startTLS == startTLSRequire {
			return s.unavailable(ctx, "STARTTLS", errors.New("the server does not offer STARTTLS and SMTP_URL requires it (starttls=require, the default for a host other than localhost)"))
		}
	}

	if s.cfg.user != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return s.unavailable(ctx, "AUTH", errors.New("the server does not offer AUTH but SMTP_URL has credentials"))
		}
		// PlainAuth refuses to send the password without TLS unless the host is localhost.
		// Its errors and the server's reply never contain the password.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.user, s.cfg.pass, s.cfg.host)); err != nil {
			return s.fail(ctx, "AUTH", err, false)
		}
	}

	if err := c.Mail(s.cfg.from.Address); err != nil {
		return s.fail(ctx, "MAIL FROM", err, false)
	}
	if err := c.Rcpt(rcpt); err != nil {
		if isPermanent(err) {
			return &tenantkit.Error{Code: tenantkit.Invalid, Message: fmt.Sprintf("the mail server rejected the recipient %s", rcpt), Err: s.wrap("RCPT TO", err)}
		}
		return s.fail(ctx, "RCPT TO", err, false)
	}
	w, err := c.Data()
	if err != nil {
		return s.fail(ctx, "DATA", err, false)
	}
	if _, err := w.Write(data); err != nil {
		return s.fail(ctx, "DATA", err, false)
	}
	// Close sends the final dot and reads the server's verdict on the message.
	if err := w.Close(); err != nil {
		return s.fail(ctx, "DATA", err, true)
	}
	// The message is accepted; a failing QUIT changes nothing about that.
	_ = c.Quit()
	return nil
}

// isPermanent reports whether err is a 5xx SMTP reply.
func isPermanent(err error) bool {
	var tp *textproto.Error
	return errors.As(err, &tp) && tp.Code >= 500 && tp.Code <= 599
}

// fail classifies an error of SMTP step: a 5xx reply to the message data (messageVerdict) is
// Invalid, as retrying the same message is futile; anything else is Unavailable.
func (s *smtpSender) fail(ctx context.Context, step string, err error, messageVerdict bool) error {
	if messageVerdict && isPermanent(err) {
		return &tenantkit.Error{Code: tenantkit.Invalid, Message: "the mail server rejected the message", Err: s.wrap(step, err)}
	}
	return s.unavailable(ctx, step, err)
}

func (s *smtpSender) unavailable(ctx context.Context, step string, err error) error {
	// An I/O error after cancellation or past the deadline is a bare timeout; say why, so that
	// callers can tell with errors.Is. The connection deadline may fire a moment before ctx's
	// own timer does, hence the second case.
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = fmt.Errorf("%w: %w", cause, err)
	} else if d, ok := ctx.Deadline(); ok && cause == nil && !time.Now().Before(d) && errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return &tenantkit.Error{Code: tenantkit.Unavailable, Message: "the mail server is unavailable; try again later", Err: s.wrap(step, err)}
}

// wrap names the server and the step; the address carries no credentials.
func (s *smtpSender) wrap(step string, err error) error {
	return fmt.Errorf("smtp %s %s: %w", s.cfg.addr(), step, err)
}
