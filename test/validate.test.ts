// validate.ts as an operator runs it, on a database migrated by the real Prisma CLI.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
	admin,
	createDatabase,
	createSeededDatabase,
	dropDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

let url: string;
let audit: string;
const env = () => ({ DATABASE_URL: url, RUNBOOK_AUDIT_LOG: audit });

beforeAll(async () => {
	url = await createSeededDatabase("validate", 300);
	audit = join(scratchDir(), "audit.jsonl");
});

afterAll(async () => {
	await dropDatabase(url);
});

const sql = (text: string) => admin((db) => db.query(text), url);

describe("validate.ts", () => {
	it("reports a freshly deployed database healthy, with no drift (exit 0)", async () => {
		const run = await runRunbook("validate", ["--json"], { env: env() });
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
			const run = await runRunbook("validate", ["--json"], { env: env() });
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
			const run = await runRunbook("validate", ["--json"], { env: env() });
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

	it("reports an empty database as never migrated", async () => {
		const empty = await createDatabase("validate_empty");
		try {
			const run = await runRunbook("validate", ["--json"], {
				env: { ...env(), DATABASE_URL: empty },
			});
			expect(run.code).toBe(1);
			const report = JSON.parse(run.stdout);
			expect(report.problems[0]).toContain("no _prisma_migrations table");
			expect(report.drift.databaseVsMigrations.length).toBeGreaterThan(5);
		} finally {
			await dropDatabase(empty);
		}
	});

	it("keeps the password out of output, the audit log and every child's argv", async () => {
		const password = new URL(url).password;
		const run = await runRunbook("validate", [], {
			env: env(),
			watchChildren: true,
		});
		expect(run.code).toBe(0);
		// Prisma children were seen, so the argv scan looked at something.
		expect(run.childArgv.some((a) => a.includes("prisma"))).toBe(true);
		for (const text of [
			run.stdout,
			run.stderr,
			readFileSync(audit, "utf8"),
			...run.childArgv,
		]) {
			expect(text).not.toContain(password);
			expect(text).not.toContain(url);
		}
		expect(run.stdout).toContain(
			`Target: ${new URL(url).username}@127.0.0.1:${new URL(url).port}/`,
		);
	});
});

describe("Ctrl-C", () => {
	it("stops the running step cleanly, audits it and exits 130", async () => {
		const log = join(scratchDir(), "audit.jsonl");
		const run = await runRunbook("validate", [], {
			env: { DATABASE_URL: url, RUNBOOK_AUDIT_LOG: log },
			watchChildren: true,
			signalOn: {
				pattern: /\[4\/4\] Check drift/,
				signal: "SIGINT",
				delayMs: 500,
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
	});
});
