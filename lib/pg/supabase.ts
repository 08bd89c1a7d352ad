// What a Supabase project looks like to a migration: the platform's roles and schemas (never
// touched), the `extensions` schema where extensions go, and a record of this runbook's own runs
// on the target (schema migrate_to_supabase, table runs): which run copied the app's schema there
// and how far it got, so a rerun knows whether `public` holds its own partial copy (start over),
// a verified copy (continue) or someone else's objects (refuse).

import { randomUUID } from "node:crypto";
import type { Db } from "./db.ts";

/** Schemas the platform manages: a migration reads none and writes none. */
export const PLATFORM_SCHEMAS = [
	"auth",
	"storage",
	"extensions",
	"graphql",
	"graphql_public",
	"realtime",
	"_realtime",
	"supabase_functions",
	"supabase_migrations",
	"vault",
	"pgsodium",
	"pgsodium_masks",
	"net",
	"cron",
	"pgbouncer",
	"_analytics",
];

/** Roles the platform creates. */
export const PLATFORM_ROLES = [
	"postgres",
	"supabase_admin",
	"authenticator",
	"anon",
	"authenticated",
	"service_role",
];

export const EXTENSIONS_SCHEMA = "extensions";
export const MARKER_SCHEMA = "migrate_to_supabase";

export interface PlatformShape {
	/** Platform roles present. */
	roles: string[];
	/** Platform schemas present. */
	schemas: string[];
	hasExtensionsSchema: boolean;
	/** Whether it looks like Supabase: the API roles and the extensions schema exist. */
	looksLikeSupabase: boolean;
	/** The connecting role and whether it is a superuser (on Supabase `postgres` is not). */
	user: string;
	superuser: boolean;
	/** Whether the connecting role may create objects in public and schemas in the database. */
	canCreateInPublic: boolean;
	canCreateSchema: boolean;
}

export async function readPlatformShape(db: Db): Promise<PlatformShape> {
	const roles = await db.query<{ r: string }>(
		"select rolname as r from pg_roles where rolname = any($1) order by 1",
		[PLATFORM_ROLES],
	);
	const schemas = await db.query<{ s: string }>(
		"select nspname as s from pg_namespace where nspname = any($1) order by 1",
		[PLATFORM_SCHEMAS],
	);
	const me = await db.query<{
		u: string;
		su: boolean;
		pub: boolean;
		db: boolean;
	}>(
		`select current_user as u, (select rolsuper from pg_roles where rolname = current_user) as su,
            has_schema_privilege('public', 'CREATE') as pub,
            has_database_privilege(current_database(), 'CREATE') as db`,
	);
	const r = roles.rows.map((x) => x.r);
	const s = schemas.rows.map((x) => x.s);
	return {
		roles: r,
		schemas: s,
		hasExtensionsSchema: s.includes(EXTENSIONS_SCHEMA),
		looksLikeSupabase:
			["anon", "authenticated", "service_role"].every((x) => r.includes(x)) &&
			s.includes(EXTENSIONS_SCHEMA),
		user: me.rows[0].u,
		superuser: me.rows[0].su,
		canCreateInPublic: me.rows[0].pub,
		canCreateSchema: me.rows[0].db,
	};
}

export type RunPhase = "copying" | "copied" | "verified";

export interface RunRecord {
	run_id: string;
	/** The source as user@host:port/db (no password). */
	source: string;
	phase: RunPhase;
	started_at: Date;
	updated_at: Date;
	tables: Record<string, { rows: number; checksum: string }> | null;
}

const TABLE = `${MARKER_SCHEMA}.runs`;

/** The statements that create the record (shown in plans). */
export const RECORD_DDL = [
	`create schema if not exists ${MARKER_SCHEMA};`,
	`comment on schema ${MARKER_SCHEMA} is 'Written by runbooks/migrate-to-supabase.ts: which run copied the public schema here and how far it got. Drop it once the migration is behind you.';`,
	`create table if not exists ${TABLE} (
  run_id uuid primary key,
  source text not null,
  phase text not null check (phase in ('copying', 'copied', 'verified')),
  started_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  tables jsonb
);`,
	`revoke all on schema ${MARKER_SCHEMA} from public;`,
];

/** The latest run recorded on the target, or null (none, or the record does not exist yet). */
export async function latestRun(db: Db): Promise<RunRecord | null> {
	const { rows: exists } = await db.query<{ ok: boolean }>(
		`select to_regclass('${TABLE}') is not null as ok`,
	);
	if (!exists[0].ok) return null;
	const { rows } = await db.query<RunRecord>(
		`select run_id, source, phase, started_at, updated_at, tables from ${TABLE} order by updated_at desc limit 1`,
	);
	return rows[0] ?? null;
}

/** Records a new run as copying (the target's public was empty, or was just cleared). */
export async function startRun(db: Db, source: string): Promise<string> {
	for (const sql of RECORD_DDL) await db.query(sql);
	const id = randomUUID();
	await db.query(
		`insert into ${TABLE} (run_id, source, phase) values ($1, $2, 'copying')`,
		[id, source],
	);
	return id;
}

export async function setPhase(
	db: Db,
	runId: string,
	phase: RunPhase,
	tables?: RunRecord["tables"],
): Promise<void> {
	await db.query(
		`update ${TABLE} set phase = $2, updated_at = now(), tables = coalesce($3::jsonb, tables) where run_id = $1`,
		[runId, phase, tables ? JSON.stringify(tables) : null],
	);
}
