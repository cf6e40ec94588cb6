package mail

import (
	"crypto/x509"

	"github.com/rs/zerolog"
)

// NewTrusting is New for a server whose certificate roots verifies (mailtest's self-signed one).
func NewTrusting(smtpURL string, log zerolog.Logger, roots *x509.CertPool) (Sender, error) {
	s, err := New(smtpURL, log)
	if err != nil {
		return nil, err
	}
	if ss, ok := s.(*smtpSender); ok {
		ss.cfg.tls.RootCAs = roots
	}
	return s, nil
}
