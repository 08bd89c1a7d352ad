// dev-migrate.ts as a developer runs it: in a checkout (a copy of this repository) after adding
// the seed's UserPreferences model to prisma/schema.prisma.

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
	copyRepository,
	createDatabase,
	dropDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { snapshotFiles } from "./support/snapshot.ts";
import {
	query,
	USER_PREFERENCES_MODEL,
	withPreferencesRelation,
} from "./support/supabase-suite.ts";

function addUserPreferences(repo: string): void {
	const path = join(repo, "prisma", "schema.prisma");
	const schema = withPreferencesRelation(readFileSync(path, "utf8"));
	expect(schema).toContain("preferences     UserPreferences?");
	writeFileSync(path, schema + USER_PREFERENCES_MODEL);
}

let repo: string;
let url: string;

beforeAll(async () => {
	repo = copyRepository();
	addUserPreferences(repo);
	url = await createDatabase("devmigrate");
});

afterAll(async () => {
	await dropDatabase(url);
});

const migrations = () =>
	readdirSync(join(repo, "prisma", "migrations")).filter((d) =>
		/^\d{14}_/.test(d),
	);

describe("dev-migrate.ts", () => {
	it("refuses a target whose host is not local (exit 3) and changes nothing", async () => {
		const before = snapshotFiles([join(repo, "prisma")]);
		const remote = new URL(url);
		remote.hostname = "db.faceswap.example.com";
		const run = await runRunbook(
			"dev-migrate",
			["--name", "add_user_preferences", "--yes"],
			{
				root: repo,
				env: { DATABASE_URL: remote.toString() },
			},
		);
		expect(run.code).toBe(3);
		expect(run.stderr).toContain("is not a local host. Nothing was changed.");
		expect(run.stderr).not.toContain(remote.password);
		expect(snapshotFiles([join(repo, "prisma")])).toEqual(before);
	});

	it("refuses a production-marked local target (exit 3)", async () => {
		const run = await runRunbook(
			"dev-migrate",
			["--name", "add_user_preferences", "--yes"],
			{
				root: repo,
				env: { DATABASE_URL: url, RUNBOOK_ENV: "production" },
			},
		);
		expect(run.code).toBe(3);
		expect(run.stderr).toContain("marked production");
		const tables = await query(
			url,
			"select count(*)::int as n from pg_tables where schemaname = 'public'",
		);
		expect(tables.rows[0].n).toBe(0);
	});

	it("rejects a migration name that is not a folder name (exit 2)", async () => {
		const run = await runRunbook(
			"dev-migrate",
			["--name", "../evil", "--yes"],
			{ root: repo, env: { DATABASE_URL: url } },
		);
		expect(run.code).toBe(2);
		expect(run.stderr).toContain(
			"may hold only letters, digits and underscores",
		);
	});

	it("creates, lints and applies the seed's UserPreferences migration", async () => {
		const audit = join(scratchDir(), "audit.jsonl");
		const run = await runRunbook(
			"dev-migrate",
			["--name", "add_user_preferences", "--yes"],
			{
				root: repo,
				env: { DATABASE_URL: url, RUNBOOK_AUDIT_LOG: audit },
			},
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		const created = migrations().filter((m) =>
			m.endsWith("_add_user_preferences"),
		);
		expect(created).toHaveLength(1);
		const sql = readFileSync(
			join(repo, "prisma", "migrations", created[0], "migration.sql"),
			"utf8",
		);
		expect(sql).toContain('CREATE TABLE "user_preferences"');
		// The SQL and the linter's verdict are printed for the developer.
		expect(run.stdout).toContain('CREATE TABLE "user_preferences"');
		expect(run.stdout).toContain(
			`${created[0]}/migration.sql: no unsafe statements found`,
		);
		expect(run.stdout).toContain("Database schema is up to date!");
		const applied = await query(
			url,
			"select migration_name from _prisma_migrations where finished_at is not null order by 1",
		);
		expect(applied.rows.map((r) => r.migration_name)).toContain(created[0]);
		const steps = readFileSync(audit, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l));
		expect(
			steps.filter((s) => s.event === "step_end").map((s) => s.status),
		).toEqual(["ok", "ok", "ok", "ok", "ok", "ok", "skipped"]);
	});

	it("explains an unsafe change in the seed's terms: a NOT NULL column without default", async () => {
		const path = join(repo, "prisma", "schema.prisma");
		writeFileSync(
			path,
			readFileSync(path, "utf8").replace(
				'  theme         String  @default("light")',
				'  theme         String  @default("light")\n  timezone      String',
			),
		);
		const run = await runRunbook(
			"dev-migrate",
			["--name", "add_timezone", "--create-only", "--yes"],
			{
				root: repo,
				env: { DATABASE_URL: url },
			},
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toContain(
			"✗ unsafe: NOT NULL column without a default [adding-required-field]",
		);
		expect(run.stdout).toContain("runbooks/add-required-field.ts");
		expect(run.stdout).toContain("--create-only: edit the SQL");
		const columns = await query(
			url,
			"select column_name from information_schema.columns where table_name = 'user_preferences'",
		);
		expect(columns.rows.map((r) => r.column_name)).not.toContain("timezone");
	});
});
