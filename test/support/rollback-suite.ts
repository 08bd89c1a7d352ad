// What the emergency-rollback tests share: the migrations they deploy and roll back, a run's
// environment, a backup made by backup.ts, the traffic that follows it, each mode's arguments, and
// the checks a fault case ends with (faults-rollback*.test.ts).

import { readdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { expect } from "vitest";
import * as faults from "./faults.ts";
import { seedFaceSwap } from "./fixtures.ts";
import {
	GIT_ENV,
	type MigrationsRepo,
	migrationsRepo,
} from "./git-fixtures.ts";
import {
	admin,
	type RunResult,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./harness.ts";
import { ADD_PREFERENCES_SQL, ADD_RATING_SQL } from "./migration-fixtures.ts";
import { snapshotDatabase } from "./snapshot.ts";

/** Deploys ADDED (or RATING and PREFERENCES) and writes to what it added. */
export { deployRatingsAndUse } from "./migration-fixtures.ts";
export type { MigrationsRepo };

export const RUNBOOK = "emergency-rollback";
/** The repository's last migration: where --mode down goes back to. */
export const KEEP = "20241230000000_comprehensive_schema";
/** One migration: generated_videos.rating and the user_preferences table. */
export const ADDED = "20250101000000_add_ratings_and_preferences";
const MIGRATION = `${ADD_RATING_SQL}\n${ADD_PREFERENCES_SQL}`;
/** The same two changes as two migrations. */
export const RATING = "20250101000000_add_video_rating";
export const PREFERENCES = "20250102000000_add_user_preferences";
export const TWO_MIGRATIONS = {
	[RATING]: ADD_RATING_SQL,
	[PREFERENCES]: ADD_PREFERENCES_SQL,
};

/** A database as snapshotDatabase sees it. */
export type Snapshot = Record<string, string>;

/** The repository's migrations, then ADDED in a commit of its own. */
export const addedRepo = (message?: string): MigrationsRepo =>
	migrationsRepo({ [ADDED]: MIGRATION }, message);

/** prisma migrate deploy of the repository's migrations on `url`, then Face Swap data with `users` users. */
export async function migrateAndSeed(
	url: string,
	users: number,
): Promise<void> {
	const migrated = await runPrismaCli(["migrate", "deploy"], url);
	expect(migrated.code, migrated.stderr).toBe(0);
	await seedFaceSwap(url, { users });
}

/**
 * A run's environment: `urls` (DATABASE_URL, maybe DIRECT_URL), a scratch folder of its own for the
 * backups and the audit log, the migrations folder under git.
 */
export function runEnv(
	urls: Record<string, string>,
	migrationsDir: string,
): Record<string, string> {
	const dir = scratchDir();
	return {
		...urls,
		PRISMA_MIGRATIONS_DIR: migrationsDir,
		BACKUP_DIR: join(dir, "backups"),
		RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"),
		...GIT_ENV,
	};
}

/**
 * A fault case's environment: the file's one BACKUP_DIR, an audit log of its own, and app hooks
 * that take a moment, so that a fault at those steps lands inside them.
 */
export function faultEnv(
	urls: Record<string, string>,
	backups: string,
	migrationsDir: string,
) {
	const audit = join(scratchDir(), "audit.jsonl");
	return {
		audit,
		env: {
			...urls,
			BACKUP_DIR: backups,
			RUNBOOK_AUDIT_LOG: audit,
			APP_STOP_CMD: "sleep 1",
			APP_START_CMD: "sleep 1",
			PRISMA_MIGRATIONS_DIR: migrationsDir,
			...GIT_ENV,
		},
	};
}

/** backup.ts create with `env`, which must succeed; returns the backup's manifest. */
export async function createBackup(
	env: Record<string, string>,
): Promise<{ id: string; size_bytes: number }> {
	const backup = await runRunbook("backup", ["create", "--json"], { env });
	expect(backup.code, backup.stderr).toBe(0);
	return JSON.parse(backup.stdout).backup;
}

/** deploy-production's arguments for database `db`, confirmed, without monitoring. */
export const deployArgs = (db: string) => [
	"--yes",
	"--confirm",
	db,
	"--monitor-seconds",
	"0",
];

/** Restore mode: backup `backupId` onto database `db`, confirmed. */
export const restoreArgs = (backupId: string, db: string) => [
	"--backup",
	backupId,
	"--yes",
	"--confirm",
	db,
];

/** --mode down back to migration `to` on database `db`, confirmed. */
export const downArgs = (db: string, to = KEEP) => [
	"--mode",
	"down",
	"--to",
	to,
	"--yes",
	"--confirm",
	db,
];

/** A table the traffic after a backup writes to: how it is made, and how 25 new users' rows go in. */
export interface TrafficTable {
	create: string;
	fill: string;
}

/** A table the schema of the backup does not have: a note per new user. */
export const USER_NOTES: TrafficTable = {
	create:
		"create table user_notes (id text primary key, user_id text not null references users(id), body text)",
	fill: "insert into user_notes select 'n-' || id, id, 'hello' from users where id like 'late%'",
};

/** The table the deploy adds (made here if missing), as the new users' preferences; can be run again. */
export const USER_PREFERENCES: TrafficTable = {
	create:
		"create table if not exists user_preferences (id text primary key, user_id text not null references users(id), theme text not null default 'light')",
	fill: "insert into user_preferences (id, user_id) select 'pref-' || id, id from users where id like 'late%' on conflict do nothing",
};

/**
 * A day of traffic after a backup: `table` made, 25 new users with a row in it each, 7 purchases
 * deleted. With USER_PREFERENCES it can be run again: the users are kept, 7 more purchases go.
 */
export async function dayOfTraffic(
	url: string,
	table: TrafficTable,
): Promise<void> {
	await admin(async (c) => {
		await c.query(table.create);
		await c.query(
			"insert into users (id, email, updated_at) select 'late' || i, 'late' || i || '@example.com', now() from generate_series(1, 25) i on conflict do nothing",
		);
		await c.query(table.fill);
		await c.query(
			"delete from purchases where id in (select id from purchases order by id limit 7)",
		);
	}, url);
}

/** The number of rows of `table`. */
export const countRows = async (url: string, table: string) =>
	Number(
		(await admin((c) => c.query(`select count(*) as n from ${table}`), url))
			.rows[0].n,
	);

/** The name of the state in `allowed` that `now` is exactly, or "MIXED". */
export const stateAmong = (now: Snapshot, allowed: Record<string, Snapshot>) =>
	Object.entries(allowed).find(
		([, s]) => JSON.stringify(now) === JSON.stringify(s),
	)?.[0] ?? "MIXED";

/** Restore mode's steps that change something (marked [changes data] and so on in --help). */
export const RESTORE_STEPS = [
	{ step: 5, title: "Stop the app (APP_STOP_CMD)", offsetMs: 300 },
	{ step: 6, title: "Safety backup of the current state", offsetMs: 100 },
	{ step: 7, title: "Terminate the other sessions", offsetMs: 100 },
	{ step: 8, title: "Restore atomically", offsetMs: 200 },
	{ step: 12, title: "Migration files: what to revert in git", offsetMs: 100 },
	{ step: 13, title: "Start the app (APP_START_CMD)", offsetMs: 300 },
];

/**
 * Runs `run` while a reader's open transaction on `url` holds user_preferences: --mode down's step
 * 10 then waits on its lock (lock_timeout 5s), so that a fault lands inside that transaction.
 */
export async function whilePreferencesHeld<T>(
	url: string,
	run: () => Promise<T>,
): Promise<T> {
	const holder = new pg.Client({ connectionString: url });
	holder.on("error", () => {});
	await holder.connect();
	await holder.query("begin");
	await holder.query("select count(*) from user_preferences");
	try {
		return await run();
	} finally {
		await holder.query("rollback").catch(() => {});
		await holder.end().catch(() => {});
	}
}

/** A fault case's run, and what it must leave. */
export interface FaultCase {
	/** The database, as the test's superuser reads it. */
	url: string;
	/** The BACKUP_DIR of the runs: no partial backup may be left in it. */
	backups: string;
	run: faults.FaultRun;
	fault: faults.Fault;
	audit: string;
	/** The states the database may be in after the fault, by name: never a mix. */
	allowed: Record<string, Snapshot>;
	/** What the rerun must leave: an uninterrupted run's state. */
	final: Snapshot;
	rerun: () => Promise<RunResult>;
	/** Further checks: after the fault (given its description), and after the rerun. */
	afterFault?: (what: string) => Promise<void>;
	afterRerun?: () => Promise<void>;
}

/**
 * What every fault must leave: a state from `allowed` (never a mix), the audit log naming the step
 * the run stopped in, the exit code and message of the fault; then a rerun reaching `final`.
 * Returns a line for the file's table of outcomes.
 */
export async function checkFault(c: FaultCase): Promise<string> {
	const { run, fault } = c;
	const what = `${faults.describeFault(fault)}: exit ${run.code}\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`;
	await faults.settle(c.url);
	// 1. Wholly one of the allowed states.
	const state = stateAmong(await snapshotDatabase(c.url), c.allowed);
	expect(state, what).not.toBe("MIXED");
	await c.afterFault?.(what);

	// 2. The audit log says where it stopped, and the output what the database holds and the
	// command that resumes; judged in the step the fault landed in.
	const stop = faults.expectStopped(run, c.audit, RUNBOOK, fault, what);

	// 3. A rerun finishes, with the state an uninterrupted run leaves.
	const again = await c.rerun();
	expect(
		again.code,
		`rerun after ${what}\n${again.stdout}\n${again.stderr}`,
	).toBe(0);
	expect(await snapshotDatabase(c.url)).toEqual(c.final);
	await c.afterRerun?.();
	expect(
		readdirSync(c.backups).filter((f) => f.startsWith(".partial-")),
	).toEqual([]);
	return `step ${fault.step} ${fault.kind}: stopped in step ${stop.stepNo}${stop.ended ? ` (${stop.status})` : ""}, exit ${run.code}, database ${state}`;
}
