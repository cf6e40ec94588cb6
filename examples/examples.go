// Package examples holds the GraphQL operations a frontend (or, under service/, a trusted backend)
// sends through Hasura, one per file; examples_test.go checks each against the schema Hasura would
// expose to the role from hasura/metadata and the migrated database. tenantkit smoke
// (internal/smoke) sends these same operations.
package examples

import (
	"embed"
	"fmt"
)

//go:embed *.graphql service/*.graphql
var files embed.FS

// Operation returns the text of examples/<name>.graphql ("createTenant"; "service/recordUsage" for
// a trusted backend's). It panics when there is no such file: callers name files of this
// directory, so a missing one is a mistake of the program's, found when it starts.
func Operation(name string) string {
	b, err := files.ReadFile(name + ".graphql")
	if err != nil {
		panic(fmt.Sprintf("examples: no operation %s: %v", name, err))
	}
	return string(b)
}
