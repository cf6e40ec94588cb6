// Package hasuratest drives tenantkit the way Hasura (graphql-engine v2) does, reading everything
// it needs from a Hasura metadata directory (CLI config v3 layout), so that a test fails when a
// metadata entry is wrong: an action whose handler path, argument names or permissions do not
// match the service, an event trigger pointing at the wrong webhook, a header the service needs
// but the metadata does not send.
//
//	meta, err := hasuratest.Load("../../hasura/metadata")
//	c := hasuratest.NewClient(meta, map[string]string{"TENANTKIT_URL": srv.URL, "TENANTKIT_SECRET": "s"})
//	resp, err := c.Action(ctx, "createTenant", map[string]any{"name": "Acme", "slug": "acme"},
//		map[string]string{"x-hasura-user-id": uid})
//
// # What Hasura does, and where that was checked
//
// Actions (docs: https://hasura.io/docs/latest/actions/action-handlers; source:
// server/src-lib/Hasura/GraphQL/Execute/Action.hs callWebhook and
// server/src-lib/Hasura/GraphQL/Execute/Action/Types.hs ActionWebhookPayload, hasura/graphql-engine):
//   - Hasura POSTs {"action":{"name"},"input","session_variables","request_query"} with
//     Content-Type: application/json plus the configured headers (value or value_from_env,
//     Hasura.RQL.DDL.Headers.makeHeadersFromConf). request_query is the client's GraphQL text for
//     synchronous actions and null for asynchronous ones (the field is a Maybe, encoded without
//     omitNothingFields).
//   - session_variables keys are lower-cased (Hasura.Session.sessionVariableToText; the docs say
//     "All session_variables in the request payload have lowercase keys") and x-hasura-role is
//     always present: mkUserInfo inserts the resolved role and deletes the admin secret.
//   - input holds the arguments the client gave; omitted optional arguments are absent, not null
//     (Hasura.GraphQL.Schema.Action.actionInputArguments, catMaybes). Action arguments and
//     custom input fields have no default values in Hasura's metadata model.
//   - forward_client_headers forwards the client's headers minus a fixed ignore list and minus
//     x-hasura-*, plus X-Forwarded-Host/-User-Agent/-Origin (Hasura.Server.Utils
//     mkClientHeadersForward). Hasura merges them with HashMap.fromList (conf <> client), so for
//     a name present in both the client's value wins, despite the comment there saying the
//     opposite. Keep forward_client_headers false on actions that rely on a secret header.
//   - Response: 2xx must fit the output type (no undeclared fields, non-null fields present and
//     not null, object vs list); 4xx must be {"message": string, "extensions"?: object} (a
//     top-level "code" is the legacy form); anything else becomes "internal error".
//   - Metadata: actions.yaml holds name, definition {kind, handler, headers,
//     forward_client_headers, timeout, request_transform…}, permissions [{role}], comment and
//     custom_types (names only); `hasura metadata export` strips arguments, type and
//     output_type from actions.yaml (cli/internal/metadataobject/actions/types/types.go
//     SetExportDefault), so the signature lives in actions.graphql as fields of type Query /
//     type Mutation. Handler URLs are templates: {{VAR}} anywhere is the environment variable VAR
//     (server/src-lib/Data/URL/Template.hs; error "Value for environment variables not found").
//
// Event triggers (docs: https://hasura.io/docs/latest/event-triggers/payload,
// https://hasura.io/docs/latest/api-reference/schema-metadata-api/event-triggers; source:
// server/src-lib/Hasura/Eventing/EventTrigger.hs EventPayload/createEventPayload,
// server/src-lib/Hasura/Backends/Postgres/DDL/EventTrigger.hs mkTriggerFunctionQ,
// server/src-rsr/trigger.sql.shakespeare, the hdb_catalog.insert_event_log function):
//   - Payload {"created_at","delivery_info":{"current_retry","max_retries"},"event":{"data":
//     {"new","old"},"op","session_variables","trace_context"},"id","table":{"name","schema"},
//     "trigger":{"name"}}; max_retries is retry_conf.num_retries, current_retry the number of
//     earlier tries; INSERT has old null, DELETE new null, MANUAL old null and new the row.
//   - session_variables is the hasura.user setting of the writing transaction, or null when it
//     was not set; trace_context is hasura.tracecontext or null.
//   - created_at is a timestamp without zone rendered as aeson LocalTime (no "Z") in current
//     source; the docs' example shows the older UTCTime form "2018-09-05T07:14:21.601701Z".
//   - An operation spec has "columns" (the columns the trigger LISTENS to) and "payload" (the
//     columns DELIVERED, default all). columns: [a, b] on update does not filter data.old/new;
//     it makes Hasura skip updates in which neither a nor b changed. The comparison is
//     _old <> _new on record variables, i.e. PostgreSQL composite comparison, where NULL equals
//     NULL and differs from a value (checked against PostgreSQL 15 while writing this).
//   - Delivery: POST with Content-Type: application/json and User-Agent
//     hasura-graphql-engine/<version> (Hasura.HTTP.addDefaultHeaders) plus the configured
//     headers; webhook is a URL template like an action handler, webhook_from_env names a
//     variable holding the whole URL.
//   - Client.Event builds that payload from rows the caller passes. InstallEventCatalog and
//     InstallEventTriggers (eventsql.go) install Hasura's own SQL instead — the event_log
//     catalog and one PL/pgSQL trigger per operation, running as the writing role — and
//     Client.DeliverEvents / RunEventDelivery (eventlog.go) play Hasura's event processor on it:
//     claim, POST, retry, record. postgres.EventTriggerGrants lists what a writing role needs.
//
// Remote schemas (docs: https://hasura.io/docs/latest/remote-schemas/auth/remote-schema-forward-auth;
// source: server/src-lib/Hasura/GraphQL/RemoteServer.hs execRemoteGQ): Hasura sends the resolved
// session variables as headers (x-hasura-role, x-hasura-user-id, …) next to the configured
// headers; on a name clash configuration headers win over session variables, which win over
// forwarded client headers. Subscriptions are never sent to a remote schema.
//
// Metadata directory: databases/databases.yaml refers to its table lists with "!include path"
// strings (or !include tags), each relative to the including file's directory
// (cli/internal/metadataobject/sources/yaml.go resolveTags).
//
// GraphQL schema (schema.go): Metadata.Schema builds the schema Hasura exposes to a role — tracked
// tables' permitted columns, relationships and mutations, actions, the remote schema's permitted
// SDL — from the metadata and the database's catalog (LoadDBCatalog), for validating the GraphQL a
// frontend sends (examples/) and for tenantkit dev's stand-in for Hasura's GraphQL endpoint.
//
// Permission rules (permission.go): Metadata.Rules lists what a role may do on each tracked table,
// and Metadata.SQL compiles a rule's filter or check into a PostgreSQL predicate with the compiler
// of internal/hasurabool, over the metadata's tables and relationships.
//
// Not emulated: request/response transforms (calls to such actions and triggers are refused),
// inherited roles, remote schema permissions, async action polling, Hasura's re-rendering of
// remote schema queries.
package hasuratest
