// A fast "no drift" answer without Prisma: a fingerprint of the database's catalog (every object
// of the public schema, in a canonical text) compared with the fingerprint of a scratch database
// built from the same migration files, run as Prisma runs them (each file as one script). Equal
// fingerprints mean equal schemas, so Prisma's diff would be empty; any difference, or anything
// this cannot do (no CREATEDB, a migration that fails here), sends the caller to Prisma's own
// diff, which names the changes. The expected fingerprint is cached by a hash of the files.

import { createHash, randomBytes } from "node:crypto";
import type pg from "pg";
import { cacheGet, cachePut, hashOf } from "../kit/cache.ts";
import { connect, quoteIdent, serverMajor, withClient } from "../pg/db.ts";
import type { Target } from "../pg/target.ts";
import { withDatabase } from "../pg/target.ts";

/** Bump when the queries below change, so old cache entries are not read. */
const VERSION = "1";

// The schema Prisma's diff reads (the datasource names no other); objects elsewhere, such as the
// runbooks' own checkpoints, are no drift for Prisma either.
const OWN = "n.nspname = 'public'";
const NOT_HISTORY = `c.relname <> '_prisma_migrations'`;

// Each query returns one text column `x`, a line of the canonical form; names, never OIDs.
const QUERIES = [
	`select 'relation ' || n.nspname || '.' || c.relname || ' ' || c.relkind::text || c.relpersistence::text
          || ' rls:' || c.relrowsecurity as x
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where ${OWN} and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S', 'c') and ${NOT_HISTORY}
      and not exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'e')`,
	`select 'column ' || n.nspname || '.' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
          || case when a.attnotnull then ' not null' else '' end
          || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
          || case when a.attidentity <> '' then ' identity ' || a.attidentity::text else '' end
          || case when a.attgenerated <> '' then ' generated ' || a.attgenerated::text else '' end
          || coalesce(' collate ' || co.collname, '') as x
     from pg_attribute a
     join pg_class c on c.oid = a.attrelid
     join pg_namespace n on n.oid = c.relnamespace
     left join pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
     left join pg_collation co on co.oid = a.attcollation and a.attcollation <> 100
    where ${OWN} and c.relkind in ('r', 'p', 'v', 'm', 'f', 'c') and ${NOT_HISTORY}
      and a.attnum > 0 and not a.attisdropped`,
	`select 'constraint ' || n.nspname || '.' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
          || case when k.convalidated then '' else ' not valid' end as x
     from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
    where ${OWN} and ${NOT_HISTORY}`,
	`select 'index ' || pg_get_indexdef(i.indexrelid) || case when i.indisvalid then '' else ' invalid' end as x
     from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
    where ${OWN} and ${NOT_HISTORY}`,
	`select 'sequence ' || n.nspname || '.' || c.relname || ' ' || format_type(s.seqtypid, null) || ' ' || s.seqstart
          || ' ' || s.seqincrement || ' ' || s.seqmin || ' ' || s.seqmax || ' ' || s.seqcache || ' ' || s.seqcycle as x
     from pg_sequence s join pg_class c on c.oid = s.seqrelid join pg_namespace n on n.oid = c.relnamespace
    where ${OWN}`,
	`select 'type ' || n.nspname || '.' || t.typname || ' ' || t.typtype::text
          || coalesce(' ' || (select string_agg(e.enumlabel, ',' order by e.enumsortorder) from pg_enum e where e.enumtypid = t.oid), '')
          || case when t.typtype = 'd' then ' ' || format_type(t.typbasetype, t.typtypmod) || case when t.typnotnull then ' not null' else '' end
                  || coalesce(' default ' || t.typdefault, '') else '' end as x
     from pg_type t join pg_namespace n on n.oid = t.typnamespace
    where ${OWN} and t.typtype in ('e', 'd', 'r', 'm')
      and not exists (select 1 from pg_depend d where d.objid = t.oid and d.deptype = 'e')`,
	`select 'view ' || n.nspname || '.' || c.relname || ' ' || pg_get_viewdef(c.oid) as x
     from pg_class c join pg_namespace n on n.oid = c.relnamespace where ${OWN} and c.relkind in ('v', 'm')`,
	`select 'function ' || n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
          || md5(pg_get_functiondef(p.oid)) as x
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where ${OWN} and p.prokind in ('f', 'p')
      and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')`,
	`select 'trigger ' || pg_get_triggerdef(t.oid) as x
     from pg_trigger t join pg_class c on c.oid = t.tgrelid join pg_namespace n on n.oid = c.relnamespace
    where ${OWN} and not t.tgisinternal`,
	`select 'policy ' || n.nspname || '.' || c.relname || '.' || p.polname || ' ' || p.polcmd::text || ' '
          || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '') as x
     from pg_policy p join pg_class c on c.oid = p.polrelid join pg_namespace n on n.oid = c.relnamespace where ${OWN}`,
];

/** The catalog as sorted lines; with search_path emptied, every name it prints is qualified. */
export async function catalogLines(db: pg.Client): Promise<string[]> {
	await db.query("begin read only");
	try {
		await db.query("set local search_path to ''");
		const lines: string[] = [];
		for (const q of QUERIES) {
			const { rows } = await db.query<{ x: string | null }>(q);
			for (const r of rows) if (r.x) lines.push(r.x);
		}
		return lines.sort();
	} finally {
		await db.query("rollback");
	}
}

export async function catalogFingerprint(db: pg.Client): Promise<string> {
	return createHash("sha256")
		.update((await catalogLines(db)).join("\n"))
		.digest("hex");
}

export interface MigrationFile {
	name: string;
	sql: string;
}

/**
 * What a set of migrations builds depends on: their SQL, in order. Not the folders' names (a
 * runbook's migrations carry the time they were written) nor the comment lines a file starts with
 * (a runbook's header names the database and the command), so two runs that write the same
 * statements share cached results. Only leading lines are dropped: there, `--` can only be a comment.
 */
export function migrationsContent(migrations: MigrationFile[]): string[] {
	return migrations.map((m) =>
		m.sql.replace(/^(?:\s*--[^\n]*(?:\n|$))*\s*/, ""),
	);
}

/**
 * The fingerprint of what these migrations build on this server (its major version), from the
 * cache or from a scratch database dropped afterwards; undefined when that cannot be done.
 */
export async function expectedFingerprint(
	target: Target,
	migrations: MigrationFile[],
	signal?: AbortSignal,
): Promise<string | undefined> {
	const conn = target.direct;
	const major = await serverMajor(conn);
	const key = `expected-${hashOf(VERSION, String(major), ...migrationsContent(migrations))}`;
	const cached = cacheGet<{ fingerprint: string }>(key);
	if (cached) return cached.fingerprint;
	const scratch = `${conn.database.slice(0, 30)}_drift_${randomBytes(6).toString("hex")}`;
	const admin = await connect(conn, "runbook:drift");
	try {
		try {
			await admin.query(
				`create database ${quoteIdent(scratch)} template template0`,
			);
		} catch {
			return undefined; // no CREATEDB: Prisma's diff (which needs it too, for its shadow database) decides
		}
		try {
			const fingerprint = await withClient(
				withDatabase(conn, scratch),
				async (db) => {
					for (const m of migrations) {
						if (signal?.aborted) throw new Error("aborted");
						await db.query(m.sql);
					}
					return catalogFingerprint(db);
				},
				"runbook:drift",
			);
			cachePut(key, { fingerprint });
			return fingerprint;
		} catch {
			return undefined; // a migration that fails here: Prisma's diff says why
		} finally {
			await admin.query(
				`drop database if exists ${quoteIdent(scratch)} with (force)`,
			);
		}
	} finally {
		await admin.end().catch(() => {});
	}
}

/** True when the database's schema is exactly what the migrations build; undefined when unknown. */
export async function matchesMigrations(
	target: Target,
	migrations: MigrationFile[],
	signal?: AbortSignal,
): Promise<boolean | undefined> {
	const expected = await expectedFingerprint(target, migrations, signal);
	if (!expected) return undefined;
	const actual = await withClient(
		target.direct,
		catalogFingerprint,
		"runbook:drift",
	);
	return actual === expected;
}
