// The example runbook of docs/architecture.md (docs/examples/row-counts.ts), run as an operator
// runs it, on a seeded Face Swap database: the page's example cannot go stale.

import { describe, expect, it } from "vitest";
import {
	createSeededDatabase,
	fileDatabase,
	runRunbook,
} from "./support/harness.ts";

const example = "docs/examples/row-counts.ts";
const db = fileDatabase(() => createSeededDatabase("arch_example", 40));
const rowCounts = (args: string[], env = { DATABASE_URL: db.url }) =>
	runRunbook("row-counts", args, {
		file: example,
		env: { ...env, RUNBOOK_AUDIT_LOG: db.audit },
	});
const count = async (t: string) =>
	Number((await db.sql(`select count(*) as n from ${t}`)).rows[0].n);

describe("docs/examples/row-counts.ts", () => {
	it("prints its help, steps and flags without a database", async () => {
		const run = await runRunbook("row-counts", ["--help"], {
			file: example,
			env: {},
		});
		expect(run.code, run.stderr).toBe(0);
		expect(run.stdout).toContain("row-counts");
		expect(run.stdout).toMatch(/List the app's tables[\s\S]*Count their rows/);
		expect(run.stdout).toContain("--max-rows <rows>");
		expect(run.stdout).toContain("npx tsx docs/examples/row-counts.ts");
	});

	it("counts every table's rows, numbered steps and a summary (exit 0)", async () => {
		const run = await rowCounts([]);
		expect(run.code, run.stderr).toBe(0);
		expect(run.stdout).toContain("[1/2] List the app's tables");
		expect(run.stdout).toContain("[2/2] Count their rows");
		const users = await count("users");
		expect(users).toBeGreaterThan(0);
		expect(run.stdout).toMatch(
			new RegExp(`\\n\\s+users\\s+${users.toLocaleString("en-US")}\\s`),
		);
		expect(run.stdout).not.toContain("_prisma_migrations");
		expect(run.stdout).toMatch(/Done\. 2 ok/);
	});

	it("names each table over --max-rows and exits 1 (--json)", async () => {
		const users = await count("users");
		const run = await rowCounts([
			"--table",
			"users",
			"--max-rows",
			String(users - 1),
			"--json",
		]);
		expect(run.code, run.stderr).toBe(1);
		const report = JSON.parse(run.stdout);
		expect(report.over_limit).toEqual(["users"]);
		expect(report.steps[1].status).toBe("problem");
		expect(report.steps[1].data).toEqual([
			expect.objectContaining({ table: "users", rows: users }),
		]);
		expect(run.stderr).toContain(
			`users holds ${users.toLocaleString("en-US")} rows, more than ${(users - 1).toLocaleString("en-US")}`,
		);
		const ok = await rowCounts([
			"--table",
			"users",
			"--max-rows",
			String(users),
		]);
		expect(ok.code, ok.stderr).toBe(0);
	});

	it("refuses bad input with exit 2 before any step runs", async () => {
		const half = await rowCounts(["--max-rows", "1.5"]);
		expect(half.code).toBe(2);
		expect(half.stderr).toContain("--max-rows needs a whole number, not 1.5.");
		expect(half.stdout).not.toContain("[1/2]");
		const missing = await rowCounts(["--table", "no_such_table"]);
		expect(missing.code).toBe(2);
		expect(missing.stderr).toContain(
			'There is no table "no_such_table" in the public schema.',
		);
		const unset = await rowCounts([], { DATABASE_URL: "" });
		expect(unset.code).toBe(2);
		expect(unset.stderr).toContain("DATABASE_URL is not set.");
	});
});
