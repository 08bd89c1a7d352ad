// emergency-rollback.ts under the worst interruptions: kill -9 (the whole process group, as a
// terminal or an OOM killer would) at several moments of the restore step, then a rerun; and
// --rehearse, which must leave the target exactly as it was. The backup is one backup.ts made.

import { cpSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Fault, runWithFault } from "./support/faults.ts";
import * as h from "./support/harness.ts";
import {
	createBackup,
	dayOfTraffic,
	restoreArgs,
	stateAmong,
	USER_PREFERENCES,
} from "./support/rollback-suite.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

let url: string;
let db: string;
let env: Record<string, string>;
let backupId: string;
/** The database as the backup holds it. */
let atBackup: Record<string, string>;

const rollback = (
	args: string[],
	extra: Parameters<typeof h.runRunbook>[2] = {},
) => h.runRunbook("emergency-rollback", args, { env, ...extra });

/** Waits until no runbook session (the psql of a killed restore, say) is left on the database. */
async function settle(): Promise<void> {
	for (let i = 0; i < 200; i++) {
		const rows = await h.admin(
			(c) =>
				c.query(
					"select 1 from pg_stat_activity where datname = $1 and application_name like 'runbook:%'",
					[db],
				),
			url,
		);
		if (rows.rowCount === 0) return;
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error("a runbook session stayed on the database");
}

/** What a deploy and some traffic leave behind: a new table, new rows, deleted rows. */
const diverge = () => dayOfTraffic(url, USER_PREFERENCES);

beforeAll(async () => {
	url = await h.createSeededDatabase("rollback_kill", 1000);
	db = h.dbName(url);
	const dir = h.scratchDir();
	env = {
		DATABASE_URL: url,
		BACKUP_DIR: join(dir, "backups"),
		RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"),
	};
	backupId = (await createBackup(env)).id;
	expect(backupId).toBeTruthy();
	atBackup = await snapshotDatabase(url);
});

afterAll(async () => {
	if (url) await h.dropDatabase(url);
});

describe("emergency-rollback.ts --rehearse without --backup", () => {
	it("takes the newest verified backup of any kind (here a manual one) and names its kind; restore mode still wants a pre-deploy one", async () => {
		// A BACKUP_DIR holding only the manual backup of beforeAll.
		const only = join(h.scratchDir(), "backups");
		mkdirSync(only);
		for (const f of readdirSync(env.BACKUP_DIR).filter((f) =>
			f.startsWith(backupId),
		))
			cpSync(join(env.BACKUP_DIR, f), join(only, f), { recursive: true });
		const before = await snapshotDatabase(url);
		const run = await rollback(["--rehearse", "--json"], {
			env: { ...env, BACKUP_DIR: only },
		});
		expect(run.code, run.stderr).toBe(0);
		expect(run.stderr).toContain(
			`rehearsing the newest verified backup of the target: ${backupId}, a manual backup`,
		);
		expect(JSON.parse(run.stdout).verification.problems).toEqual([]);
		expect(await snapshotDatabase(url)).toEqual(before);

		const restore = await rollback(["--yes", "--confirm", db], {
			env: { ...env, BACKUP_DIR: only },
		});
		expect(restore.code).toBe(3);
		expect(restore.stderr).toContain("There is no verified pre-deploy backup");
		expect(await snapshotDatabase(url)).toEqual(before);
	});
});

describe("emergency-rollback.ts, interrupted", () => {
	it("killed with SIGKILL at any moment of the restore step leaves the database wholly old or wholly restored, and a rerun completes", async () => {
		expect(backupId).toBeDefined();
		// Moments of step 8: its start (the audit log's step_start) plus an offset, or a line it
		// prints as the restore goes (the kill follows at once, or after delayMs).
		const atStart = (offsetMs: number): Fault => ({
			kind: "SIGKILL",
			step: 8,
			offsetMs,
		});
		const moments: Array<
			{ fault: Fault } | { pattern: RegExp; delayMs: number }
		> = [
			{ fault: atStart(0) },
			{ pattern: /BEGIN; dropping every object/, delayMs: 0 },
			{ pattern: /loading .* rows\)/, delayMs: 100 },
			{ pattern: /COMMIT: committing the restore/, delayMs: 0 },
			{ fault: atStart(1500) },
		];
		const args = [...restoreArgs(backupId, db), "--skip-safety-backup"];
		const seen: string[] = [];
		for (const moment of moments) {
			await diverge();
			const old = await snapshotDatabase(url);
			expect(old).not.toEqual(atBackup);
			const run =
				"fault" in moment
					? await runWithFault("emergency-rollback", args, moment.fault, {
							env,
						})
					: await rollback(args, {
							signalOn: { ...moment, signal: "SIGKILL" },
						});
			expect(run.stdout).toMatch(/\[8\/15\] Restore atomically/);
			await settle();
			const now = await snapshotDatabase(url);
			const state = stateAmong(now, { old, restored: atBackup });
			const out = run.stdout + run.stderr;
			seen.push(
				`${"fault" in moment ? `step 8 +${moment.fault.offsetMs} ms` : `${moment.pattern.source}+${moment.delayMs}ms`}: ${state} (exit ${run.code})`,
			);
			expect(state, seen.join("\n")).not.toBe("MIXED");
			// Judged where the kill landed: before the restore's COMMIT was sent, the database is
			// the old one; once it said it committed, the restored one.
			if (!out.includes("COMMIT: committing the restore"))
				expect(state, `${seen.join("\n")}\n${out}`).toBe("old");
			if (out.includes("committed: the database now holds the backup"))
				expect(state, `${seen.join("\n")}\n${out}`).toBe("restored");
		}

		const rerun = await rollback(args);
		expect(rerun.code, rerun.stderr).toBe(0);
		expect(rerun.stdout).toContain(
			"--skip-safety-backup: this rollback cannot be undone",
		);
		expect(await snapshotDatabase(url)).toEqual(atBackup);
	});

	it("--rehearse restores into a scratch database, verifies, reports the time and leaves the target untouched", async () => {
		const before = await snapshotDatabase(url);
		const run = await rollback(["--rehearse", "--backup", backupId, "--json"]);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.restore_ms).toBeGreaterThan(0);
		expect(report.verification.problems).toEqual([]);
		expect(run.stderr).toMatch(new RegExp(`${backupId} restores in \\d`));
		expect(run.stderr).toContain("was not touched");
		expect(await snapshotDatabase(url)).toEqual(before);
		const left = await h.admin((c) =>
			c.query(
				"select datname from pg_database where datname like '%rehearse%'",
			),
		);
		expect(
			left.rows.filter((r) => String(r.datname).startsWith(db.slice(0, 20))),
		).toEqual([]);
	});
	it("--method swap restores into a new database and swaps the names; a killed swap's leftover is removed", async () => {
		await diverge();
		// What a swap killed during its pg_restore leaves behind.
		const leftover = `${db}_restore_20240101t000000z`;
		await h.admin((c) => c.query(`create database "${leftover}"`));
		const run = await rollback([
			"--method",
			"swap",
			...restoreArgs(backupId, db),
			"--skip-safety-backup",
			"--json",
		]);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(run.stderr).toContain(
			`dropped ${leftover}, left by an interrupted swap restore`,
		);
		expect(await snapshotDatabase(url)).toEqual(atBackup);
		const names = await h.admin((c) =>
			c.query<{ datname: string }>(
				"select datname from pg_database where datname like $1 order by 1",
				[`${db}%`],
			),
		);
		expect(names.rows.map((r) => r.datname)).toEqual(
			[db, report.old_database].sort(),
		);
		expect(run.stderr).toContain(`DROP DATABASE "${report.old_database}"`);
		await h.admin((c) => c.query(`drop database "${report.old_database}"`));
	});
});
