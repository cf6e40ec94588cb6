package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
)

// tokenOptions are the flags of `tenantkit dev token`.
type tokenOptions struct {
	user, role string
	ttl        time.Duration
}

func tokenFlags(fs *flag.FlagSet, o *tokenOptions) {
	fs.StringVar(&o.user, "user", "", "the user's id, a UUID (x-hasura-user-id and sub); required")
	fs.StringVar(&o.role, "role", "user", "the Hasura role (x-hasura-default-role, and the one x-hasura-allowed-roles)")
	fs.DurationVar(&o.ttl, "ttl", 12*time.Hour, "how long the token is valid (exp = now + ttl)")
}

// devToken prints a JWT Hasura accepts for a user, signed with HASURA_GRAPHQL_JWT_SECRET
// (docker-compose.yml's development value when unset).
func devToken(args []string, getenv func(string) string, stdout io.Writer) error {
	var o tokenOptions
	fs := flag.NewFlagSet("dev token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	tokenFlags(fs, &o)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("dev token: %w (see tenantkit dev token --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dev token: unexpected argument %q (see tenantkit dev token --help)", fs.Arg(0))
	}
	id, err := uuid.Parse(o.user)
	if err != nil || len(o.user) != 36 {
		return errors.New("dev token: --user must be a user's id, a UUID such as 7d6f3c1e-0b7a-4a51-9a3e-5b1c2d3e4f50 (tenantkit dev user EMAIL prints one)")
	}
	if o.role == "" || strings.ContainsAny(o.role, " \t\r\n") {
		return errors.New("dev token: --role must be a role name")
	}
	if o.ttl <= 0 {
		return errors.New("dev token: --ttl must be positive")
	}
	raw := getenv("HASURA_GRAPHQL_JWT_SECRET")
	if raw == "" {
		raw = devJWTSecret
	}
	secret, err := parseJWTSecret(raw)
	if err != nil {
		return err
	}
	token, err := secret.mintToken(id.String(), o.role, time.Now(), o.ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, token)
	return err
}

// userOptions are the flags of `tenantkit dev user`.
type userOptions struct {
	hasuraURL  string
	unverified bool
}

func userFlags(fs *flag.FlagSet, o *userOptions, getenv func(string) string) {
	def := "http://" + devHasuraAddr
	if a := getenv("DEV_HASURA_ADDR"); a != "" {
		def = "http://" + a
	}
	fs.StringVar(&o.hasuraURL, "hasura-url", def, "the stand-in for Hasura of a running tenantkit dev")
	fs.BoolVar(&o.unverified, "unverified", false, "leave the email unverified (accepting an invitation then fails with email_unverified)")
}

// devUser asks a running tenantkit dev for a user with an email (created with the email verified
// unless --unverified, or found) and prints its id.
func devUser(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	var o userOptions
	fs := flag.NewFlagSet("dev user", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	userFlags(fs, &o, getenv)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("dev user: %w (see tenantkit dev user --help)", err)
	}
	if fs.NArg() != 1 {
		return errors.New("usage: tenantkit dev user [--unverified] EMAIL")
	}
	body, _ := json.Marshal(map[string]any{"email": fs.Arg(0), "unverified": o.unverified})
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(o.hasuraURL, "/")+"/dev/users", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("dev user: --hasura-url: %w", err)
	}
	admin := getenv("HASURA_GRAPHQL_ADMIN_SECRET")
	if admin == "" {
		admin = devAdminSecret
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hasura-Admin-Secret", admin)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("dev user: %s: %w", o.hasuraURL, errNoDev)
	}
	defer res.Body.Close()
	var out struct{ ID, Message string }
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != http.StatusOK {
		return fmt.Errorf("dev user: %s answered %s: %s", o.hasuraURL, res.Status, out.Message)
	}
	_, err = fmt.Fprintln(stdout, out.ID)
	return err
}
