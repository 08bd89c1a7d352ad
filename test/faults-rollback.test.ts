// Fault injection for emergency-rollback.ts: SIGKILL and SIGINT to the runbook's process group at
// each step that changes something (restore mode: stop the app, safety backup, terminate the
// sessions, restore, migration files, start the app; --mode down: the down SQL), and
// pg_terminate_backend of its sessions in the middle of the restore. After each fault the database
// is wholly as before or wholly rolled back, the audit log says where the run stopped, and a rerun
// finishes with the state an uninterrupted run leaves.

import { readdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
	describeFault,
	expectStopped,
	type Fault,
	type FaultRun,
	runWithFault,
	settle,
	stoppedAt,
} from "./support/faults.ts";
import { seedFaceSwap } from "./support/fixtures.ts";
import { GIT_ENV, migrationsRepo } from "./support/git-fixtures.ts";
import {
	admin,
	createDatabase,
	dbName,
	type RunResult,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import {
	ADD_PREFERENCES_SQL,
	ADD_RATING_SQL,
	deployRatingsAndUse,
	scratchDatabases,
} from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

const RUNBOOK = "emergency-rollback";
const KEEP = "20241230000000_comprehensive_schema";
const ADDED = "20250101000000_add_ratings_and_preferences";
const MIGRATION = `${ADD_RATING_SQL}\n${ADD_PREFERENCES_SQL}`;

type Snapshot = Record<string, string>;

/** The seeded database the backup was made of. */
let template: string;
/** The template after a day of traffic: what each restore case starts from. */
let diverged: string;
/** The template with one more migration applied and used: what each down case starts from. */
let deployed: string;
let backups: string;
let backupId: string;
let repo: ReturnType<typeof migrationsRepo>;
/** Restore mode: the database before the rollback, and as the backup holds it. */
let beforeRestore: Snapshot;
let atBackup: Snapshot;
/** Down mode: before, and after an uninterrupted down run. */
let beforeDown: Snapshot;
let afterDown: Snapshot;
const dbs = scratchDatabases();

const same = (a: Snapshot, b: Snapshot) =>
	JSON.stringify(a) === JSON.stringify(b);

function envFor(url: string) {
	const audit = join(scratchDir(), "audit.jsonl");
	return {
		audit,
		env: {
			DATABASE_URL: url,
			BACKUP_DIR: backups,
			RUNBOOK_AUDIT_LOG: audit,
			// Hooks that take a moment, so that a fault at those steps lands inside them.
			APP_STOP_CMD: "sleep 1",
			APP_START_CMD: "sleep 1",
			PRISMA_MIGRATIONS_DIR: repo.dir,
			...GIT_ENV,
		},
	};
}

/**
 * What every fault must leave: a state from `allowed` (never a mix), the audit log naming the step
 * the run stopped in, the exit code and message of the fault; then a rerun reaching `final`.
 */
async function checkFault(opts: {
	url: string;
	run: FaultRun;
	fault: Fault;
	audit: string;
	allowed: Record<string, Snapshot>;
	final: Snapshot;
	rerun: () => Promise<RunResult>;
}): Promise<string> {
	const { run, fault, audit } = opts;
	const what = `${describeFault(fault)}: exit ${run.code}\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`;
	await settle(opts.url);
	// 1. Wholly one of the allowed states.
	const now = await snapshotDatabase(opts.url);
	const state =
		Object.entries(opts.allowed).find(([, s]) => same(now, s))?.[0] ?? "MIXED";
	expect(state, what).not.toBe("MIXED");

	// 2. The audit log says where it stopped, and the output what the database holds and the
	// command that resumes; judged in the step the fault landed in.
	const stop = expectStopped(run, audit, RUNBOOK, fault, what);

	// 3. A rerun finishes, with the state an uninterrupted run leaves.
	const again = await opts.rerun();
	expect(
		again.code,
		`rerun after ${what}\n${again.stdout}\n${again.stderr}`,
	).toBe(0);
	expect(await snapshotDatabase(opts.url)).toEqual(opts.final);
	expect(readdirSync(backups).filter((f) => f.startsWith(".partial-"))).toEqual(
		[],
	);
	return `step ${fault.step} ${fault.kind}: stopped in step ${stop.stepNo}${stop.ended ? ` (${stop.status})` : ""}, exit ${run.code}, database ${state}`;
}

beforeAll(async () => {
	template = await createDatabase("frb_tpl");
	dbs.track(template);
	const migrated = await runPrismaCli(["migrate", "deploy"], template);
	expect(migrated.code, migrated.stderr).toBe(0);
	// Enough rows that the restore step lasts well over the faults' delays.
	await seedFaceSwap(template, { users: 400 });
	repo = migrationsRepo({ [ADDED]: MIGRATION });
	backups = join(scratchDir(), "backups");
	const backup = await runRunbook("backup", ["create", "--json"], {
		env: {
			DATABASE_URL: template,
			BACKUP_DIR: backups,
			RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
		},
	});
	expect(backup.code, backup.stderr).toBe(0);
	backupId = JSON.parse(backup.stdout).backup.id;
	atBackup = await snapshotDatabase(template);

	// A day of traffic after the backup: new users, a deleted purchase, a new table.
	diverged = await dbs.clone(template, "frb_div");
	await admin(async (c) => {
		await c.query(
			"create table user_notes (id text primary key, user_id text not null references users(id), body text)",
		);
		await c.query(
			"insert into users (id, email, updated_at) select 'late' || i, 'late' || i || '@example.com', now() from generate_series(1, 25) i",
		);
		await c.query(
			"insert into user_notes select 'n-' || id, id, 'hello' from users where id like 'late%'",
		);
		await c.query(
			"delete from purchases where id in (select id from purchases order by id limit 7)",
		);
	}, diverged);
	beforeRestore = await snapshotDatabase(diverged);
	expect(beforeRestore).not.toEqual(atBackup);

	// Down mode: the extra migration deployed, then used.
	deployed = await dbs.clone(template, "frb_dep");
	await deployRatingsAndUse(deployed, repo.dir);
	beforeDown = await snapshotDatabase(deployed);
	// The state an uninterrupted down run leaves.
	const ref = await dbs.clone(deployed, "frb_ref");
	const { env } = envFor(ref);
	const down = await runRunbook("emergency-rollback", downArgs(ref), { env });
	expect(down.code, down.stdout + down.stderr).toBe(0);
	afterDown = await snapshotDatabase(ref);
	expect(afterDown).not.toEqual(beforeDown);
}, 240_000);

afterAll(async () => {
	await dbs.dropAll();
});

const restoreArgs = (url: string) => [
	"--backup",
	backupId,
	"--yes",
	"--confirm",
	dbName(url),
];
const downArgs = (url: string) => [
	"--mode",
	"down",
	"--to",
	KEEP,
	"--yes",
	"--confirm",
	dbName(url),
];

// Restore mode: the steps marked [changes data]/[writes files]/[destroys data] in --help.
/** A restore of the backup onto url with the fault injected: wholly before or restored, then a rerun restores. */
async function restoreUnderFault(url: string, fault: Fault): Promise<string> {
	const { env, audit } = envFor(url);
	const run = await runWithFault(RUNBOOK, restoreArgs(url), fault, { env });
	return checkFault({
		url,
		run,
		fault,
		audit,
		allowed: { before: beforeRestore, restored: atBackup },
		final: atBackup,
		rerun: () => runRunbook(RUNBOOK, restoreArgs(url), { env }),
	});
}

const RESTORE_STEPS: Array<{ step: number; title: string; offsetMs: number }> =
	[
		{ step: 5, title: "Stop the app (APP_STOP_CMD)", offsetMs: 300 },
		{ step: 6, title: "Safety backup of the current state", offsetMs: 100 },
		{ step: 7, title: "Terminate the other sessions", offsetMs: 100 },
		{ step: 8, title: "Restore atomically", offsetMs: 200 },
		{
			step: 12,
			title: "Migration files: what to revert in git",
			offsetMs: 100,
		},
		{ step: 13, title: "Start the app (APP_START_CMD)", offsetMs: 300 },
	];
const SIGNALS = ["SIGKILL", "SIGINT"] as const;

const outcomes: string[] = [];

describe("emergency-rollback.ts under faults (restore mode)", () => {
	const cases = RESTORE_STEPS.flatMap((s) =>
		SIGNALS.map((kind) => ({ ...s, kind })),
	);
	it.each(cases)(
		"$kind at step $step ($title): database wholly as before or wholly restored; rerun restores",
		async ({ step, kind, offsetMs }) => {
			const url = await dbs.clone(
				diverged,
				`frb_${kind.toLowerCase()}_${step}`,
			);
			outcomes.push(await restoreUnderFault(url, { kind, step, offsetMs }));
		},
	);

	it("pg_terminate_backend of its sessions during the restore: fails (exit 1) with the database as before, and a rerun restores", async () => {
		const url = await dbs.clone(diverged, "frb_term_8");
		outcomes.push(
			await restoreUnderFault(url, {
				kind: "terminate",
				step: 8,
				offsetMs: 200,
				database: dbName(url),
			}),
		);
	});
});

describe("emergency-rollback.ts under faults (--mode down, step 10)", () => {
	it.each(SIGNALS)(
		"%s while the down SQL's transaction waits for its lock: nothing applied; rerun rolls back",
		async (kind) => {
			const url = await dbs.clone(deployed, `frb_down_${kind.toLowerCase()}`);
			const { env, audit } = envFor(url);
			// A reader holding user_preferences keeps step 10's transaction waiting on its
			// lock (lock_timeout 5s), so the fault lands inside that transaction every time.
			const holder = new pg.Client({ connectionString: url });
			holder.on("error", () => {});
			await holder.connect();
			await holder.query("begin");
			await holder.query("select count(*) from user_preferences");
			const fault: Fault = { kind, step: 10, offsetMs: 300 };
			let run: FaultRun;
			try {
				run = await runWithFault(RUNBOOK, downArgs(url), fault, { env });
			} finally {
				await holder.query("rollback").catch(() => {});
				await holder.end().catch(() => {});
			}
			expect(run.stdout).toContain("[10/15] Apply the down SQL");
			outcomes.push(
				await checkFault({
					url,
					run,
					fault,
					audit,
					// Deterministic: killed or interrupted while waiting, PostgreSQL rolls it all back.
					allowed: { before: beforeDown },
					final: afterDown,
					rerun: () => runRunbook(RUNBOOK, downArgs(url), { env }),
				}),
			);
			const stop = stoppedAt(audit, RUNBOOK);
			expect(stop.runEnded).toBe(true); // the rerun's
		},
	);
});

afterAll(() => {
	if (outcomes.length)
		process.stderr.write(
			`\nfaults-rollback outcomes:\n${outcomes.join("\n")}\n`,
		);
});
