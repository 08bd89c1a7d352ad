// A Supabase-shaped target on real PostgreSQL, for the migrate-to-supabase and switch-db-env
// tests and the benchmark: its own throw-away cluster whose bootstrap superuser is supabase_admin;
// the platform's roles (postgres, not a superuser, owns the database; authenticator, anon,
// authenticated, service_role); its schemas (auth, storage, extensions, graphql, realtime) with a
// table or two each and some rows; pgcrypto installed in `extensions`; and a real pgbouncer
// (Debian's package) in transaction mode in front of it as the pooler, on a free port with its own
// config and auth file in a temporary directory, stopped with the cluster.

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
	/** supabase_admin (superuser) on the postgres database: for the test's own checks. */
	adminUrl: string;
	/** The project's direct connection: postgres (not a superuser) on port 5432's stand-in. */
	directUrl: string;
	/** The pooler: pgbouncer in transaction mode, with ?pgbouncer=true as Prisma wants it. */
	poolerUrl: string;
	/** The postgres role's password (a secret: tests check it never shows). */
	password: string;
	stop(): Promise<void>;
}

export const FIXTURE_PLATFORM_SCHEMAS = [
	"auth",
	"storage",
	"extensions",
	"graphql",
	"realtime",
];
export const FIXTURE_ROLES = [
	"postgres",
	"supabase_admin",
	"authenticator",
	"anon",
	"authenticated",
	"service_role",
];

function platformSql(password: string, authenticatorPassword: string): string {
	return `
create role postgres login createrole createdb replication bypassrls password '${password}';
create role authenticator login noinherit password '${authenticatorPassword}';
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres;
alter database postgres owner to postgres;

grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;

create schema extensions authorization postgres;
grant usage on schema extensions to anon, authenticated, service_role;
create extension pgcrypto with schema extensions;

create schema auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role;
create table auth.users (
  id uuid primary key default extensions.gen_random_uuid(),
  email text unique,
  encrypted_password text,
  created_at timestamptz not null default now()
);
create table auth.sessions (
  id uuid primary key default extensions.gen_random_uuid(),
  user_id uuid not null references auth.users on delete cascade,
  created_at timestamptz not null default now()
);
insert into auth.users (email, encrypted_password)
select 'admin' || i || '@example.com', extensions.crypt('pw' || i, extensions.gen_salt('bf', 4)) from generate_series(1, 3) i;
insert into auth.sessions (user_id) select id from auth.users;

create schema storage authorization supabase_admin;
grant usage on schema storage to anon, authenticated, service_role;
create table storage.buckets (id text primary key, name text not null, public boolean not null default false, created_at timestamptz not null default now());
create table storage.objects (
  id uuid primary key default extensions.gen_random_uuid(),
  bucket_id text references storage.buckets,
  name text,
  owner uuid,
  metadata jsonb
);
insert into storage.buckets (id, name, public) values ('faces', 'faces', false), ('videos', 'videos', true);
insert into storage.objects (bucket_id, name, metadata) values ('faces', 'a.jpg', '{"size": 1}'), ('videos', 'b.mp4', '{"size": 2}');

create schema graphql authorization supabase_admin;
create table graphql.schema_version (version int primary key, applied_at timestamptz not null default now());
insert into graphql.schema_version (version) values (1);

create schema realtime authorization supabase_admin;
create table realtime.subscription (
  id bigint generated always as identity primary key,
  subscription_id uuid not null,
  claims jsonb,
  created_at timestamptz not null default now()
);
create table realtime.messages (id bigserial primary key, topic text not null, payload jsonb, inserted_at timestamptz not null default now());
insert into realtime.messages (topic, payload) values ('room:1', '{"hello": "world"}');
`;
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

/** Starts the Supabase-shaped server and its pooler. */
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
		const admin = new pg.Client({ connectionString: cluster.adminUrl });
		await admin.connect();
		try {
			await admin.query(platformSql(password, randomBytes(9).toString("hex")));
		} finally {
			await admin.end();
		}
		const port = await freePort();
		const ini = join(dir, "pgbouncer.ini");
		const log = join(dir, "pgbouncer.log");
		writeFileSync(join(dir, "userlist.txt"), `"postgres" "${password}"\n`, {
			mode: 0o600,
		});
		writeFileSync(
			ini,
			[
				"[databases]",
				`* = host=127.0.0.1 port=${pgPort}`,
				"[pgbouncer]",
				"listen_addr = 127.0.0.1",
				`listen_port = ${port}`,
				"unix_socket_dir =",
				"auth_type = scram-sha-256",
				`auth_file = ${join(dir, "userlist.txt")}`,
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
		const asRoot = userInfo().uid === 0;
		let ids: { uid: number; gid: number } | undefined;
		if (asRoot) {
			ids = {
				uid: Number(execFileSync("id", ["-u", "postgres"]).toString().trim()),
				gid: Number(execFileSync("id", ["-g", "postgres"]).toString().trim()),
			};
			for (const f of [dir, ini, join(dir, "userlist.txt")])
				chownSync(f, ids.uid, ids.gid);
		}
		bouncer = spawn(findPgbouncer(), [ini], {
			stdio: ["ignore", "ignore", "pipe"],
			...(ids ?? {}),
		});
		bouncer.stderr?.resume();
		const directUrl = `postgresql://postgres:${password}@127.0.0.1:${pgPort}/postgres`;
		const poolerUrl = `postgresql://postgres:${password}@127.0.0.1:${port}/postgres?pgbouncer=true`;
		await waitForPooler(poolerUrl, bouncer, log);
		const child = bouncer;
		return {
			adminUrl: cluster.adminUrl,
			directUrl,
			poolerUrl,
			password,
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

/**
 * What must not change on the platform's side: its roles (attributes, password hashes,
 * memberships), its schemas' owners and grants (public's too), and every table, column,
 * constraint and row in the platform schemas.
 */
export async function snapshotPlatform(
	adminUrl: string,
): Promise<Record<string, string>> {
	const db = new pg.Client({ connectionString: adminUrl });
	await db.connect();
	try {
		const out: Record<string, string> = {};
		const roles = await db.query(
			`select rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
              rolbypassrls, rolconnlimit, rolpassword, rolvaliduntil,
              (select string_agg(g.rolname, ',' order by g.rolname) from pg_auth_members m join pg_authid g on g.oid = m.roleid where m.member = a.oid) as member_of
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
              coalesce(c.relacl::text, '') as acl,
              coalesce((select string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':' || coalesce(pg_get_expr(d.adbin, d.adrelid), ''), ',' order by a.attnum)
                          from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                         where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '') as cols,
              coalesce((select string_agg(pg_get_constraintdef(k.oid), ',' order by k.conname) from pg_constraint k where k.conrelid = c.oid), '') as cons
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = any($1) order by 1`,
			[FIXTURE_PLATFORM_SCHEMAS],
		);
		for (const o of objects.rows)
			out[`object ${o.obj}`] = `${o.owner} ${o.acl} ${o.cols} | ${o.cons}`;
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
		const ext = await db.query(
			"select e.extname, n.nspname, pg_get_userbyid(e.extowner) as owner from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname in ('pgcrypto', 'plpgsql')",
		);
		for (const e of ext.rows)
			out[`extension ${e.extname}`] = `${e.nspname} ${e.owner}`;
		return out;
	} finally {
		await db.end();
	}
}
