package main

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/tenantkit/tenantkit/internal/team"
)

// dnsTimeout bounds one verification's DNS lookup.
const dnsTimeout = 5 * time.Second

// txtResolver looks TXT records up for verifyDomain: through DNS_RESOLVER's server when set (tests
// run a local one, so no query leaves the machine), else through the system's resolver.
type txtResolver struct{ r *net.Resolver }

func (t txtResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsTimeout)
	defer cancel()
	return t.r.LookupTXT(ctx, name)
}

func newTXTResolver(addr string) team.TXTResolver {
	if addr == "" {
		return txtResolver{net.DefaultResolver}
	}
	var d net.Dialer
	return txtResolver{&net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// loadDomainConfig reads DNS_RESOLVER (host:port of the DNS server verifyDomain asks; unset: the
// system's resolver) and returns its problems.
func loadDomainConfig(getenv func(string) string, c *Config) []string {
	c.DNSResolver = getenv("DNS_RESOLVER")
	if c.DNSResolver == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(c.DNSResolver)
	if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
		return []string{"DNS_RESOLVER must be host:port (e.g. 127.0.0.1:53 or [::1]:53)"}
	}
	return nil
}
