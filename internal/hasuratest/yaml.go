package hasuratest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// includeTag is the Hasura CLI's include directive. The CLI accepts it both as a YAML tag
// (tables: !include "default/tables/tables.yaml") and, as `hasura metadata export` writes it, as a
// plain string (tables: "!include default/tables/tables.yaml"); the path is relative to the
// directory of the file that contains the directive, and may itself be quoted
// (cli/internal/metadataobject/sources/yaml.go, resolveTags).
const includeTag = "!include"

// readYAML parses one YAML file into plain Go values (map[string]any, []any, string, numbers,
// bool, nil). A `!include x` tag becomes the string "!include x", the form resolveIncludes
// understands; other tags are decoded as their untagged value.
func readYAML(path string) (any, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(file.Docs) == 0 || file.Docs[0].Body == nil {
		return nil, nil
	}
	if len(file.Docs) > 1 {
		return nil, fmt.Errorf("%s: %d YAML documents, want one", path, len(file.Docs))
	}
	v, err := nodeValue(file.Docs[0].Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

func nodeValue(n ast.Node) (any, error) {
	switch n := n.(type) {
	case nil:
		return nil, nil
	case *ast.DocumentNode:
		return nodeValue(n.Body)
	case *ast.MappingNode:
		m := make(map[string]any, len(n.Values))
		for _, kv := range n.Values {
			if err := mappingEntry(m, kv); err != nil {
				return nil, err
			}
		}
		return m, nil
	case *ast.MappingValueNode:
		m := map[string]any{}
		if err := mappingEntry(m, n); err != nil {
			return nil, err
		}
		return m, nil
	case *ast.SequenceNode:
		s := make([]any, 0, len(n.Values))
		for _, item := range n.Values {
			v, err := nodeValue(item)
			if err != nil {
				return nil, err
			}
			s = append(s, v)
		}
		return s, nil
	case *ast.AnchorNode:
		return nodeValue(n.Value)
	case *ast.AliasNode:
		return nil, fmt.Errorf("line %d: YAML aliases are not supported in Hasura metadata", n.GetToken().Position.Line)
	case *ast.TagNode:
		if n.Start != nil && n.Start.Value == includeTag {
			var p string
			if err := yaml.NodeToValue(n.Value, &p); err != nil {
				return nil, fmt.Errorf("line %d: %s needs a file name: %w", n.GetToken().Position.Line, includeTag, err)
			}
			return includeTag + " " + p, nil
		}
		switch n.Value.(type) {
		case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
			return nodeValue(n.Value)
		}
		var v any
		if err := yaml.NodeToValue(n, &v); err != nil {
			return nil, err
		}
		return v, nil
	default:
		var v any
		if err := yaml.NodeToValue(n, &v); err != nil {
			return nil, err
		}
		return v, nil
	}
}

func mappingEntry(m map[string]any, kv *ast.MappingValueNode) error {
	var key any
	if err := yaml.NodeToValue(kv.Key, &key); err != nil {
		return err
	}
	k := fmt.Sprint(key)
	if _, dup := m[k]; dup {
		return fmt.Errorf("line %d: duplicate key %q", kv.Key.GetToken().Position.Line, k)
	}
	v, err := nodeValue(kv.Value)
	if err != nil {
		return err
	}
	m[k] = v
	return nil
}

// includePath reports whether s is an include directive and, if so, the path it names.
func includePath(s string) (string, bool) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), includeTag)
	if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '\t') {
		return "", false
	}
	p := strings.Trim(strings.TrimSpace(rest), `"'`)
	return p, p != ""
}

// loadYAML reads path and replaces every include directive in it, recursively, with the content
// of the file it names. files collects every file read, for error messages and env scanning.
func loadYAML(path string, files map[string]any, depth int) (any, error) {
	if depth > 16 {
		return nil, fmt.Errorf("%s: includes nested too deeply (a cycle?)", path)
	}
	v, err := readYAML(path)
	if err != nil {
		return nil, err
	}
	files[path] = v
	return resolveIncludes(v, filepath.Dir(path), files, depth)
}

func resolveIncludes(v any, dir string, files map[string]any, depth int) (any, error) {
	switch v := v.(type) {
	case string:
		if p, ok := includePath(v); ok {
			return loadYAML(filepath.Join(dir, p), files, depth+1)
		}
		return v, nil
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			r, err := resolveIncludes(item, dir, files, depth)
			if err != nil {
				return nil, err
			}
			out[i] = r
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, item := range v {
			r, err := resolveIncludes(item, dir, files, depth)
			if err != nil {
				return nil, err
			}
			out[k] = r
		}
		return out, nil
	default:
		return v, nil
	}
}
