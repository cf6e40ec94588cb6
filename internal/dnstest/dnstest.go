// Package dnstest is a DNS server for tests: it answers TXT questions over UDP on a loopback port
// from records the test sets, so that domain verification runs against real DNS messages without
// any query leaving the machine. It speaks just enough of RFC 1035: one question per query,
// answers of class IN, NXDOMAIN for names it does not know, an empty answer for other types of a
// known name, FORMERR for what it cannot parse.
package dnstest

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
)

// Server answers TXT queries for the records set with Set.
type Server struct {
	conn    net.PacketConn
	mu      sync.Mutex
	records map[string][]string // lower-case name without the final dot → TXT values
	queries []string
}

// Start serves on 127.0.0.1 until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dnstest: %v", err)
	}
	s := &Server{conn: conn, records: map[string][]string{}}
	go s.serve()
	t.Cleanup(func() { conn.Close() })
	return s
}

// Addr is the server's host:port, for DNS_RESOLVER.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Resolver is a resolver that asks this server only (Go's own resolver, as DNS_RESOLVER
// configures it): its LookupTXT is what domain verification calls.
func (s *Server) Resolver() *net.Resolver {
	var d net.Dialer
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, s.Addr())
	}}
}

// Set makes name answer TXT queries with values (none: the name exists without TXT records).
func (s *Server) Set(name string, values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[canonical(name)] = values
}

// Delete makes name unknown (NXDOMAIN).
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, canonical(name))
}

// Queries returns the names asked so far, in order.
func (s *Server) Queries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

func canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

func (s *Server) serve() {
	buf := make([]byte, 4096)
	for {
		n, addr, err := s.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if resp := s.answer(buf[:n]); resp != nil {
			_, _ = s.conn.WriteTo(resp, addr)
		}
	}
}

const (
	typeTXT   = 16
	classIN   = 1
	rcodeOK   = 0
	rcodeForm = 1
	rcodeNX   = 3
)

// answer builds the response to one query; nil when the message is too short to answer.
func (s *Server) answer(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	id, flags := q[0:2], binary.BigEndian.Uint16(q[2:4])
	if flags&0x8000 != 0 { // a response, not a query
		return nil
	}
	name, end, err := readName(q, 12)
	if err != nil || binary.BigEndian.Uint16(q[4:6]) != 1 || end+4 > len(q) {
		return header(id, flags, rcodeForm, 0, 0)
	}
	qtype, qclass := binary.BigEndian.Uint16(q[end:end+2]), binary.BigEndian.Uint16(q[end+2:end+4])
	question := q[12 : end+4]
	s.mu.Lock()
	s.queries = append(s.queries, name)
	values, known := s.records[canonical(name)]
	s.mu.Unlock()
	if !known {
		return append(header(id, flags, rcodeNX, 1, 0), question...)
	}
	if qtype != typeTXT || qclass != classIN {
		return append(header(id, flags, rcodeOK, 1, 0), question...)
	}
	out := append(header(id, flags, rcodeOK, 1, uint16(len(values))), question...)
	for _, v := range values {
		rdata := []byte{}
		if v == "" {
			rdata = append(rdata, 0)
		}
		for len(v) > 0 { // character-strings of at most 255 bytes
			chunk := v[:min(len(v), 255)]
			rdata = append(append(rdata, byte(len(chunk))), chunk...)
			v = v[len(chunk):]
		}
		rr := []byte{0xC0, 12} // a pointer to the question's name
		rr = binary.BigEndian.AppendUint16(rr, typeTXT)
		rr = binary.BigEndian.AppendUint16(rr, classIN)
		rr = binary.BigEndian.AppendUint32(rr, 60)
		rr = binary.BigEndian.AppendUint16(rr, uint16(len(rdata)))
		out = append(append(out, rr...), rdata...)
	}
	return out
}

// header is a response header: the query's id, QR and RA set, RD copied, no authority.
func header(id []byte, queryFlags uint16, rcode int, questions, answers uint16) []byte {
	h := append([]byte{}, id...)
	h = binary.BigEndian.AppendUint16(h, 0x8000|queryFlags&0x0100|0x0080|uint16(rcode))
	h = binary.BigEndian.AppendUint16(h, questions)
	h = binary.BigEndian.AppendUint16(h, answers)
	return binary.BigEndian.AppendUint32(h, 0) // NSCOUNT, ARCOUNT
}

// readName reads an uncompressed name at off (queries carry no compression) and returns it
// dotted, with the offset after it.
func readName(m []byte, off int) (string, int, error) {
	var labels []string
	for {
		if off >= len(m) {
			return "", 0, errors.New("truncated name")
		}
		n := int(m[off])
		off++
		if n == 0 {
			return strings.Join(labels, "."), off, nil
		}
		if n > 63 || off+n > len(m) {
			return "", 0, errors.New("bad label")
		}
		labels = append(labels, string(m[off:off+n]))
		off += n
	}
}
