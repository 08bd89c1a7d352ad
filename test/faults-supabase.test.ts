// Fault injection for migrate-to-supabase.ts and switch-db-env.ts against a Supabase-shaped server
// (platform roles and schemas, a real pgbouncer): SIGKILL and SIGINT to the runbook's process group
// at each step that changes something, and pg_terminate_backend of its sessions on the target in
// the middle of the copy. After each fault: the target's public schema is wholly as before or wholly
// copied (never half), the source and the platform untouched, .env byte for byte the original or
// the switched file, the audit log names the step; a rerun ends as an uninterrupted run does,
// without doubled rows.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Fault, FaultRun } from "./support/faults.ts";
import {
	describeFault,
	expectStopped,
	runWithFault,
	settle,
} from "./support/faults.ts";
import { admin, dropDatabase, runRunbook } from "./support/harness.ts";
import { snapshotDatabase } from "./support/snapshot.ts";
import {
	envBackupsIn,
	envDir,
	newAuditLog,
	prepareMoveSource,
	profilesEnv,
	type RunResult,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabaseWithLocal,
} from "./support/supabase-suite.ts";

type Snapshot = Record<string, string>;

let sb: SupabaseFixture;
let src: string;
let original: string;
let switched: string;
let srcBefore: Snapshot;
let platformBefore: Snapshot;
/** The target's public schema (and everything else but this runbook's journal): empty, and copied. */
let targetEmpty: Snapshot;
let targetCopied: Snapshot;
const outcomes: string[] = [];

const same = (a: Snapshot, b: Snapshot) =>
	JSON.stringify(a) === JSON.stringify(b);

/**
 * The target without migrate_to_supabase.* (the runbook's own journal of runs, written before the
 * copy by design so that a rerun knows what a stopped run left).
 */
async function targetState(): Promise<Snapshot> {
	const all = await snapshotDatabase(sb.adminUrl);
	return Object.fromEntries(
		Object.entries(all).filter(([k]) => !k.includes("migrate_to_supabase.")),
	);
}

/** Drops what the runbook created on the target: public's objects, its journal, the extension. */
async function resetTarget(): Promise<void> {
	await admin(async (db) => {
		await db.query(`do $$ declare r record; begin
      for r in select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = 'public' loop
        execute 'drop table if exists ' || r.t || ' cascade'; end loop;
      for r in select format('%I.%I', n.nspname, t.typname) as t from pg_type t join pg_namespace n on n.oid = t.typnamespace
                where n.nspname = 'public' and t.typtype in ('e', 'c', 'd') and not exists (select 1 from pg_class c where c.reltype = t.oid) loop
        execute 'drop type if exists ' || r.t || ' cascade'; end loop;
      for r in select format('%I.%I', sequence_schema, sequence_name) as t from information_schema.sequences where sequence_schema = 'public' loop
        execute 'drop sequence if exists ' || r.t || ' cascade'; end loop;
    end $$`);
		await db.query("drop schema if exists migrate_to_supabase cascade");
		await db.query("drop extension if exists pg_trgm");
	}, sb.adminUrl);
}

/** Waits until no runbook session is still working on the source or the target. */
const settleBoth = () =>
	Promise.all([
		settle(src, { busyOnly: true }),
		settle(sb.adminUrl, { busyOnly: true }),
	]);

/** A directory holding the app's .env with both profiles, and an audit log for the run. */
interface App {
	dir: string;
	file: string;
	audit: string;
}

function app(): App {
	const { dir, file } = envDir("faults-sb-", original);
	return { dir, file, audit: newAuditLog() };
}

const migrateArgs = (file: string) => [
	"--yes",
	"--confirm",
	"postgres",
	"--env-file",
	file,
];
const migrateEnv = (audit: string) => ({
	RUNBOOK_AUDIT_LOG: audit,
	// Takes a moment, so that a fault at step 8 lands inside it.
	VERIFY_CMD: "sleep 1",
});

/** Terminates every client session on the target's database (the runbook's copy among them). */
async function terminateTarget(): Promise<number> {
	return admin(async (db) => {
		const r = await db.query(
			"select pg_terminate_backend(pid) from pg_stat_activity where datname = 'postgres' and pid <> pg_backend_pid() and backend_type = 'client backend' and usename = 'postgres'",
		);
		return r.rowCount ?? 0;
	}, sb.adminUrl);
}

const readEnv = (file: string) => readFileSync(file, "utf8");

beforeAll(async () => {
	[sb, src] = await startSupabaseWithLocal("fsb_src");
	// Enough rows that the copy step lasts well over the faults' delays; with an extension the
	// project lacks, so that step 3 has something to create.
	await prepareMoveSource(src, 600);
	original = profilesEnv(src, sb);
	srcBefore = await snapshotDatabase(src);
	platformBefore = await snapshotPlatform(sb.adminUrl);
	targetEmpty = await targetState();
	// The uninterrupted run: what every rerun must end with.
	const ref = app();
	const run = await runRunbook("migrate-to-supabase", migrateArgs(ref.file), {
		env: migrateEnv(ref.audit),
	});
	expect(run.code, run.stdout + run.stderr).toBe(0);
	targetCopied = await targetState();
	switched = readEnv(ref.file);
	expect(switched).not.toBe(original);
	expect(targetCopied).not.toEqual(targetEmpty);
}, 240_000);

afterAll(async () => {
	await sb?.stop();
	if (src) await dropDatabase(src);
	if (outcomes.length)
		process.stderr.write(
			`\nfaults-supabase outcomes:\n${outcomes.join("\n")}\n`,
		);
});

/** The checks every fault must pass; returns a line for the outcome table. */
async function checkFault(opts: {
	runbook: string;
	app: App;
	run: FaultRun;
	fault: Fault;
	rerun: () => Promise<RunResult>;
	allowedTarget: Record<string, Snapshot>;
	finalTarget: Snapshot;
}): Promise<string> {
	const { run, fault } = opts;
	const { dir, file, audit } = opts.app;
	const what = `${opts.runbook} ${describeFault(fault)}: exit ${run.code}\n${run.stdout.slice(-3000)}\n${run.stderr.slice(-2000)}`;
	await settleBoth();

	// 1. Nothing lost or half-written, on every server and in .env.
	const now = await targetState();
	const state =
		Object.entries(opts.allowedTarget).find(([, s]) => same(now, s))?.[0] ??
		"MIXED";
	expect(state, what).not.toBe("MIXED");
	expect(await snapshotDatabase(src), what).toEqual(srcBefore);
	expect(await snapshotPlatform(sb.adminUrl), what).toEqual(platformBefore);
	const env = readEnv(file);
	const envState =
		env === original ? "original" : env === switched ? "switched" : "MIXED";
	expect(envState, what).not.toBe("MIXED");
	const envBackups = envBackupsIn(dir);
	if (envState === "switched") {
		expect(envBackups, what).toHaveLength(1);
		expect(readEnv(join(dir, envBackups[0])), what).toBe(original);
	}

	// 2. The audit log says where it stopped (the run may also have finished before the signal, as
	// after a step that ends in one synchronous write); the exit code and the advice say how.
	const stop = expectStopped(run, audit, opts.runbook, fault, what);

	// 3. A rerun completes, with what an uninterrupted run leaves (no doubled rows).
	const again = await opts.rerun();
	expect(
		again.code,
		`rerun after ${what}\n${again.stdout}\n${again.stderr}`,
	).toBe(0);
	expect(await targetState()).toEqual(opts.finalTarget);
	expect(readEnv(file)).toBe(switched);
	expect(await snapshotDatabase(src)).toEqual(srcBefore);
	expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
	return `${opts.runbook} | step ${fault.step} | ${fault.kind} | stopped in step ${stop.stepNo}${stop.ended ? ` (${stop.status})` : ""}, exit ${run.code}, target ${state}, .env ${envState}; rerun exit 0`;
}

/**
 * migrate-to-supabase with a fresh app .env and the fault injected (by runWithFault, or by
 * `start`), judged by checkFault against a rerun as the operator would make it; records the outcome.
 */
async function migrateUnderFault(
	fault: Fault,
	allowedTarget: Record<string, Snapshot>,
): Promise<FaultRun> {
	const appEnv = app();
	const opts = { env: migrateEnv(appEnv.audit) };
	const run = await runWithFault(
		"migrate-to-supabase",
		migrateArgs(appEnv.file),
		fault,
		opts,
	);
	outcomes.push(
		await checkFault({
			runbook: "migrate-to-supabase",
			app: appEnv,
			run,
			fault,
			rerun: () =>
				runRunbook("migrate-to-supabase", migrateArgs(appEnv.file), opts),
			allowedTarget,
			finalTarget: targetCopied,
		}),
	);
	return run;
}

const SIGNALS = ["SIGKILL", "SIGINT"] as const;

/** Each step, once under each signal. */
const underEachSignal = <T extends object>(steps: T[]) =>
	steps.flatMap((s) => SIGNALS.map((kind) => ({ ...s, kind })));

describe("migrate-to-supabase.ts under faults", () => {
	// Step 2 clears a partial copy: it runs only when an earlier run stopped while copying.
	it.each(SIGNALS)(
		"%s at step 2 (clear the previous partial copy): public is the partial copy, empty or wholly copied; rerun copies once",
		async (kind) => {
			// The copy left by the previous run, made partial: the journal says copying, rows missing.
			if (!same(await targetState(), targetCopied)) {
				await resetTarget();
				const seed = app();
				const r = await runRunbook(
					"migrate-to-supabase",
					[...migrateArgs(seed.file), "--no-switch"],
					{ env: migrateEnv(seed.audit) },
				);
				expect(r.code, r.stdout + r.stderr).toBe(0);
			}
			await admin(async (db) => {
				await db.query("update migrate_to_supabase.runs set phase = 'copying'");
				await db.query("delete from public.purchases where amount_cents = 999");
			}, sb.adminUrl);
			const partial = await targetState();
			const run = await migrateUnderFault(
				{ kind, step: 2, offsetMs: 50 },
				// Step 2's drops are one transaction; step 4's copy is another.
				{ partial, cleared: targetEmpty, copied: targetCopied },
			);
			expect(run.stdout).toMatch(/stopped while copying: its partial copy/);
		},
	);

	const cases = underEachSignal([
		{ step: 3, title: "create the extensions", offsetMs: 50 },
		{ step: 4, title: "copy (pg_dump | pg_restore)", offsetMs: 150 },
		{ step: 5, title: "reset sequences", offsetMs: 50 },
		{ step: 7, title: "switch .env", offsetMs: 0 },
		{ step: 8, title: "VERIFY_CMD", offsetMs: 300 },
	]);
	it.each(cases)(
		"$kind at step $step ($title): target empty or wholly copied, .env original or switched; rerun ends as an uninterrupted run",
		async ({ step, kind, offsetMs }) => {
			await resetTarget();
			expect(await targetState()).toEqual(targetEmpty);
			await migrateUnderFault(
				{ kind, step, offsetMs },
				{ empty: targetEmpty, copied: targetCopied },
			);
		},
	);

	it("pg_terminate_backend of its target sessions during the copy: exit 1, public empty or wholly copied; rerun copies once", async () => {
		await resetTarget();
		await migrateUnderFault(
			{
				kind: "terminate",
				step: 4,
				offsetMs: 150,
				database: "postgres",
				terminate: terminateTarget,
			},
			{ empty: targetEmpty, copied: targetCopied },
		);
	});
});

describe("switch-db-env.ts under faults", () => {
	// Step 3 is one synchronous write of a temporary file, fsync and rename: a signal lands before
	// it, or after it (Node handles SIGINT only once the write returns), never inside a half-written .env.
	it.each(SIGNALS)(
		"%s at step 3 (rewrite .env): .env byte for byte the original or the switched file; rerun switches",
		async (kind) => {
			const appEnv = app();
			const { file, audit } = appEnv;
			const fault: Fault = { kind, step: 3, offsetMs: 0 };
			const run = await runWithFault(
				"switch-db-env",
				["remote", "--env-file", file],
				fault,
				{ env: { RUNBOOK_AUDIT_LOG: audit } },
			);
			const target = await targetState();
			outcomes.push(
				await checkFault({
					runbook: "switch-db-env",
					app: appEnv,
					run,
					fault,
					rerun: () =>
						runRunbook("switch-db-env", ["remote", "--env-file", file], {
							env: { RUNBOOK_AUDIT_LOG: audit },
						}),
					allowedTarget: { unchanged: target },
					finalTarget: target,
				}),
			);
			expect(existsSync(file)).toBe(true);
		},
	);
});
