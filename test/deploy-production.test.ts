// deploy-production.ts as an operator or a CI job runs it, on real PostgreSQL with the real Prisma
// CLI and pg_dump: a database two migrations behind brought up to date, unsafe and failing
// migrations, the dry run, nothing pending, and each refusal.

import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
	backupFiles,
	confirmedDeploy,
	copiedDatabase,
	queryRows,
	runbookEnv,
} from "./support/deploy-suite.ts";
import {
	createSeededDatabase,
	dbName,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import {
	migrationsWith,
	repoMigrationNames,
	rewind,
} from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

/** The seeded, fully migrated base database the tests copy. */
const base = copiedDatabase(() => createSeededDatabase("deploy_base", 1000));

function setup(url: string, extra: Record<string, string> = {}) {
	const env = runbookEnv(url, extra);
	return { env, audit: env.RUNBOOK_AUDIT_LOG, backups: env.BACKUP_DIR };
}

const deploy = (
	url: string,
	env: Record<string, string>,
	extra: string[] = [],
	watchChildren = false,
) =>
	runRunbook("deploy-production", confirmedDeploy(url, "1", ...extra), {
		env,
		watchChildren,
	});

/** Catalog and data, without the server-wide database count (other test files create databases). */
async function snapshot(url: string, except: string[] = []) {
	const s = await snapshotDatabase(url);
	delete s.databases_count;
	for (const k of Object.keys(s))
		if (except.some((e) => k.includes(e))) delete s[k];
	return s;
}

describe("deploy-production.ts", () => {
	it("brings a database two migrations behind up to date, with a verified backup and a full audit trail (exit 0)", async () => {
		const url = await base.clone("deploy_behind");
		const behind = await rewind(url, 2);
		expect(behind).toEqual(repoMigrationNames().slice(-2));
		const { env, audit, backups } = setup(url);
		const password = new URL(url).password;

		const run = await deploy(url, env, ["--json"], true);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.applied).toEqual(behind);
		expect(report.pending).toEqual(behind);
		expect(report.rollback_command).toBe(
			`npx tsx runbooks/emergency-rollback.ts --backup ${report.backup_id}`,
		);
		expect(report.steps.map((s: { status: string }) => s.status)).toEqual([
			"ok",
			"ok",
			"ok",
			"ok",
			"ok",
			"ok",
			"ok",
			"ok",
		]);
		expect(run.stderr).toContain(report.rollback_command);

		// Both applied, and the database is what the migrations build.
		const rows = await queryRows<{ migration_name: string }>(
			url,
			"select migration_name from _prisma_migrations where finished_at is not null and rolled_back_at is null order by migration_name",
		);
		expect(rows.map((r) => r.migration_name)).toEqual(repoMigrationNames());
		const validate = await runRunbook("validate", [], { env });
		expect(validate.code, validate.stdout).toBe(0);

		// A verified backup with its manifest, mode 0600, taken before the two migrations.
		const manifestPath = join(backups, `${report.backup_id}.json`);
		const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
		expect(manifest).toMatchObject({
			id: report.backup_id,
			kind: "pre-deploy",
			format: "custom",
			target: expect.stringMatching(
				/^postgres@127\.0\.0\.1:\d+\/deploy_behind_/,
			),
			latest_migration: repoMigrationNames().at(-3),
			verified_at: expect.any(String),
		});
		expect(manifest.row_counts).toMatchObject({
			users: 1000,
			generated_videos: 5000,
			purchases: 1000,
		});
		for (const f of [manifestPath, join(backups, manifest.archive)])
			expect(statSync(f).mode & 0o777).toBe(0o600);

		// A start and an end line in the audit log for every step.
		const lines = readFileSync(audit, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l))
			.filter((l) => l.runbook === "deploy-production");
		for (let no = 1; no <= 8; no++) {
			expect(
				lines.filter((l) => l.step_no === no && l.event === "step_start"),
				`step ${no} start`,
			).toHaveLength(1);
			expect(
				lines.filter(
					(l) =>
						l.step_no === no && l.event === "step_end" && l.status === "ok",
				),
				`step ${no} end`,
			).toHaveLength(1);
		}
		expect(readFileSync(audit, "utf8")).not.toContain(password);

		// The password never reached a child process's argv (pg_dump, pg_restore, Prisma).
		expect(run.childArgv.some((a) => a.includes("pg_dump"))).toBe(true);
		expect(run.childArgv.some((a) => a.includes("prisma"))).toBe(true);
		for (const argv of run.childArgv) expect(argv).not.toContain(password);
	});

	it("stops at a failing migration with exit 1, says what applied and failed, prints the rollback command, and changes nothing else", async () => {
		const url = await base.clone("deploy_bad");
		const name = "20250102000000_bad_sql";
		const dir = migrationsWith({
			[name]:
				'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\nUPDATE "users" SET "nickname" = "no_such_column";\n',
		});
		const { env, backups } = setup(url, { PRISMA_MIGRATIONS_DIR: dir });
		const before = await snapshot(url, ["_prisma_migrations"]);

		const run = await deploy(url, env);
		expect(run.code, run.stdout + run.stderr).toBe(1);
		expect(run.stderr).toContain(
			`Step 4 (Apply: prisma migrate deploy (lock timeout, retries)): ${name} failed`,
		);
		expect(run.stderr).toContain("no_such_column");
		expect(run.stderr).toContain("Applied by this deploy: none.");
		expect(run.stderr).toContain(
			`Failed: ${name}. PostgreSQL rolled its transaction back`,
		);
		const id = backupFiles(backups)
			.find((f) => f.endsWith(".json"))
			?.replace(/\.json$/, "");
		expect(id).toBeTruthy();
		expect(run.stderr).toContain(
			`npx tsx runbooks/emergency-rollback.ts --backup ${id}`,
		);
		// The migration's first statement was rolled back with it; nothing else changed.
		expect(await snapshot(url, ["_prisma_migrations"])).toEqual(before);
		const failed = await queryRows<{ n: string }>(
			url,
			"select count(*) as n from _prisma_migrations where migration_name = $1 and finished_at is null and rolled_back_at is null",
			[name],
		);
		expect(Number(failed[0].n)).toBe(1);

		// The failed row blocks the next deploy (exit 3) until it is resolved.
		const again = await deploy(url, env);
		expect(again.code).toBe(3);
		expect(again.stderr).toContain(
			`failed or unfinished migration(s): ${name}`,
		);
		expect(again.stderr).toContain("None of its changes are in the database");
		expect(again.stderr).toContain(
			'UPDATE "_prisma_migrations" SET rolled_back_at = now()',
		);
	});

	it("a verify that fails after the apply says what is applied and resumes with validate.ts, which a rerun of the deploy would not do", async () => {
		const url = await base.clone("deploy_verify");
		const name = "20250102000000_add_nickname";
		const dir = migrationsWith({
			[name]: 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n',
		});
		const bad = join(scratchDir(), "schema.prisma");
		writeFileSync(bad, "this is not a Prisma schema\n");
		const { env } = setup(url, {
			PRISMA_MIGRATIONS_DIR: dir,
			PRISMA_SCHEMA: bad,
		});
		const run = await deploy(url, env);
		const out = run.stdout + run.stderr;
		expect(run.code, out).toBe(1);
		expect(run.stderr).toContain(
			"✗ Step 5 (Verify: migrate status, history, drift)",
		);
		expect(run.stderr).toContain(`Applied by this deploy: ${name}.`);
		expect(run.stderr).toContain(
			"\n  To resume, run: npx tsx runbooks/validate.ts\n",
		);
		// The advice holds: a rerun of the deploy finds nothing to do and checks nothing, while
		// validate runs the checks (and names the same problem until the schema is fixed).
		const rerun = await deploy(url, env);
		expect(rerun.code, rerun.stderr).toBe(0);
		expect(rerun.stdout + rerun.stderr).toContain("nothing to deploy");
		const check = await runRunbook("validate", [], { env });
		expect(check.code, check.stderr).toBe(1);
		expect(check.stdout + check.stderr).toContain(bad);
	});

	it("--dry-run prints every pending migration's SQL and lint findings and changes nothing (no backup, no audit log)", async () => {
		const url = await base.clone("deploy_dry");
		const addNickname = 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;';
		const shortenQuality =
			'ALTER TABLE "generated_videos" ALTER COLUMN "quality" SET DATA TYPE VARCHAR(8);';
		const dir = migrationsWith({
			"20250103000000_add_nickname": `${addNickname}\n`,
			"20250104000000_shorten_quality": `${shortenQuality}\n`,
		});
		const { env, backups, audit } = setup(url, { PRISMA_MIGRATIONS_DIR: dir });
		const before = await snapshot(url);
		const run = await runRunbook(
			"deploy-production",
			["--dry-run", "--allow", "changing-column-type"],
			{ env },
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toContain(addNickname);
		expect(run.stdout).toContain(shortenQuality);
		expect(run.stdout).toContain(
			"20250103000000_add_nickname/migration.sql: no unsafe statements found",
		);
		expect(run.stdout).toContain(
			"~ allowed: changing a data type [changing-column-type]",
		);
		expect(run.stdout).toContain("RUNBOOK_LOCK_TIMEOUT=5000");
		expect(run.stdout).toContain("Dry run complete: nothing was changed.");
		expect(await snapshot(url)).toEqual(before);
		expect(existsSync(backups)).toBe(false);
		expect(existsSync(audit)).toBe(false);
	});

	it("says so and exits 0 without a backup when nothing is pending", async () => {
		const url = await base.clone("deploy_nothing");
		const { env, backups } = setup(url);
		const run = await deploy(url, env);
		expect(run.code, run.stderr).toBe(0);
		expect(run.stdout).toContain(
			"nothing to deploy: all 7 migrations are applied",
		);
		expect(existsSync(backups)).toBe(false);
	});

	it("refuses a transaction pooler, --yes without --confirm and a run without a terminal (exit 3), applying nothing", async () => {
		const url = await base.clone("deploy_refusals");
		await rewind(url, 1);
		const before = await snapshot(url);

		const pooled = new URL(url);
		pooled.searchParams.set("pgbouncer", "true");
		const p = setup(pooled.toString());
		const viaPooler = await deploy(url, p.env);
		expect(viaPooler.code).toBe(3);
		expect(viaPooler.stderr).toContain("transaction pooler");
		expect(viaPooler.stderr).toContain("DIRECT_URL");

		const { env } = setup(url);
		const noName = await runRunbook(
			"deploy-production",
			["--yes", "--monitor-seconds", "0"],
			{ env },
		);
		expect(noName.code).toBe(3);
		expect(noName.stderr).toContain(`--yes alone is not enough here`);
		expect(noName.stderr).toContain(`--confirm ${dbName(url)}`);

		const wrongName = await runRunbook(
			"deploy-production",
			["--yes", "--confirm", "postgres"],
			{ env },
		);
		expect(wrongName.code).toBe(3);
		expect(wrongName.stderr).toContain(
			`does not match the target database "${dbName(url)}"`,
		);

		const noTerminal = await runRunbook("deploy-production", [], { env });
		expect(noTerminal.code).toBe(3);
		expect(noTerminal.stderr).toContain("standard input is not a terminal");

		expect(await snapshot(url)).toEqual(before);
	});
});
