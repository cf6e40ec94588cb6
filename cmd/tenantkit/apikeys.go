package main

import (
	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/postgres"
	"github.com/tenantkit/tenantkit/internal/server"
)

// apiKeys builds the API key service and, when a signing key is configured, the token routes.
func (m *Main) apiKeys(db *postgres.DB, metrics *server.Metrics) (*apikey.Service, *server.TokenRoutes, error) {
	c := m.Config.APIKeys
	keys := &apikey.Service{Store: db, Issuer: c.Issuer, Audience: c.Audience, TTL: c.TTL}
	if c.SigningKey == nil {
		return keys, nil, nil
	}
	signer, err := apikey.NewSigner(c.SigningKey, c.PreviousKeys...)
	if err != nil {
		return nil, nil, err
	}
	keys.Signer = signer
	throttle := &apikey.Throttle{PerAddress: c.ExchangesPerMinute, FailuresPerKey: c.FailuresPerKeyHour}
	return keys, server.NewTokenRoutes(keys, throttle, signer.JWKS(), c.TrustedProxies, metrics), nil
}
