// emergency-rollback.ts under SIGKILL on a database built the way Supabase builds its own
// (test/support/supabase.ts), as the non-superuser postgres, the app behind pgbouncer: at each step
// of restore mode that changes something, and while --mode down's transaction waits on its lock.
// After each kill the app's schema is wholly as before or wholly rolled back, the platform
// (schemas, roles, event triggers, publication, default privileges) as it was, and a rerun
// finishes with the state and API privileges an uninterrupted run leaves.

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Fault, runWithFault } from "./support/faults.ts";
import { admin, runRunbook, scratchDir } from "./support/harness.ts";
import * as suite from "./support/rollback-suite.ts";
import { snapshotDatabase } from "./support/snapshot.ts";
import {
	apiPrivileges,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabase,
} from "./support/supabase.ts";

let sb: SupabaseFixture;
let repo: suite.MigrationsRepo;
let backups: string;
let backupId: string;
let platform: suite.Snapshot;
let atBackup: suite.Snapshot;
let privilegesAtBackup: Record<string, boolean>;
let beforeRestore: suite.Snapshot;
let beforeDown: suite.Snapshot;
let afterDown: suite.Snapshot;
let privilegesAfterDown: Record<string, boolean>;
/** The databases each case is cloned from: after a day of traffic, and with the migration deployed. */
let diverged: string;
let deployed: string;
let clones = 0;
const outcomes: string[] = [];

/** A copy of a database of the Supabase server, platform and all; returns its name. */
async function clone(source: string, prefix: string): Promise<string> {
	const name = `${prefix}_${++clones}`;
	await sb.cloneDatabase(name, source);
	return name;
}

function envFor(db: string) {
	const u = sb.urls(db);
	return suite.faultEnv(
		{ DATABASE_URL: u.pooler, DIRECT_URL: u.direct },
		backups,
		repo.dir,
	);
}

beforeAll(async () => {
	sb = await startSupabase();
	repo = suite.addedRepo();
	backups = join(scratchDir(), "backups");
	const template = await clone("postgres", "frs_tpl");
	const t = sb.urls(template);
	// Enough rows that the restore lasts well over the kills' delays.
	await suite.migrateAndSeed(t.direct, 400);
	await admin(async (db) => {
		await db.query("revoke all on users from anon");
		await db.query("grant select (id, email) on users to anon");
	}, t.direct);
	backupId = (await suite.createBackup(envFor(template).env)).id;
	atBackup = await snapshotDatabase(t.admin);
	privilegesAtBackup = await apiPrivileges(t.admin);
	platform = await snapshotPlatform(t.admin);

	// A day of traffic after the backup: a new table, new users, a deleted purchase.
	diverged = await clone(template, "frs_div");
	await suite.dayOfTraffic(sb.urls(diverged).direct, suite.USER_NOTES);
	beforeRestore = await snapshotDatabase(sb.urls(diverged).admin);
	expect(beforeRestore).not.toEqual(atBackup);

	// Down mode: the extra migration deployed, then used; and what an uninterrupted down run leaves.
	deployed = await clone(template, "frs_dep");
	await suite.deployRatingsAndUse(sb.urls(deployed).direct, repo.dir);
	beforeDown = await snapshotDatabase(sb.urls(deployed).admin);
	const ref = await clone(deployed, "frs_ref");
	const down = await runRunbook(suite.RUNBOOK, suite.downArgs(ref), {
		env: envFor(ref).env,
	});
	expect(down.code, down.stdout + down.stderr).toBe(0);
	afterDown = await snapshotDatabase(sb.urls(ref).admin);
	privilegesAfterDown = await apiPrivileges(sb.urls(ref).admin);
	expect(afterDown).not.toEqual(beforeDown);
}, 300_000);

afterAll(async () => {
	await sb?.stop();
	if (outcomes.length)
		process.stderr.write(
			`\nfaults-rollback-supabase outcomes:\n${outcomes.join("\n")}\n`,
		);
});

/** emergency-rollback with `args` on `db`, killed by `fault`: the run, its audit log, and a rerun. */
async function killed(db: string, args: string[], fault: Fault) {
	const { env, audit } = envFor(db);
	const run = await runWithFault(suite.RUNBOOK, args, fault, { env });
	const rerun = () => runRunbook(suite.RUNBOOK, args, { env });
	return { db, run, fault, audit, rerun };
}

/** What a kill may leave and its rerun must: the app's schema, and after the rerun the API's privileges. */
type Outcome = Pick<suite.FaultCase, "allowed" | "final"> & {
	privileges: Record<string, boolean>;
};
const restored = (): Outcome => ({
	allowed: { before: beforeRestore, restored: atBackup },
	final: atBackup,
	privileges: privilegesAtBackup,
});
const rolledBack = (): Outcome => ({
	allowed: { before: beforeDown },
	final: afterDown,
	privileges: privilegesAfterDown,
});

/**
 * A kill's outcome (checkFault), and besides: the platform unchanged after the kill and after the
 * rerun, and after the rerun the API's privileges of an uninterrupted run.
 */
async function checkKill(
	{ db, ...kill }: Awaited<ReturnType<typeof killed>>,
	{ privileges, ...expected }: Outcome,
): Promise<string> {
	const url = sb.urls(db).admin;
	return suite.checkFault({
		...kill,
		...expected,
		url,
		backups,
		afterFault: async (what) => {
			expect(await snapshotPlatform(url), what).toEqual(platform);
		},
		afterRerun: async () => {
			expect(await snapshotPlatform(url)).toEqual(platform);
			expect(await apiPrivileges(url)).toEqual(privileges);
		},
	});
}

describe("emergency-rollback.ts on Supabase under SIGKILL (restore mode)", () => {
	it.each(suite.RESTORE_STEPS)(
		"SIGKILL at step $step ($title): the app's schema wholly as before or wholly restored, the platform untouched; rerun restores",
		async ({ step, offsetMs }) => {
			const db = await clone(diverged, `frs_kill_${step}`);
			const fault: Fault = { kind: "SIGKILL", step, offsetMs };
			const kill = await killed(db, suite.restoreArgs(backupId, db), fault);
			outcomes.push(await checkKill(kill, restored()));
		},
		// A killed run, its rerun and their verifications: over 200 s each on a loaded 2-core machine.
		600_000,
	);
});

describe("emergency-rollback.ts on Supabase under SIGKILL (--mode down, step 10)", () => {
	it("SIGKILL while the down SQL's transaction waits for its lock: nothing applied; rerun rolls back", async () => {
		const db = await clone(deployed, "frs_down");
		const fault: Fault = { kind: "SIGKILL", step: 10, offsetMs: 300 };
		// A reader holding user_preferences keeps step 10's transaction waiting on its lock.
		const kill = await suite.whilePreferencesHeld(sb.urls(db).direct, () =>
			killed(db, suite.downArgs(db), fault),
		);
		const { run } = kill;
		expect(run.stdout).toContain("[10/15] Apply the down SQL");
		outcomes.push(await checkKill(kill, rolledBack()));
	}, 600_000);
});
