// Snapshots to prove that something changed nothing: the catalog, every table's rows (as a
// checksum), and files on disk.

import { createHash } from "node:crypto";
import {
	lstatSync,
	readdirSync,
	readFileSync,
	readlinkSync,
	type Stats,
} from "node:fs";
import { join } from "node:path";
import { admin } from "./harness.ts";

/** Catalog and data of a database: tables, columns, constraints, indexes, and a checksum per table. */
export async function snapshotDatabase(
	url: string,
): Promise<Record<string, string>> {
	return admin(async (db) => {
		const out: Record<string, string> = {};
		const catalog = await db.query(`
      select n.nspname || '.' || c.relname || ' ' || c.relkind::text as obj,
             coalesce((select string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || a.attnotnull, ',' order by a.attnum)
                         from pg_attribute a where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '') as cols,
             coalesce((select string_agg(pg_get_constraintdef(k.oid), ',' order by k.conname) from pg_constraint k where k.conrelid = c.oid), '') as cons
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')
       order by 1`);
		for (const r of catalog.rows)
			out[`catalog ${r.obj}`] = `${r.cols} | ${r.cons}`;
		const tables = await db.query<{ t: string }>(
			"select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1",
		);
		for (const { t } of tables.rows) {
			const r = await db.query(
				`select count(*) as n, coalesce(md5(string_agg(md5(x::text), '' order by md5(x::text))), '') as h from ${t} x`,
			);
			out[`rows ${t}`] = `${r.rows[0].n} ${r.rows[0].h}`;
		}
		return out;
	}, url);
}

/**
 * sha256 of every file under the given paths (missing paths recorded as such); a symbolic link
 * is recorded by its target, not followed (bad-input's scratch links the node binary: hashing it
 * twice a case cost a minute of CPU).
 */
export function snapshotFiles(paths: string[]): Record<string, string> {
	const out: Record<string, string> = {};
	const walk = (p: string) => {
		const stat = lstatSafe(p);
		if (!stat) {
			out[p] = "missing";
			return;
		}
		if (stat.isSymbolicLink()) {
			out[p] = `-> ${readlinkSync(p)}`;
		} else if (stat.isDirectory()) {
			for (const e of readdirSync(p).sort()) walk(join(p, e));
		} else {
			out[p] = createHash("sha256").update(readFileSync(p)).digest("hex");
		}
	};
	for (const p of paths) walk(p);
	return out;
}

function lstatSafe(p: string): Stats | undefined {
	try {
		return lstatSync(p);
	} catch {
		return undefined;
	}
}
