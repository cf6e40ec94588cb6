package hasurabool

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// ForeignKey is a foreign key constraint: Columns of Schema.Table reference RefColumns of
// RefSchema.RefTable, position by position.
type ForeignKey struct {
	Name                string
	Schema, Table       string
	Columns             []string
	RefSchema, RefTable string
	RefColumns          []string
}

// Catalog describes the database the expressions are compiled for.
type Catalog interface {
	// ColumnType returns the SQL type of schema.table.column, spelt so that it can follow "::"
	// (as format_type prints it: "uuid", "text", "jsonb", "integer", "public.my_enum", "text[]"),
	// or "" and a nil error when the table has no such column.
	ColumnType(schema, table, column string) (string, error)
	// ForeignKeys returns the foreign key constraints defined on schema.table.
	ForeignKeys(schema, table string) ([]ForeignKey, error)
}

// CatalogQuerier is what LoadCatalog needs: *pgx.Conn, *pgxpool.Pool and pgx.Tx all fit.
type CatalogQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// PGCatalog is a Catalog snapshot of a PostgreSQL database's columns and foreign keys.
type PGCatalog struct {
	columns map[[3]string]string
	fks     map[Table][]ForeignKey
}

// LoadCatalog reads the columns (of tables, views, materialized views and foreign tables) and the
// foreign keys of every schema except pg_catalog, information_schema and pg_toast. Column types
// are spelt as format_type prints them for built-in types ("uuid", "character varying(20)",
// "text[]") and schema-qualified otherwise ("public.tenant_role", "public.tenant_role[]"), so
// that the casts SQL writes do not depend on the search_path.
func LoadCatalog(ctx context.Context, q CatalogQuerier) (*PGCatalog, error) {
	cat := &PGCatalog{columns: map[[3]string]string{}, fks: map[Table][]ForeignKey{}}
	rows, err := q.Query(ctx, `
		SELECT n.nspname::text, c.relname::text, a.attname::text,
		  CASE WHEN bn.nspname = 'pg_catalog' THEN format_type(a.atttypid, a.atttypmod)
		       ELSE quote_ident(bn.nspname) || '.' || quote_ident(bt.typname) || CASE WHEN bt.oid <> t.oid THEN '[]' ELSE '' END
		  END
		FROM pg_catalog.pg_attribute a
		JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
		JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
		JOIN pg_catalog.pg_namespace bn ON bn.oid = bt.typnamespace
		WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'`)
	if err != nil {
		return nil, fmt.Errorf("hasurabool: read columns: %w", err)
	}
	var s, t, col, typ string
	if _, err := pgx.ForEachRow(rows, []any{&s, &t, &col, &typ}, func() error {
		cat.columns[[3]string{s, t, col}] = typ
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasurabool: read columns: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT con.conname::text, n.nspname::text, c.relname::text, rn.nspname::text, rc.relname::text,
		  ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
		        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
		  ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
		        JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
		FROM pg_catalog.pg_constraint con
		JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid
		JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
		WHERE con.contype = 'f'
		ORDER BY n.nspname, c.relname, con.conname`)
	if err != nil {
		return nil, fmt.Errorf("hasurabool: read foreign keys: %w", err)
	}
	var fk ForeignKey
	if _, err := pgx.ForEachRow(rows, []any{&fk.Name, &fk.Schema, &fk.Table, &fk.RefSchema, &fk.RefTable, &fk.Columns, &fk.RefColumns}, func() error {
		k := Table{Schema: fk.Schema, Name: fk.Table}
		cat.fks[k] = append(cat.fks[k], ForeignKey{
			Name: fk.Name, Schema: fk.Schema, Table: fk.Table, Columns: slices.Clone(fk.Columns),
			RefSchema: fk.RefSchema, RefTable: fk.RefTable, RefColumns: slices.Clone(fk.RefColumns),
		})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("hasurabool: read foreign keys: %w", err)
	}
	return cat, nil
}

// ColumnType implements Catalog.
func (c *PGCatalog) ColumnType(schema, table, column string) (string, error) {
	return c.columns[[3]string{schema, table, column}], nil
}

// ForeignKeys implements Catalog.
func (c *PGCatalog) ForeignKeys(schema, table string) ([]ForeignKey, error) {
	return slices.Clone(c.fks[Table{Schema: schema, Name: table}]), nil
}
