// What the database holds, read from pg_catalog: tables with their columns, constraints and
// indexes, sizes and row counts. The seed's validation queries joined information_schema on
// constraint_name alone, which mixes up same-named constraints of different tables; this does not.

import { type Db, quoteIdent } from "./db.ts";

export interface ColumnInfo {
	name: string;
	type: string;
	nullable: boolean;
	default: string | null;
}

export interface ConstraintInfo {
	name: string;
	type: "primary key" | "foreign key" | "unique" | "check" | "exclusion";
	definition: string;
	validated: boolean;
}

export interface IndexInfo {
	name: string;
	definition: string;
	valid: boolean;
}

export interface TableInfo {
	name: string;
	columns: ColumnInfo[];
	constraints: ConstraintInfo[];
	indexes: IndexInfo[];
	estimatedRows: number;
	totalBytes: number;
}

const CONTYPE: Record<string, ConstraintInfo["type"]> = {
	p: "primary key",
	f: "foreign key",
	u: "unique",
	c: "check",
	x: "exclusion",
};

export async function describeTables(
	db: Db,
	schema = "public",
): Promise<TableInfo[]> {
	const tables = await db.query<{
		name: string;
		oid: number;
		est: string;
		bytes: string;
	}>(
		`select c.relname as name, c.oid, greatest(c.reltuples, 0)::bigint as est, pg_total_relation_size(c.oid) as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relkind in ('r', 'p')
      order by c.relname`,
		[schema],
	);
	const columns = await db.query<ColumnInfo & { table: string }>(
		`select c.relname as table, a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
            not a.attnotnull as nullable, pg_get_expr(d.adbin, d.adrelid) as default
       from pg_attribute a
       join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
       left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
      where n.nspname = $1 and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped
      order by c.relname, a.attnum`,
		[schema],
	);
	const constraints = await db.query<{
		table: string;
		name: string;
		contype: string;
		definition: string;
		validated: boolean;
	}>(
		`select c.relname as table, k.conname as name, k.contype, pg_get_constraintdef(k.oid) as definition,
            k.convalidated as validated
       from pg_constraint k
       join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1
      order by c.relname, k.contype, k.conname`,
		[schema],
	);
	const indexes = await db.query<{
		table: string;
		name: string;
		definition: string;
		valid: boolean;
	}>(
		`select t.relname as table, i.relname as name, pg_get_indexdef(i.oid) as definition, x.indisvalid as valid
       from pg_index x
       join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid
       join pg_namespace n on n.oid = t.relnamespace
      where n.nspname = $1
      order by t.relname, i.relname`,
		[schema],
	);
	return tables.rows.map((t) => ({
		name: t.name,
		estimatedRows: Number(t.est),
		totalBytes: Number(t.bytes),
		columns: columns.rows
			.filter((c) => c.table === t.name)
			.map(({ table: _t, ...c }) => c),
		constraints: constraints.rows
			.filter((k) => k.table === t.name)
			.map((k) => ({
				name: k.name,
				type: CONTYPE[k.contype] ?? "check",
				definition: k.definition,
				validated: k.validated,
			})),
		indexes: indexes.rows
			.filter((i) => i.table === t.name)
			.map(({ table: _t, ...i }) => i),
	}));
}

/** A table's key in manifests and reports: its name in public, schema.name elsewhere. */
export const tableKey = (schema: string, name: string): string =>
	schema === "public" ? name : `${schema}.${name}`;

const splitKey = (key: string): [string, string] => {
	const dot = key.indexOf(".");
	return dot === -1 ? ["public", key] : [key.slice(0, dot), key.slice(dot + 1)];
};

/**
 * Exact row counts of the tables named by key (estimate: the planner's estimates instead); null for
 * a table that does not exist. Used for backup manifests and restore checks.
 */
export async function countTables(
	db: Db,
	keys: string[],
	opts: { estimate?: boolean; signal?: AbortSignal } = {},
): Promise<Record<string, number | null>> {
	const out: Record<string, number | null> = {};
	for (const key of keys) {
		if (opts.signal?.aborted) throw new Error("aborted");
		const [schema, name] = splitKey(key);
		const rel = `${quoteIdent(schema)}.${quoteIdent(name)}`;
		const { rows } = await db.query<{ ok: boolean }>(
			"select to_regclass($1) is not null as ok",
			[rel],
		);
		if (!rows[0].ok) {
			out[key] = null;
			continue;
		}
		const r = await db.query<{ n: string }>(
			opts.estimate
				? "select greatest(reltuples, 0)::bigint as n from pg_class where oid = to_regclass($1)"
				: `select count(*) as n from ${rel}`,
			opts.estimate ? [rel] : [],
		);
		out[key] = Number(r.rows[0].n);
	}
	return out;
}

export async function databaseSize(db: Db): Promise<number> {
	const { rows } = await db.query<{ bytes: string }>(
		"select pg_database_size(current_database()) as bytes",
	);
	return Number(rows[0].bytes);
}

/** Each column's SQL type as format_type() spells it (e.g. "character varying(16)"), by name. */
export async function columnTypes(
	db: Db,
	schema: string,
	table: string,
): Promise<Map<string, string>> {
	const { rows } = await db.query<{ name: string; type: string }>(
		`select a.attname as name, format_type(a.atttypid, a.atttypmod) as type
       from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped`,
		[`${quoteIdent(schema)}.${quoteIdent(table)}`],
	);
	return new Map(rows.map((r) => [r.name, r.type]));
}
