// `prisma migrate deploy` made safe to run next to live traffic: every engine session gets a
// lock_timeout (and a statement_timeout), so a migration that cannot get its lock gives up instead
// of queueing every other query on the table behind it; while it waits, the sessions blocking it
// are recorded; when it gave up, its _prisma_migrations row is marked rolled back (PostgreSQL
// rolled the migration's transaction back) and the deploy is retried with backoff.

import { sleep } from "../kit/duration.ts";
import { formatMs } from "../kit/format.ts";
import type { Db } from "../pg/db.ts";
import { type Blocker, blockersOf } from "../pg/session-checks.ts";
import type { Target } from "../pg/target.ts";
import { unfinishedMigrationState } from "./drift.ts";
import {
	type AppliedRow,
	finishedMigrations,
	type History,
	isFinished,
	readHistory,
} from "./history.ts";
import {
	migrationsDir,
	prismaCommand,
	prismaErrorText,
	runPrisma,
} from "./prisma-cli.ts";
import { markRolledBack } from "./resolve.ts";
import {
	commitsAsOne,
	concurrentIndexBuilds,
	hasTransactionControl,
	qualifiedName,
} from "./sql.ts";

export const DEPLOY_ARGS = ["migrate", "deploy"];
/** application_name of the Prisma engine's sessions, to find what blocks them. */
export const DEPLOY_APPLICATION = "runbook:deploy-production:prisma";

export interface DeploySettings {
	lockTimeoutMs: number;
	statementTimeoutMs: number;
	/** Retries after the first attempt. */
	retries: number;
	/** First backoff; doubled after each retry, at most maxDelayMs. */
	baseDelayMs?: number;
	maxDelayMs?: number;
	/** lock_timeout of a migration that only builds indexes CONCURRENTLY (it waits for older transactions). */
	concurrentTimeoutMs?: number;
}

/** An index a failed CREATE INDEX CONCURRENTLY left INVALID, and whether it was dropped. */
export interface InvalidIndex {
	index: string;
	dropped: boolean;
	error?: string;
}

export interface DeployAttempt {
	no: number;
	durationMs: number;
	outcome: "applied" | "lock-timeout" | "failed";
	/** Migrations this attempt finished. */
	applied: string[];
	/** The migration that gave up or failed. */
	migration: string | null;
	error?: string;
	blockers: Blocker[];
}

export interface DeployOutcome {
	ok: boolean;
	attempts: DeployAttempt[];
	/** Migrations finished by this deploy, in order. */
	applied: string[];
	/** Set when the deploy stopped without applying everything. */
	failure?: {
		migration: string | null;
		error: string;
		lockTimeout: boolean;
		statementTimeout: boolean;
		/** Whether the failed row was marked rolled back (only after a lock timeout). */
		markedRolledBack: boolean;
		/** Indexes the failed concurrent build left INVALID (dropped, or still there). */
		invalidIndexes: InvalidIndex[];
		/** The migration commits in parts (its own COMMITs): some of it may be in the database. */
		partial: boolean;
	};
	history: History;
}

export type DeployEvent =
	| { type: "attempt"; no: number; of: number }
	| {
			type: "blocked";
			no: number;
			migration: string | null;
			blockers: Blocker[];
	  }
	| { type: "rolled-back"; migration: string }
	/** A concurrent build's progress (pg_stat_progress_create_index). */
	| {
			type: "index-progress";
			no: number;
			phase: string;
			done: number;
			total: number;
	  }
	| { type: "invalid-index"; index: InvalidIndex }
	/** The engine's session started waiting for a lock these sessions hold. */
	| { type: "waiting"; no: number; blockers: Blocker[] }
	| {
			type: "interrupted";
			/** The migration that was running, if any. */
			migration: string | null;
			/** Migrations this deploy finished before the interrupt. */
			applied: string[];
			markedRolledBack: boolean;
			/** Engine sessions still there after the cancel (their statement ends at the lock or statement timeout). */
			leftSessions: number;
			/** INVALID indexes the cancelled concurrent build left (dropped, or still there). */
			invalidIndexes: InvalidIndex[];
	  }
	| { type: "retry"; no: number; delayMs: number };

/** Environment the Prisma config turns into session settings (prisma/prisma.config.ts). */
export function sessionEnv(s: DeploySettings): Record<string, string> {
	return {
		RUNBOOK_LOCK_TIMEOUT: String(s.lockTimeoutMs),
		RUNBOOK_STATEMENT_TIMEOUT: String(s.statementTimeoutMs),
		RUNBOOK_APPLICATION_NAME: DEPLOY_APPLICATION,
		...(s.concurrentTimeoutMs !== undefined
			? { RUNBOOK_CONCURRENT_TIMEOUT: String(s.concurrentTimeoutMs) }
			: {}),
	};
}

/** The command as the operator would type it. */
export function deployCommand(s: DeploySettings): string {
	return `RUNBOOK_LOCK_TIMEOUT=${s.lockTimeoutMs} RUNBOOK_STATEMENT_TIMEOUT=${s.statementTimeoutMs}${s.concurrentTimeoutMs !== undefined ? ` RUNBOOK_CONCURRENT_TIMEOUT=${s.concurrentTimeoutMs}` : ""} ${prismaCommand(DEPLOY_ARGS)}`;
}

export function backoffMs(retry: number, s: DeploySettings): number {
	return Math.min(
		(s.baseDelayMs ?? 1000) * 2 ** (retry - 1),
		s.maxDelayMs ?? 30_000,
	);
}

const LOCK_TIMEOUT = /lock timeout|55P03|could not obtain lock/i;
const STATEMENT_TIMEOUT = /statement timeout|57014/i;

const isOpen = (r: AppliedRow) =>
	r.finished_at === null && r.rolled_back_at === null;

/** Runs fn until work settles, then once more; errors in poll are ignored (monitoring must not break the deploy). */
async function pollWhile<T>(
	work: Promise<T>,
	everyMs: number,
	poll: () => Promise<void>,
): Promise<T> {
	let done = false;
	const settled = work.finally(() => {
		done = true;
	});
	while (!done) {
		await Promise.race([settled.catch(() => {}), sleep(everyMs)]);
		if (!done) await poll().catch(() => {});
	}
	return settled;
}

export async function deployWithRetries(opts: {
	target: Target;
	env: Record<string, string | undefined>;
	db: Db;
	settings: DeploySettings;
	signal?: AbortSignal;
	onEvent?: (e: DeployEvent) => void;
}): Promise<DeployOutcome> {
	const { db, settings: s } = opts;
	const dir = migrationsDir(opts.env);
	const before = await readHistory(db, dir);
	const wanted = before.pending.map((m) => m.name);
	const attempts: DeployAttempt[] = [];
	const total = s.retries + 1;
	for (let no = 1; no <= total; no++) {
		opts.onEvent?.({ type: "attempt", no, of: total });
		const started = performance.now();
		const startedRows = new Set(
			((await readHistory(db, dir)).applied ?? []).map((r) => r.id),
		);
		const blockers = new Map<number, Blocker>();
		let run: Awaited<ReturnType<typeof runPrisma>>;
		try {
			run = await pollWhile(
				runPrisma(
					DEPLOY_ARGS,
					opts.target,
					opts.env,
					opts.signal,
					sessionEnv(s),
				),
				250,
				async () => {
					const progress = await indexProgress(db);
					if (progress)
						opts.onEvent?.({ type: "index-progress", no, ...progress });
					const now = await blockersOf(db, DEPLOY_APPLICATION);
					const fresh = now.filter((b) => !blockers.has(b.pid));
					for (const b of fresh) blockers.set(b.pid, b);
					if (fresh.length)
						opts.onEvent?.({ type: "waiting", no, blockers: fresh });
				},
			);
		} catch (err) {
			if (opts.signal?.aborted) {
				const stopped = await stopAfterInterrupt(
					db,
					dir,
					startedRows,
					wanted,
					s,
				);
				opts.onEvent?.({ type: "interrupted", ...stopped });
			}
			throw err;
		}
		const after = await readHistory(db, dir);
		const finishedNow = after.applied
			.filter((r) => !startedRows.has(r.id) && isFinished(r))
			.map((r) => r.migration_name);
		const openRow =
			after.applied.find((r) => !startedRows.has(r.id) && isOpen(r)) ?? null;
		const text = openRow?.logs || prismaErrorText(run);
		const attempt: DeployAttempt = {
			no,
			durationMs: Math.round(performance.now() - started),
			outcome: "applied",
			applied: finishedNow,
			migration: openRow?.migration_name ?? null,
			blockers: [...blockers.values()],
		};
		attempts.push(attempt);
		const applied = wanted.filter((n) =>
			after.applied.some((r) => r.migration_name === n && isFinished(r)),
		);
		if (run.exitCode === 0 && after.pending.length === 0 && !openRow) {
			return { ok: true, attempts, applied, history: after };
		}
		const lockTimeout = LOCK_TIMEOUT.test(text);
		attempt.outcome = lockTimeout ? "lock-timeout" : "failed";
		attempt.error = firstLines(text);
		if (lockTimeout)
			opts.onEvent?.({
				type: "blocked",
				no,
				migration: attempt.migration,
				blockers: attempt.blockers,
			});
		// A lock timeout aborts the statement and with it the migration's transaction (the adapter runs
		// migration.sql as one implicit transaction): nothing of it stayed. Resolve the row as
		// `prisma migrate resolve --rolled-back` would, so the next attempt applies it again.
		let marked = false;
		const migrationSql =
			openRow &&
			before.local.find((m) => m.name === openRow.migration_name)?.sql;
		// CREATE INDEX CONCURRENTLY runs outside a transaction: a build that timed out or was
		// cancelled leaves its index behind, INVALID. Drop it before anything retries the migration
		// (which would fail on "already exists").
		const invalidIndexes = migrationSql
			? await dropInvalidIndexes(db, migrationSql, s, (index) =>
					opts.onEvent?.({ type: "invalid-index", index }),
				)
			: [];
		if (
			// A concurrent build that failed any other way (cancelled, a duplicate key in a UNIQUE
			// build) leaves nothing either, once its INVALID index is dropped.
			(lockTimeout ||
				(invalidIndexes.length > 0 &&
					invalidIndexes.every((i) => i.dropped))) &&
			openRow &&
			migrationSql !== undefined &&
			!hasTransactionControl(migrationSql ?? "")
		) {
			await markRolledBack(db, openRow.migration_name);
			marked = true;
			opts.onEvent?.({
				type: "rolled-back",
				migration: openRow.migration_name,
			});
		}
		const retryable =
			lockTimeout &&
			(marked || !openRow) &&
			invalidIndexes.every((i) => i.dropped);
		if (!retryable || no === total || opts.signal?.aborted) {
			return {
				ok: false,
				attempts,
				applied,
				failure: {
					migration: attempt.migration,
					error: attempt.error,
					lockTimeout,
					statementTimeout: STATEMENT_TIMEOUT.test(text),
					markedRolledBack: marked,
					invalidIndexes,
					partial: Boolean(
						migrationSql &&
							hasTransactionControl(migrationSql) &&
							!commitsAsOne(migrationSql),
					),
				},
				history: await readHistory(db, dir),
			};
		}
		const delayMs = backoffMs(no, s);
		opts.onEvent?.({ type: "retry", no, delayMs });
		await sleep(delayMs, opts.signal);
	}
	throw new Error("unreachable");
}

/** The running concurrent index build of the deploy's session, if any. */
async function indexProgress(
	db: Db,
): Promise<{ phase: string; done: number; total: number } | null> {
	const r = await db.query<{ phase: string; done: string; total: string }>(
		`select p.phase,
            coalesce(nullif(p.blocks_done, 0), p.tuples_done, p.lockers_done) as done,
            coalesce(nullif(p.blocks_total, 0), p.tuples_total, p.lockers_total) as total
       from pg_stat_progress_create_index p join pg_stat_activity a on a.pid = p.pid
      where a.application_name = $1 limit 1`,
		[DEPLOY_APPLICATION],
	);
	const p = r.rows[0];
	return p
		? { phase: p.phase, done: Number(p.done), total: Number(p.total) }
		: null;
}

/**
 * For a migration of CREATE INDEX CONCURRENTLY statements: drops each of its indexes that exists
 * INVALID (left by a build that timed out, was cancelled or lost its session), with DROP INDEX
 * CONCURRENTLY IF EXISTS, which blocks no reads or writes. Its lock waits get the concurrent budget.
 */
export async function dropInvalidIndexes(
	db: Db,
	sql: string,
	s: DeploySettings,
	onDropped?: (i: InvalidIndex) => void,
): Promise<InvalidIndex[]> {
	const out: InvalidIndex[] = [];
	for (const { index, valid } of await buildIndexes(
		db,
		concurrentIndexBuilds(sql) ?? [],
	)) {
		if (valid !== false) continue;
		const found: InvalidIndex = { index, dropped: false };
		try {
			await db.query(
				`SET lock_timeout = ${s.concurrentTimeoutMs ?? s.lockTimeoutMs}`,
			);
			await db.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`);
			found.dropped = true;
		} catch (err) {
			found.error = (err as Error).message;
		} finally {
			await db.query("RESET lock_timeout").catch(() => {});
		}
		out.push(found);
		onDropped?.(found);
	}
	return out;
}

function firstLines(text: string): string {
	return text
		.split("\n")
		.map((l) => l.trim())
		.filter(
			(l) =>
				l &&
				!/^\d+: |^at |^with migration_name|^Error: external connector error$/.test(
					l,
				),
		)
		.slice(0, 3)
		.join(" ");
}

export const describeLockTimeout = (s: DeploySettings) =>
	`lock_timeout ${formatMs(s.lockTimeoutMs)}`;

/**
 * After Ctrl-C killed the Prisma CLI: its server session may still be waiting for a lock (the
 * server notices a vanished client only when it next writes to it), holding every later query on
 * the table behind it. Cancel it, so PostgreSQL rolls the migration back now; then mark the
 * migration's unfinished row rolled back, as after a lock timeout. Quick (the runner gives a
 * stopping step 3 s).
 */
async function stopAfterInterrupt(
	db: Db,
	dir: string,
	startedRows: Set<string>,
	wanted: string[],
	s: DeploySettings,
): Promise<{
	migration: string | null;
	applied: string[];
	markedRolledBack: boolean;
	leftSessions: number;
	invalidIndexes: InvalidIndex[];
}> {
	const ours = async () =>
		(
			await db.query<{ pid: number }>(
				"select pid from pg_stat_activity where application_name = $1 and pid <> pg_backend_pid()",
				[DEPLOY_APPLICATION],
			)
		).rows.map((r) => r.pid);
	let left: number[] = [];
	try {
		for (const pid of await ours())
			await db.query("select pg_cancel_backend($1)", [pid]);
		const end = performance.now() + 1500;
		do {
			left = await ours();
			if (left.length) await sleep(100);
		} while (left.length && performance.now() < end);
		const h = await readHistory(db, dir);
		const applied = wanted.filter((n) =>
			h.applied.some((r) => r.migration_name === n && isFinished(r)),
		);
		const open =
			h.applied.find((r) => !startedRows.has(r.id) && isOpen(r)) ?? null;
		const sql =
			open && h.local.find((m) => m.name === open.migration_name)?.sql;
		if (
			open &&
			left.length === 0 &&
			sql !== undefined &&
			!hasTransactionControl(sql ?? "")
		) {
			// A cancelled concurrent build leaves its index INVALID: drop it, so the rerun can build it.
			const invalidIndexes = await dropInvalidIndexes(db, sql ?? "", s);
			if (invalidIndexes.every((i) => i.dropped))
				await markRolledBack(db, open.migration_name);
			return {
				migration: open.migration_name,
				applied,
				markedRolledBack: invalidIndexes.every((i) => i.dropped),
				leftSessions: 0,
				invalidIndexes,
			};
		}
		return {
			migration: open?.migration_name ?? null,
			applied,
			markedRolledBack: false,
			leftSessions: left.length,
			invalidIndexes: [],
		};
	} catch {
		return {
			migration: null,
			applied: [],
			markedRolledBack: false,
			leftSessions: left.length,
			invalidIndexes: [],
		};
	}
}

/** Where a migration _prisma_migrations records as unfinished stands (see unfinishedState). */
export type UnfinishedState =
	| {
			kind: "concurrent";
			/** pid of a deploy session still building one of its indexes. */
			running: number | null;
			valid: string[];
			invalid: string[];
			builds: number;
	  }
	| { kind: "applied" | "rolled-back" | "unknown" };

/**
 * What an unfinished migration left: for a concurrent index build (outside a transaction), which
 * of its indexes exist, valid or INVALID; otherwise whether the database is what the finished
 * migrations build without it (rolled back) or with it (committed, never recorded).
 */
export async function unfinishedState(
	db: Db,
	target: Target,
	env: Record<string, string | undefined>,
	h: History,
	migration: string,
	signal?: AbortSignal,
	log?: (line: string) => void,
): Promise<UnfinishedState> {
	const sql = h.local.find((m) => m.name === migration)?.sql;
	const builds = sql === undefined ? null : concurrentIndexBuilds(sql);
	if (builds) {
		const running = await db.query<{ pid: number }>(
			"select pid from pg_stat_progress_create_index where pid in (select pid from pg_stat_activity where application_name = $1) limit 1",
			[DEPLOY_APPLICATION],
		);
		const found = await buildIndexes(db, builds);
		const valid = found.filter((i) => i.valid).map((i) => i.index);
		const invalid = found.filter((i) => i.valid === false).map((i) => i.index);
		const pid = running.rows[0]?.pid ?? null;
		return {
			kind: "concurrent",
			running: pid,
			valid,
			invalid,
			builds: builds.length,
		};
	}
	log?.(
		`comparing the database with the migrations, with and without ${migration} ...`,
	);
	const kind = await unfinishedMigrationState(
		target,
		env,
		finishedMigrations(h.applied),
		migration,
		signal,
	).catch(() => "unknown" as const);
	return { kind };
}

/** Each index of these concurrent builds: valid, INVALID (false) or absent (null). */
async function buildIndexes(
	db: Db,
	builds: NonNullable<ReturnType<typeof concurrentIndexBuilds>>,
): Promise<Array<{ index: string; valid: boolean | null }>> {
	const out: Array<{ index: string; valid: boolean | null }> = [];
	for (const b of builds) {
		if (!b.index) continue;
		const index = qualifiedName({ schema: b.table.schema, name: b.index });
		const r = await db.query<{ valid: boolean }>(
			"select i.indisvalid as valid from pg_index i where i.indexrelid = to_regclass($1)",
			[index],
		);
		out.push({ index, valid: r.rows[0]?.valid ?? null });
	}
	return out;
}
