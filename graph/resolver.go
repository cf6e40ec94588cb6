// Package graph is tenantkit's remote schema for Hasura: gqlgen's generated executor plus thin
// resolvers over the domain services. Regenerate with `make generate`. A resolver reads each id
// argument with tenantkit.ParseID before anything else, so the services and the answers see ids
// in their canonical spelling only.
package graph

import (
	"github.com/tenantkit/tenantkit"
	"github.com/tenantkit/tenantkit/internal/apikey"
	"github.com/tenantkit/tenantkit/internal/billing"
	"github.com/tenantkit/tenantkit/internal/team"
)

//go:generate go tool gqlgen generate

// Resolver is the graph's only injection point: the domain services it reads from.
type Resolver struct {
	Plans   tenantkit.PlanService
	Team    *team.Service
	Billing *billing.Service
	Keys    *apikey.Service
	Domains *team.Domains
}
