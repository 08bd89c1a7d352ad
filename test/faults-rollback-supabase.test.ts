// emergency-rollback.ts under SIGKILL on a database built the way Supabase builds its own
// (test/support/supabase.ts), as the non-superuser postgres, the app behind pgbouncer: at each step
// of restore mode that changes something, and while --mode down's transaction waits on its lock.
// After each kill the app's schema is wholly as before or wholly rolled back, the platform
// (schemas, roles, event triggers, publication, default privileges) as it was, and a rerun
// finishes with the state and API privileges an uninterrupted run leaves.

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
} from "./support/faults.ts";
import { seedFaceSwap } from "./support/fixtures.ts";
import { GIT_ENV, migrationsRepo } from "./support/git-fixtures.ts";
import {
	admin,
	type RunResult,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import {
	ADD_PREFERENCES_SQL,
	ADD_RATING_SQL,
	deployRatingsAndUse,
} from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";
import {
	apiPrivileges,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabase,
} from "./support/supabase.ts";

const RUNBOOK = "emergency-rollback";
const KEEP = "20241230000000_comprehensive_schema";
const ADDED = "20250101000000_add_ratings_and_preferences";

type Snapshot = Record<string, string>;

let sb: SupabaseFixture;
let repo: ReturnType<typeof migrationsRepo>;
let backups: string;
let backupId: string;
let platform: Snapshot;
let atBackup: Snapshot;
let privilegesAtBackup: Record<string, boolean>;
let beforeRestore: Snapshot;
let beforeDown: Snapshot;
let afterDown: Snapshot;
let privilegesAfterDown: Record<string, boolean>;
/** The databases each case is cloned from: after a day of traffic, and with the migration deployed. */
let diverged: string;
let deployed: string;
let clones = 0;
const outcomes: string[] = [];

const same = (a: Snapshot, b: Snapshot) =>
	JSON.stringify(a) === JSON.stringify(b);

/** A copy of a database of the Supabase server, platform and all; returns its name. */
async function clone(source: string, prefix: string): Promise<string> {
	const name = `${prefix}_${++clones}`;
	await sb.cloneDatabase(name, source);
	return name;
}

function envFor(db: string) {
	const audit = join(scratchDir(), "audit.jsonl");
	const u = sb.urls(db);
	return {
		audit,
		env: {
			DATABASE_URL: u.pooler,
			DIRECT_URL: u.direct,
			BACKUP_DIR: backups,
			RUNBOOK_AUDIT_LOG: audit,
			// Hooks that take a moment, so that a kill at those steps lands inside them.
			APP_STOP_CMD: "sleep 1",
			APP_START_CMD: "sleep 1",
			PRISMA_MIGRATIONS_DIR: repo.dir,
			...GIT_ENV,
		},
	};
}

const restoreArgs = (db: string) => [
	"--backup",
	backupId,
	"--yes",
	"--confirm",
	db,
];
const downArgs = (db: string) => [
	"--mode",
	"down",
	"--to",
	KEEP,
	"--yes",
	"--confirm",
	db,
];

beforeAll(async () => {
	sb = await startSupabase();
	repo = migrationsRepo({
		[ADDED]: `${ADD_RATING_SQL}\n${ADD_PREFERENCES_SQL}`,
	});
	backups = join(scratchDir(), "backups");
	const template = await clone("postgres", "frs_tpl");
	const t = sb.urls(template);
	const migrated = await runPrismaCli(["migrate", "deploy"], t.direct);
	expect(migrated.code, migrated.stderr).toBe(0);
	// Enough rows that the restore lasts well over the kills' delays.
	await seedFaceSwap(t.direct, { users: 400 });
	await admin(async (db) => {
		await db.query("revoke all on users from anon");
		await db.query("grant select (id, email) on users to anon");
	}, t.direct);
	const backup = await runRunbook("backup", ["create", "--json"], {
		env: { ...envFor(template).env },
	});
	expect(backup.code, backup.stderr).toBe(0);
	backupId = JSON.parse(backup.stdout).backup.id;
	atBackup = await snapshotDatabase(t.admin);
	privilegesAtBackup = await apiPrivileges(t.admin);
	platform = await snapshotPlatform(t.admin);

	// A day of traffic after the backup: a new table, new users, a deleted purchase.
	diverged = await clone(template, "frs_div");
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
	}, sb.urls(diverged).direct);
	beforeRestore = await snapshotDatabase(sb.urls(diverged).admin);
	expect(beforeRestore).not.toEqual(atBackup);

	// Down mode: the extra migration deployed, then used; and what an uninterrupted down run leaves.
	deployed = await clone(template, "frs_dep");
	await deployRatingsAndUse(sb.urls(deployed).direct, repo.dir);
	beforeDown = await snapshotDatabase(sb.urls(deployed).admin);
	const ref = await clone(deployed, "frs_ref");
	const down = await runRunbook(RUNBOOK, downArgs(ref), {
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

/**
 * A kill's outcome: a state from `allowed` (never a mix), the platform unchanged, the audit log
 * naming the step; then a rerun reaching `final`, with the API's privileges of an uninterrupted run.
 */
async function checkKill(opts: {
	db: string;
	run: FaultRun;
	fault: Fault;
	audit: string;
	allowed: Record<string, Snapshot>;
	final: Snapshot;
	privileges: Record<string, boolean>;
	rerun: () => Promise<RunResult>;
}): Promise<string> {
	const { run, fault } = opts;
	const url = sb.urls(opts.db).admin;
	const what = `${describeFault(fault)}: exit ${run.code}\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`;
	await settle(url);
	const now = await snapshotDatabase(url);
	const state =
		Object.entries(opts.allowed).find(([, s]) => same(now, s))?.[0] ?? "MIXED";
	expect(state, what).not.toBe("MIXED");
	expect(await snapshotPlatform(url), what).toEqual(platform);
	const stop = expectStopped(run, opts.audit, RUNBOOK, fault, what);
	const again = await opts.rerun();
	expect(
		again.code,
		`rerun after ${what}\n${again.stdout}\n${again.stderr}`,
	).toBe(0);
	expect(await snapshotDatabase(url)).toEqual(opts.final);
	expect(await snapshotPlatform(url)).toEqual(platform);
	expect(await apiPrivileges(url)).toEqual(opts.privileges);
	expect(readdirSync(backups).filter((f) => f.startsWith(".partial-"))).toEqual(
		[],
	);
	return `step ${fault.step} ${fault.kind}: stopped in step ${stop.stepNo}${stop.ended ? ` (${stop.status})` : ""}, exit ${run.code}, database ${state}`;
}

const RESTORE_STEPS = [
	{ step: 5, title: "Stop the app (APP_STOP_CMD)", offsetMs: 300 },
	{ step: 6, title: "Safety backup of the current state", offsetMs: 100 },
	{ step: 7, title: "Terminate the other sessions", offsetMs: 100 },
	{ step: 8, title: "Restore atomically", offsetMs: 200 },
	{ step: 12, title: "Migration files: what to revert in git", offsetMs: 100 },
	{ step: 13, title: "Start the app (APP_START_CMD)", offsetMs: 300 },
];

describe("emergency-rollback.ts on Supabase under SIGKILL (restore mode)", () => {
	it.each(RESTORE_STEPS)(
		"SIGKILL at step $step ($title): the app's schema wholly as before or wholly restored, the platform untouched; rerun restores",
		async ({ step, offsetMs }) => {
			const db = await clone(diverged, `frs_kill_${step}`);
			const { env, audit } = envFor(db);
			const fault: Fault = { kind: "SIGKILL", step, offsetMs };
			const run = await runWithFault(RUNBOOK, restoreArgs(db), fault, { env });
			outcomes.push(
				await checkKill({
					db,
					run,
					fault,
					audit,
					allowed: { before: beforeRestore, restored: atBackup },
					final: atBackup,
					privileges: privilegesAtBackup,
					rerun: () => runRunbook(RUNBOOK, restoreArgs(db), { env }),
				}),
			);
		},
		// A killed run, its rerun and their verifications: over 200 s each on a loaded 2-core machine.
		600_000,
	);
});

describe("emergency-rollback.ts on Supabase under SIGKILL (--mode down, step 10)", () => {
	it("SIGKILL while the down SQL's transaction waits for its lock: nothing applied; rerun rolls back", async () => {
		const db = await clone(deployed, "frs_down");
		const { env, audit } = envFor(db);
		// A reader holding user_preferences keeps step 10's transaction waiting on its lock.
		const holder = new pg.Client({ connectionString: sb.urls(db).direct });
		holder.on("error", () => {});
		await holder.connect();
		await holder.query("begin");
		await holder.query("select count(*) from user_preferences");
		const fault: Fault = { kind: "SIGKILL", step: 10, offsetMs: 300 };
		let run: FaultRun;
		try {
			run = await runWithFault(RUNBOOK, downArgs(db), fault, { env });
		} finally {
			await holder.query("rollback").catch(() => {});
			await holder.end().catch(() => {});
		}
		expect(run.stdout).toContain("[10/15] Apply the down SQL");
		outcomes.push(
			await checkKill({
				db,
				run,
				fault,
				audit,
				allowed: { before: beforeDown },
				final: afterDown,
				privileges: privilegesAfterDown,
				rerun: () => runRunbook(RUNBOOK, downArgs(db), { env }),
			}),
		);
	}, 600_000);
});
