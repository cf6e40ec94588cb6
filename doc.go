// Package tenantkit is the domain of tenantkit: the error type with its stable codes, the caller's
// session, tenant roles and the permission vocabulary. It imports no adapter; the Postgres, HTTP
// (Hasura actions and events), GraphQL and Stripe packages all import it.
package tenantkit
