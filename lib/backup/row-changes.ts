// What changed in the app's tables since a backup, by primary key: rows inserted (in the newer
// state, not in the backup), rows changed (same key, other values), rows deleted. The backup is
// read once (one pg_restore pass) into key -> row hash per table, about 100 bytes a row; the newer
// side, a live database or another archive, streams past it.

import { createHash } from "node:crypto";
import { columnTypes } from "../pg/catalog.ts";
import type { Tool } from "../pg/client-tools.ts";
import { type Db, quoteIdent, quoteLiteral } from "../pg/db.ts";
import type { Connection } from "../pg/target.ts";
import { readArchive, readTables, unescapeField } from "./table-rows.ts";

/** Keys shown per kind of change; the counts are always complete. */
const SAMPLE = 5;

export interface AppTable {
	schema: string;
	table: string;
	key: string[];
	columns: string[];
}

export interface TableChanges {
	schema: string;
	table: string;
	key: string[];
	inserted: number;
	/** null when values could not be compared (a column of the backup is gone). */
	changed: number | null;
	deleted: number;
	samples: { inserted: string[]; changed: string[]; deleted: string[] };
	/** Why the table was not compared (no primary key, created since the backup). */
	skipped?: string;
}

/** Rows to put back: values as text (null for NULL) in `columns` order. */
export interface NewRows {
	schema: string;
	table: string;
	key: string[];
	columns: string[];
	rows: (string | null)[][];
}

/** One table of a backup: its columns, the ones hashed, and key -> row hash ("" once matched). */
interface BackupTable {
	columns: string[];
	hashed: string[];
	rows: Map<string, string>;
}
export type BackupIndex = Map<string, BackupTable>;

const id = (schema: string, table: string) => `${schema}.${table}`;
const hash = (fields: string[]) =>
	createHash("md5").update(fields.join("\t")).digest("base64");
const MATCHED = "";

/** The app's tables with their primary key and columns, in foreign-key order (parents first). */
export async function appTables(
	db: Db,
	schemas: string[],
	exclude: string[] = ["_prisma_migrations"],
): Promise<AppTable[]> {
	const { rows } = await db.query<{
		oid: number;
		schema: string;
		table: string;
		columns: string[];
		key: string[] | null;
		parents: number[];
	}>(
		`select c.oid::int as oid, n.nspname as schema, c.relname as table,
        array(select a.attname::text from pg_attribute a
               where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as columns,
        (select array(select a.attname::text from unnest(i.indkey) with ordinality k(attnum, o)
                       join pg_attribute a on a.attrelid = c.oid and a.attnum = k.attnum order by k.o)
           from pg_index i where i.indrelid = c.oid and i.indisprimary) as key,
        array(select distinct f.confrelid::int from pg_constraint f
               where f.conrelid = c.oid and f.contype = 'f' and f.confrelid <> c.oid) as parents
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = any($1) and c.relkind in ('r', 'p') and not c.relispartition
      order by n.nspname, c.relname`,
		[schemas],
	);
	const byOid = new Map(rows.map((r) => [r.oid, r]));
	const ordered: typeof rows = [];
	const seen = new Set<number>();
	const visit = (r: (typeof rows)[number], path: Set<number>) => {
		if (seen.has(r.oid) || path.has(r.oid)) return;
		path.add(r.oid);
		for (const p of r.parents) {
			const parent = byOid.get(p);
			if (parent) visit(parent, path);
		}
		seen.add(r.oid);
		ordered.push(r);
	};
	for (const r of rows) visit(r, new Set());
	return ordered
		.filter((r) => !exclude.includes(r.table))
		.map((r) => ({
			schema: r.schema,
			table: r.table,
			key: r.key ?? [],
			columns: r.columns,
		}));
}

/**
 * Reads a backup archive once: per table with a primary key, key -> hash of the row's values in
 * the columns the newer side has too (`compareWith`: its columns; no hashes when absent).
 */
export async function indexBackup(
	pgRestore: Tool,
	archive: string,
	tables: AppTable[],
	opts: {
		compareWith?: boolean;
		env?: NodeJS.ProcessEnv;
		signal?: AbortSignal;
	} = {},
): Promise<BackupIndex> {
	const index: BackupIndex = new Map();
	const wanted = new Map(tables.map((t) => [id(t.schema, t.table), t]));
	const schemas = [...new Set(tables.map((t) => t.schema))];
	await readArchive(
		pgRestore,
		archive,
		schemas,
		(schema, table, columns) => {
			const t = wanted.get(id(schema, table));
			const keyAt = t?.key.map((k) => columns.indexOf(k)) ?? [];
			if (!t || !keyAt.length || keyAt.some((i) => i < 0)) return null;
			const have = new Set(t.columns);
			const hashed = opts.compareWith ? columns.filter((c) => have.has(c)) : [];
			const hashAt = hashed.map((c) => columns.indexOf(c));
			const rows = new Map<string, string>();
			index.set(id(schema, table), { columns, hashed, rows });
			return (f) => {
				const key = keyAt.map((i) => f[i]).join("\t");
				rows.set(key, hashAt.length ? hash(hashAt.map((i) => f[i])) : MATCHED);
			};
		},
		opts,
	);
	return index;
}

/** The environment the client tools run with, and the run's Ctrl-C. */
interface ToolRunOptions {
	env?: NodeJS.ProcessEnv;
	signal?: AbortSignal;
}

/** Per table: what a live database gained, changed and lost since the backup that `index` read. */
export async function compareWithDatabase(
	tables: AppTable[],
	index: BackupIndex,
	psql: Tool,
	conn: Connection,
	opts: ToolRunOptions = {},
): Promise<TableChanges[]> {
	const out: TableChanges[] = tables.map((t) => ({
		schema: t.schema,
		table: t.table,
		key: t.key,
		inserted: 0,
		changed: 0,
		deleted: 0,
		samples: { inserted: [], changed: [], deleted: [] },
		skipped: !t.key.length
			? "no primary key"
			: !index.has(id(t.schema, t.table))
				? "created since the backup: the restore drops it with its rows"
				: undefined,
	}));
	const read = out.filter((c) => !c.skipped);
	const backup = read.map(
		(c) => index.get(id(c.schema, c.table)) as BackupTable,
	);
	const keyAt = read.map((c, i) =>
		c.key.map((k) => backup[i].hashed.indexOf(k)),
	);
	const sample = (
		c: TableChanges,
		kind: keyof TableChanges["samples"],
		key: string,
	) => {
		if (c.samples[kind].length < SAMPLE) c.samples[kind].push(key);
	};
	for (const [i, b] of backup.entries())
		if (b.hashed.length !== b.columns.length) read[i].changed = null;
	await readTables(
		psql,
		conn,
		read.map((c, i) => ({ ...c, columns: backup[i].hashed })),
		(i, f) => {
			const c = read[i];
			const b = backup[i];
			const key = keyAt[i].map((k) => f[k]).join("\t");
			const before = b.rows.get(key);
			if (before === undefined) {
				c.inserted++;
				sample(c, "inserted", key);
				return;
			}
			if (before === MATCHED) return;
			if (c.changed !== null && before !== hash(f)) {
				c.changed++;
				sample(c, "changed", key);
			}
			b.rows.set(key, MATCHED);
		},
		opts,
	);
	for (const [i, c] of read.entries())
		for (const [key, h] of backup[i].rows) {
			if (h === MATCHED) continue;
			c.deleted++;
			sample(c, "deleted", key);
		}
	return out;
}

/**
 * The rows of a live database whose key the backup does not hold, with their values in the
 * columns both have: read as keys first (cheap), then only those rows. With the backup's snapshot
 * (`since`), only the keys of rows written after it are read: the server skips the others.
 */
export async function newRowsInDatabase(
	tables: AppTable[],
	index: BackupIndex,
	db: Db,
	psql: Tool,
	conn: Connection,
	opts: {
		env?: NodeJS.ProcessEnv;
		signal?: AbortSignal;
		since?: string;
	} = {},
): Promise<NewRows[]> {
	const read = tables.filter(
		(t) => t.key.length && index.has(id(t.schema, t.table)),
	);
	const keys: string[][][] = read.map(() => []);
	const where = opts.since ? await writtenAfter(db, opts.since) : undefined;
	await readTables(
		psql,
		conn,
		read.map((t) => ({ ...t, columns: t.key, where })),
		(i, f) => {
			const b = index.get(id(read[i].schema, read[i].table)) as BackupTable;
			if (!b.rows.has(f.join("\t"))) keys[i].push(f);
		},
		opts,
	);
	const out: NewRows[] = [];
	for (const [i, t] of read.entries()) {
		if (!keys[i].length) continue;
		const have = new Set(index.get(id(t.schema, t.table))?.columns);
		const columns = t.columns.filter((c) => have.has(c));
		out.push({ ...t, columns, rows: await rowsByKey(db, t, columns, keys[i]) });
	}
	return out;
}

/**
 * A row condition: written by a transaction the snapshot does not see. xmin is a 32-bit xid; its
 * 64-bit form is the next xid minus its age (a frozen, very old xmin may look recent: such a row
 * is only read, then found in the backup by its key, so nothing is wrong, just slower).
 */
async function writtenAfter(db: Db, snapshot: string): Promise<string> {
	const r = await db.query<{ next: string }>(
		"select pg_snapshot_xmax(pg_current_snapshot())::text as next",
	);
	const next = BigInt(r.rows[0].next);
	const low = next % 4294967296n;
	const age = `((${low} - xmin::text::bigint + 4294967296) % 4294967296)`;
	return `NOT pg_visible_in_snapshot((${next} - ${age})::text::xid8, ${quoteLiteral(snapshot)}::pg_snapshot)`;
}

/** Values (as text) of the rows with these keys (COPY-escaped fields), in `columns` order. */
async function rowsByKey(
	db: Db,
	t: AppTable,
	columns: string[],
	keys: string[][],
): Promise<(string | null)[][]> {
	const rel = `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
	const typeOf = await columnTypes(db, t.schema, t.table);
	const params = t.key.map((_, i) => keys.map((k) => unescapeField(k[i])));
	const sql = `select ${columns.map((c) => `${quoteIdent(c)}::text`).join(", ")} from ${rel}
    where (${t.key.map(quoteIdent).join(", ")}) in
      (select * from unnest(${t.key.map((k, i) => `$${i + 1}::${typeOf.get(k)}[]`).join(", ")}))`;
	await db.query("begin read only");
	try {
		await db.query("set local datestyle = ISO");
		await db.query("set local intervalstyle = postgres");
		await db.query("set local extra_float_digits = 3");
		const r = await db.query({ text: sql, values: params, rowMode: "array" });
		return r.rows as (string | null)[][];
	} finally {
		await db.query("commit");
	}
}

/**
 * The rows a newer archive (a safety backup) holds whose key the backup that `index` read does
 * not, in the columns the database has now: what to put back after a restore, later.
 */
export async function newRowsInArchive(
	tables: AppTable[],
	index: BackupIndex,
	pgRestore: Tool,
	archive: string,
	opts: ToolRunOptions = {},
): Promise<NewRows[]> {
	const found = new Map<string, NewRows>();
	const byId = new Map(tables.map((t) => [id(t.schema, t.table), t]));
	await readArchive(
		pgRestore,
		archive,
		[...new Set(tables.map((t) => t.schema))],
		(schema, table, archiveColumns) => {
			const t = byId.get(id(schema, table));
			const b = index.get(id(schema, table));
			if (!t || !b) return null;
			const keyAt = t.key.map((k) => archiveColumns.indexOf(k));
			if (keyAt.some((i) => i < 0)) return null;
			const now = new Set(t.columns);
			const columns = archiveColumns.filter((c) => now.has(c));
			const pick = columns.map((c) => archiveColumns.indexOf(c));
			const rows: (string | null)[][] = [];
			found.set(id(schema, table), { ...t, columns, rows });
			return (f) => {
				if (!b.rows.has(keyAt.map((i) => f[i]).join("\t")))
					rows.push(pick.map((i) => unescapeField(f[i])));
			};
		},
		opts,
	);
	// Foreign-key order, as `tables` has it.
	return tables
		.map((t) => found.get(id(t.schema, t.table)))
		.filter((n): n is NewRows => Boolean(n?.rows.length));
}

/** Tables that hold money or accounts first (purchases, users), then by how much changed. */
export function byImportance(changes: TableChanges[]): TableChanges[] {
	const rank = (t: TableChanges) =>
		/purchase|payment|order|invoice|subscription|charge|refund/i.test(t.table)
			? 0
			: /user|account|customer|member/i.test(t.table)
				? 1
				: 2;
	const moved = (t: TableChanges) => t.inserted + (t.changed ?? 0) + t.deleted;
	return [...changes].sort((a, b) => rank(a) - rank(b) || moved(b) - moved(a));
}

const count = (n: number | null) =>
	n === null ? "?" : n.toLocaleString("en-US");
const keys = (list: string[], total: number) =>
	`${list.map((k) => k.replace(/\t/g, ", ")).join("; ")}${total > list.length ? " …" : ""}`;

/** Lines for the operator: per table, what a restore of the backup would take away. */
export function describeChanges(changes: TableChanges[]): string[] {
	const moved = changes.filter((c) => c.inserted || c.changed || c.deleted);
	const lines = moved.length
		? [
				"since the backup (by primary key; the restore takes these away, the safety backup keeps them):",
			]
		: ["no row was inserted, changed or deleted since the backup"];
	for (const c of moved) {
		lines.push(
			`  ${c.table}: ${count(c.inserted)} inserted, ${c.changed === null ? "changes not compared (a column of the backup is gone)" : `${count(c.changed)} changed`}, ${count(c.deleted)} deleted`,
		);
		if (c.inserted)
			lines.push(`    inserted: ${keys(c.samples.inserted, c.inserted)}`);
		if (c.changed)
			lines.push(`    changed: ${keys(c.samples.changed, c.changed)}`);
		if (c.deleted)
			lines.push(`    deleted: ${keys(c.samples.deleted, c.deleted)}`);
	}
	const skipped = changes.filter((c) => c.skipped);
	if (skipped.length)
		lines.push(
			`not compared: ${skipped.map((c) => `${c.table} (${c.skipped})`).join(", ")}`,
		);
	return lines;
}
