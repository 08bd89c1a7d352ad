// What a backup holds, and so what a restore replaces. On a managed platform (Supabase) the
// database is shared with the platform: its schemas, event triggers, publication, roles and
// default privileges belong to supabase_admin and other platform roles, which the project's
// `postgres` can neither drop nor recreate. There a backup holds the app's objects only (scope
// "app"): the app's schemas (public, or APP_SCHEMAS) with their tables, types, functions and
// _prisma_migrations, dumped without privileges (the dump would also carry the platform's default
// privileges in public); the privileges of the app's objects are read in the dump's snapshot and
// kept in the manifest as GRANT statements, and a restore puts exactly those back. Elsewhere a
// backup is the whole database (scope "database"), as pg_dump makes it.

import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { usageError } from "../kit/errors.ts";
import type { Db } from "../pg/db.ts";
import { quoteLiteral } from "../pg/db.ts";
import { PLATFORM_SCHEMAS, readPlatformShape } from "../pg/supabase.ts";

export type BackupScope =
	| { kind: "database" }
	| {
			kind: "app";
			/** The app's schemas: the only ones dumped, cleared and restored. */
			schemas: string[];
			/** Why this scope (for plans and the manifest's reader). */
			reason: string;
	  };

/** The scope a manifest records (none: a backup from before scopes, the whole database). */
export const scopeOf = (m: { scope?: BackupScope }): BackupScope =>
	m.scope ?? { kind: "database" };

export function describeScope(scope: BackupScope): string {
	return scope.kind === "database"
		? "the whole database"
		: `the app's objects only: schema(s) ${scope.schemas.join(", ")} (${scope.reason})`;
}

/**
 * BACKUP_SCOPE (auto, app or database; auto: app on a Supabase database, else database) and
 * APP_SCHEMAS (comma-separated, default public), checked against the database.
 */
export async function chooseScope(
	db: Db,
	env: Record<string, string | undefined>,
): Promise<BackupScope> {
	const wanted = (env.BACKUP_SCOPE || "auto").trim();
	if (!["auto", "app", "database"].includes(wanted))
		throw usageError(
			`BACKUP_SCOPE must be auto, app or database, not "${wanted}".`,
		);
	const schemas = (env.APP_SCHEMAS || "public")
		.split(",")
		.map((s) => s.trim())
		.filter(Boolean);
	const platform = schemas.filter((s) => PLATFORM_SCHEMAS.includes(s));
	if (platform.length)
		throw usageError(
			`APP_SCHEMAS names the platform's schema(s) ${platform.join(", ")}: list the app's own schemas only.`,
		);
	if (wanted === "database") return { kind: "database" };
	const { rows } = await db.query<{ s: string }>(
		"select nspname as s from pg_namespace where nspname = any($1)",
		[schemas],
	);
	const missing = schemas.filter((s) => !rows.some((r) => r.s === s));
	if (missing.length)
		throw usageError(
			`APP_SCHEMAS names schema(s) this database does not have: ${missing.join(", ")}.`,
		);
	if (wanted === "app")
		return { kind: "app", schemas, reason: "BACKUP_SCOPE=app" };
	const shape = await readPlatformShape(db);
	return shape.looksLikeSupabase
		? {
				kind: "app",
				schemas,
				reason:
					"a Supabase database: the platform's schemas, event triggers, publications, roles and default privileges are not the app's",
			}
		: { kind: "database" };
}

/** pg_dump's arguments for the scope. */
export function scopeDumpArgs(scope: BackupScope): string[] {
	return scope.kind === "database"
		? []
		: [...scope.schemas.map((s) => `--schema=${s}`), "--no-privileges"];
}

const notExtension = (catalog: string, oid: string) =>
	`not exists (select from pg_depend d where d.classid = '${catalog}'::regclass and d.objid = ${oid} and d.deptype = 'e')`;

/**
 * The app's objects and their effective ACLs (NULL read as the owner's default), in schemas
 * `schemas` (an SQL expression of type text[]); column privileges as rows with a column.
 */
const appObjects = (schemas: string) => `
  select case when c.relkind = 'S' then 'SEQUENCE' else 'TABLE' end as kind,
         format('%I.%I', n.nspname, c.relname) as ident, null::text as col,
         coalesce(c.relacl, acldefault((case when c.relkind = 'S' then 's' else 'r' end)::"char", c.relowner)) as acl
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = any(${schemas}) and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') and ${notExtension("pg_class", "c.oid")}
  union all
  select 'TABLE', format('%I.%I', n.nspname, c.relname), quote_ident(a.attname), a.attacl
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
   where n.nspname = any(${schemas}) and a.attacl is not null and a.attnum > 0 and not a.attisdropped
     and ${notExtension("pg_class", "c.oid")}
  union all
  select 'ROUTINE', p.oid::regprocedure::text, null, coalesce(p.proacl, acldefault('f'::"char", p.proowner))
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = any(${schemas}) and ${notExtension("pg_proc", "p.oid")}
  union all
  select case t.typtype when 'd' then 'DOMAIN' else 'TYPE' end, format('%I.%I', n.nspname, t.typname), null,
         coalesce(t.typacl, acldefault('T'::"char", t.typowner))
    from pg_type t join pg_namespace n on n.oid = t.typnamespace
   where n.nspname = any(${schemas}) and ${notExtension("pg_type", "t.oid")}
     and (t.typtype in ('e', 'd', 'r') or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c'))`;

const grantee = (oid: string) =>
	`case when ${oid} = 0 then 'PUBLIC' else quote_ident(pg_get_userbyid(${oid})) end`;

/**
 * The GRANT statements that give the app's objects their privileges as they are now (read inside
 * the dump's snapshot). Names are schema-qualified whatever the search_path.
 */
export async function readPrivileges(
	db: Db,
	schemas: string[],
): Promise<string[]> {
	const { rows: saved } = await db.query<{ p: string }>(
		"select current_setting('search_path') as p, set_config('search_path', 'pg_catalog', true)",
	);
	const { rows } = await db.query<{ stmt: string }>(
		`select format('GRANT %s ON %s %s TO %s%s',
                   string_agg(a.privilege_type || coalesce(' (' || o.col || ')', ''), ', ' order by a.privilege_type),
                   o.kind, o.ident, ${grantee("a.grantee")},
                   case when a.is_grantable then ' WITH GRANT OPTION' else '' end) as stmt
       from (${appObjects("$1::text[]")}) o, aclexplode(o.acl) a
      group by o.kind, o.ident, o.col, a.grantee, a.is_grantable
      order by 1`,
		[schemas],
	);
	await db.query("select set_config('search_path', $1, true)", [saved[0].p]);
	return rows.map((r) => r.stmt);
}

/**
 * SQL run after the archive's SQL (in the same session, before COMMIT): every privilege on the
 * app's objects revoked, then exactly the recorded ones granted. The restored objects otherwise
 * get the schema's default privileges, which need not be what they had.
 */
export function resetPrivilegesSql(
	schemas: string[],
	grants: string[],
): string {
	const list = `array[${schemas.map(quoteLiteral).join(", ")}]::text[]`;
	return [
		`DO $runbook_privileges$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT DISTINCT format('REVOKE ALL%s ON %s %s FROM %s', coalesce(' (' || o.col || ')', ''), o.kind, o.ident, ${grantee("a.grantee")}) AS stmt
      FROM (${appObjects(list)}) o, aclexplode(o.acl) a
  LOOP
    EXECUTE r.stmt;
  END LOOP;
END
$runbook_privileges$;`,
		...grants.map((g) => `${g};`),
		"",
	].join("\n");
}

const unquote = (name: string) => name.replace(/^"(.*)"$/, "$1");

/**
 * The archive's table of contents (pg_restore --list) with the schemas that exist already left
 * out, as a file for pg_restore --use-list: a restore keeps those schemas (their owner, grants and
 * default privileges) and replaces what is in them.
 */
export function writeRestoreList(
	listing: string,
	existingSchemas: string[],
): string {
	const keep = new Set(existingSchemas);
	const lines = listing.split("\n").map((line) => {
		const m =
			/^\d+; \d+ \d+ SCHEMA - (\S+) /.exec(line) ??
			/^\d+; \d+ \d+ COMMENT - SCHEMA (\S+) /.exec(line);
		return m && keep.has(unquote(m[1])) ? `;${line}` : line;
	});
	const file = join(
		tmpdir(),
		`runbook-restore-list-${process.pid}-${Date.now()}.txt`,
	);
	writeFileSync(file, lines.join("\n"), { mode: 0o600 });
	return file;
}

/**
 * Which entries of a table of contents lie outside the app's scope: anything in another schema,
 * and the kinds a scoped backup never holds (event triggers, publications, default privileges,
 * extensions, privileges, roles' settings).
 */
export function entriesOutsideScope(
	listing: string,
	schemas: string[],
): string[] {
	const inScope = new Set(schemas);
	return listing
		.split("\n")
		.filter((l) => /^\d+;/.test(l))
		.filter((l) => {
			if (
				/ (EVENT TRIGGER|PUBLICATION|DEFAULT ACL|EXTENSION|ACL|DATABASE) /.test(
					l,
				)
			)
				return true;
			const schemaEntry =
				/^\d+; \d+ \d+ (?:SCHEMA - |COMMENT - SCHEMA )(\S+) /.exec(l);
			if (schemaEntry) return !inScope.has(unquote(schemaEntry[1]));
			const m = /^\d+; \d+ \d+ [A-Z][A-Z ]*[A-Z] (\S+) /.exec(l);
			return !m || !inScope.has(unquote(m[1]));
		});
}
