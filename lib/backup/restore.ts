// Restoring a backup (lib/backup/archive.ts) over a database so that the database is always either wholly
// as it was or wholly restored, never a mix. Two methods:
//
// transaction (the default): one psql session runs
//     BEGIN; <drop every object of schema public>; <pg_restore --clean --if-exists -f - archive>; COMMIT;
//   The archive's SQL is streamed from pg_restore into psql; COMMIT is sent only after pg_restore
//   ended well. If anything fails, or the runbook, pg_restore or psql is killed (even with
//   SIGKILL), the session ends without COMMIT and PostgreSQL rolls the whole transaction back.
//   Dropping everything in public first (not only what the archive holds, which is all that
//   --clean drops) removes the objects created after the backup, e.g. a table a deployed
//   migration added; the schema itself stays, with its owner, grants and default privileges.
//   Works wherever the user owns the app's objects (Supabase and other managed servers included).
//
// swap: pg_restore (in parallel, --jobs) into a new database <db>_restore_<time>, then, from the
//   maintenance database, in one transaction: ALTER DATABASE <db> RENAME TO
//   <db>_before_rollback_<time>; ALTER DATABASE <db>_restore_<time> RENAME TO <db>. The target is
//   untouched until that transaction commits. Needs CREATEDB, ownership of the database, no
//   session on either database during the rename (it terminates them), and a server that lets you
//   rename databases (not Supabase). The old database is kept: an instant way back.
//
// Scratch databases (rehearsals, and the swap's new database) are named <db>_<kind>_<UTC time>;
// a killed run leaves one behind, which the next run removes (leftoverDatabases).

import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { rmSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { utcStamp } from "../kit/format.ts";
import { redact } from "../kit/secrets.ts";
import { describeCommand, runTool, type Tool } from "../pg/client-tools.ts";
import {
	connect,
	type Db,
	quoteIdent,
	quoteLiteral,
	withClient,
} from "../pg/db.ts";
import { type Connection, libpqEnv, withDatabase } from "../pg/target.ts";
import type { BackupFormat } from "./archive.ts";
import {
	type BackupScope,
	resetPrivilegesSql,
	scopeOf,
	writeRestoreList,
} from "./scope.ts";

export type RestoreMethod = "transaction" | "swap";
export const RESTORE_METHODS: readonly RestoreMethod[] = [
	"transaction",
	"swap",
];

/** application_name of the restoring sessions (psql, pg_restore). */
export const RESTORE_APPLICATION = "runbook:restore";

/**
 * Drops every table, view, sequence, routine and type of a schema, except those that belong to an
 * extension, keeping the schema (its owner, grants and default privileges) in place.
 */
export function clearSchemaSql(schema = "public"): string {
	const s = quoteLiteral(schema);
	const notExtension = (catalog: string, oid: string) =>
		`NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '${catalog}'::regclass AND d.objid = ${oid} AND d.deptype = 'e')`;
	return `DO $runbook_clear$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT format('DROP %s IF EXISTS %I.%I CASCADE',
                  CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                                 WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                  n.nspname, c.relname) AS stmt
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ${s} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition
       AND ${notExtension("pg_class", "c.oid")}
  LOOP
    EXECUTE r.stmt;
  END LOOP;
  FOR r IN
    SELECT format('DROP %s IF EXISTS %s CASCADE', CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END,
                  p.oid::regprocedure) AS stmt
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname = ${s} AND ${notExtension("pg_proc", "p.oid")}
  LOOP
    EXECUTE r.stmt;
  END LOOP;
  FOR r IN
    SELECT format('DROP %s IF EXISTS %I.%I CASCADE', CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END,
                  n.nspname, t.typname) AS stmt
      FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
     WHERE n.nspname = ${s}
       AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
       AND ${notExtension("pg_type", "t.oid")}
  LOOP
    EXECUTE r.stmt;
  END LOOP;
END
$runbook_clear$;`;
}

/** What psql receives before the archive's SQL. */
export function transactionHeader(lockTimeoutMs: number, schemas = ["public"]) {
	return [
		"BEGIN;",
		"SET client_min_messages = warning;",
		`SET LOCAL lock_timeout = '${Math.max(1, Math.round(lockTimeoutMs))}ms';  -- for the drops below; the archive's SQL then sets it to 0`,
		...schemas.map((s) => clearSchemaSql(s)),
		"",
	].join("\n");
}

/**
 * A restore of a backup that holds the app's objects only (lib/backup/scope.ts): the schemas it
 * clears and refills, the table of contents to restore (--use-list: the schemas themselves stay),
 * and the SQL that gives the objects their recorded privileges.
 */
export interface ScopedRestore {
	schemas: string[];
	listFile: string;
	privilegesSql: string;
	/** Removes the list file. */
	dispose(): void;
}

/**
 * What restoring a backup into `conn`'s database takes when the backup holds the app's objects
 * only; undefined for a whole-database backup.
 */
export async function scopedRestore(
	conn: Connection,
	m: { scope?: BackupScope; privileges?: string[] },
	archive: string,
	pgRestore: Tool,
	env?: NodeJS.ProcessEnv,
): Promise<ScopedRestore | undefined> {
	const scope = scopeOf(m);
	if (scope.kind !== "app") return undefined;
	const list = await runTool(pgRestore, ["--list", archive], null, {
		env: { ...process.env, ...env },
	});
	if (list.exitCode !== 0)
		throw new RunbookError(
			`pg_restore --list cannot read ${archive}: ${tail(list.stderr) || `exit ${list.exitCode}`}`,
		);
	const existing = await withClient(
		conn,
		async (db) =>
			(
				await db.query<{ s: string }>(
					"select nspname as s from pg_namespace where nspname = any($1)",
					[scope.schemas],
				)
			).rows.map((r) => r.s),
		RESTORE_APPLICATION,
	);
	const listFile = writeRestoreList(list.stdout, existing);
	return {
		schemas: scope.schemas,
		listFile,
		privilegesSql: resetPrivilegesSql(scope.schemas, m.privileges ?? []),
		dispose: () => rmSync(listFile, { force: true }),
	};
}

const useList = (scope?: ScopedRestore) =>
	scope ? [`--use-list=${scope.listFile}`] : [];

const pgRestoreScriptArgs = (archive: string, scope?: ScopedRestore) => [
	"--clean",
	"--if-exists",
	"--no-password",
	...useList(scope),
	"--file=-",
	archive,
];
const psqlArgs = [
	"--no-psqlrc",
	"--quiet",
	"--no-password",
	"--set=ON_ERROR_STOP=1",
	"--output=/dev/null",
	"--file=-",
];

/** The transaction method as commands, for plans and --dry-run. */
export function describeTransactionRestore(
	conn: Connection,
	archive: string,
	lockTimeoutMs: number,
	appSchemas?: string[],
): string[] {
	const schemas = appSchemas ?? ["public"];
	return [
		`( echo 'BEGIN; SET LOCAL lock_timeout = ${lockTimeoutMs}ms; <drop every table, view, sequence, routine and type in schema ${schemas.join(", ")}>'`,
		`  pg_restore ${pgRestoreScriptArgs(archive).join(" ")}${appSchemas ? " --use-list=<its table of contents, the existing schemas themselves left out>" : ""}`,
		...(appSchemas
			? [
					"  echo '<REVOKE every privilege on the app's objects; GRANT those the manifest records>'",
				]
			: []),
		`  echo 'COMMIT;'   -- only when pg_restore succeeded; otherwise ROLLBACK`,
		`) | ${describeCommand("psql", psqlArgs, conn)}`,
		"-- one transaction: killed or failed at any point, PostgreSQL rolls it all back",
	];
}

export function describeSwapRestore(
	conn: Connection,
	archive: string,
	jobs: number,
	maintenanceDb: string,
): string[] {
	const db = conn.database;
	const scratch = scratchName(db, "restore", new Date(0)).replace(
		/\d{8}t\d{6}z$/,
		"<time>",
	);
	const old = scratchName(db, "before_rollback", new Date(0)).replace(
		/\d{8}t\d{6}z$/,
		"<time>",
	);
	return [
		`CREATE DATABASE ${quoteIdent(scratch)} TEMPLATE template0 ENCODING <as ${db}> LC_COLLATE <as ${db}> LC_CTYPE <as ${db}>;`,
		describeCommand(
			"pg_restore",
			restoreIntoArgs(archive, scratch, jobs),
			withDatabase(conn, scratch),
		),
		`-- ${db}'s database-level settings and grants copied to ${scratch}`,
		`-- on ${maintenanceDb}: terminate the sessions on ${db}, then in one transaction:`,
		`BEGIN; ALTER DATABASE ${quoteIdent(db)} RENAME TO ${quoteIdent(old)}; ALTER DATABASE ${quoteIdent(scratch)} RENAME TO ${quoteIdent(db)}; COMMIT;`,
	];
}

const restoreIntoArgs = (
	archive: string,
	database: string,
	jobs: number,
	scope?: ScopedRestore,
) => [
	"--no-password",
	"--exit-on-error",
	...(jobs > 1 ? [`--jobs=${jobs}`] : []),
	...useList(scope),
	`--dbname=${database}`,
	archive,
];

// --- scratch databases ------------------------------------------------------------------------

const stamp = (d: Date) => utcStamp(d, "compact");

/** `<db>_<kind>_<UTC time>`, within PostgreSQL's 63-byte limit for names. */
export function scratchName(database: string, kind: string, now = new Date()) {
	const suffix = `_${kind}_${stamp(now)}`.toLowerCase();
	let base = database;
	while (Buffer.byteLength(base + suffix) > 63) base = base.slice(0, -1);
	return base + suffix;
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Databases a killed run of this kind left behind for this target. */
export async function leftoverDatabases(
	db: Db,
	database: string,
	kind: string,
): Promise<string[]> {
	const pattern = scratchName(database, kind, new Date(0)).replace(
		/\d{8}t\d{6}z$/,
		"",
	);
	const re = new RegExp(`^${escapeRe(pattern)}\\d{8}t\\d{6}z$`);
	const { rows } = await db.query<{ datname: string }>(
		"select datname from pg_database order by datname",
	);
	return rows.map((r) => r.datname).filter((n) => re.test(n));
}

interface DatabaseInfo {
	oid: number;
	encoding: string;
	collate: string;
	ctype: string;
	owner: string;
	acl: Array<{ grantee: string | null; privilege: string }> | null;
	settings: string[];
}

async function databaseInfo(db: Db, name: string): Promise<DatabaseInfo> {
	const { rows } = await db.query<{
		oid: number;
		encoding: string;
		collate: string;
		ctype: string;
		owner: string;
		has_acl: boolean;
		settings: string[] | null;
	}>(
		`select d.oid, pg_encoding_to_char(d.encoding) as encoding, d.datcollate as collate, d.datctype as ctype,
            pg_get_userbyid(d.datdba) as owner, d.datacl is not null as has_acl,
            (select s.setconfig from pg_db_role_setting s where s.setdatabase = d.oid and s.setrole = 0) as settings
       from pg_database d where d.datname = $1`,
		[name],
	);
	if (!rows[0])
		throw new RunbookError(`The database "${name}" does not exist.`);
	let acl: DatabaseInfo["acl"] = null;
	if (rows[0].has_acl) {
		const a = await db.query<{ grantee: string | null; privilege: string }>(
			`select case when x.grantee = 0 then null else pg_get_userbyid(x.grantee) end as grantee, x.privilege_type as privilege
         from pg_database d, aclexplode(d.datacl) x where d.datname = $1`,
			[name],
		);
		acl = a.rows;
	}
	return { ...rows[0], acl, settings: rows[0].settings ?? [] };
}

/** A new, empty database shaped like `like` (encoding, collation), from template0. */
export async function createScratchDatabase(
	db: Db,
	name: string,
	like: string,
): Promise<void> {
	const info = await databaseInfo(db, like);
	await db.query(
		`create database ${quoteIdent(name)} template template0 encoding ${quoteLiteral(info.encoding)} lc_collate ${quoteLiteral(info.collate)} lc_ctype ${quoteLiteral(info.ctype)}`,
	);
}

export async function dropDatabase(db: Db, name: string): Promise<void> {
	await db.query(`drop database if exists ${quoteIdent(name)} with (force)`);
}

// --- running the tools ------------------------------------------------------------------------

export interface RestoreOptions {
	archive: string;
	format: BackupFormat;
	pgRestore: Tool;
	psql: Tool;
	/** Longest wait for the locks on the objects being replaced (transaction method). */
	lockTimeoutMs: number;
	/** Rows in the archive (from the manifest), for progress. */
	totalRows?: number;
	env?: NodeJS.ProcessEnv;
	signal?: AbortSignal;
	/** Rows loaded so far, and the table being loaded. */
	onProgress?: (rows: number, table: string | null) => void;
	/** Milestones: "clearing", "loading", "committing", "committed". */
	onPhase?: (phase: string) => void;
	/** A backup of the app's objects only: see ScopedRestore. */
	scope?: ScopedRestore;
}

export interface RestoreOutcome {
	durationMs: number;
	rows: number;
}

function childEnv(
	conn: Connection,
	env: NodeJS.ProcessEnv | undefined,
): NodeJS.ProcessEnv {
	const merged: NodeJS.ProcessEnv = {
		...process.env,
		...(env ?? {}),
		...libpqEnv(conn, RESTORE_APPLICATION),
	};
	for (const [k, v] of Object.entries(merged))
		if (v === undefined) delete merged[k];
	return merged;
}

/** Counts the data lines of the COPY blocks streaming through, and notes which table is loading. */
class CopyCounter extends Transform {
	rows = 0;
	table: string | null = null;
	private inCopy = false;
	private partial: Buffer = Buffer.alloc(0);
	constructor(
		private readonly onRows: (rows: number, table: string | null) => void,
	) {
		super();
	}
	_transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
		const buf = this.partial.length
			? Buffer.concat([this.partial, chunk])
			: chunk;
		let start = 0;
		for (;;) {
			const nl = buf.indexOf(10, start);
			if (nl === -1) break;
			if (this.inCopy) {
				if (nl - start === 2 && buf[start] === 0x5c && buf[start + 1] === 0x2e)
					this.inCopy = false;
				else this.rows++;
			} else if (
				buf[start] === 0x43 &&
				buf.toString("latin1", start, Math.min(nl, start + 5)) === "COPY "
			) {
				this.inCopy = true;
				const m = /^COPY (\S+)/.exec(
					buf.toString("utf8", start, Math.min(nl, start + 300)),
				);
				this.table = m ? m[1].replace(/^public\./, "").replace(/"/g, "") : null;
			}
			start = nl + 1;
		}
		this.partial = Buffer.from(buf.subarray(start));
		this.onRows(this.rows, this.table);
		done(null, chunk);
	}
}

const tail = (text: string, lines = 3) =>
	redact(text)
		.split("\n")
		.map((l) => l.trim())
		.filter(Boolean)
		.slice(-lines)
		.join(" ");

function killAll(children: ChildProcess[]) {
	for (const c of children)
		if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
}

/**
 * The transaction method (see the top of this file) into `conn`'s database. Resolves when the
 * transaction committed; throws, with the database as it was, otherwise.
 */
export async function restoreInTransaction(
	conn: Connection,
	opts: RestoreOptions,
): Promise<RestoreOutcome> {
	const started = performance.now();
	const env = childEnv(conn, opts.env);
	const psql = spawn(opts.psql.path, psqlArgs, {
		env,
		stdio: ["pipe", "ignore", "pipe"],
	});
	const restore = spawn(
		opts.pgRestore.path,
		pgRestoreScriptArgs(opts.archive, opts.scope),
		{
			env,
			stdio: ["ignore", "pipe", "pipe"],
		},
	);
	const children = [psql, restore];
	const onAbort = () => killAll(children);
	opts.signal?.addEventListener("abort", onAbort, { once: true });
	let psqlErr = "";
	let restoreErr = "";
	psql.stderr.on("data", (d) => {
		psqlErr += d;
	});
	restore.stderr.on("data", (d) => {
		restoreErr += d;
	});
	// psql ending early (an error with ON_ERROR_STOP) closes its stdin: stop feeding it.
	psql.stdin.on("error", () => {});
	let counter: CopyCounter | undefined;
	const psqlClosed = once(psql, "close").then(([code]) => {
		if (restore.exitCode === null) restore.kill("SIGTERM");
		// Nothing reads the counter's output any more: let it drain, so it ends.
		counter?.unpipe();
		counter?.resume();
		return code as number | null;
	});
	const restoreClosed = once(restore, "close").then(
		([code]) => code as number | null,
	);
	let reported = -1;
	counter = new CopyCounter((rows, table) => {
		if (rows !== reported) {
			reported = rows;
			opts.onProgress?.(rows, table);
		}
	});
	opts.onPhase?.("clearing");
	psql.stdin.write(transactionHeader(opts.lockTimeoutMs, opts.scope?.schemas));
	opts.onPhase?.("loading");
	restore.stdout.pipe(counter).pipe(psql.stdin, { end: false });
	const ended = once(counter, "end").catch(() => {});
	const [restoreCode] = await Promise.all([
		restoreClosed,
		Promise.race([ended, psqlClosed]),
	]);
	const ok =
		restoreCode === 0 && !opts.signal?.aborted && psql.exitCode === null;
	if (ok) {
		if (opts.scope) psql.stdin.write(opts.scope.privilegesSql);
		opts.onPhase?.("committing");
		psql.stdin.end("COMMIT;\n");
	} else {
		psql.stdin.end("ROLLBACK;\n");
	}
	const psqlCode = await psqlClosed;
	opts.signal?.removeEventListener("abort", onAbort);
	if (opts.signal?.aborted) throw new Error("aborted");
	if (ok && psqlCode === 0) {
		opts.onPhase?.("committed");
		return {
			durationMs: Math.round(performance.now() - started),
			rows: counter.rows,
		};
	}
	const lockTimeout = /lock timeout/i.test(psqlErr);
	const why =
		psqlCode !== 0 && psqlErr.trim()
			? `psql: ${tail(psqlErr)}`
			: restoreCode !== 0
				? `pg_restore (exit ${restoreCode}): ${tail(restoreErr) || "no message"}`
				: `psql exited with ${psqlCode}${psqlErr ? `: ${tail(psqlErr)}` : ""}`;
	throw new RunbookError(
		`The restore failed and was rolled back, so the database is as it was before it: ${why}`,
		EXIT.failed,
		lockTimeout
			? "Another session held a lock on the app's tables (the app reconnected?): stop it, then rerun."
			: undefined,
	);
}

/** pg_restore straight into a database (no transaction): for new, empty databases only. */
export async function restoreIntoDatabase(
	conn: Connection,
	opts: Pick<
		RestoreOptions,
		"archive" | "pgRestore" | "env" | "signal" | "scope"
	> & {
		jobs: number;
	},
): Promise<RestoreOutcome> {
	const started = performance.now();
	const child = spawn(
		opts.pgRestore.path,
		restoreIntoArgs(opts.archive, conn.database, opts.jobs, opts.scope),
		{ env: childEnv(conn, opts.env), stdio: ["ignore", "ignore", "pipe"] },
	);
	const onAbort = () => killAll([child]);
	opts.signal?.addEventListener("abort", onAbort, { once: true });
	let err = "";
	child.stderr.on("data", (d) => {
		err += d;
	});
	const [code] = (await once(child, "close")) as [number | null];
	opts.signal?.removeEventListener("abort", onAbort);
	if (opts.signal?.aborted) throw new Error("aborted");
	if (code !== 0)
		throw new RunbookError(
			`pg_restore into ${conn.database} failed (exit ${code}): ${tail(err) || "no message"}`,
		);
	const privileges = opts.scope?.privilegesSql;
	if (privileges)
		await withClient(conn, (db) => db.query(privileges), RESTORE_APPLICATION);
	return { durationMs: Math.round(performance.now() - started), rows: 0 };
}

export interface SwapOptions extends RestoreOptions {
	jobs: number;
	maintenanceDb: string;
	now?: Date;
}

export interface SwapOutcome extends RestoreOutcome {
	/** What the target was renamed to (kept: drop it when satisfied). */
	oldDatabase: string;
	restoreMs: number;
	swapMs: number;
}

/**
 * The swap method (see the top of this file). Every session on the target, this process's own
 * included, is terminated at the rename: reconnect afterwards.
 */
export async function restoreBySwap(
	conn: Connection,
	opts: SwapOptions,
): Promise<SwapOutcome> {
	const started = performance.now();
	const now = opts.now ?? new Date();
	const target = conn.database;
	const scratch = scratchName(target, "restore", now);
	const old = scratchName(target, "before_rollback", now);
	const admin = await connect(
		withDatabase(conn, opts.maintenanceDb),
		"runbook:emergency-rollback:swap",
	);
	let created = false;
	try {
		const info = await databaseInfo(admin, target);
		await createScratchDatabase(admin, scratch, target);
		created = true;
		opts.onPhase?.(`restoring into ${scratch}`);
		const restored = await restoreIntoDatabase(withDatabase(conn, scratch), {
			archive: opts.archive,
			pgRestore: opts.pgRestore,
			env: opts.env,
			signal: opts.signal,
			jobs: opts.jobs,
		});
		// What belongs to the database itself, not to its contents.
		for (const setting of info.settings) {
			const eq = setting.indexOf("=");
			await admin.query(
				`alter database ${quoteIdent(scratch)} set ${quoteIdent(setting.slice(0, eq))} = ${quoteLiteral(setting.slice(eq + 1))}`,
			);
		}
		if (info.acl) {
			await admin.query(
				`revoke all on database ${quoteIdent(scratch)} from public`,
			);
			for (const a of info.acl)
				await admin.query(
					`grant ${a.privilege} on database ${quoteIdent(scratch)} to ${a.grantee ? quoteIdent(a.grantee) : "public"}`,
				);
		}
		const me = await admin.query<{ u: string }>("select current_user as u");
		if (info.owner !== me.rows[0].u)
			await admin.query(
				`alter database ${quoteIdent(scratch)} owner to ${quoteIdent(info.owner)}`,
			);
		if (opts.signal?.aborted) throw new Error("aborted");
		opts.onPhase?.(`swapping ${target} and ${scratch}`);
		const swapStarted = performance.now();
		for (let attempt = 1; ; attempt++) {
			await admin.query(
				"select pg_terminate_backend(pid) from pg_stat_activity where datname = any($1) and pid <> pg_backend_pid()",
				[[target, scratch]],
			);
			try {
				await admin.query("begin");
				await admin.query(
					`alter database ${quoteIdent(target)} rename to ${quoteIdent(old)}`,
				);
				await admin.query(
					`alter database ${quoteIdent(scratch)} rename to ${quoteIdent(target)}`,
				);
				await admin.query("commit");
				break;
			} catch (err) {
				await admin.query("rollback").catch(() => {});
				// 55006: "database is being accessed by other users": a session came back.
				if ((err as { code?: string }).code !== "55006" || attempt >= 10)
					throw err;
				await new Promise((r) => setTimeout(r, 100 * attempt));
			}
		}
		created = false;
		opts.onPhase?.("committed");
		return {
			durationMs: Math.round(performance.now() - started),
			rows: 0,
			oldDatabase: old,
			restoreMs: restored.durationMs,
			swapMs: Math.round(performance.now() - swapStarted),
		};
	} finally {
		if (created) await dropDatabase(admin, scratch).catch(() => {});
		await admin.end().catch(() => {});
	}
}
