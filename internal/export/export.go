// Package export is the domain of tenant data exports (GDPR): who may export a tenant, the signed
// one-time download link, and what the archive holds. The archive itself is read and streamed by
// the Store (internal/postgres) as the requesting owner, under RLS; the HTTP route that serves the
// link is internal/server's.
//
// The link. exportTenant (owners only) records an export (tenant, owner, expiry) and answers
//
//	<TENANTKIT_PUBLIC_URL>/exports/<export id>?expires=<unix seconds>&signature=<HMAC>
//
// The signature is HMAC-SHA256, under a key derived from TENANTKIT_SECRET, of the export id, the
// tenant, the owner and the expiry: a link cannot be made or altered without the secret. The link
// works once, until it expires (EXPORT_LINK_MINUTES, default 15): the download marks the export used
// in one statement, so of two downloads of one link only one starts. The identity the download
// presents is the link itself — a short-lived, single-use capability handed only to the owner who
// asked, in the answer to their authenticated call — and the archive is read with that owner's
// session under row-level security, after checking that they are still an owner of the tenant: a
// link that leaks reads nothing its owner could not, and nothing once used, expired, or after the
// owner lost the role.
package export

import (
	"cmp"
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/tenantkit/tenantkit"
)

// Error codes of the download route.
const (
	// LinkInvalid: the link was not made by this service (malformed, altered, unknown export).
	LinkInvalid = "export_link_invalid"
	// LinkExpired: the link's time is over; ask for a new export.
	LinkExpired = "export_link_expired"
	// LinkUsed: the link was used already; ask for a new export.
	LinkUsed = "export_link_used"
)

// Format names the archive's layout (docs/export.md); it changes when the layout does.
const Format = "tenantkit-export/1"

// Export is one export requested by an owner.
type Export struct {
	ID, TenantID, UserID string
	CreatedAt, ExpiresAt time.Time
	DownloadedAt         *time.Time
}

// Link is the download link of an export.
type Link struct {
	ExportID  string
	URL       string
	ExpiresAt time.Time
}

// Store keeps exports and streams archives.
type Store interface {
	// CreateExport records an export of the tenant for the user, expiring ttl from now (the
	// database's clock), and returns it.
	CreateExport(ctx context.Context, tenantID, userID string, ttl time.Duration) (Export, error)
	// Export returns the export (not_found when there is none).
	Export(ctx context.Context, id string) (Export, error)
	// ConsumeExport marks the export used, at most once and only before it expires. Errors:
	// export_link_used, export_link_expired, not_found.
	ConsumeExport(ctx context.Context, id string) error
	// WriteArchive reads the tenant's rows with the user's session, under RLS, in one consistent
	// snapshot, and writes the archive (docs/export.md) to the writer start returns. start is called
	// once the user is confirmed an owner of the tenant, before anything is written. Errors:
	// forbidden (not an owner any more, or the tenant is gone), unavailable.
	WriteArchive(ctx context.Context, s tenantkit.Session, e Export, start func() (io.Writer, error)) error
}

// Service implements exports.
type Service struct {
	Store     Store
	Authorize tenantkit.Authorize
	// BaseURL is where browsers reach this service (TENANTKIT_PUBLIC_URL); "" turns exports off.
	BaseURL string
	// TTL is how long a link works (EXPORT_LINK_MINUTES).
	TTL time.Duration
	// MaxDownloads bounds the downloads streamed at once (each holds a database connection); 0
	// means 2.
	MaxDownloads int
	Now          func() time.Time

	key       []byte
	slotsOnce sync.Once
	slots     chan struct{}
}

// New returns a Service signing links with a key derived from secret (TENANTKIT_SECRET).
func New(store Store, authorize tenantkit.Authorize, secret, baseURL string, ttl time.Duration) (*Service, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "tenantkit export links v1", 32)
	if err != nil {
		return nil, err
	}
	return &Service{Store: store, Authorize: authorize, BaseURL: baseURL, TTL: ttl, key: key}, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// sign is the link's signature: HMAC-SHA256 over the export, its tenant and owner, and the expiry.
func (s *Service) sign(e Export, expires int64) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, part := range []string{"tenantkit export link v1", e.ID, e.TenantID, e.UserID, strconv.FormatInt(expires, 10)} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// Request records an export of the tenant for the caller, who must be one of its owners, and
// returns its signed one-time download link. Errors: unauthenticated, invalid, not_found (not a
// member, or no such tenant), forbidden (a member but not an owner), unavailable (exports are not
// configured: TENANTKIT_PUBLIC_URL).
func (s *Service) Request(ctx context.Context, sess tenantkit.Session, tenantID string) (Link, error) {
	user := sess.UserID()
	if uuid.Validate(user) != nil {
		return Link{}, tenantkit.Errorf(tenantkit.Unauthenticated, "sign in first")
	}
	if uuid.Validate(tenantID) != nil {
		return Link{}, tenantkit.Errorf(tenantkit.Invalid, "tenantId must be a UUID")
	}
	_, role, err := s.Authorize(ctx, sess, tenantID, "tenants:export")
	switch {
	case err != nil:
		return Link{}, err
	case role == "":
		return Link{}, tenantkit.Errorf(tenantkit.NotFound, "tenant not found")
	case role != tenantkit.Owner:
		return Link{}, tenantkit.Errorf(tenantkit.Forbidden, "exporting a tenant's data is for its owners")
	}
	if s.BaseURL == "" {
		return Link{}, tenantkit.Errorf(tenantkit.Unavailable, "exports are not configured on this server; try again later")
	}
	e, err := s.Store.CreateExport(ctx, tenantID, user, s.TTL)
	if err != nil {
		return Link{}, err
	}
	expires := e.ExpiresAt.Unix()
	q := url.Values{"expires": {strconv.FormatInt(expires, 10)},
		"signature": {base64.RawURLEncoding.EncodeToString(s.sign(e, expires))}}
	return Link{ExportID: e.ID, URL: s.BaseURL + "/exports/" + e.ID + "?" + q.Encode(), ExpiresAt: e.ExpiresAt.UTC()}, nil
}

// Open checks a download link: made by this service for a recorded export, not expired, not used.
// It returns the export, not yet used. Errors: export_link_invalid, export_link_expired,
// export_link_used, unavailable.
func (s *Service) Open(ctx context.Context, id, expires, signature string) (Export, error) {
	invalid := tenantkit.Errorf(LinkInvalid, "this export link is not valid: ask for a new export")
	exp, err := strconv.ParseInt(expires, 10, 64)
	sig, serr := base64.RawURLEncoding.DecodeString(signature)
	if uuid.Validate(id) != nil || err != nil || serr != nil {
		return Export{}, invalid
	}
	e, err := s.Store.Export(ctx, id)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return Export{}, invalid
	}
	if err != nil {
		return Export{}, err
	}
	if exp != e.ExpiresAt.Unix() || !hmac.Equal(sig, s.sign(e, exp)) {
		return Export{}, invalid
	}
	switch {
	case e.DownloadedAt != nil:
		return Export{}, tenantkit.Errorf(LinkUsed, "this export link was used already: ask for a new export")
	case !s.now().Before(e.ExpiresAt):
		return Export{}, tenantkit.Errorf(LinkExpired, "this export link has expired: ask for a new export")
	}
	return e, nil
}

// Download uses the export's link up and streams its archive to the writer start returns (start
// is called once, before anything is written, when the archive can be read). At most
// MaxDownloads stream at once; beyond, unavailable without using the link up. Errors:
// export_link_used, export_link_expired (raced with another download, or expired meanwhile),
// forbidden (the user is no longer an owner), unavailable; an error after start was called means
// the archive is incomplete.
func (s *Service) Download(ctx context.Context, e Export, start func() (io.Writer, error)) error {
	s.slotsOnce.Do(func() { s.slots = make(chan struct{}, cmp.Or(max(s.MaxDownloads, 0), 2)) })
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return tenantkit.Errorf(tenantkit.Unavailable, "too many exports are being downloaded; try again in a minute (the link still works)")
	}
	if err := s.Store.ConsumeExport(ctx, e.ID); err != nil {
		return err
	}
	return s.Store.WriteArchive(ctx, tenantkit.UserSession(e.UserID), e, start)
}
