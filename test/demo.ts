// `npm run demo`: a throw-away PostgreSQL (started the way the tests start theirs), the Face Swap
// schema with realistic data, then each runbook run end to end as an operator would run it, with
// its real output. Exits 1 if a runbook's exit code is not the one the scene expects.

import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { seedFaceSwap } from "./support/fixtures.ts";
import { GIT_ENV } from "./support/git-fixtures.ts";
import { copyRepository, scratchDir } from "./support/harness.ts";
import { startPostgres } from "./support/postgres.ts";
import {
	execAs,
	type SupabaseFixture,
	startSupabase,
} from "./support/supabase.ts";
import {
	cliArgs,
	profilesEnv,
	USER_PREFERENCES_MODEL,
	withPreferencesRelation,
} from "./support/supabase-suite.ts";

const tsxCli = createRequire(import.meta.url).resolve("tsx/cli");
const users = Number(process.env.DEMO_USERS ?? 5000);

interface Scene {
	title: string;
	runbook: string;
	args: string[];
	expect: number;
	/** Runs with the database of the --env-file it names, not the demo's DATABASE_URL. */
	fromEnvFile?: boolean;
	before?: () => Promise<void> | void;
	after?: () => Promise<void> | void;
}

const banner = (text: string) =>
	process.stdout.write(`\n${"═".repeat(100)}\n▶ ${text}\n${"═".repeat(100)}\n`);

const server = await startPostgres();
let supabase: SupabaseFixture | undefined;
let failures = 0;
try {
	const admin = new URL(server.adminUrl);
	const url = new URL(server.adminUrl);
	url.pathname = "/faceswap";
	const databaseUrl = url.toString();
	const sql = (text: string) => execAs(databaseUrl, text);

	banner(
		`Throw-away PostgreSQL (${server.kind}) at ${admin.hostname}:${admin.port}; loading the Face Swap schema`,
	);
	await execAs(server.adminUrl, "create database faceswap");
	// A developer's checkout: dev-migrate writes into its prisma/ folder, not into this repository's.
	const repo = copyRepository();
	const work = scratchDir();
	const auditLog = join(work, "audit.jsonl");
	const env: NodeJS.ProcessEnv = {
		...process.env,
		...GIT_ENV,
		DATABASE_URL: databaseUrl,
		RUNBOOK_AUDIT_LOG: auditLog,
		BACKUP_DIR: join(work, "backups"),
	};
	const { DATABASE_URL: _local, ...withoutUrl } = env;
	const run = (runbook: string, args: string[], fromEnvFile = false) =>
		spawnSync(
			process.execPath,
			[tsxCli, join(repo, "runbooks", `${runbook}.ts`), ...args],
			{
				cwd: repo,
				env: fromEnvFile ? withoutUrl : env,
				stdio: ["ignore", "inherit", "inherit"],
			},
		).status;

	// The checkout is a git repository, so that the rollback can find and revert a release's commit.
	const git = (...args: string[]) =>
		execFileSync("git", args, { cwd: repo, env, stdio: "pipe" })
			.toString()
			.trim();
	git("init", "-q");
	git("add", "-A");
	git("commit", "-q", "-m", "Face Swap schema");
	const migrationsDir = join(repo, "prisma", "migrations");
	const latestMigration = () =>
		readdirSync(migrationsDir, { withFileTypes: true })
			.filter((e) => e.isDirectory())
			.map((e) => e.name)
			.sort()
			.at(-1) ?? "";
	/** A release: a nullable column on generated_videos, in schema.prisma and a migration, committed. */
	const release = (name: string) => {
		// Named as Prisma names migrations (UTC timestamp), so it sorts after every earlier one.
		const folder = `${new Date().toISOString().replace(/\D/g, "").slice(0, 14)}_${name}`;
		mkdirSync(join(migrationsDir, folder));
		writeFileSync(
			join(migrationsDir, folder, "migration.sql"),
			'-- AlterTable\nALTER TABLE "generated_videos" ADD COLUMN "rating" INTEGER;\n',
		);
		const path = join(repo, "prisma", "schema.prisma");
		writeFileSync(
			path,
			readFileSync(path, "utf8").replace(
				/(model GeneratedVideo \{\n)/,
				"$1  rating          Int?\n",
			),
		);
		git("add", "-A");
		git("commit", "-q", "-m", `Release: ${folder}`);
		return git("rev-parse", "--short=12", "HEAD");
	};
	const restoreArgs = ["--yes", "--confirm", "faceswap", "--git-revert"];
	const downArgs = ["--mode", "down", "--yes", "--confirm", "faceswap"];
	const deployArgs = cliArgs({
		yes: true,
		confirm: "faceswap",
		"monitor-seconds": "0",
	});
	const envFile = join(repo, ".env");
	const supabaseRollback = ["--yes", "--env-file", envFile];
	const supabaseRestore = cliArgs({
		yes: true,
		confirm: "postgres",
		"env-file": envFile,
	});
	/** The newest backup in BACKUP_DIR. */
	const newestBackup = () =>
		readdirSync(env.BACKUP_DIR as string)
			.filter((f) => f.endsWith(".json"))
			.map((f) =>
				JSON.parse(readFileSync(join(env.BACKUP_DIR as string, f), "utf8")),
			)
			.sort((a, b) => a.created_at.localeCompare(b.created_at))
			.at(-1).id as string;

	const scenes: Scene[] = [
		{
			title:
				"The database is empty: validate says no migration was ever deployed (exit 1)",
			runbook: "validate",
			args: [],
			expect: 1,
		},
		{
			title:
				"A developer adds the seed's UserPreferences model and runs dev-migrate",
			runbook: "dev-migrate",
			args: ["--name", "add_user_preferences", "--yes"],
			expect: 0,
			before: () => {
				const path = join(repo, "prisma", "schema.prisma");
				const schema = withPreferencesRelation(readFileSync(path, "utf8"));
				writeFileSync(path, `${schema}${USER_PREFERENCES_MODEL}`);
			},
			after: async () => {
				banner(
					`Loading realistic data (${users} users, ${users * 10} rows in all)`,
				);
				await seedFaceSwap(databaseUrl, { users });
			},
		},
		{
			title: "validate on the migrated, populated database (exit 0)",
			runbook: "validate",
			args: ["--tables"],
			expect: 0,
		},
		{
			title:
				"Someone adds a column by hand in psql: validate names the drift (exit 1)",
			runbook: "validate",
			args: [],
			expect: 1,
			before: () => sql("alter table users add column nickname text"),
			after: () => sql("alter table users drop column nickname"),
		},
		{
			title: "dev-migrate against a production-marked target refuses (exit 3)",
			runbook: "dev-migrate",
			args: ["--name", "anything", "--yes"],
			expect: 3,
			before: () => {
				env.RUNBOOK_ENV = "production";
			},
			after: () => {
				delete env.RUNBOOK_ENV;
			},
		},
		{
			title: "Before a large migration: db-health on a quiet database (exit 0)",
			runbook: "db-health",
			args: [],
			expect: 0,
		},
		{
			title: "monitor: one snapshot of sessions and locks",
			runbook: "monitor",
			args: ["--once"],
			expect: 0,
		},
		{
			title: "troubleshoot: a migration marked failed is diagnosed (exit 1)",
			runbook: "troubleshoot",
			args: ["--skip-drift"],
			expect: 1,
			before: () =>
				sql(
					"update _prisma_migrations set finished_at = null, logs = 'ERROR: could not obtain lock' where migration_name = '20241230000000_comprehensive_schema'",
				),
		},
		{
			title:
				"troubleshoot: the operator marks it rolled back, as prisma migrate resolve would",
			runbook: "troubleshoot",
			args: [
				"--skip-drift",
				"--resolve-rolled-back",
				"20241230000000_comprehensive_schema",
				"--yes",
			],
			expect: 0,
			// The failure was staged by the demo: the migration had in fact been applied.
			after: () =>
				sql(
					"update _prisma_migrations set rolled_back_at = null, finished_at = started_at, logs = null where migration_name = '20241230000000_comprehensive_schema'",
				),
		},
		{
			title:
				"A large-table backfill in keyset batches (the seed's OFFSET loop skipped half the rows)",
			runbook: "backfill",
			args: cliArgs({
				table: "generated_videos",
				set: "quality = '720p'",
				where: "quality = '480p'",
				yes: true,
			}),
			expect: 0,
		},
		{
			title:
				"A required column on a busy table, without downtime, kept in Prisma's history",
			runbook: "add-required-field",
			args: cliArgs({
				table: "generated_videos",
				column: "priority",
				type: "integer",
				default: "0",
				yes: true,
			}),
			expect: 0,
		},
		{
			title: "validate after all that (exit 0)",
			runbook: "validate",
			args: [],
			expect: 0,
			after: () => {
				// add-required-field wrote a migration into the checkout: commit it as a developer would.
				git("add", "-A");
				git("commit", "-q", "-m", "Require generated_videos.priority");
			},
		},
		{
			title: "A verified backup by hand, then the list of backups",
			runbook: "backup",
			args: [],
			expect: 0,
		},
		{
			title:
				"backup list: every backup, verified or not, with its latest migration",
			runbook: "backup",
			args: ["list"],
			expect: 0,
		},
		{
			title:
				"A release adds generated_videos.rating: deploy-production (pre-deploy backup, lint, lock timeout, verify)",
			runbook: "deploy-production",
			args: deployArgs,
			expect: 0,
			before: () => {
				restoreArgs.push(release("add_video_rating"));
			},
		},
		{
			title:
				"Nightly: rehearse the newest pre-deploy backup on a scratch database (the target is not touched)",
			runbook: "emergency-rollback",
			args: ["--rehearse", "--yes"],
			expect: 0,
		},
		{
			title:
				"The release broke the app: emergency-rollback restores the pre-deploy backup and reverts the release commit",
			runbook: "emergency-rollback",
			args: restoreArgs,
			expect: 0,
		},
		{
			title:
				"validate after the rollback: history and schema agree again (exit 0)",
			runbook: "validate",
			args: [],
			expect: 0,
		},
		{
			title: "The release again, deployed",
			runbook: "deploy-production",
			args: deployArgs,
			expect: 0,
			before: () => {
				downArgs.push("--to", latestMigration());
				downArgs.push("--git-revert", release("add_video_rating_again"));
			},
		},
		{
			title:
				"Rolled back without a restore: --mode down drops only what the release added, keeps every row",
			runbook: "emergency-rollback",
			args: downArgs,
			expect: 0,
		},
		{
			title: "validate after the down migration (exit 0)",
			runbook: "validate",
			args: [],
			expect: 0,
		},
		{
			title:
				"Moving to Supabase: a Supabase-shaped server (platform roles and schemas) behind pgbouncer; the dry run first",
			runbook: "migrate-to-supabase",
			args: ["--dry-run", "--env-file", envFile],
			expect: 0,
			before: async () => {
				supabase = await startSupabase();
				writeFileSync(
					envFile,
					profilesEnv(
						databaseUrl,
						supabase,
						"# Database profiles (switch-db-env)",
					),
					{ mode: 0o600 },
				);
			},
		},
		{
			title:
				"migrate-to-supabase: copy, verify row for row, switch .env to the pooler",
			runbook: "migrate-to-supabase",
			args: ["--yes", "--env-file", envFile],
			expect: 0,
		},
		{
			title:
				"On Supabase, as its non-superuser postgres: a backup holds the app's objects only (schema public, its privileges), not the platform's",
			runbook: "backup",
			args: ["--env-file", envFile],
			expect: 0,
			fromEnvFile: true,
		},
		{
			title:
				"Rehearse restoring it on Supabase: a scratch database created by postgres, restored, verified, dropped",
			runbook: "emergency-rollback",
			args: supabaseRollback,
			expect: 0,
			fromEnvFile: true,
			before: () => {
				supabaseRollback.unshift("--rehearse", "--backup", newestBackup());
			},
		},
		{
			title:
				"Roll Supabase back to it: only the app's objects replaced, in one transaction; the platform's event triggers fire harmlessly",
			runbook: "emergency-rollback",
			args: supabaseRestore,
			expect: 0,
			fromEnvFile: true,
			before: () => {
				supabaseRestore.unshift("--backup", newestBackup());
			},
		},
		{
			title:
				"switch-db-env status: which profile is active, and whether each answers",
			runbook: "switch-db-env",
			args: ["status", "--env-file", envFile],
			expect: 0,
		},
		{
			title: "switch-db-env local: back to the local database",
			runbook: "switch-db-env",
			args: ["local", "--env-file", envFile],
			expect: 0,
		},
	];

	for (const scene of scenes) {
		await scene.before?.();
		banner(
			`${scene.title}\n  $ npx tsx runbooks/${scene.runbook}.ts ${scene.args.join(" ")}`,
		);
		const code = run(scene.runbook, scene.args, scene.fromEnvFile);
		if (code !== scene.expect) {
			failures++;
			process.stdout.write(
				`\n✗ demo: expected exit ${scene.expect}, got ${code}\n`,
			);
		} else {
			process.stdout.write(`\n(exit ${code}, as expected)\n`);
		}
		await scene.after?.();
	}
	banner(`Audit log of this demo: ${auditLog}`);
	process.stdout.write(
		`${readFileSync(auditLog, "utf8").trim().split("\n").slice(-4).join("\n")}\n`,
	);
} finally {
	await supabase?.stop();
	await server.stop();
}
process.stdout.write(
	failures
		? `\n✗ demo: ${failures} scene(s) did not end as expected\n`
		: "\n✓ demo complete\n",
);
process.exit(failures ? 1 : 0);
