// Package smoke drives a running stack through Hasura, the way a frontend would, and prints one
// PASS/FAIL line per step: two users each create a tenant and a project, neither sees the other's,
// one invites the other (who accepts, when the emails can be read from mailpit), a permission is
// checked, and a checkout is started. Run it after `docker compose up` and after every deployment:
// `tenantkit smoke --hasura-url http://localhost:8080 --admin-secret …`.
//
// The operations a frontend sends are examples/' (one home: the files `go test ./examples`
// validates against each role's schema); only the sign-up of the two users, which an auth service
// does as Hasura's admin, is written here.
package smoke

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	graphql "github.com/hasura/go-graphql-client"

	"github.com/tenantkit/tenantkit/examples"
)

// The frontend's operations the steps send (examples/<name>.graphql).
var (
	opPlans                 = examples.Operation("plans")
	opCreateTenant          = examples.Operation("createTenant")
	opCreateProject         = examples.Operation("createProject")
	opProjects              = examples.Operation("projects")
	opInviteMember          = examples.Operation("inviteMember")
	opAcceptInvitation      = examples.Operation("acceptInvitation")
	opCheckPermission       = examples.Operation("checkPermission")
	opCreateCheckoutSession = examples.Operation("createCheckoutSession")
)

// Check is one smoke run.
type Check struct {
	HasuraURL   string // e.g. http://localhost:8080 (the GraphQL endpoint is /v1/graphql)
	AdminSecret string
	MailpitURL  string // optional: reads the invitation email to accept it
	HTTP        *http.Client
	Out         io.Writer
}

// step is one named check; it returns "" to pass, a reason to fail, or "skip: …".
type step struct {
	name string
	run  func(ctx context.Context) string
}

// as returns a GraphQL client acting as the user (admin secret + role user + user id), or as the
// admin when userID is "".
func (c *Check) as(userID string) *graphql.Client {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return graphql.NewClient(strings.TrimRight(c.HasuraURL, "/")+"/v1/graphql", hc).WithRequestModifier(func(r *http.Request) {
		r.Header.Set("X-Hasura-Admin-Secret", c.AdminSecret)
		if userID != "" {
			r.Header.Set("X-Hasura-Role", "user")
			r.Header.Set("X-Hasura-User-Id", userID)
		}
	})
}

// exec runs a query and decodes its data into v.
func (c *Check) exec(ctx context.Context, userID, query string, vars map[string]any, v any) error {
	data, err := c.as(userID).ExecRaw(ctx, query, vars)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Run runs every step in order and returns how many failed. After a failure the remaining steps
// are reported as failed without running (each builds on the ones before).
func (c *Check) Run(ctx context.Context) int {
	run := strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	var (
		planID                   string
		users, tenants, projects [2]string
		emails                   = [2]string{"smoke-a-" + run + "@example.com", "smoke-b-" + run + "@example.com"}
	)
	steps := []step{
		{"remote schema lists the plans", func(ctx context.Context) string {
			var d struct{ Plans []struct{ ID, Key string } }
			if err := c.exec(ctx, uuid.NewString(), opPlans, nil, &d); err != nil {
				return err.Error()
			}
			if len(d.Plans) == 0 {
				return "no plans"
			}
			planID = d.Plans[0].ID
			return ""
		}},
		{"two users exist (auth.users, as admin)", func(ctx context.Context) string {
			var d struct {
				InsertAuthUsers struct{ Returning []struct{ ID string } } `json:"insert_auth_users"`
			}
			err := c.exec(ctx, "", `mutation($o: [auth_users_insert_input!]!) { insert_auth_users(objects: $o) { returning { id } } }`,
				map[string]any{"o": []map[string]any{{"email": emails[0], "email_verified": true}, {"email": emails[1], "email_verified": true}}}, &d)
			if err != nil {
				return err.Error()
			}
			if len(d.InsertAuthUsers.Returning) != 2 {
				return "did not get two user ids"
			}
			users[0], users[1] = d.InsertAuthUsers.Returning[0].ID, d.InsertAuthUsers.Returning[1].ID
			return ""
		}},
		{"each user creates a tenant (action createTenant)", func(ctx context.Context) string {
			for i, u := range users {
				var d struct{ CreateTenant struct{ TenantID string } }
				err := c.exec(ctx, u, opCreateTenant, map[string]any{"name": "Smoke " + run, "slug": fmt.Sprintf("smoke-%s-%d", run, i)}, &d)
				if err != nil {
					return err.Error()
				}
				tenants[i] = d.CreateTenant.TenantID
			}
			return ""
		}},
		{"each user creates a project", func(ctx context.Context) string {
			for i, u := range users {
				var d struct {
					Insert struct{ ID string } `json:"insert_projects_one"`
				}
				err := c.exec(ctx, u, opCreateProject, map[string]any{"tenantId": tenants[i], "name": "smoke"}, &d)
				if err != nil {
					return err.Error()
				}
				projects[i] = d.Insert.ID
			}
			return ""
		}},
		{"neither user sees the other's projects", func(ctx context.Context) string {
			for i, u := range users {
				for _, tenant := range []int{i, 1 - i} {
					var d struct {
						Projects []struct{ ID string } `json:"projects"`
					}
					if err := c.exec(ctx, u, opProjects, map[string]any{"tenantId": tenants[tenant]}, &d); err != nil {
						return err.Error()
					}
					seen := slices.ContainsFunc(d.Projects, func(p struct{ ID string }) bool { return p.ID == projects[tenant] })
					switch {
					case tenant != i && len(d.Projects) > 0:
						return fmt.Sprintf("user %d sees the other tenant's projects", i+1)
					case tenant == i && !seen:
						return fmt.Sprintf("user %d does not see its own project", i+1)
					}
				}
			}
			return ""
		}},
		{"invite and accept (actions inviteMember, acceptInvitation)", func(ctx context.Context) string {
			var d struct{ InviteMember struct{ InvitationID string } }
			err := c.exec(ctx, users[0], opInviteMember, map[string]any{"tenantId": tenants[0], "email": emails[1], "role": "member"}, &d)
			if err != nil {
				return err.Error()
			}
			if c.MailpitURL == "" {
				return "skip: invited; give --mailpit-url to read the email and accept"
			}
			token, err := c.invitationToken(ctx, emails[1])
			if err != nil {
				return err.Error()
			}
			var a struct{ AcceptInvitation struct{ Role string } }
			if err := c.exec(ctx, users[1], opAcceptInvitation, map[string]any{"token": token}, &a); err != nil {
				return err.Error()
			}
			if a.AcceptInvitation.Role != "member" {
				return "accepted with role " + a.AcceptInvitation.Role
			}
			return ""
		}},
		{"a permission check answers (action checkPermission)", func(ctx context.Context) string {
			var d struct{ CheckPermission struct{ Allowed bool } }
			err := c.exec(ctx, users[0], opCheckPermission, map[string]any{"tenantId": tenants[0], "permission": "users:invite"}, &d)
			if err != nil {
				return err.Error()
			}
			if !d.CheckPermission.Allowed {
				return "the owner may not invite"
			}
			return ""
		}},
		{"a checkout starts (action createCheckoutSession)", func(ctx context.Context) string {
			var d struct{ CreateCheckoutSession struct{ URL string } }
			err := c.exec(ctx, users[0], opCreateCheckoutSession, map[string]any{"tenantId": tenants[0], "planId": planID}, &d)
			if err != nil {
				return err.Error()
			}
			if !strings.HasPrefix(d.CreateCheckoutSession.URL, "http") {
				return "no checkout URL"
			}
			return ""
		}},
	}
	passed, failed := 0, 0
	for _, s := range steps {
		result := "an earlier step failed"
		if failed == 0 {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			result = s.run(sctx)
			cancel()
		}
		switch {
		case result == "":
			fmt.Fprintf(c.Out, "PASS %s\n", s.name)
			passed++
		case strings.HasPrefix(result, "skip: "):
			fmt.Fprintf(c.Out, "SKIP %s (%s)\n", s.name, strings.TrimPrefix(result, "skip: "))
		default:
			fmt.Fprintf(c.Out, "FAIL %s: %s\n", s.name, result)
			failed++
		}
	}
	fmt.Fprintf(c.Out, "smoke: %d passed, %d failed\n", passed, failed)
	return failed
}

var tokenPattern = regexp.MustCompile(`/invitations/accept\?token=([A-Za-z0-9_%-]+)`)

// invitationToken reads the newest invitation email to addr from mailpit's API.
func (c *Check) invitationToken(ctx context.Context, addr string) (string, error) {
	base := strings.TrimRight(c.MailpitURL, "/")
	get := func(path string, v any) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("mailpit %s: %s", path, res.Status)
		}
		return json.NewDecoder(res.Body).Decode(v)
	}
	for range 30 {
		var list struct{ Messages []struct{ ID string } }
		if err := get("/api/v1/search?query="+url.QueryEscape("to:"+addr), &list); err != nil {
			return "", err
		}
		if len(list.Messages) > 0 {
			var msg struct{ Text string }
			if err := get("/api/v1/message/"+list.Messages[0].ID, &msg); err != nil {
				return "", err
			}
			m := tokenPattern.FindStringSubmatch(msg.Text)
			if m == nil {
				return "", fmt.Errorf("no invitation link in the email")
			}
			return url.QueryUnescape(m[1])
		}
		time.Sleep(time.Second)
	}
	return "", fmt.Errorf("no invitation email to %s within 30 s", addr)
}
