// Backups: a pg_dump archive plus a manifest JSON beside it, in BACKUP_DIR (default backups/).
// Created under a temporary name and renamed only when complete, so a killed dump never leaves a
// file that looks like a backup; verified by recomputing the sha256 and reading the archive with
// `pg_restore --list`. Shared by backup.ts, deploy-production.ts and emergency-rollback.ts.
//
// Row counts in the manifest are exact and match the dump: they are counted inside a REPEATABLE
// READ transaction whose snapshot pg_dump imports (`pg_dump --snapshot`), while pg_dump runs.

import { createHash } from "node:crypto";
import {
	chmodSync,
	createReadStream,
	existsSync,
	mkdirSync,
	readdirSync,
	readFileSync,
	renameSync,
	rmSync,
	statfsSync,
	statSync,
	writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import type pg from "pg";
import { failureReason } from "../kit/child-failure.ts";
import { EXIT, RunbookError, refusal, usageError } from "../kit/errors.ts";
import { formatBytes, utcStamp } from "../kit/format.ts";
import { isRunning, processToken } from "../kit/process-identity.ts";
import { readAppliedMigrations } from "../migrations/history.ts";
import { countTables, tableKey } from "../pg/catalog.ts";
import {
	describeCommand,
	findTool,
	runTool,
	type Tool,
} from "../pg/client-tools.ts";
import { connect, serverVersion } from "../pg/db.ts";
import type { Connection } from "../pg/target.ts";
import {
	type BackupScope,
	chooseScope,
	describeScope,
	entriesOutsideScope,
	readPrivileges,
	scopeDumpArgs,
	scopeOf,
} from "./scope.ts";

export type BackupFormat = "custom" | "directory";
export type BackupKind = "manual" | "pre-deploy" | "safety";

export interface ArchiveFile {
	name: string;
	size_bytes: number;
	sha256: string;
}

export interface BackupManifest {
	id: string;
	kind: BackupKind;
	created_at: string;
	/** user@host:port/db, password never included. */
	target: string;
	database: string;
	server_version: string;
	pg_dump_version: string;
	format: BackupFormat;
	/** The archive's name inside BACKUP_DIR: <id>.dump (custom) or <id>.dir/ (directory). */
	archive: string;
	jobs: number;
	size_bytes: number;
	/**
	 * custom: sha256 of the file. directory: sha256 of the lines "<name> <sha256 of the file>\n"
	 * for the archive's files in name order (each file's own sum is in `files`).
	 */
	sha256: string;
	files?: ArchiveFile[];
	duration_ms: number;
	/** The newest migration finished in _prisma_migrations at the dump's snapshot, or null. */
	latest_migration: string | null;
	/**
	 * The dump's snapshot (pg_current_snapshot() text): a row whose xmin it cannot see was written
	 * after the backup, so a rollback finds new rows without reading every key (absent in older backups).
	 */
	snapshot?: string;
	/** Exact row counts per table ("table" in public, else "schema.table"), from the dump's snapshot. */
	row_counts: Record<string, number>;
	/** What the archive holds (absent in backups made before scopes: the whole database). */
	scope?: BackupScope;
	/** Scope app: the GRANT statements that give the app's objects their privileges, from the dump's snapshot. */
	privileges?: string[];
	/** Set by a successful verification; cleared when a later one fails. */
	verified_at: string | null;
	verify_error?: string | null;
}

export interface BackupEntry {
	manifest: BackupManifest;
	/** Whether the archive named by the manifest is present. */
	archivePresent: boolean;
}

/** Compressed custom/directory archives hold table data only: see estimateDumpBytes. */
export const DUMP_SIZE_FACTOR = 0.5;
const DEFAULT_MIN_FREE_MB = 256;
/** pg_dump waits this long for each table's lock (a running migration holds ACCESS EXCLUSIVE), then gives up. */
export const DUMP_LOCK_WAIT = "60s";

export function backupDir(env: Record<string, string | undefined>): string {
	return resolve(env.BACKUP_DIR || "backups");
}

function minFreeBytes(env: Record<string, string | undefined>): number {
	const text = env.BACKUP_MIN_FREE_MB;
	if (text === undefined || text === "")
		return DEFAULT_MIN_FREE_MB * 1024 * 1024;
	const n = Number(text);
	if (!Number.isFinite(n) || n < 0)
		throw usageError(
			`BACKUP_MIN_FREE_MB must be a number of megabytes, not "${text}".`,
		);
	return n * 1024 * 1024;
}

const timestamp = (d: Date) => utcStamp(d, "compact");

/** `<db>-<UTC timestamp>`, e.g. faceswap-20250107T031500Z; a suffix keeps two in one second apart. */
export function newBackupId(
	dir: string,
	database: string,
	now = new Date(),
): string {
	const base = `${database.replace(/[^A-Za-z0-9_.-]/g, "_")}-${timestamp(now)}`;
	let id = base;
	for (
		let n = 2;
		existsSync(join(dir, `${id}.json`)) ||
		existsSync(join(dir, `${id}.dump`)) ||
		existsSync(join(dir, `${id}.dir`));
		n++
	) {
		id = `${base}-${n}`;
	}
	return id;
}

const archiveName = (id: string, format: BackupFormat) =>
	format === "custom" ? `${id}.dump` : `${id}.dir`;

/** pg_dump's arguments (no connection: that travels in PG* variables). */
export function dumpArgs(
	file: string,
	format: BackupFormat,
	jobs: number,
	snapshot?: string,
	scope: BackupScope = { kind: "database" },
): string[] {
	return [
		`--format=${format}`,
		...scopeDumpArgs(scope),
		...(format === "directory" && jobs > 1 ? [`--jobs=${jobs}`] : []),
		`--file=${file}`,
		`--lock-wait-timeout=${DUMP_LOCK_WAIT}`,
		"--no-password",
		...(snapshot ? [`--snapshot=${snapshot}`] : []),
	];
}

export interface BackupOptions {
	format?: BackupFormat;
	jobs?: number;
	kind: BackupKind;
	env: Record<string, string | undefined>;
	signal?: AbortSignal;
	/** Progress lines. */
	log?: (line: string) => void;
}

/** What `createBackup` would run, for plans and --dry-run. */
export function describeBackup(
	conn: Connection,
	opts: Pick<BackupOptions, "format" | "jobs" | "env">,
): string[] {
	const format = opts.format ?? "custom";
	const dir = backupDir(opts.env);
	const id = `${conn.database}-<UTC time>`;
	const archive = archiveName(id, format);
	return [
		"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot();  -- own connection, open until pg_dump ends",
		describeCommand(
			"pg_dump",
			dumpArgs(
				join(dir, `.partial-${id}`, archive),
				format,
				opts.jobs ?? 1,
				"<snapshot>",
			),
			conn,
		),
		"-- on a Supabase database (or BACKUP_SCOPE=app): the app's schemas only (--schema=public or APP_SCHEMAS, --no-privileges); the app's privileges read in that snapshot into the manifest",
		"SELECT count(*) FROM <each table>;  -- in that snapshot, while pg_dump runs",
		`mv ${join(dir, `.partial-${id}`, archive)} ${join(dir, archive)}  -- only when pg_dump succeeded`,
		`write ${join(dir, `${id}.json`)}  -- the manifest; archive and manifest mode 0600`,
	];
}

export interface BackupCheck {
	serverVersion: string;
	serverMajor: number;
	pgDump: Tool;
	databaseBytes: number;
	estimateBytes: number;
	freeBytes: number;
	minFreeBytes: number;
	dir: string;
}

/**
 * The size a dump will take, estimated from pg_database_size: an archive holds table data only
 * (index definitions, not index pages; no free space or dead rows) and compresses it with zlib.
 * Measured here: Face Swap data dumps to about 0.14 of pg_database_size, pgbench's to about 0.1;
 * 0.5 leaves room for data that compresses badly (random tokens, already-compressed bytea).
 */
export function estimateDumpBytes(databaseBytes: number): number {
	return Math.ceil(databaseBytes * DUMP_SIZE_FACTOR);
}

function nearestExisting(dir: string): string {
	let d = dir;
	while (!existsSync(d) && dirname(d) !== d) d = dirname(d);
	return d;
}

/** Free bytes for an unprivileged writer on the filesystem that holds (or will hold) dir. */
export function freeBytes(dir: string): number {
	const s = statfsSync(nearestExisting(dir));
	return Number(s.bavail) * Number(s.bsize);
}

/**
 * Refuses (exit 3) before anything is dumped when pg_dump is older than the server or BACKUP_DIR's
 * filesystem lacks room for the estimated size plus BACKUP_MIN_FREE_MB.
 */
export async function checkBackup(
	db: pg.Client,
	env: Record<string, string | undefined>,
): Promise<BackupCheck> {
	const v = await serverVersion(db);
	const pgDump = await findTool("pg_dump", v.major, env);
	const { rows } = await db.query<{ bytes: string }>(
		"select pg_database_size(current_database()) as bytes",
	);
	const databaseBytes = Number(rows[0].bytes);
	const dir = backupDir(env);
	const estimateBytes = estimateDumpBytes(databaseBytes);
	const free = freeBytes(dir);
	const reserve = minFreeBytes(env);
	if (free < estimateBytes + reserve) {
		throw refusal(
			`Not enough room for the backup in ${dir}: ${formatBytes(free)} free, and the dump needs an estimated ${formatBytes(estimateBytes)} ` +
				`(${DUMP_SIZE_FACTOR} × the database's ${formatBytes(databaseBytes)}) plus ${formatBytes(reserve)} to keep free (BACKUP_MIN_FREE_MB). Nothing was dumped.`,
			"Free some space (npx tsx runbooks/backup.ts list; prune with --keep N) or set BACKUP_DIR to a larger disk.",
		);
	}
	return {
		serverVersion: v.text,
		serverMajor: v.major,
		pgDump,
		databaseBytes,
		estimateBytes,
		freeBytes: free,
		minFreeBytes: reserve,
		dir,
	};
}

const DUMPED_TABLES = `
  select n.nspname as schema, c.relname as name
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
   where c.relkind in ('r', 'p') and not c.relispartition
     and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
   order by n.nspname, c.relname`;

/** Exact row counts of every table pg_dump dumps, keyed as in the manifest. */
async function countDumpedTables(
	db: pg.Client,
	scope: BackupScope,
	signal?: AbortSignal,
): Promise<Record<string, number>> {
	const { rows: all } = await db.query<{ schema: string; name: string }>(
		DUMPED_TABLES,
	);
	const rows =
		scope.kind === "app"
			? all.filter((t) => scope.schemas.includes(t.schema))
			: all;
	return (await countTables(
		db,
		rows.map((t) => tableKey(t.schema, t.name)),
		{ signal },
	)) as Record<string, number>;
}

async function latestMigration(db: pg.Client): Promise<string | null> {
	const rows = await readAppliedMigrations(db);
	const done = (rows ?? []).filter((r) => r.finished_at && !r.rolled_back_at);
	return done.length ? done[done.length - 1].migration_name : null;
}

function sha256File(path: string): Promise<string> {
	return new Promise((resolvePromise, reject) => {
		const h = createHash("sha256");
		// 1 MiB reads: with the default 64 KiB, hashing a 145 MB archive took 0.7 s instead of 0.18 s.
		createReadStream(path, { highWaterMark: 1 << 20 })
			.on("data", (d) => h.update(d))
			.on("error", reject)
			.on("end", () => resolvePromise(h.digest("hex")));
	});
}

/** Size and sha256 of an archive (file, or directory as described on BackupManifest.sha256). */
export async function checksumArchive(
	path: string,
	format: BackupFormat,
): Promise<{ size: number; sha256: string; files?: ArchiveFile[] }> {
	if (format === "custom")
		return { size: statSync(path).size, sha256: await sha256File(path) };
	const files: ArchiveFile[] = [];
	for (const name of readdirSync(path).sort()) {
		const p = join(path, name);
		files.push({
			name,
			size_bytes: statSync(p).size,
			sha256: await sha256File(p),
		});
	}
	const h = createHash("sha256");
	for (const f of files) h.update(`${f.name} ${f.sha256}\n`);
	return {
		size: files.reduce((a, f) => a + f.size_bytes, 0),
		sha256: h.digest("hex"),
		files,
	};
}

function writeJsonAtomic(path: string, value: unknown): void {
	const tmp = join(dirname(path), `.${process.pid}.${Date.now()}.tmp.json`);
	writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
	renameSync(tmp, path);
}

// .partial-<id>-<owner>, the owner a processToken ("<pid>" from older versions).
const PARTIAL = /^\.partial-.+-(\d+(?:\.\d+)?)$/;

/** Removes what killed dumps left behind (their process is gone); returns their names. */
export function removeStalePartials(dir: string): string[] {
	if (!existsSync(dir)) return [];
	const removed: string[] = [];
	for (const name of readdirSync(dir)) {
		const m = PARTIAL.exec(name);
		if (m && !isRunning(m[1])) {
			rmSync(join(dir, name), { recursive: true, force: true });
			removed.push(name);
		}
	}
	return removed;
}

/**
 * Dumps the database and writes the manifest. Refuses first (see checkBackup). The archive is
 * written inside BACKUP_DIR/.partial-<id>-<pid.start>/ (mode 0700) and moved into place only when
 * pg_dump succeeded; the manifest is written last. Does not verify: call verifyBackup.
 */
/** pg_dump (and its exported snapshot) need one real session: refuse a transaction pooler. */
export function refusePooled(conn: Connection): void {
	if (conn.pooled) {
		throw refusal(
			`${conn.display} goes through a transaction pooler (pgbouncer=true or port 6543): pg_dump needs a direct connection.`,
			"Set DIRECT_URL to the direct, non-pooled connection string (on Supabase: port 5432).",
		);
	}
}

export async function createBackup(
	conn: Connection,
	opts: BackupOptions,
): Promise<BackupManifest> {
	refusePooled(conn);
	const format = opts.format ?? "custom";
	const jobs = format === "directory" ? Math.max(1, opts.jobs ?? 1) : 1;
	const log = opts.log ?? (() => {});
	const snap = await connect(conn, "runbook:backup-snapshot");
	const started = performance.now();
	let tmp: string | undefined;
	try {
		const check = await checkBackup(snap, opts.env);
		const dir = check.dir;
		mkdirSync(dir, { recursive: true, mode: 0o700 });
		for (const name of removeStalePartials(dir))
			log(`removed ${name}, left by an interrupted backup`);
		const id = newBackupId(dir, conn.database);
		tmp = join(dir, `.partial-${id}-${processToken()}`);
		mkdirSync(tmp, { mode: 0o700 });
		const archive = archiveName(id, format);
		const tmpArchive = join(tmp, archive);
		const createdAt = new Date();

		await snap.query("begin isolation level repeatable read read only");
		const { rows } = await snap.query<{ s: string }>(
			"select pg_export_snapshot() as s",
		);
		const snapshot = rows[0].s;
		const seen = await snap.query<{ s: string }>(
			"select pg_current_snapshot()::text as s",
		);
		const latest = await latestMigration(snap);
		const scope = await chooseScope(snap, opts.env);
		const privileges =
			scope.kind === "app"
				? await readPrivileges(snap, scope.schemas)
				: undefined;
		log(
			`pg_dump ${check.pgDump.version} → ${join(dir, archive)} (${format}${jobs > 1 ? `, ${jobs} jobs` : ""}; estimated ${formatBytes(check.estimateBytes)}, ${formatBytes(check.freeBytes)} free)`,
		);
		log(`scope: ${describeScope(scope)}`);

		const dumping = runTool(
			check.pgDump,
			dumpArgs(tmpArchive, format, jobs, snapshot, scope),
			conn,
			{
				signal: opts.signal,
				appName: "runbook:pg_dump",
				env: { ...process.env, ...opts.env },
			},
		);
		// Count in the exported snapshot while pg_dump reads it; catch now, report after pg_dump ends.
		const counting = countDumpedTables(snap, scope, opts.signal).then(
			(c) => ({ ok: true as const, counts: c }),
			(e: unknown) => ({ ok: false as const, error: e }),
		);
		const dump = await dumping;
		const counted = await counting;
		await snap.query("commit").catch(() => {});
		if (dump.exitCode !== 0) {
			const why = dump.stderr
				.trim()
				.split("\n")
				.filter(Boolean)
				.slice(-3)
				.join(" ");
			if (/No space left on device|Disk quota exceeded/i.test(dump.stderr))
				throw new RunbookError(
					`The disk holding BACKUP_DIR (${dir}) ran out of space during the dump: pg_dump could not write (${/quota/i.test(dump.stderr) ? "Disk quota exceeded" : "No space left on device"}), although the estimate of ${formatBytes(check.estimateBytes)} fit in the ${formatBytes(check.freeBytes)} free. No backup was kept (the partial archive was removed).`,
					EXIT.failed,
					`Free some space there (npx tsx runbooks/backup.ts list; prune with --keep N), or set BACKUP_DIR to a larger disk, then retry. This data compresses worse than the estimate assumes: keep room for about ${formatBytes(check.databaseBytes)}.`,
				);
			throw new RunbookError(
				`pg_dump failed: ${failureReason(dump, why)}`,
				EXIT.failed,
				// A lock wait that ran out (not, say, a session terminated while it waited).
				/lock/i.test(why) && /timeout|could not obtain lock/i.test(why)
					? `A table stayed locked longer than ${DUMP_LOCK_WAIT} (a running migration or a long transaction?): see pg_stat_activity, then retry.`
					: "No backup was kept. Check the message above, then retry.",
			);
		}
		if (!counted.ok) throw counted.error;

		if (format === "custom") chmodSync(tmpArchive, 0o600);
		else {
			chmodSync(tmpArchive, 0o700);
			for (const f of readdirSync(tmpArchive))
				chmodSync(join(tmpArchive, f), 0o600);
		}
		const sum = await checksumArchive(tmpArchive, format);
		const manifest: BackupManifest = {
			id,
			kind: opts.kind,
			created_at: createdAt.toISOString(),
			target: conn.display,
			database: conn.database,
			server_version: check.serverVersion,
			pg_dump_version: check.pgDump.version,
			format,
			archive,
			jobs,
			size_bytes: sum.size,
			sha256: sum.sha256,
			...(sum.files ? { files: sum.files } : {}),
			duration_ms: Math.round(performance.now() - started),
			latest_migration: latest,
			snapshot: seen.rows[0].s,
			row_counts: counted.counts,
			scope,
			...(privileges ? { privileges } : {}),
			verified_at: null,
		};
		renameSync(tmpArchive, join(dir, archive));
		writeJsonAtomic(join(dir, `${id}.json`), manifest);
		return manifest;
	} finally {
		await snap.end().catch(() => {});
		if (tmp) rmSync(tmp, { recursive: true, force: true });
	}
}

function readManifest(path: string): BackupManifest | null {
	try {
		const m = JSON.parse(readFileSync(path, "utf8")) as BackupManifest;
		return m && typeof m.id === "string" && typeof m.archive === "string"
			? m
			: null;
	} catch {
		return null;
	}
}

/** Every backup in BACKUP_DIR with a readable manifest, newest first. */
export function listBackups(
	env: Record<string, string | undefined>,
): BackupEntry[] {
	const dir = backupDir(env);
	if (!existsSync(dir)) return [];
	return readdirSync(dir)
		.filter((n) => n.endsWith(".json") && !n.startsWith("."))
		.map((n) => readManifest(join(dir, n)))
		.filter((m): m is BackupManifest => m !== null)
		.map((manifest) => ({
			manifest,
			archivePresent: existsSync(join(dir, manifest.archive)),
		}))
		.sort(
			(a, b) =>
				b.manifest.created_at.localeCompare(a.manifest.created_at) ||
				b.manifest.id.localeCompare(a.manifest.id),
		);
}

/** Files in BACKUP_DIR that belong to no manifest (e.g. copied in by hand), and leftovers of running or killed dumps. */
export function strayFiles(env: Record<string, string | undefined>): string[] {
	const dir = backupDir(env);
	if (!existsSync(dir)) return [];
	const known = new Set(
		listBackups(env).flatMap((e) => [
			e.manifest.archive,
			`${e.manifest.id}.json`,
		]),
	);
	return readdirSync(dir).filter((n) => !known.has(n));
}

/** A backup of this target by id, or its newest with "latest". Usage error (exit 2) when there is none. */
export function findBackup(
	env: Record<string, string | undefined>,
	idOrLatest: string,
	target?: string,
): BackupEntry {
	const all = listBackups(env);
	if (idOrLatest === "latest") {
		const mine = all.filter((e) => !target || e.manifest.target === target);
		if (mine.length === 0) {
			throw usageError(
				`There is no backup${target ? ` of ${target}` : ""} in ${backupDir(env)}.`,
				"Create one: npx tsx runbooks/backup.ts create",
			);
		}
		return mine[0];
	}
	const found = all.find((e) => e.manifest.id === idOrLatest);
	if (!found) {
		throw usageError(
			`There is no backup "${idOrLatest}" in ${backupDir(env)}.`,
			"List them: npx tsx runbooks/backup.ts list",
		);
	}
	return found;
}

export interface VerifyResult {
	ok: boolean;
	problems: string[];
	/** Entries in the archive's table of contents. */
	tocEntries: number;
	tablesWithData: number;
	manifest: BackupManifest;
}

/**
 * Verifies a backup: the archive's sha256 (and size) match the manifest, and `pg_restore --list`
 * reads it and lists the data of every table the manifest counted. Records the outcome in the
 * manifest (verified_at on success; cleared, with verify_error, on failure).
 */
export async function verifyBackup(
	entry: BackupEntry,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
	/** record: false checks without writing the outcome into the manifest (e.g. under --dry-run). */
	options: { record?: boolean } = {},
): Promise<VerifyResult> {
	const dir = backupDir(env);
	const m = entry.manifest;
	const path = join(dir, m.archive);
	const problems: string[] = [];
	let tocEntries = 0;
	let tablesWithData = 0;
	if (!existsSync(path)) {
		problems.push(`the archive ${m.archive} is missing from ${dir}`);
	} else {
		// The checksum and pg_restore --list read the archive at the same time (two cores, one pass each).
		const summing = checksumArchive(path, m.format);
		const major = Number(/^(\d+)/.exec(m.pg_dump_version)?.[1]) || undefined;
		const listing = findTool("pg_restore", major, {
			...process.env,
			...env,
		}).then((pgRestore) =>
			runTool(pgRestore, ["--list", path], null, {
				signal,
				env: { ...process.env, ...env },
			}),
		);
		const [sum, list] = await Promise.all([summing, listing]);
		if (sum.sha256 !== m.sha256) {
			const bad = (m.files ?? [])
				.filter(
					(f) => sum.files?.find((g) => g.name === f.name)?.sha256 !== f.sha256,
				)
				.map((f) => f.name);
			problems.push(
				`sha256 mismatch: the archive changed since it was written (manifest ${m.sha256.slice(0, 12)}…, now ${sum.sha256.slice(0, 12)}…${
					bad.length ? `; files ${bad.join(", ")}` : ""
				}${sum.size !== m.size_bytes ? `; size ${sum.size} bytes, manifest ${m.size_bytes}` : ""})`,
			);
		}
		if (list.exitCode !== 0) {
			problems.push(
				`pg_restore --list cannot read the archive: ${list.stderr.trim().split("\n").slice(-2).join(" ") || `exit ${list.exitCode}`}`,
			);
		} else {
			const lines = list.stdout.split("\n").filter((l) => /^\d+;/.test(l));
			tocEntries = lines.length;
			const data = new Set(
				lines
					// "TABLE DATA <schema> <name> <owner>": a name may hold spaces ("Audit Log"); the owner is the last word.
					.map((l) => /\bTABLE DATA (\S+) (.+) (\S+)$/.exec(l.trimEnd()))
					.filter((x): x is RegExpExecArray => x !== null)
					.map((x) => tableKey(x[1], x[2])),
			);
			tablesWithData = data.size;
			const missing = Object.keys(m.row_counts).filter(
				(t) => !data.has(t) && !data.has(t.replace(/"/g, "")),
			);
			if (missing.length)
				problems.push(
					`the archive has no data for ${missing.length} counted table(s): ${missing.slice(0, 5).join(", ")}`,
				);
			const scope = scopeOf(m);
			const outside =
				scope.kind === "app"
					? entriesOutsideScope(list.stdout, scope.schemas)
					: [];
			if (outside.length)
				problems.push(
					`the archive holds ${outside.length} entr${outside.length === 1 ? "y" : "ies"} outside the app's schemas (${scope.kind === "app" ? scope.schemas.join(", ") : ""}): ${outside.slice(0, 3).join("; ")}`,
				);
		}
	}
	const ok = problems.length === 0;
	const updated: BackupManifest = {
		...m,
		verified_at: ok ? new Date().toISOString() : null,
		verify_error: ok ? null : problems.join("; "),
	};
	if (options.record !== false && existsSync(join(dir, `${m.id}.json`)))
		writeJsonAtomic(join(dir, `${m.id}.json`), updated);
	return { ok, problems, tocEntries, tablesWithData, manifest: updated };
}

/** A new backup, verified at once: what the deploy and rollback runbooks take before they change anything. */
export async function createVerifiedBackup(
	conn: Connection,
	opts: BackupOptions,
): Promise<VerifyResult> {
	const manifest = await createBackup(conn, opts);
	return verifyBackup(
		{ manifest, archivePresent: true },
		opts.env,
		opts.signal,
	);
}

export interface PrunePlan {
	keep: BackupEntry[];
	remove: BackupEntry[];
	/** The newest verified backup of the target, always kept. */
	protectedId: string | null;
}

/**
 * Which backups of this target `--keep N` removes: all but the newest N, and never the newest
 * verified one (even when it is older than those N). Other targets' backups are not touched.
 */
export function planPrune(
	env: Record<string, string | undefined>,
	target: string,
	keep: number,
): PrunePlan {
	const mine = listBackups(env).filter((e) => e.manifest.target === target);
	const newestVerified =
		mine.find((e) => e.manifest.verified_at && e.archivePresent) ?? null;
	const keepSet = new Set(mine.slice(0, keep).map((e) => e.manifest.id));
	if (newestVerified) keepSet.add(newestVerified.manifest.id);
	return {
		keep: mine.filter((e) => keepSet.has(e.manifest.id)),
		remove: mine.filter((e) => !keepSet.has(e.manifest.id)),
		protectedId: newestVerified?.manifest.id ?? null,
	};
}

/** Deletes the archives and manifests of a prune plan; returns the bytes freed. */
export function applyPrune(
	env: Record<string, string | undefined>,
	plan: PrunePlan,
): number {
	const dir = backupDir(env);
	let freed = 0;
	for (const e of plan.remove) {
		const p = join(dir, e.manifest.archive);
		if (e.archivePresent) freed += e.manifest.size_bytes;
		rmSync(p, { recursive: true, force: true });
		rmSync(join(dir, `${e.manifest.id}.json`), { force: true });
	}
	return freed;
}

/** The command that restores this backup over the target (written by the emergency-rollback runbook). */
export function rollbackCommand(id: string): string {
	return `npx tsx runbooks/emergency-rollback.ts --backup ${id}`;
}
