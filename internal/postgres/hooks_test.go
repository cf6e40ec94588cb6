package postgres

import "time"

// SetUsageBoundaryWindow makes recordUsage treat every moment within window of a month's start or
// end as near it (claiming keys in tenantkit.usage_boundary_keys), so that tests reach both sides
// of the rule whatever today's date.
func SetUsageBoundaryWindow(db *DB, window time.Duration) { db.boundaryWindow = window }

// SetMembershipHook makes every membership statement call f, with its group's size, after it has
// answered and before its reads are answered.
func SetMembershipHook(db *DB, f func(group int)) { db.members.afterRead = f }

// SetMembershipGroupMax bounds db's membership groups to max reads instead of membershipGroupMax.
func SetMembershipGroupMax(db *DB, max int) { db.members.groupMax = max }
