// A schema change on a busy table, kept short: one migration in its own transaction, whose table
// lock is taken first with a lock_timeout (so it never queues the app behind it for long) and
// retried with back-off while others hold the table; how long it waited for the lock and how long
// it held it are measured. The migration is recorded in _prisma_migrations in the same transaction,
// with what `prisma migrate deploy` writes (checksum of migration.sql, started/finished times, one
// applied step), under Prisma Migrate's advisory lock: Prisma's history stays exact, and a change
// is either applied and recorded or neither.

import { randomUUID } from "node:crypto";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { utcStamp } from "../kit/format.ts";
import type { LocalMigration } from "../migrations/history.ts";
import type { Db } from "../pg/db.ts";
import { lockHolders } from "../pg/session-checks.ts";
import { PRISMA_MIGRATE_LOCK } from "../pg/sessions.ts";

export type LockMode =
	| "ACCESS EXCLUSIVE"
	| "SHARE UPDATE EXCLUSIVE"
	| "SHARE ROW EXCLUSIVE";

/** What each table lock does to the app while it is held, in the operator's terms. */
export const LOCK_EFFECT: Record<LockMode, string> = {
	"ACCESS EXCLUSIVE": "blocks every read and write of the table while held",
	"SHARE UPDATE EXCLUSIVE":
		"blocks no reads or writes (only other schema changes, VACUUM and ANALYZE)",
	"SHARE ROW EXCLUSIVE": "blocks writes, not reads",
};

export interface LockReport {
	mode: LockMode;
	/** Waiting for the lock on the attempt that got it. */
	waitedMs: number;
	/** From getting the lock to the commit that released it. */
	heldMs: number;
	attempts: number;
}

export interface OnlineMigration {
	migration: LocalMigration;
	/** The table, as the SQL names it (quoted, qualified when not in public). */
	tableSql: string;
	mode: LockMode;
	lockTimeoutMs: number;
	/** 0 for none (a VALIDATE scans the table, under a lock that blocks no reads or writes). */
	statementTimeoutMs: number;
	/** Further attempts after a lock timeout. */
	retries: number;
	signal?: AbortSignal;
	onRetry?: (info: {
		attempt: number;
		waitMs: number;
		reason: string;
		holders: string[];
	}) => void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
	new Promise<void>((resolve, reject) => {
		const timer = setTimeout(resolve, ms);
		signal?.addEventListener(
			"abort",
			() => {
				clearTimeout(timer);
				reject(new Error("aborted"));
			},
			{ once: true },
		);
	});

/** A migration name Prisma sorts after `after`: UTC YYYYMMDDHHMMSS_name, plus offset seconds. */
export function migrationTimestamp(
	now: Date,
	after: string | null,
	offsetS = 0,
): string {
	const stamp = (d: Date) => utcStamp(d, "digits");
	let t = new Date(Math.floor(now.getTime() / 1000) * 1000);
	const last = after?.slice(0, 14);
	if (last && /^\d{14}$/.test(last) && stamp(t) <= last) {
		const d = last;
		t = new Date(
			Date.UTC(
				Number(d.slice(0, 4)),
				Number(d.slice(4, 6)) - 1,
				Number(d.slice(6, 8)),
				Number(d.slice(8, 10)),
				Number(d.slice(10, 12)),
				Number(d.slice(12, 14)) + 1,
			),
		);
	}
	return stamp(new Date(t.getTime() + offsetS * 1000));
}

/**
 * Applies the migration's SQL in one transaction: Prisma's advisory lock, then the table lock
 * (timed), then the SQL and the _prisma_migrations row, then COMMIT. Retries on lock timeouts.
 */
export async function applyOnline(
	db: Db,
	m: OnlineMigration,
): Promise<LockReport> {
	for (let attempt = 1; ; attempt++) {
		const startedAt = new Date();
		let lockedAt = 0;
		let waited = 0;
		try {
			await db.query(
				`BEGIN; SET LOCAL lock_timeout = '${m.lockTimeoutMs}ms'; SET LOCAL statement_timeout = '${m.statementTimeoutMs}ms'`,
			);
			const prisma = await db.query<{ ok: boolean }>(
				"select pg_try_advisory_xact_lock($1) as ok",
				[PRISMA_MIGRATE_LOCK],
			);
			if (!prisma.rows[0].ok) {
				throw Object.assign(
					new Error(
						"a Prisma migration is running on this database (Prisma Migrate's advisory lock is held)",
					),
					{
						code: "55P03",
						prismaLock: true,
					},
				);
			}
			const t0 = performance.now();
			await db.query(`LOCK TABLE ${m.tableSql} IN ${m.mode} MODE`);
			lockedAt = performance.now();
			waited = lockedAt - t0;
			await db.query(m.migration.sql);
			await db.query(
				`INSERT INTO public._prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
         VALUES ($1, $2, clock_timestamp(), $3, NULL, NULL, $4, 1)`,
				[randomUUID(), m.migration.checksum, m.migration.name, startedAt],
			);
			await db.query("COMMIT");
			return {
				mode: m.mode,
				waitedMs: waited,
				heldMs: performance.now() - lockedAt,
				attempts: attempt,
			};
		} catch (err) {
			await db.query("ROLLBACK").catch(() => {});
			const e = err as {
				code?: string;
				message?: string;
				prismaLock?: boolean;
			};
			if (e.code === "55P03" && attempt <= m.retries && !m.signal?.aborted) {
				const holders = e.prismaLock
					? []
					: (await lockHolders(db, [m.tableSql]).catch(() => [])).map(
							(h) =>
								`pid ${h.pid} (${h.application || "no application name"}, ${h.state ?? "?"}${h.xactAgeS !== null ? `, in a transaction for ${h.xactAgeS}s` : ""}): ${h.query.slice(0, 80)}`,
						);
				const waitMs =
					Math.min(1000 * attempt, 10_000) + Math.round(Math.random() * 250);
				m.onRetry?.({
					attempt,
					waitMs,
					reason: e.prismaLock
						? (e.message as string)
						: `the ${m.mode} lock was not granted within ${m.lockTimeoutMs}ms`,
					holders,
				});
				await sleep(waitMs, m.signal);
				continue;
			}
			if (e.code === "55P03") {
				throw new RunbookError(
					`${m.migration.name}: the ${m.mode} lock on ${m.tableSql} was not granted within ${m.lockTimeoutMs}ms, ${attempt} times. Nothing of this step was applied.`,
					EXIT.failed,
					"Long transactions hold the table (see pg_stat_activity); rerun when they are done, or raise --lock-timeout if the app can wait that long.",
				);
			}
			throw err;
		}
	}
}
