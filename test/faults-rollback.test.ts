// Fault injection for emergency-rollback.ts: SIGKILL and SIGINT to the runbook's process group at
// each step that changes something (restore mode: stop the app, safety backup, terminate the
// sessions, restore, migration files, start the app; --mode down: the down SQL), and
// pg_terminate_backend of its sessions in the middle of the restore. After each fault the database
// is wholly as before or wholly rolled back, the audit log says where the run stopped, and a rerun
// finishes with the state an uninterrupted run leaves.

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Fault, runWithFault, stoppedAt } from "./support/faults.ts";
import {
	createDatabase,
	dbName,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { scratchDatabases } from "./support/migration-fixtures.ts";
import * as suite from "./support/rollback-suite.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

/** The seeded database the backup was made of. */
let template: string;
/** The template after a day of traffic: what each restore case starts from. */
let diverged: string;
/** The template with one more migration applied and used: what each down case starts from. */
let deployed: string;
let backups: string;
let backupId: string;
let repo: suite.MigrationsRepo;
/** Restore mode: the database before the rollback, and as the backup holds it. */
let beforeRestore: suite.Snapshot;
let atBackup: suite.Snapshot;
/** Down mode: before, and after an uninterrupted down run. */
let beforeDown: suite.Snapshot;
let afterDown: suite.Snapshot;
const dbs = scratchDatabases();

const envFor = (url: string) =>
	suite.faultEnv({ DATABASE_URL: url }, backups, repo.dir);

beforeAll(async () => {
	template = await createDatabase("frb_tpl");
	dbs.track(template);
	// Enough rows that the restore step lasts well over the faults' delays.
	await suite.migrateAndSeed(template, 400);
	repo = suite.addedRepo();
	backups = join(scratchDir(), "backups");
	backupId = (
		await suite.createBackup({
			DATABASE_URL: template,
			BACKUP_DIR: backups,
			RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
		})
	).id;
	atBackup = await snapshotDatabase(template);

	// A day of traffic after the backup: new users, a deleted purchase, a new table.
	diverged = await dbs.clone(template, "frb_div");
	await suite.dayOfTraffic(diverged, suite.USER_NOTES);
	beforeRestore = await snapshotDatabase(diverged);
	expect(beforeRestore).not.toEqual(atBackup);

	// Down mode: the extra migration deployed, then used.
	deployed = await dbs.clone(template, "frb_dep");
	await suite.deployRatingsAndUse(deployed, repo.dir);
	beforeDown = await snapshotDatabase(deployed);
	// The state an uninterrupted down run leaves.
	const ref = await dbs.clone(deployed, "frb_ref");
	const { env } = envFor(ref);
	const down = await runRunbook(suite.RUNBOOK, suite.downArgs(dbName(ref)), {
		env,
	});
	expect(down.code, down.stdout + down.stderr).toBe(0);
	afterDown = await snapshotDatabase(ref);
	expect(afterDown).not.toEqual(beforeDown);
}, 240_000);

afterAll(async () => {
	await dbs.dropAll();
});

/** A restore of the backup onto url with the fault injected: wholly before or restored, then a rerun restores. */
async function restoreUnderFault(url: string, fault: Fault): Promise<string> {
	const { env, audit } = envFor(url);
	const args = suite.restoreArgs(backupId, dbName(url));
	const run = await runWithFault(suite.RUNBOOK, args, fault, { env });
	return suite.checkFault({
		url,
		backups,
		run,
		fault,
		audit,
		allowed: { before: beforeRestore, restored: atBackup },
		final: atBackup,
		rerun: () => runRunbook(suite.RUNBOOK, args, { env }),
	});
}

const SIGNALS = ["SIGKILL", "SIGINT"] as const;

const outcomes: string[] = [];

describe("emergency-rollback.ts under faults (restore mode)", () => {
	const cases = suite.RESTORE_STEPS.flatMap((s) =>
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
			const args = suite.downArgs(dbName(url));
			const fault: Fault = { kind, step: 10, offsetMs: 300 };
			// A reader holding user_preferences keeps step 10's transaction waiting on its
			// lock, so the fault lands inside that transaction every time.
			const run = await suite.whilePreferencesHeld(url, () =>
				runWithFault(suite.RUNBOOK, args, fault, { env }),
			);
			expect(run.stdout).toContain("[10/15] Apply the down SQL");
			outcomes.push(
				await suite.checkFault({
					url,
					backups,
					run,
					fault,
					audit,
					// Deterministic: killed or interrupted while waiting, PostgreSQL rolls it all back.
					allowed: { before: beforeDown },
					final: afterDown,
					rerun: () => runRunbook(suite.RUNBOOK, args, { env }),
				}),
			);
			const stop = stoppedAt(audit, suite.RUNBOOK);
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
