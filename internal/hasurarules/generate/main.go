// Command generate writes the generated Hasura table metadata (see package hasurarules) into the
// directory given as its argument.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tenantkit/tenantkit/internal/hasurarules"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: generate DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	for _, f := range hasurarules.Files() {
		out, err := hasurarules.Render(dir, f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, f.Name), out, 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "generate:", err)
			os.Exit(1)
		}
	}
}
