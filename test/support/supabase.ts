// A Supabase database built the way Supabase builds its own (supabase/postgres, migrations/db:
// init scripts run by `postgres` while it is still a superuser, then migrations run by
// supabase_admin, one of which demotes `postgres`), on its own throw-away cluster, with Debian's
// pgbouncer in transaction mode in front as the pooler. Written from the facts of those scripts,
// not from their SQL:
// - the bootstrap superuser is supabase_admin; `postgres` ends NOSUPERUSER CREATEDB CREATEROLE
//   LOGIN REPLICATION BYPASSRLS, owns the database and is granted the API roles;
// - the roles anon, authenticated, service_role (BYPASSRLS), authenticator (NOINHERIT, granted the
//   three), supabase_auth_admin, supabase_storage_admin, supabase_replication_admin,
//   supabase_read_only_user, dashboard_user, pgbouncer; statement_timeout on anon/authenticated;
// - the schemas auth, storage, extensions, realtime, graphql, graphql_public, pgbouncer, vault,
//   owned by platform roles, with tables, functions, rows and grants; the publication
//   supabase_realtime;
// - event triggers owned by supabase_admin that fire on everyone's DDL: pgrst_ddl_watch
//   (ddl_command_end) and pgrst_drop_watch (sql_drop) NOTIFY pgrst, and the extension-grant ones
//   (issue_pg_cron_access, issue_pg_net_access, issue_pg_graphql_access, issue_graphql_placeholder);
// - default privileges in public granting ALL on tables, sequences and functions to postgres,
//   anon, authenticated and service_role, for objects created by postgres and by supabase_admin.
// The pooler authenticates like Supabase's: auth_user pgbouncer and pgbouncer.get_auth().

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
	chownSync,
	existsSync,
	mkdtempSync,
	readFileSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort, startLocalCluster } from "./postgres.ts";

export interface SupabaseFixture {
	/** supabase_admin (the bootstrap superuser) on the postgres database: for the test's own checks. */
	adminUrl: string;
	/** The project's direct connection: postgres (not a superuser) on port 5432's stand-in. */
	directUrl: string;
	/** The pooler: pgbouncer in transaction mode, with ?pgbouncer=true as Prisma wants it. */
	poolerUrl: string;
	/** The postgres role's password (a secret: tests check it never shows). */
	password: string;
	/** URLs of another database on the same server: admin (supabase_admin), direct and pooler (postgres). */
	urls(database: string): { admin: string; direct: string; pooler: string };
	/**
	 * A copy of a database of this server (default: the freshly built `postgres`, platform and all),
	 * owned by postgres as Supabase's is; the sessions on the source are ended first (the pooler's too).
	 */
	cloneDatabase(name: string, source?: string): Promise<void>;
	stop(): Promise<void>;
}

export const FIXTURE_PLATFORM_SCHEMAS = [
	"auth",
	"storage",
	"extensions",
	"realtime",
	"graphql",
	"graphql_public",
	"pgbouncer",
	"vault",
];
/** The roles Supabase's API (PostgREST) runs queries as. */
export const API_ROLES = ["anon", "authenticated", "service_role"];
export const FIXTURE_ROLES = [
	"postgres",
	"supabase_admin",
	"authenticator",
	...API_ROLES,
	"supabase_auth_admin",
	"supabase_storage_admin",
	"supabase_replication_admin",
	"supabase_read_only_user",
	"dashboard_user",
	"pgbouncer",
];
export const FIXTURE_EVENT_TRIGGERS = [
	"issue_graphql_placeholder",
	"issue_pg_cron_access",
	"issue_pg_graphql_access",
	"issue_pg_net_access",
	"pgrst_ddl_watch",
	"pgrst_drop_watch",
];
const API = "anon, authenticated, service_role";
const ALL_API = `postgres, ${API}`;

/** Cluster-wide, as supabase_admin: the project's postgres role, a superuser until the demotion. */
const bootstrapSql = (password: string) => `
create role postgres with superuser createdb createrole replication bypassrls login password '${password}';
alter database postgres owner to postgres;
`;

/** The init scripts' roles (run as postgres, still a superuser). */
const initRolesSql = (authenticatorPw: string) => `
create role supabase_replication_admin with login replication;
create role supabase_read_only_user with login bypassrls;
grant pg_read_all_data to supabase_read_only_user;
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator with login noinherit password '${authenticatorPw}';
grant anon, authenticated, service_role to authenticator;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
create role supabase_auth_admin with login noinherit createrole noreplication;
alter role supabase_auth_admin set search_path = auth;
create role supabase_storage_admin with login noinherit createrole noreplication;
alter role supabase_storage_admin set search_path = storage;
create role dashboard_user with nosuperuser createdb createrole replication;
alter role supabase_admin set search_path = "$user", public, auth, extensions;
alter role postgres set search_path = "$user", public, extensions;
`;

/** The init scripts' objects of one database (run as postgres, still a superuser). */
const initDatabaseSql = (database: string) => `
create publication supabase_realtime;

create schema if not exists extensions;
create extension if not exists "uuid-ossp" with schema extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to ${ALL_API};

-- What the API may do in public: usage, and everything on what postgres or supabase_admin create there.
grant usage on schema public to ${ALL_API};
alter default privileges in schema public grant all on tables to ${ALL_API};
alter default privileges in schema public grant all on sequences to ${ALL_API};
alter default privileges in schema public grant all on functions to ${ALL_API};
alter default privileges for role supabase_admin in schema public grant all on tables to ${ALL_API};
alter default privileges for role supabase_admin in schema public grant all on sequences to ${ALL_API};
alter default privileges for role supabase_admin in schema public grant all on functions to ${ALL_API};

-- auth: GoTrue's tables, owned by supabase_auth_admin in a schema of supabase_admin.
create schema auth authorization supabase_admin;
create table auth.users (
  instance_id uuid, id uuid primary key, aud varchar(255), role varchar(255),
  email varchar(255) unique, encrypted_password varchar(255), confirmed_at timestamptz,
  raw_app_meta_data jsonb, raw_user_meta_data jsonb, is_super_admin boolean,
  created_at timestamptz, updated_at timestamptz
);
create index on auth.users (instance_id, email);
create table auth.refresh_tokens (
  instance_id uuid, id bigserial primary key, token varchar(255), user_id varchar(255),
  revoked boolean, created_at timestamptz, updated_at timestamptz
);
create table auth.instances (id uuid primary key, uuid uuid, raw_base_config text, created_at timestamptz, updated_at timestamptz);
create table auth.audit_log_entries (instance_id uuid, id uuid primary key, payload json, created_at timestamptz);
create table auth.schema_migrations (version varchar(255) primary key);
insert into auth.schema_migrations values ('20171026211738'), ('20171026211808'), ('20180103212743');
insert into auth.users (id, aud, role, email, encrypted_password, created_at)
  select extensions.uuid_generate_v4(), 'authenticated', 'authenticated', 'member' || i || '@example.com',
         extensions.crypt('pw' || i, extensions.gen_salt('bf', 4)), now()
    from generate_series(1, 3) i;
insert into auth.refresh_tokens (token, user_id, revoked, created_at)
  select md5(id::text), id::text, false, now() from auth.users;
create function auth.uid() returns uuid language sql stable
  as $$ select nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
create function auth.role() returns text language sql stable
  as $$ select nullif(current_setting('request.jwt.claim.role', true), '')::text $$;
create function auth.email() returns text language sql stable
  as $$ select nullif(current_setting('request.jwt.claim.email', true), '')::text $$;
grant usage on schema auth to ${API};
grant all on schema auth to supabase_auth_admin;
grant all on all tables in schema auth to supabase_auth_admin;
grant all on all sequences in schema auth to supabase_auth_admin;
alter table auth.users owner to supabase_auth_admin;
alter table auth.refresh_tokens owner to supabase_auth_admin;
alter table auth.instances owner to supabase_auth_admin;
alter table auth.audit_log_entries owner to supabase_auth_admin;
alter table auth.schema_migrations owner to supabase_auth_admin;

-- storage: buckets and objects (row-level security on), owned by supabase_storage_admin.
create schema storage authorization supabase_admin;
grant usage on schema storage to ${ALL_API};
alter default privileges in schema storage grant all on tables to ${ALL_API};
alter default privileges in schema storage grant all on sequences to ${ALL_API};
alter default privileges in schema storage grant all on functions to ${ALL_API};
create table storage.buckets (
  id text primary key, name text not null, owner uuid references auth.users (id),
  created_at timestamptz default now(), updated_at timestamptz default now()
);
create unique index bname on storage.buckets (name);
create table storage.objects (
  id uuid primary key default extensions.uuid_generate_v4(),
  bucket_id text references storage.buckets (id), name text, owner uuid references auth.users (id),
  created_at timestamptz default now(), updated_at timestamptz default now(), metadata jsonb
);
create unique index bucketid_objname on storage.objects (bucket_id, name);
alter table storage.objects enable row level security;
create table storage.migrations (id integer primary key, name varchar(100) unique not null, hash varchar(40) not null, executed_at timestamp default current_timestamp);
create function storage.foldername(name text) returns text[] language plpgsql
  as $$ declare p text[] := string_to_array(name, '/'); begin return p[1:array_length(p, 1) - 1]; end $$;
create function storage.filename(name text) returns text language plpgsql
  as $$ declare p text[] := string_to_array(name, '/'); begin return p[array_length(p, 1)]; end $$;
insert into storage.buckets (id, name) values ('faces', 'faces'), ('videos', 'videos');
insert into storage.objects (bucket_id, name, metadata) values ('faces', 'a/face.jpg', '{"size": 1}'), ('videos', 'b/clip.mp4', '{"size": 2}');
insert into storage.migrations values (0, 'create-migrations-table', 'e18db593bcde2aca2a408c4d1100f6abba2195df');
grant all on schema storage to supabase_storage_admin;
grant all on all tables in schema storage to supabase_storage_admin;
alter table storage.buckets owner to supabase_storage_admin;
alter table storage.objects owner to supabase_storage_admin;
alter table storage.migrations owner to supabase_storage_admin;
alter function storage.foldername(text) owner to supabase_storage_admin;
alter function storage.filename(text) owner to supabase_storage_admin;

-- The dashboard's role.
grant all on database ${pgIdent(database)} to dashboard_user;
grant all on schema auth, extensions, storage to dashboard_user;
grant all on all tables in schema auth to dashboard_user;
grant all on all sequences in schema auth to dashboard_user;
grant all on all routines in schema auth, storage to dashboard_user;

-- The pooler's auth_query, run by the pgbouncer role.
create schema pgbouncer authorization pgbouncer;
create function pgbouncer.get_auth(p_usename text) returns table (username text, password text)
  language plpgsql security definer
  as $$ begin return query select usename::text, passwd::text from pg_catalog.pg_shadow where usename = p_usename; end $$;
revoke all on function pgbouncer.get_auth(text) from public;
grant execute on function pgbouncer.get_auth(text) to pgbouncer;
`;

/**
 * An event trigger of the platform's extension-grant kind: `trigger` fires `on` an event (and tag),
 * and its function extensions.`fn` does `action` when `objects` (a query over what the event
 * touched) finds a row.
 */
function eventTriggerSql(
	trigger: string,
	on: string,
	fn: string,
	objects: string,
	action: string,
): string {
	return `create function extensions.${fn}() returns event_trigger language plpgsql as $$
begin
  if exists (${objects}) then
    ${action};
  end if;
end $$;
create event trigger ${trigger} on ${on}
  execute procedure extensions.${fn}();`;
}

/** The migrations' objects of one database (run as supabase_admin), the demotion's grants first. */
const migrationsDatabaseSql = (database: string) => `
grant all on database ${pgIdent(database)} to postgres;
grant all on schema auth, extensions, storage to postgres;
grant all on all tables in schema auth, storage, extensions to postgres;
grant all on all sequences in schema auth, storage, extensions to postgres;
grant all on all routines in schema auth, storage, extensions to postgres;
alter default privileges for role supabase_auth_admin in schema auth grant all on tables to postgres, dashboard_user;
alter default privileges for role supabase_auth_admin in schema auth grant all on sequences to postgres, dashboard_user;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;

-- realtime: created by supabase_admin.
create schema if not exists realtime;
create table realtime.schema_migrations (version bigint primary key, inserted_at timestamp(0));
create table realtime.subscription (
  id bigint generated always as identity primary key, subscription_id uuid not null,
  entity regclass not null, claims jsonb not null, created_at timestamp not null default timezone('utc', now())
);
create function realtime.topic() returns text language sql stable
  as $$ select nullif(current_setting('realtime.topic', true), '')::text $$;
insert into realtime.schema_migrations values (20211116024918, now()), (20211116045059, now());
grant usage on schema realtime to postgres;
grant all on all tables in schema realtime to postgres, dashboard_user;
grant all on all sequences in schema realtime to postgres, dashboard_user;
grant all on all routines in schema realtime to postgres, dashboard_user;
alter default privileges in schema realtime grant all on tables to postgres, dashboard_user;

-- PostgREST reloads its schema cache on NOTIFY pgrst: event triggers on every DDL and every drop.
create function extensions.pgrst_ddl_watch() returns event_trigger language plpgsql as $$
declare c record;
begin
  for c in select * from pg_event_trigger_ddl_commands() loop
    if c.command_tag in ('CREATE SCHEMA', 'ALTER SCHEMA', 'CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO',
                         'ALTER TABLE', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'CREATE VIEW', 'ALTER VIEW',
                         'CREATE MATERIALIZED VIEW', 'ALTER MATERIALIZED VIEW', 'CREATE FUNCTION', 'ALTER FUNCTION',
                         'CREATE TRIGGER', 'CREATE TYPE', 'ALTER TYPE', 'CREATE RULE', 'COMMENT')
       and c.schema_name is distinct from 'pg_temp' then
      notify pgrst, 'reload schema';
    end if;
  end loop;
end $$;
create function extensions.pgrst_drop_watch() returns event_trigger language plpgsql as $$
declare o record;
begin
  for o in select * from pg_event_trigger_dropped_objects() loop
    if o.object_type in ('schema', 'table', 'foreign table', 'view', 'materialized view', 'function',
                         'trigger', 'type', 'rule')
       and o.is_temporary is false then
      notify pgrst, 'reload schema';
    end if;
  end loop;
end $$;
create event trigger pgrst_ddl_watch on ddl_command_end execute procedure extensions.pgrst_ddl_watch();
create event trigger pgrst_drop_watch on sql_drop execute procedure extensions.pgrst_drop_watch();

-- graphql and its public entry point, a placeholder until pg_graphql is enabled.
create schema if not exists graphql;
create table graphql.schema_version (version int primary key, applied_at timestamptz not null default now());
insert into graphql.schema_version (version) values (1);
create schema if not exists graphql_public;
create function graphql_public.graphql("operationName" text default null, query text default null,
                                       variables jsonb default null, extensions jsonb default null)
  returns jsonb language plpgsql
  as $$ begin return jsonb_build_object('data', null::jsonb, 'errors', array['pg_graphql extension is not enabled.']); end $$;
grant usage on schema graphql_public to ${ALL_API};
alter default privileges in schema graphql_public grant all on tables to ${ALL_API};
alter default privileges in schema graphql_public grant all on functions to ${ALL_API};
alter default privileges in schema graphql_public grant all on sequences to ${ALL_API};

-- Extension-grant triggers: when pg_graphql, pg_cron or pg_net arrive, grant the project their objects.
${eventTriggerSql("issue_pg_graphql_access", "ddl_command_end when tag in ('CREATE FUNCTION')", "grant_pg_graphql_access", "select from pg_event_trigger_ddl_commands() ev join pg_proc p on ev.objid = p.oid where p.proname = 'resolve'", `grant usage on schema graphql to ${ALL_API}`)}
${eventTriggerSql("issue_graphql_placeholder", "sql_drop when tag in ('DROP EXTENSION')", "set_graphql_placeholder", "select from pg_event_trigger_dropped_objects() ev where ev.schema_name = 'graphql_public'", "raise notice 'graphql placeholder would be restored'")}
${eventTriggerSql("issue_pg_cron_access", "ddl_command_end when tag in ('CREATE EXTENSION')", "grant_pg_cron_access", "select from pg_event_trigger_ddl_commands() ev join pg_extension e on ev.objid = e.oid where e.extname = 'pg_cron'", "grant usage on schema cron to postgres with grant option")}
${eventTriggerSql("issue_pg_net_access", "ddl_command_end when tag in ('CREATE EXTENSION')", "grant_pg_net_access", "select from pg_event_trigger_ddl_commands() ev join pg_extension e on ev.objid = e.oid where e.extname = 'pg_net'", `grant usage on schema net to ${ALL_API}`)}

-- vault: secrets the project keeps (supabase_vault's table and view, without the extension).
create schema if not exists vault;
create table vault.secrets (
  id uuid primary key default extensions.gen_random_uuid(), name text unique, description text not null default '',
  secret text not null, created_at timestamptz not null default now()
);
create view vault.decrypted_secrets as select id, name, description, secret as decrypted_secret, created_at from vault.secrets;
insert into vault.secrets (name, secret) values ('stripe_key', 'sk_test_fixture');

grant all privileges on all tables in schema extensions to postgres with grant option;
grant all privileges on all routines in schema extensions to postgres with grant option;
grant all privileges on all sequences in schema extensions to postgres with grant option;
`;

/** The migrations' cluster-wide part, as supabase_admin: the demotion and the grants to postgres. */
const migrationsRolesSql = `
alter role postgres nosuperuser createdb createrole login replication bypassrls;
alter role supabase_auth_admin set idle_in_transaction_session_timeout to 60000;
alter role authenticator set statement_timeout = '8s';
alter role authenticator set lock_timeout = '8s';
grant supabase_auth_admin, supabase_storage_admin to postgres;
grant ${API} to postgres;
grant pg_monitor, pg_read_all_data, pg_signal_backend to postgres;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit;
grant authenticator to supabase_storage_admin;
`;

function pgIdent(name: string): string {
	return `"${name.replace(/"/g, '""')}"`;
}

function withDatabase(url: string, database: string, user?: string): string {
	const u = new URL(url);
	u.pathname = `/${database}`;
	if (user) u.username = user;
	return u.toString();
}

/** Runs `sql` (one or more statements) on `url`, on a connection of its own. */
export async function execAs(url: string, sql: string): Promise<void> {
	const db = new pg.Client({ connectionString: url });
	await db.connect();
	try {
		await db.query(sql);
	} finally {
		await db.end();
	}
}

function findPgbouncer(): string {
	for (const p of ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"])
		if (existsSync(p)) return p;
	try {
		return execFileSync("sh", ["-c", "command -v pgbouncer"]).toString().trim();
	} catch {
		throw new Error(
			"pgbouncer is not installed: apt-get install -y pgbouncer (.ci/run installs it)",
		);
	}
}

async function waitForPooler(
	url: string,
	child: ChildProcess,
	log: string,
): Promise<void> {
	const deadline = Date.now() + 15_000;
	let last: unknown;
	while (Date.now() < deadline) {
		if (child.exitCode !== null) break;
		const db = new pg.Client({
			connectionString: url.replace("?pgbouncer=true", ""),
		});
		db.on("error", () => {});
		try {
			await db.connect();
			await db.query("select 1");
			await db.end();
			return;
		} catch (err) {
			last = err;
			await db.end().catch(() => {});
			await new Promise((r) => setTimeout(r, 100));
		}
	}
	const text = existsSync(log) ? readFileSync(log, "utf8").slice(-2000) : "";
	throw new Error(`pgbouncer did not start: ${String(last)}\n${text}`);
}

/** pgbouncer in transaction mode on a free port; users authenticated through pgbouncer.get_auth(). */
async function startPooler(
	dir: string,
	pgPort: number,
	pgbouncerPassword: string,
): Promise<{ port: number; child: ChildProcess; log: string }> {
	const port = await freePort();
	const ini = join(dir, "pgbouncer.ini");
	const log = join(dir, "pgbouncer.log");
	const userlist = join(dir, "userlist.txt");
	writeFileSync(userlist, `"pgbouncer" "${pgbouncerPassword}"\n`, {
		mode: 0o600,
	});
	writeFileSync(
		ini,
		[
			"[databases]",
			`* = host=127.0.0.1 port=${pgPort} auth_user=pgbouncer`,
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			`listen_port = ${port}`,
			"unix_socket_dir =",
			"auth_type = scram-sha-256",
			`auth_file = ${userlist}`,
			"auth_user = pgbouncer",
			"auth_query = SELECT * FROM pgbouncer.get_auth($1)",
			"pool_mode = transaction",
			"max_client_conn = 200",
			"default_pool_size = 10",
			"ignore_startup_parameters = extra_float_digits,options",
			`logfile = ${log}`,
			`pidfile = ${join(dir, "pgbouncer.pid")}`,
			"",
		].join("\n"),
	);
	// pgbouncer refuses to run as root: run it as the postgres OS user, like the cluster.
	let ids: { uid: number; gid: number } | undefined;
	if (userInfo().uid === 0) {
		ids = {
			uid: Number(execFileSync("id", ["-u", "postgres"]).toString().trim()),
			gid: Number(execFileSync("id", ["-g", "postgres"]).toString().trim()),
		};
		for (const f of [dir, ini, userlist]) chownSync(f, ids.uid, ids.gid);
	}
	const child = spawn(findPgbouncer(), [ini], {
		stdio: ["ignore", "ignore", "pipe"],
		...(ids ?? {}),
	});
	child.stderr?.resume();
	return { port, child, log };
}

/** Builds the platform in a new database: the init scripts as postgres, the migrations as supabase_admin. */
export async function buildPlatformDatabase(
	adminUrl: string,
	postgresUrl: string,
	database: string,
): Promise<void> {
	await execAs(withDatabase(postgresUrl, database), initDatabaseSql(database));
	await execAs(
		withDatabase(adminUrl, database),
		migrationsDatabaseSql(database),
	);
}

/** Starts the Supabase-built server and its pooler. */
export async function startSupabase(): Promise<SupabaseFixture> {
	const cluster = await startLocalCluster({
		fsync: false,
		superuser: "supabase_admin",
	});
	const password = `sb-${randomBytes(9).toString("hex")}`;
	const pgPort = Number(new URL(cluster.adminUrl).port);
	let bouncer: ChildProcess | undefined;
	const dir = mkdtempSync(join(tmpdir(), "runbook-pgbouncer-"));
	try {
		const postgresUrl = withDatabase(cluster.adminUrl, "postgres", "postgres");
		const asPostgres = new URL(postgresUrl);
		asPostgres.password = password;
		const bouncerPw = randomBytes(9).toString("hex");
		// migrate.sh: postgres created a superuser; the init scripts as postgres; migrations as supabase_admin.
		await execAs(cluster.adminUrl, bootstrapSql(password));
		await execAs(
			asPostgres.toString(),
			`${initRolesSql(randomBytes(9).toString("hex"))}
create role pgbouncer with login password '${bouncerPw}';
revoke all on schema public from pgbouncer;`,
		);
		await buildPlatformDatabase(
			cluster.adminUrl,
			asPostgres.toString(),
			"postgres",
		);
		await execAs(cluster.adminUrl, migrationsRolesSql);

		const pooler = await startPooler(dir, pgPort, bouncerPw);
		bouncer = pooler.child;
		const urls = (database: string) => ({
			admin: withDatabase(cluster.adminUrl, database),
			direct: `postgresql://postgres:${password}@127.0.0.1:${pgPort}/${database}`,
			pooler: `postgresql://postgres:${password}@127.0.0.1:${pooler.port}/${database}?pgbouncer=true`,
		});
		const main = urls("postgres");
		await waitForPooler(main.pooler, bouncer, pooler.log);
		const child = bouncer;
		return {
			adminUrl: main.admin,
			directUrl: main.direct,
			poolerUrl: main.pooler,
			password,
			urls,
			async cloneDatabase(name, source = "postgres") {
				const url = withDatabase(cluster.adminUrl, "template1");
				await execAs(
					url,
					`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${source}' and pid <> pg_backend_pid()`,
				);
				await execAs(
					url,
					`create database ${pgIdent(name)} template ${pgIdent(source)} owner postgres`,
				);
			},
			async stop() {
				if (child.exitCode === null) {
					const exited = new Promise((r) => child.once("exit", r));
					child.kill("SIGTERM");
					await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
				}
				rmSync(dir, { recursive: true, force: true });
				await cluster.stop();
			},
		};
	} catch (err) {
		bouncer?.kill("SIGTERM");
		rmSync(dir, { recursive: true, force: true });
		await cluster.stop();
		throw err;
	}
}

/** The extensions the platform installs (a migration may add others to `extensions`). */
const PLATFORM_EXTENSIONS = ["plpgsql", "pgcrypto", "uuid-ossp"];

/** Not an extension's object (those an app adds to `extensions` are its own). */
const notExtensionMember = (oid: string) =>
	`not exists (select from pg_depend d where d.objid = ${oid} and d.deptype = 'e')`;

/**
 * What must not change on the platform's side: its roles (attributes, password hashes, settings,
 * memberships), its schemas' owners and grants (public's too), every relation, column, constraint,
 * function and row in the platform schemas, the event triggers, the publication, the default
 * privileges and the extensions.
 */
export async function snapshotPlatform(
	adminUrl: string,
): Promise<Record<string, string>> {
	const db = new pg.Client({ connectionString: adminUrl });
	await db.connect();
	try {
		// Names printed schema-qualified, whatever the app later puts in public (its own users table).
		await db.query("set search_path = pg_catalog");
		const out: Record<string, string> = {};
		const roles = await db.query(
			`select rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
              rolbypassrls, rolconnlimit, rolpassword, rolvaliduntil,
              (select string_agg(g.rolname, ',' order by g.rolname) from pg_auth_members m join pg_authid g on g.oid = m.roleid where m.member = a.oid) as member_of,
              (select string_agg(array_to_string(s.setconfig, ','), ';') from pg_db_role_setting s where s.setrole = a.oid) as settings
         from pg_authid a where rolname = any($1) order by rolname`,
			[FIXTURE_ROLES],
		);
		for (const r of roles.rows) out[`role ${r.rolname}`] = JSON.stringify(r);
		const schemas = await db.query(
			`select nspname, pg_get_userbyid(nspowner) as owner, coalesce(nspacl::text, '') as acl
         from pg_namespace where nspname = any($1) order by 1`,
			[[...FIXTURE_PLATFORM_SCHEMAS, "public"]],
		);
		for (const s of schemas.rows)
			out[`schema ${s.nspname}`] = `${s.owner} ${s.acl}`;
		const objects = await db.query(
			`select n.nspname || '.' || c.relname || ' ' || c.relkind::text as obj, pg_get_userbyid(c.relowner) as owner,
              coalesce(c.relacl::text, '') as acl, c.relrowsecurity as rls,
              coalesce((select string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ',' order by a.attnum)
                          from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '') as cols,
              coalesce((select string_agg(pg_get_constraintdef(k.oid), ',' order by k.conname) from pg_constraint k where k.conrelid = c.oid), '') as cons
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any($1) and ${notExtensionMember("c.oid")} order by 1`,
			[FIXTURE_PLATFORM_SCHEMAS],
		);
		for (const o of objects.rows)
			out[`object ${o.obj}`] =
				`${o.owner} ${o.acl} rls=${o.rls} ${o.cols} | ${o.cons}`;
		const functions = await db.query(
			`select p.oid::regprocedure::text as f, pg_get_userbyid(p.proowner) as owner, coalesce(p.proacl::text, '') as acl,
              md5(p.prosrc) as src, p.prosecdef as definer
         from pg_proc p join pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any($1) and ${notExtensionMember("p.oid")} order by 1`,
			[FIXTURE_PLATFORM_SCHEMAS],
		);
		for (const f of functions.rows)
			out[`function ${f.f}`] = `${f.owner} ${f.acl} ${f.src} ${f.definer}`;
		const tables = await db.query<{ t: string }>(
			"select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = any($1) order by 1",
			[FIXTURE_PLATFORM_SCHEMAS],
		);
		for (const { t } of tables.rows) {
			const r = await db.query(
				`select count(*) as n, coalesce(md5(string_agg(x::text, '' order by x::text)), '') as h from ${t} x`,
			);
			out[`rows ${t}`] = `${r.rows[0].n} ${r.rows[0].h}`;
		}
		const triggers = await db.query(
			`select evtname, evtevent, pg_get_userbyid(evtowner) as owner, evtfoid::regproc::text as fn, evtenabled,
              coalesce(array_to_string(evttags, ','), '') as tags
         from pg_event_trigger order by evtname`,
		);
		for (const t of triggers.rows)
			out[`event trigger ${t.evtname}`] =
				`${t.evtevent} ${t.owner} ${t.fn} ${t.evtenabled} ${t.tags}`;
		const pubs = await db.query(
			`select pubname, pg_get_userbyid(pubowner) as owner, puballtables, pubinsert, pubupdate, pubdelete, pubtruncate,
              (select count(*) from pg_publication_rel r where r.prpubid = p.oid) as rels
         from pg_publication p order by 1`,
		);
		for (const p of pubs.rows)
			out[`publication ${p.pubname}`] = JSON.stringify(p);
		const defaults = await db.query(
			`select pg_get_userbyid(defaclrole) as role, coalesce(defaclnamespace::regnamespace::text, '') as schema,
              defaclobjtype as kind, defaclacl::text as acl
         from pg_default_acl order by 1, 2, 3`,
		);
		for (const d of defaults.rows)
			out[`default privileges ${d.role} ${d.schema} ${d.kind}`] = d.acl;
		const ext = await db.query(
			"select e.extname, n.nspname, pg_get_userbyid(e.extowner) as owner, e.extversion from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = any($1) order by 1",
			[PLATFORM_EXTENSIONS],
		);
		for (const e of ext.rows)
			out[`extension ${e.extname}`] = `${e.nspname} ${e.owner} ${e.extversion}`;
		return out;
	} finally {
		await db.end();
	}
}

/**
 * has_table_privilege of each API role on every table, view and sequence of public, as
 * "role object privilege" → true/false: what Supabase's API may do with the app's data.
 */
export async function apiPrivileges(
	adminUrl: string,
	schema = "public",
): Promise<Record<string, boolean>> {
	const db = new pg.Client({ connectionString: adminUrl });
	await db.connect();
	try {
		const { rows } = await db.query<{ k: string; ok: boolean }>(
			`select r.rolname || ' ' || format('%I.%I', n.nspname, c.relname) || ' ' || p.priv as k,
              has_table_privilege(r.rolname, c.oid, p.priv) as ok
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        cross join (select unnest($2::text[]) as rolname) r
        cross join (select unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as priv) p
        where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
        order by 1`,
			[schema, API_ROLES],
		);
		return Object.fromEntries(rows.map((r) => [r.k, r.ok]));
	} finally {
		await db.end();
	}
}
