// Command generate writes the generated Hasura table metadata (see package hasurarules) into the
// tables directory given as its first argument, for the built-in tables and those listed in the
// spec file given as its second.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: generate TABLES_DIR SPEC_FILE")
		os.Exit(2)
	}
	dir := os.Args[1]
	files, err := hasurarules.AllFiles(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "generate:", err)
		os.Exit(1)
	}
	for _, f := range files {
		out, err := hasurarules.Render(dir, f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f.Name), out, 0o644)
		}
		if err == nil {
			err = hasurarules.Include(dir, f.Name)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "generate:", err)
			os.Exit(1)
		}
	}
}
