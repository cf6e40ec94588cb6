package team

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/tenantkit/tenantkit"
)

// Verified domains: a tenant claims an email domain, proves it controls it with a DNS TXT record,
// and then users who sign up with a verified address on that domain join the tenant (policy
// auto_join) or are offered it (policy suggest). See README "Verified domains".

// Domain policies.
const (
	PolicyAutoJoin = "auto_join" // join with the domain's default role
	PolicySuggest  = "suggest"   // the user is offered the tenant and joins by accepting
)

// Error codes of domains, on top of tenantkit's.
const (
	DomainTaken      = "domain_taken"      // another tenant verified the domain
	DomainUnverified = "domain_unverified" // the TXT record was not found
)

// ChallengeLabel is where the TXT record goes: ChallengeLabel + "." + domain.
const ChallengeLabel = "_tenantkit-challenge"

// tokenPrefix starts every challenge token.
const tokenPrefix = "tenantkit-verification="

// Domain is a tenant's claimed email domain.
type Domain struct {
	ID          string
	TenantID    string
	Domain      string
	Token       string // the TXT record's value
	Policy      string
	DefaultRole tenantkit.Role
	VerifiedAt  *time.Time
	CreatedAt   time.Time
}

// RecordName is the name of the TXT record to publish.
func (d Domain) RecordName() string { return ChallengeLabel + "." + d.Domain }

// NewDomain is what AddDomain stores.
type NewDomain struct {
	TenantID    string
	Domain      string
	Token       string
	Policy      string
	DefaultRole tenantkit.Role
	CreatedBy   string
}

// SignUp is a user as the auth table knows them now.
type SignUp struct {
	UserID        string
	Known         bool
	Email         string
	EmailVerified bool
}

// DomainOffer is a tenant offered to a user because of a verified domain.
type DomainOffer struct {
	TenantID   string
	TenantName string
	Domain     string
	Role       tenantkit.Role
	CreatedAt  time.Time
}

// Outcomes of a join through a domain (DomainStore.JoinByDomain).
const (
	Joined        = "joined"         // a new membership
	AlreadyMember = "already_member" // nothing to do
	NoLongerValid = "no_longer_valid"
)

// DomainStore persists domains and offers. Methods taking a session run as that caller under RLS;
// the sign-up path (SignUpUser, VerifiedDomain, JoinByDomain, Offer) and the offers (Offers,
// AcceptOffer) are the system path, each reading only rows of the user it names.
type DomainStore interface {
	Membership(ctx context.Context, s tenantkit.Session, tenantID string) (Membership, error)
	AddDomain(ctx context.Context, s tenantkit.Session, d NewDomain) (Domain, error)
	Domain(ctx context.Context, s tenantkit.Session, domainID string) (Domain, error)
	// DomainVerifiedElsewhere reports whether a tenant other than tenantID verified domain.
	DomainVerifiedElsewhere(ctx context.Context, domain, tenantID string) (bool, error)
	// MarkDomainVerified sets verified_at; conflict when another tenant verified the domain first.
	MarkDomainVerified(ctx context.Context, s tenantkit.Session, domainID string) (Domain, error)
	SetDomainPolicy(ctx context.Context, s tenantkit.Session, domainID, policy string, role tenantkit.Role) (Domain, error)
	RemoveDomain(ctx context.Context, s tenantkit.Session, domainID string) (Domain, error)
	ListDomains(ctx context.Context, s tenantkit.Session, tenantID string) ([]Domain, error)

	SignUpUser(ctx context.Context, userID string) (SignUp, error)
	// VerifiedDomain returns the verified domain of that name; false when none.
	VerifiedDomain(ctx context.Context, domain string) (Domain, bool, error)
	// JoinByDomain makes the user a member of d's tenant with d's default role, in one
	// transaction that first locks d and checks it is still verified with policy auto_join and
	// that the user's email is still verified and still email; then audits the join. Outcomes:
	// Joined, AlreadyMember, NoLongerValid. Errors: plan_limit (nothing written).
	JoinByDomain(ctx context.Context, d Domain, userID, email string) (string, error)
	// Offer records (once) that the user is offered d's tenant, unless the user is a member or d
	// is no longer verified; reason goes into the audit entry. It reports whether it recorded one.
	Offer(ctx context.Context, d Domain, userID, reason string) (bool, error)
	Offers(ctx context.Context, userID string) ([]DomainOffer, error)
	// AcceptOffer locks the user's offer of the tenant, reads the offer's domain and the user,
	// asks decide, then makes the user a member with the domain's default role and deletes the
	// offer. Errors: not_found (no offer), plan_limit, and decide's.
	AcceptOffer(ctx context.Context, s tenantkit.Session, tenantID string, decide func(d Domain, u SignUp) error) (Membership, error)
}

// TXTResolver looks up TXT records (net.Resolver in production, DNS_RESOLVER).
type TXTResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// Domains implements verified domains.
type Domains struct {
	Store    DomainStore
	Resolver TXTResolver
}

// PublicEmailDomains are the domains of free email providers: anybody can have an address there,
// so nobody may claim them (nor their subdomains). The list is deliberately short and covers the
// providers most sign-ups use; docs/domains.md says how to extend it.
var PublicEmailDomains = []string{
	"gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "live.com",
	"msn.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "ymail.com", "rocketmail.com", "aol.com",
	"icloud.com", "me.com", "mac.com", "proton.me", "protonmail.com", "pm.me", "gmx.com", "gmx.de",
	"gmx.net", "web.de", "mail.com", "zoho.com", "yandex.com", "yandex.ru", "mail.ru", "qq.com",
	"163.com", "126.com", "fastmail.com", "hey.com", "tutanota.com", "tuta.io", "free.fr", "orange.fr",
	"laposte.net", "libero.it", "t-online.de", "naver.com", "rediffmail.com",
}

var domainPattern = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// NormalizeDomain returns the domain as stored: ASCII whitespace and one trailing dot removed,
// ASCII letters lowered. It must then be a host name of two labels or more (letters, digits and
// inner hyphens; internationalised names in their xn-- form), not an address, and neither a public
// email provider's domain nor a subdomain of one. Errors: invalid.
func NormalizeDomain(s string) (string, error) {
	d := strings.TrimSuffix(lowerASCII(strings.Trim(s, " \t\r\n")), ".")
	switch {
	case len(d) > 253 || !domainPattern.MatchString(d):
		return "", tenantkit.Errorf(tenantkit.Invalid, "domain must be a host name such as acme.com (internationalised names in their xn-- form)")
	case net.ParseIP(d) != nil:
		return "", tenantkit.Errorf(tenantkit.Invalid, "domain must be a name, not an address")
	}
	for _, p := range PublicEmailDomains {
		if d == p || strings.HasSuffix(d, "."+p) {
			return "", tenantkit.Errorf(tenantkit.Invalid, "%s is a public email provider's domain: anyone can have an address there", d)
		}
	}
	return d, nil
}

// EmailDomain is the domain part of an address as NormalizeEmail leaves it (letters lowered); ""
// when there is none. Only the exact domain counts: kim@eu.acme.com is not on acme.com.
func EmailDomain(email string) string {
	e, err := NormalizeEmail(email)
	if err != nil {
		return ""
	}
	i := strings.LastIndexByte(e, '@')
	return strings.TrimSuffix(e[i+1:], ".")
}

// ParsePolicy reads a domain policy ("" is suggest). Errors: invalid.
func ParsePolicy(p string) (string, error) {
	switch p {
	case "":
		return PolicySuggest, nil
	case PolicyAutoJoin, PolicySuggest:
		return p, nil
	}
	return "", tenantkit.Errorf(tenantkit.Invalid, "policy must be auto_join or suggest")
}

// domainRole reads the role domain joiners get ("" is member): never owner, never above the
// caller's. Errors: invalid, forbidden.
func domainRole(s string, caller tenantkit.Role) (tenantkit.Role, error) {
	if s == "" {
		s = string(tenantkit.Member)
	}
	r, err := ParseRole(s)
	if err != nil {
		return "", err
	}
	if r == tenantkit.Owner {
		return "", tenantkit.Errorf(tenantkit.Invalid, "a domain cannot make people owners")
	}
	if !caller.AtLeast(r) {
		return "", tenantkit.Errorf(tenantkit.Forbidden, "you cannot let people join as %s, above your own role", r)
	}
	return r, nil
}

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func newChallenge() (string, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return tokenPrefix + strings.ToLower(tokenEncoding.EncodeToString(b)), nil
}

// manager returns the caller's membership of the tenant when it allows perm. Errors:
// unauthenticated, invalid, not_found, forbidden.
func (s *Domains) manager(ctx context.Context, sess tenantkit.Session, tenantID, perm string) (Membership, error) {
	if _, err := caller(sess); err != nil {
		return Membership{}, err
	}
	return Require(ctx, s.Store, sess, tenantID, perm)
}

// domain returns a domain the caller may manage (settings:write). Errors: unauthenticated,
// invalid, not_found (also when the caller may not see it), forbidden.
func (s *Domains) domain(ctx context.Context, sess tenantkit.Session, domainID string) (Domain, Membership, error) {
	if _, err := caller(sess); err != nil {
		return Domain{}, Membership{}, err
	}
	if err := ValidateID("domainId", domainID); err != nil {
		return Domain{}, Membership{}, err
	}
	d, err := s.Store.Domain(ctx, sess, domainID)
	if tenantkit.ErrorCode(err) == tenantkit.NotFound {
		return d, Membership{}, tenantkit.Errorf(tenantkit.NotFound, "domain not found")
	}
	if err != nil {
		return d, Membership{}, err
	}
	m, err := s.manager(ctx, sess, d.TenantID, "settings:write")
	return d, m, err
}

// Add claims a domain for the tenant and returns it with the TXT record to publish. The caller
// needs settings:write; the default role (member unless given) is never owner nor above the
// caller's. Errors: unauthenticated, invalid, not_found, forbidden, conflict (the tenant has it
// already), domain_taken (another tenant verified it).
func (s *Domains) Add(ctx context.Context, sess tenantkit.Session, tenantID, domain, policy, role string) (Domain, error) {
	uid, err := caller(sess)
	if err != nil {
		return Domain{}, err
	}
	if domain, err = NormalizeDomain(domain); err != nil {
		return Domain{}, err
	}
	if policy, err = ParsePolicy(policy); err != nil {
		return Domain{}, err
	}
	m, err := s.manager(ctx, sess, tenantID, "settings:write")
	if err != nil {
		return Domain{}, err
	}
	r, err := domainRole(role, m.Role)
	if err != nil {
		return Domain{}, err
	}
	if taken, err := s.Store.DomainVerifiedElsewhere(ctx, domain, tenantID); err != nil || taken {
		if taken {
			return Domain{}, tenantkit.Errorf(DomainTaken, "%s is verified by another tenant", domain)
		}
		return Domain{}, err
	}
	token, err := newChallenge()
	if err != nil {
		return Domain{}, err
	}
	d, err := s.Store.AddDomain(ctx, sess, NewDomain{TenantID: tenantID, Domain: domain, Token: token, Policy: policy, DefaultRole: r, CreatedBy: uid})
	if tenantkit.ErrorCode(err) == tenantkit.Conflict {
		return d, tenantkit.Errorf(tenantkit.Conflict, "the tenant already has %s", domain)
	}
	return d, err
}

// Verify looks up the domain's TXT record and marks the domain verified when one of its values is
// the domain's token. Verifying a verified domain again succeeds. Errors: unauthenticated,
// invalid, not_found, forbidden, domain_unverified (no such record yet: DNS changes take time),
// domain_taken, unavailable (the resolver did not answer).
func (s *Domains) Verify(ctx context.Context, sess tenantkit.Session, domainID string) (Domain, error) {
	d, _, err := s.domain(ctx, sess, domainID)
	if err != nil || d.VerifiedAt != nil {
		return d, err
	}
	if s.Resolver == nil {
		return d, tenantkit.Errorf(tenantkit.Unavailable, "domain verification is not configured on this service")
	}
	records, err := s.Resolver.LookupTXT(ctx, d.RecordName())
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		records = nil
	case err != nil:
		return d, &tenantkit.Error{Code: tenantkit.Unavailable, Message: "the DNS resolver did not answer; try again later", Err: err}
	}
	if !slices.ContainsFunc(records, func(r string) bool { return strings.TrimSpace(r) == d.Token }) {
		return d, tenantkit.Errorf(DomainUnverified, "no TXT record %s with value %s was found (DNS changes can take a while to spread)", d.RecordName(), d.Token)
	}
	v, err := s.Store.MarkDomainVerified(ctx, sess, domainID)
	if tenantkit.ErrorCode(err) == tenantkit.Conflict {
		return d, tenantkit.Errorf(DomainTaken, "%s is verified by another tenant", d.Domain)
	}
	return v, err
}

// SetPolicy changes a domain's policy and default role (same rules as Add). Existing members are
// not touched. Errors: unauthenticated, invalid, not_found, forbidden.
func (s *Domains) SetPolicy(ctx context.Context, sess tenantkit.Session, domainID, policy, role string) (Domain, error) {
	p, err := ParsePolicy(policy)
	if err != nil {
		return Domain{}, err
	}
	_, m, err := s.domain(ctx, sess, domainID)
	if err != nil {
		return Domain{}, err
	}
	r, err := domainRole(role, m.Role)
	if err != nil {
		return Domain{}, err
	}
	return s.Store.SetDomainPolicy(ctx, sess, domainID, p, r)
}

// Remove deletes a domain and the offers it made: no one joins through it any more, and no
// membership changes. Errors: unauthenticated, invalid, not_found, forbidden.
func (s *Domains) Remove(ctx context.Context, sess tenantkit.Session, domainID string) (Domain, error) {
	if _, _, err := s.domain(ctx, sess, domainID); err != nil {
		return Domain{}, err
	}
	return s.Store.RemoveDomain(ctx, sess, domainID)
}

// List returns the tenant's domains (settings:read). Errors: unauthenticated, invalid, not_found,
// forbidden.
func (s *Domains) List(ctx context.Context, sess tenantkit.Session, tenantID string) ([]Domain, error) {
	if _, err := s.manager(ctx, sess, tenantID, "settings:read"); err != nil {
		return nil, err
	}
	return s.Store.ListDomains(ctx, sess, tenantID)
}

// SignedUp applies the domain rule to a user whose auth row was inserted or changed (the domain
// event trigger): if the user's email is verified and its domain is verified by a tenant, the user
// joins it (auto_join) or is offered it (suggest; also auto_join when the plan's member limit is
// reached). The user is read afresh, so a late or repeated event decides on the current row;
// repeating it changes nothing. It returns what happened: Joined, AlreadyMember, "offered", or
// "" for nothing to do.
func (s *Domains) SignedUp(ctx context.Context, userID string) (string, error) {
	u, err := s.Store.SignUpUser(ctx, userID)
	if err != nil || !u.Known || !u.EmailVerified {
		return "", err
	}
	name := EmailDomain(u.Email)
	if name == "" {
		return "", nil
	}
	d, found, err := s.Store.VerifiedDomain(ctx, name)
	if err != nil || !found {
		return "", err
	}
	reason := "suggest"
	if d.Policy == PolicyAutoJoin {
		outcome, err := s.Store.JoinByDomain(ctx, d, u.UserID, u.Email)
		switch {
		case tenantkit.ErrorCode(err) == tenantkit.PlanLimit:
			reason = "plan_limit" // offered instead: the user may join once there is room
		case err != nil:
			return "", err
		case outcome == NoLongerValid:
			return "", nil
		default:
			return outcome, nil
		}
	}
	offered, err := s.Store.Offer(ctx, d, u.UserID, reason)
	if err != nil || !offered {
		return "", err
	}
	return "offered", nil
}

// Offers returns the tenants offered to the caller. Errors: unauthenticated.
func (s *Domains) Offers(ctx context.Context, sess tenantkit.Session) ([]DomainOffer, error) {
	uid, err := caller(sess)
	if err != nil {
		return nil, err
	}
	return s.Store.Offers(ctx, uid)
}

// AcceptOffer joins the tenant an offer names, with its domain's default role, if the caller's
// email is still verified and on that domain and the domain still verified. Accepting again
// after joining is not_found (the offer is gone). Errors: unauthenticated, invalid, not_found,
// email_unverified, invitation_email_mismatch (the email moved to another domain), plan_limit.
func (s *Domains) AcceptOffer(ctx context.Context, sess tenantkit.Session, tenantID string) (Membership, error) {
	if _, err := caller(sess); err != nil {
		return Membership{}, err
	}
	if err := ValidateID("tenantId", tenantID); err != nil {
		return Membership{}, err
	}
	return s.Store.AcceptOffer(ctx, sess, tenantID, func(d Domain, u SignUp) error {
		switch {
		case !u.Known:
			return tenantkit.Errorf(tenantkit.Unauthenticated, "your user account is unknown; sign in again")
		case d.VerifiedAt == nil:
			return tenantkit.Errorf(tenantkit.NotFound, "no offer to join this tenant")
		case !u.EmailVerified:
			return tenantkit.Errorf(EmailUnverified, "verify your email address first")
		case EmailDomain(u.Email) != d.Domain:
			return tenantkit.Errorf(InvitationEmailMismatch, "your email address is no longer on %s", d.Domain)
		}
		return nil
	})
}
