// validate.ts as an operator runs it, on a database migrated by the real Prisma CLI.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";

import {
	createDatabase,
	createSeededDatabase,
	dropDatabase,
	fileDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

const database = fileDatabase(() => createSeededDatabase("validate", 300));
const { env, sql } = database;

/** validate.ts --json on the file's database. */
const validateJson = () => runRunbook("validate", ["--json"], { env: env() });

describe("validate.ts", () => {
	it("reports a freshly deployed database healthy, with no drift (exit 0)", async () => {
		const run = await validateJson();
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.healthy).toBe(true);
		expect(report.problems).toEqual([]);
		expect(report.latest_applied).toBe("20241230000000_comprehensive_schema");
		expect(report.drift).toEqual({
			databaseVsMigrations: [],
			migrationsVsSchema: [],
		});
		const tables = report.steps[1].data.map((t: { name: string }) => t.name);
		expect(tables).toEqual(
			expect.arrayContaining([
				"users",
				"generated_videos",
				"purchases",
				"_prisma_migrations",
			]),
		);
	});

	it("names a column added by hand as drift (exit 1)", async () => {
		await sql("alter table users add column x int");
		try {
			const run = await validateJson();
			expect(run.code).toBe(1);
			const report = JSON.parse(run.stdout);
			expect(report.healthy).toBe(false);
			expect(report.problems.join("\n")).toContain(
				"column users.x exists in the database but in no migration",
			);
			expect(run.stderr).toContain(
				'ALTER TABLE "public"."users" DROP COLUMN "x"',
			);
		} finally {
			await sql("alter table users drop column x");
		}
	});

	// Each change made by hand, what validate must name, and how the test undoes it.
	const DRIFT_CASES: Array<{
		change: string;
		undo: string;
		expect: string;
	}> = [
		{
			change: "drop index users_role_idx",
			undo: 'create index users_role_idx on users ("role")',
			expect: "index users_role_idx is missing from the database",
		},
		{
			change:
				"alter table target_templates alter column price_cents set default 99",
			undo: "alter table target_templates alter column price_cents set default 0",
			expect:
				"column target_templates.price_cents differs from the migrations (type, default or nullability)",
		},
		{
			change: `alter type "UserRole" add value 'GUEST'`,
			undo: `create type "UserRole_old" as enum ('USER', 'ADMIN', 'PREMIUM');
			       alter table users alter column role drop default;
			       alter table users alter column role type "UserRole_old" using role::text::"UserRole_old";
			       drop type "UserRole"; alter type "UserRole_old" rename to "UserRole";
			       alter table users alter column role set default 'USER'`,
			expect: "UserRole",
		},
		{
			change: "create table audit_by_hand (id int primary key, note text)",
			undo: "drop table audit_by_hand",
			expect: "table audit_by_hand exists in the database but in no migration",
		},
	];

	it.each(DRIFT_CASES)(
		"names drift made by hand: $change (exit 1)",
		async (c) => {
			await sql(c.change);
			try {
				const run = await validateJson();
				expect(run.code, run.stderr).toBe(1);
				const report = JSON.parse(run.stdout);
				expect(report.drift.databaseVsMigrations.length).toBeGreaterThan(0);
				expect(report.problems.join("\n")).toContain(c.expect);
			} finally {
				await sql(c.undo);
			}
			// Undone: healthy again (the fast path agrees with Prisma).
			const again = await validateJson();
			expect(again.code, again.stdout).toBe(0);
		},
	);

	it("names a failed migration (exit 1)", async () => {
		const name = "20240630170000_add_indexes";
		await sql(
			`update _prisma_migrations set finished_at = null, logs = 'ERROR: deadlock detected' where migration_name = '${name}'`,
		);
		try {
			const run = await runRunbook("validate", [], { env: env() });
			expect(run.code).toBe(1);
			expect(run.stdout).toContain(
				`migration ${name}: failed: ERROR: deadlock detected`,
			);
			expect(run.stdout).toContain("Problems found");
		} finally {
			await sql(
				`update _prisma_migrations set finished_at = started_at, logs = null where migration_name = '${name}'`,
			);
		}
	});

	it("names a migration edited after it was applied", async () => {
		await sql(
			"update _prisma_migrations set checksum = repeat('0', 64) where migration_name = '20240630130000_add_face_sources'",
		);
		try {
			const run = await validateJson();
			expect(run.code).toBe(1);
			expect(JSON.parse(run.stdout).problems).toContain(
				"migration 20240630130000_add_face_sources: migration.sql was edited after it was applied (its checksum differs from the database's record)",
			);
		} finally {
			const file = readFileSync(
				join("prisma/migrations/20240630130000_add_face_sources/migration.sql"),
			);
			const { createHash } = await import("node:crypto");
			await sql(
				`update _prisma_migrations set checksum = '${createHash("sha256").update(file).digest("hex")}' where migration_name = '20240630130000_add_face_sources'`,
			);
		}
	});

	it("says an empty database has no migration applied and what to run, without a drift list (exit 1)", async () => {
		const empty = await createDatabase("validate_empty");
		try {
			const run = await runRunbook("validate", ["--json"], {
				env: { ...env(), DATABASE_URL: empty },
			});
			expect(run.code).toBe(1);
			const report = JSON.parse(run.stdout);
			expect(report.problems).toEqual([
				"no migration applied; run deploy-production (npx tsx runbooks/deploy-production.ts) to build the schema",
			]);
			expect(report.drift).toBeNull();
			expect(report.steps[3].status).toBe("skipped");
			expect(run.stderr).not.toMatch(/CREATE TABLE|CREATE SCHEMA|to undo/);
		} finally {
			await dropDatabase(empty);
		}
	});

	it("keeps the password out of output, the audit log and every child's argv", async () => {
		const password = new URL(database.url).password;
		// With drift, so that Prisma's children run (an undrifted database needs none).
		await sql("alter table users add column argv_scan int");
		const run = await runRunbook("validate", [], {
			env: env(),
			watchChildren: true,
		}).finally(() => sql("alter table users drop column argv_scan"));
		expect(run.code).toBe(1);
		// Prisma children were seen, so the argv scan looked at something.
		expect(run.childArgv.some((a) => a.includes("prisma"))).toBe(true);
		for (const text of [
			run.stdout,
			run.stderr,
			readFileSync(database.audit, "utf8"),
			...run.childArgv,
		]) {
			expect(text).not.toContain(password);
			expect(text).not.toContain(database.url);
		}
		expect(run.stdout).toContain(
			`Target: ${new URL(database.url).username}@127.0.0.1:${new URL(database.url).port}/`,
		);
	});
});

describe("Ctrl-C", () => {
	// npx tsx: to the runbook's own process (tsx's launcher would turn a late acknowledgement into
	// SIGKILL). ./runbooks/validate.ts: its shebang is one node process, so Ctrl-C to the whole
	// process group, as a terminal sends it, reaches the runbook and Prisma's child alike.
	it.for([
		{ form: "npx tsx, SIGINT to the runbook", asExecutable: false },
		{
			form: "./runbooks/validate.ts, SIGINT to the process group",
			asExecutable: true,
		},
	])(
		"$form: stops the running step cleanly, audits it and exits 130",
		async ({ asExecutable }) => {
			const log = join(scratchDir(), "audit.jsonl");
			// Drift keeps the step busy in Prisma's diff for seconds (an undrifted database is answered
			// from the catalogs in a fraction of the 500 ms below).
			await sql("alter table users add column ctrl_c int");
			onTestFinished(async () => {
				await sql("alter table users drop column ctrl_c");
			});
			const run = await runRunbook("validate", [], {
				env: env({ RUNBOOK_AUDIT_LOG: log }),
				watchChildren: true,
				asExecutable,
				signalOn: {
					pattern: /\[4\/4\] Check drift/,
					signal: "SIGINT",
					delayMs: 500,
					to: asExecutable ? "group" : "runbook",
				},
			});
			expect(run.code).toBe(130);
			expect(run.stderr).toContain("Interrupt received");
			expect(run.stderr).toContain(
				"Step 4 (Check drift (prisma migrate diff)): Interrupted by the operator.",
			);
			const lines = readFileSync(log, "utf8")
				.trim()
				.split("\n")
				.map((l) => JSON.parse(l));
			expect(lines.at(-2)).toMatchObject({
				event: "step_end",
				step_no: 4,
				status: "interrupted",
			});
			expect(lines.at(-1)).toMatchObject({ event: "run_end", exit_code: 130 });
		},
	);
});
