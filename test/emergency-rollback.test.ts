// emergency-rollback.ts as on-call runs it, on real PostgreSQL with Face Swap data, the real
// deploy runbook, pg_dump/pg_restore/psql and Prisma: restore the pre-deploy backup after a deploy
// of two migrations, kill -9 in the middle of the restore, an altered backup, a rehearsal, the
// dry run. (--mode down: emergency-rollback-down.test.ts.)

import {
	copyFileSync,
	existsSync,
	readdirSync,
	readFileSync,
	writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { migrationsRepo } from "./support/git-fixtures.ts";
import * as h from "./support/harness.ts";
import {
	dayOfTraffic,
	deployArgs,
	type MigrationsRepo,
	PREFERENCES,
	RATING,
	runEnv,
	TWO_MIGRATIONS,
	USER_PREFERENCES,
} from "./support/rollback-suite.ts";
import { snapshotDatabase, snapshotFiles } from "./support/snapshot.ts";

let url: string;
let db: string;
let env: Record<string, string>;
let backups: string;
let audit: string;
let repo: MigrationsRepo;
/** The database as the pre-deploy backup holds it. */
let atBackup: Record<string, string>;
let preDeployId: string;

const rollback = (
	args: string[],
	extra: Parameters<typeof h.runRunbook>[2] = {},
) => h.runRunbook("emergency-rollback", args, { env, ...extra });

const query = async <T extends Record<string, unknown>>(sql: string) =>
	h.admin(async (c) => (await c.query<T>(sql)).rows, url);

/** What a deploy and a day of traffic would leave: the two migrations' objects and new rows. */
const diverge = () => dayOfTraffic(url, USER_PREFERENCES);

beforeAll(async () => {
	url = await h.createSeededDatabase("rollback", 1000);
	db = h.dbName(url);
	repo = migrationsRepo(TWO_MIGRATIONS);
	env = runEnv({ DATABASE_URL: url }, repo.dir);
	backups = env.BACKUP_DIR;
	audit = env.RUNBOOK_AUDIT_LOG;
	atBackup = await snapshotDatabase(url);
});

afterAll(async () => {
	if (url) await h.dropDatabase(url);
});

describe("emergency-rollback.ts", () => {
	it("after deploy-production applied two migrations, restores the pre-deploy backup exactly and prints the git revert (exit 0)", async () => {
		const deploy = await h.runRunbook(
			"deploy-production",
			[...deployArgs(db), "--json"],
			{ env },
		);
		expect(deploy.code, deploy.stderr).toBe(0);
		const deployed = JSON.parse(deploy.stdout);
		expect(deployed.applied).toEqual([RATING, PREFERENCES]);
		preDeployId = deployed.backup_id;
		// Traffic after the deploy: rows in the new table and column, new users, a deleted purchase.
		await diverge();
		await query(
			"update generated_videos set rating = 4 where status = 'COMPLETED'",
		);
		const afterDeploy = await snapshotDatabase(url);
		expect(afterDeploy).not.toEqual(atBackup);

		const run = await rollback(["--yes", "--confirm", db, "--json"], {
			watchChildren: true,
		});
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.backup_id).toBe(preDeployId);
		expect(report.rolled_back_migrations).toEqual([RATING, PREFERENCES]);

		// Every table's rows (per-table checksums), the catalog and _prisma_migrations: as at the backup.
		expect(await snapshotDatabase(url)).toEqual(atBackup);

		// What it showed and decided, in plain words.
		expect(run.stderr).toContain(`${preDeployId} (pre-deploy`);
		expect(run.stderr).toMatch(/user_preferences\s+-\s+25\s+only now/);
		expect(run.stderr).toContain("restored");
		const revert = `git -C ${repo.repo} revert --no-edit ${repo.commit.slice(0, 12)}`;
		expect(report.git_revert).toBe(revert);
		expect(run.stderr).toContain(revert);
		expect(
			report.migration_files.map((f: { commit: string }) => f.commit),
		).toEqual([repo.commit, repo.commit]);
		// The files stay until the operator reverts them.
		expect(existsSync(join(repo.dir, RATING))).toBe(true);

		// The safety backup holds the state the rollback replaced, and undoes it.
		const safety = JSON.parse(
			readFileSync(join(backups, `${report.safety_backup_id}.json`), "utf8"),
		);
		expect(safety.kind).toBe("safety");
		expect(safety.row_counts.user_preferences).toBe(25);
		expect(safety.latest_migration).toBe(PREFERENCES);
		expect(report.undo_command).toBe(
			`npx tsx runbooks/emergency-rollback.ts --backup ${report.safety_backup_id}`,
		);

		// Verified afterwards, each step audited, no password on any child's command line.
		const verify = report.steps.find((s: { title: string }) =>
			s.title.startsWith("Verify:"),
		);
		expect(verify.status).toBe("ok");
		expect(report.verification.problems).toEqual([]);
		const lines = readFileSync(audit, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l));
		const mine = lines.filter((l) => l.runbook === "emergency-rollback");
		expect(
			mine.filter((l) => l.event === "step_end").map((l) => l.step),
		).toContain("Restore atomically");
		const password = new URL(url).password;
		expect(run.childArgv.some((a) => a.includes("pg_restore"))).toBe(true);
		expect(run.childArgv.some((a) => a.includes("psql"))).toBe(true);
		if (password)
			for (const a of run.childArgv) expect(a).not.toContain(password);
	});

	it("refuses a backup whose archive was altered before anything changes (exit 3)", async () => {
		await diverge();
		const before = await snapshotDatabase(url);
		const source = JSON.parse(
			readFileSync(join(backups, `${preDeployId}.json`), "utf8"),
		);
		const id = `${db}-20240101T000000Z`;
		copyFileSync(join(backups, source.archive), join(backups, `${id}.dump`));
		writeFileSync(
			join(backups, `${id}.json`),
			JSON.stringify({
				...source,
				id,
				archive: `${id}.dump`,
				kind: "pre-deploy",
			}),
		);
		const bytes = readFileSync(join(backups, `${id}.dump`));
		bytes[Math.floor(bytes.length / 2)] ^= 0xff;
		writeFileSync(join(backups, `${id}.dump`), bytes);
		const files = readdirSync(backups).length;

		const run = await rollback(["--backup", id, "--yes", "--confirm", db]);
		expect(run.code).toBe(3);
		expect(run.stderr).toContain(
			`The backup ${id} failed verification: sha256 mismatch`,
		);
		expect(run.stderr).toContain("nothing was changed");
		expect(run.stderr).not.toMatch(/\n\s+at /); // no stack trace
		expect(await snapshotDatabase(url)).toEqual(before);
		// No step after the verification ran: no safety backup, nothing stopped or terminated.
		expect(readdirSync(backups).length).toBe(files);
		expect(run.stdout).not.toContain("[5/15] Stop the app");
	});

	it("--dry-run shows the backup next to the current state and the plan, and changes nothing (not even the manifest)", async () => {
		const before = await snapshotDatabase(url);
		const files = snapshotFiles([backups, repo.dir]);
		const run = await rollback(["--dry-run", "--backup", preDeployId]);
		expect(run.code, run.stderr).toBe(0);
		expect(run.stdout).toContain(
			"latest migration: backup 20241230000000_comprehensive_schema",
		);
		expect(run.stdout).toContain("psql --no-psqlrc");
		expect(run.stdout).toContain("pg_restore --clean --if-exists");
		expect(run.stdout).toContain(
			`revert --no-edit ${repo.commit.slice(0, 12)}`,
		);
		expect(run.stdout).not.toContain(new URL(url).password || "\u0000");
		expect(await snapshotDatabase(url)).toEqual(before);
		expect(snapshotFiles([backups, repo.dir])).toEqual(files);
	});
});
