package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"github.com/vektah/gqlparser/v2"
	gqlast "github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/formatter"
	"github.com/vektah/gqlparser/v2/validator"

	"github.com/tenantkit/tenantkit/internal/hasuratest"
)

// devGraphQL stands in for Hasura's GraphQL endpoint in development (tenantkit dev): POST
// /v1/graphql authenticates a request as Hasura's JWT mode does (Authorization: Bearer, the
// HASURA_GRAPHQL_JWT_SECRET of the compose stack) or with the admin secret and X-Hasura-Role /
// X-Hasura-User-Id headers, validates it against the schema Hasura would expose to the role
// (hasuratest.Schema, from hasura/metadata and the database), and answers the fields Hasura
// would send to tenantkit — actions and the remote schema — by calling the service exactly as
// Hasura does. Table fields are Hasura's own work; they are refused with a message saying so.
// POST /dev/users creates (or finds) a user with a verified email, standing in for sign-up.
type devGraphQL struct {
	meta        *hasuratest.Metadata
	cat         *hasuratest.DBCatalog
	client      *hasuratest.Client
	jwt         *hasuratest.JWTAuth
	adminSecret string
	pool        *pgxpool.Pool
	log         zerolog.Logger

	mu      sync.Mutex
	schemas map[string]*gqlast.Schema
	server  *http.Server
	ln      net.Listener
}

// devHasuraAddr is where tenantkit dev serves its stand-in for Hasura unless DEV_HASURA_ADDR says
// otherwise: Hasura's port in docker-compose.yml, on loopback only.
const devHasuraAddr = "127.0.0.1:8080"

// startDevGraphQL listens on addr and serves the stand-in; baseURL and secret reach the service.
func startDevGraphQL(ctx context.Context, addr, dbURL, metadataDir, baseURL, secret string, getenv func(string) string, log zerolog.Logger) (*devGraphQL, error) {
	jwtRaw := getenv("HASURA_GRAPHQL_JWT_SECRET")
	if jwtRaw == "" {
		jwtRaw = devJWTSecret
	}
	jwt, err := parseJWTSecret(jwtRaw)
	if err != nil {
		return nil, err
	}
	admin := getenv("HASURA_GRAPHQL_ADMIN_SECRET")
	if admin == "" {
		admin = devAdminSecret
	}
	meta, err := hasuratest.Load(metadataDir)
	if err != nil {
		return nil, fmt.Errorf("hasura metadata %s: %w", metadataDir, err)
	}
	pool, err := devPool(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	cat, err := hasuratest.LoadDBCatalog(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	client := hasuratest.NewClient(meta, map[string]string{"TENANTKIT_URL": baseURL, "TENANTKIT_SECRET": secret,
		"TENANTKIT_GRAPHQL_URL": baseURL + "/graphql"})
	d := &devGraphQL{meta: meta, cat: cat, client: client, jwt: jwt.auth(), adminSecret: admin, pool: pool, log: log,
		schemas: map[string]*gqlast.Schema{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("stand-in for Hasura: listen on %s (DEV_HASURA_ADDR): %w", addr, err)
	}
	d.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/graphql", d.graphql)
	mux.HandleFunc("POST /dev/users", d.users)
	d.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.server.Serve(ln) }()
	return d, nil
}

// URL is the stand-in's base URL.
func (d *devGraphQL) URL() string { return "http://" + d.ln.Addr().String() }

func (d *devGraphQL) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = d.server.Shutdown(ctx)
	d.pool.Close()
}

// gqlError is one entry of a GraphQL errors list, in Hasura's shape.
type gqlError struct {
	Message    string         `json:"message"`
	Extensions map[string]any `json:"extensions"`
}

func hasuraGQLError(code, path, format string, args ...any) gqlError {
	return gqlError{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code, "path": path}}
}

func writeGraphQL(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrors(w http.ResponseWriter, errs ...gqlError) {
	writeGraphQL(w, map[string]any{"errors": errs})
}

// session authenticates the request as Hasura does: the admin secret (then the session comes from
// the X-Hasura-* headers), else the JWT in Authorization: Bearer.
func (d *devGraphQL) session(r *http.Request) (map[string]string, *gqlError) {
	if s := r.Header.Get("X-Hasura-Admin-Secret"); s != "" {
		if s != d.adminSecret {
			e := hasuraGQLError("access-denied", "$", "invalid x-hasura-admin-secret/x-hasura-access-key")
			return nil, &e
		}
		session := map[string]string{}
		for k, v := range r.Header {
			if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-hasura-") && lk != "x-hasura-admin-secret" {
				session[lk] = v[0]
			}
		}
		if session["x-hasura-role"] == "" {
			session["x-hasura-role"] = "admin"
		}
		return session, nil
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		e := hasuraGQLError("invalid-headers", "$", "Missing 'Authorization' or 'Cookie' header in JWT authentication mode")
		return nil, &e
	}
	session, err := d.jwt.Session(r.Context(), r.Header)
	if err != nil {
		// Hasura's own code for each refusal (hasuratest.JWTError): invalid-jwt, invalid-headers,
		// jwt-invalid-claims, jwt-missing-role-claims, access-denied.
		code, msg := "invalid-jwt", err.Error()
		var je *hasuratest.JWTError
		if errors.As(err, &je) {
			code, msg = je.Code, je.Message
		}
		e := hasuraGQLError(code, "$", "%s", msg)
		return nil, &e
	}
	return session, nil
}

func (d *devGraphQL) schema(role string) (*gqlast.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.schemas[role]; s != nil {
		return s, nil
	}
	s, err := d.meta.Schema(role, d.cat)
	if err != nil {
		return nil, err
	}
	d.schemas[role] = s
	return s, nil
}

func (d *devGraphQL) graphql(w http.ResponseWriter, r *http.Request) {
	session, authErr := d.session(r)
	if authErr != nil {
		writeErrors(w, *authErr)
		return
	}
	role := session["x-hasura-role"]
	var req struct {
		Query         string         `json:"query"`
		Variables     map[string]any `json:"variables"`
		OperationName string         `json:"operationName"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&req); err != nil {
		writeErrors(w, hasuraGQLError("invalid-json", "$", "the body is not a GraphQL request: %v", err))
		return
	}
	if role == "admin" {
		writeErrors(w, hasuraGQLError("not-supported", "$", "tenantkit dev's stand-in for Hasura serves the roles of the metadata's permissions, not admin: send X-Hasura-Role with the admin secret, or a token from `tenantkit dev token`"))
		return
	}
	schema, err := d.schema(role)
	if err != nil {
		writeErrors(w, hasuraGQLError("unexpected", "$", "the schema of role %s: %v", role, err))
		return
	}
	doc, errs := gqlparser.LoadQueryWithRules(schema, req.Query, nil)
	if len(errs) > 0 {
		var out []gqlError
		for _, e := range errs {
			out = append(out, hasuraGQLError("validation-failed", "$", "%s", e.Message))
		}
		writeErrors(w, out...)
		return
	}
	op := doc.Operations.ForName(req.OperationName)
	if op == nil {
		writeErrors(w, hasuraGQLError("validation-failed", "$", "no operation %q in the query", req.OperationName))
		return
	}
	if op.Operation == gqlast.Subscription {
		writeErrors(w, hasuraGQLError("not-supported", "$", "tenantkit dev's stand-in for Hasura does not serve subscriptions"))
		return
	}
	vars, err := validator.VariableValues(schema, op, req.Variables)
	if err != nil {
		writeErrors(w, hasuraGQLError("validation-failed", "$", "%v", err))
		return
	}
	data, e := d.execute(r.Context(), doc, op, vars, session)
	if e != nil {
		writeErrors(w, *e)
		return
	}
	writeGraphQL(w, map[string]any{"data": data})
}

// execute answers the operation's root fields in order: actions one by one, the remote schema's
// fields in one request per remote schema.
func (d *devGraphQL) execute(ctx context.Context, doc *gqlast.QueryDocument, op *gqlast.OperationDefinition,
	vars map[string]any, session map[string]string) (*orderedObject, *gqlError) {
	fields := collectFields(op.SelectionSet, "", doc, vars)
	root := "query_root"
	if op.Operation == gqlast.Mutation {
		root = "mutation_root"
	}
	role := session["x-hasura-role"]
	remoteOf := map[*gqlast.Field]string{}
	for _, f := range fields {
		if f.Name == "__typename" {
			continue
		}
		if a := d.meta.Action(f.Name); a != nil && slices.Contains(a.Roles, role) {
			continue
		}
		found := false
		for _, rs := range d.meta.RemoteSchemas {
			if s, ok := rs.Permissions[role]; ok && remoteHas(s, op.Operation, f.Name) {
				remoteOf[f] = rs.Name
				found = true
				break
			}
		}
		if !found {
			e := hasuraGQLError("not-supported", "$.selectionSet."+f.Alias,
				"field %q is served by Hasura itself (tables are not emulated by tenantkit dev: run the compose stack for them); tenantkit dev answers actions and the remote schema only", f.Name)
			return nil, &e
		}
	}
	results := map[*gqlast.Field]any{}
	// Remote fields: one request per remote schema, as Hasura batches them.
	byRemote := map[string][]*gqlast.Field{}
	for _, f := range fields {
		if name, ok := remoteOf[f]; ok {
			byRemote[name] = append(byRemote[name], f)
		}
	}
	remoteData := map[string]map[string]json.RawMessage{}
	for name, fs := range byRemote {
		query, used := remoteQuery(doc, op, fs)
		sub := map[string]any{}
		for _, v := range used {
			if val, ok := vars[v]; ok {
				sub[v] = val
			}
		}
		resp, err := d.client.RemoteSchema(ctx, name, query, sub, session)
		if err != nil {
			e := hasuraGQLError("unexpected", "$", "remote schema %s: %v", name, err)
			return nil, &e
		}
		var out struct {
			Data   map[string]json.RawMessage `json:"data"`
			Errors []gqlError                 `json:"errors"`
		}
		if err := json.Unmarshal(resp.Body, &out); err != nil {
			e := hasuraGQLError("unexpected", "$", "remote schema %s answered %d: %s", name, resp.Status, resp.Body)
			return nil, &e
		}
		if len(out.Errors) > 0 {
			return nil, &out.Errors[0]
		}
		remoteData[name] = out.Data
	}
	data := &orderedObject{}
	for _, f := range fields {
		switch {
		case f.Name == "__typename":
			results[f] = root
		case remoteOf[f] != "":
			results[f] = remoteData[remoteOf[f]][f.Alias]
		default:
			v, e := d.action(ctx, f, vars, session)
			if e != nil {
				return nil, e
			}
			results[f] = v
		}
		data.add(f.Alias, results[f])
	}
	return data, nil
}

// action calls one action as Hasura does and shapes its output by the field's selection.
func (d *devGraphQL) action(ctx context.Context, f *gqlast.Field, vars map[string]any, session map[string]string) (any, *gqlError) {
	resp, err := d.client.Action(ctx, f.Name, f.ArgumentMap(vars), session)
	if err != nil {
		e := hasuraGQLError("validation-failed", "$.selectionSet."+f.Alias, "%v", err)
		return nil, &e
	}
	if resp.HasuraError != nil {
		e := hasuraGQLError("unexpected", "$", "internal error (the action's answer breaks its contract: %v)", resp.HasuraError)
		return nil, &e
	}
	if resp.Status >= 400 {
		ae, err := resp.ActionError()
		if err != nil {
			e := hasuraGQLError("unexpected", "$", "internal error")
			return nil, &e
		}
		ext := map[string]any{}
		for k, v := range ae.Extensions {
			ext[k] = v
		}
		ext["path"] = "$"
		if _, ok := ext["code"]; !ok {
			ext["code"] = "unexpected"
		}
		return nil, &gqlError{Message: ae.Message, Extensions: ext}
	}
	dec := json.NewDecoder(bytes.NewReader(resp.Body))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		e := hasuraGQLError("unexpected", "$", "internal error")
		return nil, &e
	}
	return project(f.SelectionSet, out, f.Definition.Type.Name(), nil, vars), nil
}

// project keeps of an action's output what the selection asks for, under its aliases.
func project(sel gqlast.SelectionSet, v any, typeName string, doc *gqlast.QueryDocument, vars map[string]any) any {
	switch v := v.(type) {
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			out[i] = project(sel, item, typeName, doc, vars)
		}
		return out
	case map[string]any:
		if len(sel) == 0 {
			return v
		}
		obj := &orderedObject{}
		for _, f := range collectFields(sel, typeName, doc, vars) {
			if f.Name == "__typename" {
				obj.add(f.Alias, typeName)
				continue
			}
			obj.add(f.Alias, project(f.SelectionSet, v[f.Name], f.Definition.Type.Name(), doc, vars))
		}
		return obj
	}
	return v
}

// collectFields flattens a selection set's fragments (those that apply to typeName, or all when
// typeName is "") and drops what @skip / @include leave out.
func collectFields(sel gqlast.SelectionSet, typeName string, doc *gqlast.QueryDocument, vars map[string]any) []*gqlast.Field {
	var out []*gqlast.Field
	for _, s := range sel {
		switch s := s.(type) {
		case *gqlast.Field:
			if included(s.Directives, vars) {
				out = append(out, s)
			}
		case *gqlast.InlineFragment:
			if included(s.Directives, vars) && (s.TypeCondition == "" || typeName == "" || s.TypeCondition == typeName) {
				out = append(out, collectFields(s.SelectionSet, typeName, doc, vars)...)
			}
		case *gqlast.FragmentSpread:
			if !included(s.Directives, vars) {
				continue
			}
			def := s.Definition
			if def == nil && doc != nil {
				def = doc.Fragments.ForName(s.Name)
			}
			if def != nil && (typeName == "" || def.TypeCondition == typeName) {
				out = append(out, collectFields(def.SelectionSet, typeName, doc, vars)...)
			}
		}
	}
	return out
}

func included(dirs gqlast.DirectiveList, vars map[string]any) bool {
	if d := dirs.ForName("skip"); d != nil && d.ArgumentMap(vars)["if"] == true {
		return false
	}
	if d := dirs.ForName("include"); d != nil && d.ArgumentMap(vars)["if"] == false {
		return false
	}
	return true
}

// remoteHas reports whether a remote schema's SDL for a role has a root field.
func remoteHas(sdl string, op gqlast.Operation, field string) bool {
	s, err := gqlparser.LoadSchema(&gqlast.Source{Input: sdl})
	if err != nil {
		return false
	}
	root := s.Query
	if op == gqlast.Mutation {
		root = s.Mutation
	}
	return root != nil && root.Fields.ForName(field) != nil
}

// remoteQuery renders the part of the operation that goes to a remote schema: the given root
// fields, the variables and fragments they use. It returns the text and the variables' names.
func remoteQuery(doc *gqlast.QueryDocument, op *gqlast.OperationDefinition, fields []*gqlast.Field) (string, []string) {
	usedVars := map[string]bool{}
	usedFrags := map[string]bool{}
	var walkValue func(v *gqlast.Value)
	walkValue = func(v *gqlast.Value) {
		if v == nil {
			return
		}
		if v.Kind == gqlast.Variable {
			usedVars[v.Raw] = true
		}
		for _, c := range v.Children {
			walkValue(c.Value)
		}
	}
	var walk func(sel gqlast.SelectionSet)
	walkDirs := func(dirs gqlast.DirectiveList) {
		for _, d := range dirs {
			for _, a := range d.Arguments {
				walkValue(a.Value)
			}
		}
	}
	walk = func(sel gqlast.SelectionSet) {
		for _, s := range sel {
			switch s := s.(type) {
			case *gqlast.Field:
				for _, a := range s.Arguments {
					walkValue(a.Value)
				}
				walkDirs(s.Directives)
				walk(s.SelectionSet)
			case *gqlast.InlineFragment:
				walkDirs(s.Directives)
				walk(s.SelectionSet)
			case *gqlast.FragmentSpread:
				walkDirs(s.Directives)
				if !usedFrags[s.Name] {
					usedFrags[s.Name] = true
					if def := doc.Fragments.ForName(s.Name); def != nil {
						walk(def.SelectionSet)
					}
				}
			}
		}
	}
	sel := make(gqlast.SelectionSet, len(fields))
	for i, f := range fields {
		sel[i] = f
	}
	walk(sel)
	out := &gqlast.QueryDocument{}
	sub := &gqlast.OperationDefinition{Operation: op.Operation, Name: op.Name, SelectionSet: sel}
	var names []string
	for _, v := range op.VariableDefinitions {
		if usedVars[v.Variable] {
			sub.VariableDefinitions = append(sub.VariableDefinitions, v)
			names = append(names, v.Variable)
		}
	}
	out.Operations = gqlast.OperationList{sub}
	for _, f := range doc.Fragments {
		if usedFrags[f.Name] {
			out.Fragments = append(out.Fragments, f)
		}
	}
	var b strings.Builder
	formatter.NewFormatter(&b).FormatQueryDocument(out)
	return b.String(), names
}

// orderedObject is a JSON object whose keys keep the order of the selection.
type orderedObject struct {
	keys []string
	vals []any
}

func (o *orderedObject) add(k string, v any) { o.keys, o.vals = append(o.keys, k), append(o.vals, v) }

func (o *orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(o.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// users creates a user with a verified email, or returns the one that has the email: the stand-in
// for signing up (hasura-auth in the compose stack). Admin secret only.
func (d *devGraphQL) users(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-Hasura-Admin-Secret") != d.adminSecret {
		w.WriteHeader(http.StatusUnauthorized)
		writeGraphQL(w, map[string]string{"message": "X-Hasura-Admin-Secret is missing or wrong"})
		return
	}
	var in struct {
		Email      string `json:"email"`
		Unverified bool   `json:"unverified"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil || in.Email == "" {
		w.WriteHeader(http.StatusBadRequest)
		writeGraphQL(w, map[string]string{"message": `the body must be {"email": "…"}`})
		return
	}
	if a, err := mail.ParseAddress(in.Email); err != nil || a.Name != "" || a.Address != in.Email {
		w.WriteHeader(http.StatusBadRequest)
		writeGraphQL(w, map[string]string{"message": "not a plain email address"})
		return
	}
	var id string
	err := d.pool.QueryRow(r.Context(), `INSERT INTO auth.users (email, email_verified) VALUES ($1, $2)
		ON CONFLICT (email) DO UPDATE SET email_verified = EXCLUDED.email_verified RETURNING id::text`,
		in.Email, !in.Unverified).Scan(&id)
	if err != nil {
		d.log.Error().Err(err).Msg("dev: create user")
		w.WriteHeader(http.StatusInternalServerError)
		writeGraphQL(w, map[string]string{"message": "could not create the user (see the log)"})
		return
	}
	d.log.Info().Str("user", id).Str("email", in.Email).Bool("email_verified", !in.Unverified).Msg("dev: user ready")
	writeGraphQL(w, map[string]string{"id": id, "email": in.Email})
}

// errNoDev is returned by the dev client commands when nothing answers at the stand-in's address.
var errNoDev = errors.New("is `tenantkit dev` (make run) running? Its stand-in for Hasura did not answer")
