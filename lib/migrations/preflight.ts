// The checks before a production deploy, each refusing (exit 3, nothing changed) with the way
// out: a history Prisma would refuse, unsafe statements in the pending migrations (judged by their
// tables as they will be), and sessions holding locks the migrations need.

import { type BackupCheck, checkBackup } from "../backup/archive.ts";
import { refusal, usageError } from "../kit/errors.ts";
import { formatBytes, formatMs } from "../kit/format.ts";
import { unfinishedAdvice } from "../messages/deploy.ts";
import { describeSession } from "../messages/sessions.ts";
import { describeTables } from "../pg/catalog.ts";
import { type Db, serverVersion } from "../pg/db.ts";
import {
	type LockHolder,
	lockHolders,
	longTransactions,
	type Session,
} from "../pg/session-checks.ts";
import type { Target } from "../pg/target.ts";
import { unfinishedState } from "./deploy.ts";
import { type History, type LocalMigration, readHistory } from "./history.ts";
import { describeFindings, type LintResult, lintSql } from "./lint.ts";
import { DeployWalk, describeRows } from "./lint-judgement.ts";
import { displayPath, migrationsDir } from "./prisma-cli.ts";
import { tablesTouched } from "./sql.ts";

export interface Reporter {
	log(text: string): void;
	warn(text: string): void;
}

/**
 * The history, refused when Prisma would refuse it (a failed or unfinished migration: with the
 * advice for it) or when tables exist without _prisma_migrations; other issues are warned about.
 */
export async function deployableHistory(
	db: Db,
	target: Target,
	env: Record<string, string | undefined>,
	r: Reporter,
	signal?: AbortSignal,
): Promise<{ history: History; freshInstall: boolean }> {
	const dir = migrationsDir(env);
	const h = await readHistory(db, dir);
	const failed = h.issues.filter((i) => i.kind === "failed");
	if (failed.length) {
		for (const i of failed) r.warn(`${i.migration}: ${i.detail}`);
		const first = failed[0].migration;
		const state = await unfinishedState(
			db,
			target,
			env,
			h,
			first,
			signal,
			r.log,
		);
		throw refusal(
			`_prisma_migrations has ${failed.length} failed or unfinished migration(s): ${failed.map((i) => i.migration).join(", ")}.`,
			unfinishedAdvice(first, state),
		);
	}
	let appTables = 0;
	if (h.tableMissing) {
		const tables = await db.query<{ n: string }>(
			"select count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relkind in ('r','p')",
		);
		appTables = Number(tables.rows[0].n);
		if (appTables > 0) {
			throw refusal(
				"The database has tables but no _prisma_migrations: it was never deployed with Prisma Migrate, so deploying would try to create what exists.",
				"Baseline it first: mark the migrations it already contains as applied (prisma migrate resolve --applied <name>).",
			);
		}
	}
	// Rows marked rolled back belong to migrations that are pending again: not a problem for a deploy.
	for (const i of h.issues.filter(
		(x) => !["failed", "pending", "rolled_back"].includes(x.kind),
	))
		r.warn(`${i.migration}: ${i.detail}`);
	r.log(
		`${h.local.length} migrations in ${displayPath(dir)}; latest applied: ${h.latestApplied ?? "none"}`,
	);
	return { history: h, freshInstall: h.tableMissing && appTables === 0 };
}

export interface LintOptions {
	/** The migrations folder, for messages. */
	dir: string;
	allow: string[];
	lintSince: string | null;
	smallTableBytes: number;
	freshInstall: boolean;
	serverMajor: number;
}

export type Finding = LintResult["findings"][number] & { file: string };

/**
 * Lints every pending migration.sql and judges each finding by its table as it will be when the
 * statement runs (created earlier in this deploy, empty, small, or holding rows); refuses an
 * unsafe one that is not allowed by name.
 */
export async function lintPending(
	db: Db,
	h: History,
	o: LintOptions,
	r: Reporter,
): Promise<{ lint: LintResult[]; findings: Finding[]; walk: DeployWalk }> {
	if (o.lintSince && !h.local.some((m) => m.name === o.lintSince))
		throw usageError(
			`--lint-since ${o.lintSince}: no such migration in ${displayPath(o.dir)}.`,
			"Give the folder name of the last migration to treat as a baseline, e.g. --lint-since 20240101000000_init.",
		);
	if (o.freshInstall)
		r.log(
			"fresh install: no _prisma_migrations and no tables; findings are shown as notes",
		);
	const walk = new DeployWalk(db, {
		smallTableBytes: o.smallTableBytes,
		freshInstall: o.freshInstall,
	});
	const lint: LintResult[] = [];
	for (const m of h.pending) {
		const raw = await lintSql(
			m.sql,
			`${m.name}/migration.sql`,
			o.allow,
			String(o.serverMajor),
		);
		const baseline =
			o.lintSince && m.name <= o.lintSince ? o.lintSince : undefined;
		const judged = await walk.judge(m.name, m.sql, raw, baseline);
		lint.push(judged);
		for (const line of describeFindings(judged)) r.log(line);
	}
	const findings = lint.flatMap((l) =>
		l.findings.map((f) => ({ ...f, file: l.file })),
	);
	const unused = o.allow.filter((x) => !findings.some((f) => f.rule === x));
	if (unused.length)
		r.warn(
			`--allow ${unused.join(", ")}: no pending migration has such a finding.`,
		);
	const unsafe = findings.filter((f) => !f.allowed);
	if (unsafe.length) {
		const rules = [...new Set(unsafe.map((f) => f.rule))];
		throw refusal(
			`${unsafe.length} unsafe statement(s) in the pending migrations (${rules.join(", ")}), explained above. No backup was taken.`,
			`Rewrite the migration as suggested, or accept the risk by name: ${rules.map((x) => `--allow ${x}`).join(" ")}`,
		);
	}
	return { lint, findings, walk };
}

/**
 * The database's size and largest tables, the existing tables the migrations lock, and the
 * sessions that would make them wait; refuses when one has held such a lock for maxHolderAgeMs.
 */
export async function lockCheck(
	db: Db,
	pending: LocalMigration[],
	walk: DeployWalk,
	maxHolderAgeMs: number,
	r: Reporter,
): Promise<{ touched: string[]; holders: LockHolder[]; long: Session[] }> {
	const tables = await describeTables(db);
	const size = (
		await db.query<{ b: string }>(
			"select pg_database_size(current_database()) as b",
		)
	).rows[0].b;
	const largest = [...tables]
		.sort((a, b) => b.totalBytes - a.totalBytes)
		.slice(0, 5);
	r.log(
		`database ${formatBytes(Number(size))}; largest tables: ${largest.map((x) => `${x.name} ${formatBytes(x.totalBytes)}`).join(", ")}`,
	);
	// Existing tables only: one a pending migration creates cannot be locked by anyone yet.
	const touched = [
		...new Set(pending.flatMap((m) => tablesTouched(m.sql))),
	].filter((t) => !walk.created.has(t));
	if (touched.length) {
		const sizes: string[] = [];
		for (const t of touched) {
			const rows = await walk.rowsOf(t);
			sizes.push(
				rows
					? `${t} (${formatBytes(rows.bytes)}; ${describeRows(t, rows).replace(`${t} has `, "")})`
					: `${t} (not found)`,
			);
		}
		r.log(`tables the migrations lock: ${sizes.join(", ")}`);
	}
	const holders = await lockHolders(db, touched);
	for (const x of holders)
		r.warn(`holds ${x.modes.join("/")} on ${x.table}: ${describeSession(x)}`);
	const long = (await longTransactions(db, 60)).filter(
		(x) => !holders.some((y) => y.pid === x.pid),
	);
	for (const x of long)
		r.warn(
			`long transaction (not on the touched tables): ${describeSession(x)}`,
		);
	const old = holders.filter((x) => (x.xactAgeS ?? 0) * 1000 >= maxHolderAgeMs);
	if (old.length) {
		throw refusal(
			`${old.length} session(s) have held a lock on a table the migrations alter for longer than ${formatMs(maxHolderAgeMs)} (pid ${old.map((x) => x.pid).join(", ")}): the migration would keep timing out on its lock.`,
			`Find out what they are (npx tsx runbooks/monitor.ts), let them finish or end them (npx tsx runbooks/monitor.ts --terminate <pid>), then rerun. --max-holder-age raises the limit.`,
		);
	}
	return { touched, holders, long };
}

export interface PreflightSettings {
	allow: string[];
	lintSince: string | null;
	smallTableBytes: number;
	maxHolderAgeMs: number;
}

export interface Preflight {
	history: History;
	pending: LocalMigration[];
	lint: LintResult[];
	findings: Finding[];
	touched: string[];
	holders: LockHolder[];
	long: Session[];
	check?: BackupCheck;
}

/**
 * All the checks before a deploy, in order: the server, the history, then (when migrations are
 * pending) lint, the tables they lock and who holds them, and room for the backup.
 */
export async function preflight(
	db: Db,
	target: Target,
	env: Record<string, string | undefined>,
	s: PreflightSettings,
	r: Reporter,
	signal?: AbortSignal,
): Promise<Preflight> {
	const v = await serverVersion(db);
	r.log(
		`connected through ${env.DIRECT_URL ? "DIRECT_URL" : "DATABASE_URL"}: ${target.direct.display}, PostgreSQL ${v.text}${target.isProduction ? " [production]" : ""}`,
	);
	if ((env.PRISMA_ENGINE ?? "wasm") !== "wasm")
		r.warn(
			"PRISMA_ENGINE is not wasm: the lock and statement timeouts are set through the wasm engine's driver and may not apply.",
		);
	const { history: h, freshInstall } = await deployableHistory(
		db,
		target,
		env,
		r,
		signal,
	);
	const none = { lint: [], findings: [], touched: [], holders: [], long: [] };
	if (h.pending.length === 0) return { history: h, pending: [], ...none };
	r.log(`pending (${h.pending.length}):`);
	for (const m of h.pending) r.log(`  ${m.name}`);
	const lint = await lintPending(
		db,
		h,
		{ ...s, dir: migrationsDir(env), freshInstall, serverMajor: v.major },
		r,
	);
	const locks = await lockCheck(db, h.pending, lint.walk, s.maxHolderAgeMs, r);
	const check = await checkBackup(db, env);
	r.log(
		`backup: pg_dump ${check.pgDump.version}, estimated ${formatBytes(check.estimateBytes)}, ${formatBytes(check.freeBytes)} free in ${check.dir}`,
	);
	return { history: h, pending: h.pending, ...lint, ...locks, check };
}
