// A migration history as a real Prisma project has one (test/fixtures/pascal-history: PascalCase
// tables without @@map, enum changes, drops, foreign keys, a concurrent index, a table named
// "Audit Log"): deployed on an empty database with no --allow, then judged by what the tables hold;
// and CREATE INDEX CONCURRENTLY under a short lock timeout while an older transaction stays open
// (timed out, cancelled, and the runbook killed mid-build).

import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
	backendPid,
	confirmedDeploy,
	copiedDatabase,
	queryRows,
	runbookEnv,
	session,
} from "./support/deploy-suite.ts";
import { createDatabase, ROOT, runRunbook } from "./support/harness.ts";

const FIXTURE = join(ROOT, "test", "fixtures", "pascal-history");
const INDEX_MIGRATION = "20240201000000_user_email_idx";
const INDEX = 'public."User_email_idx"';

/** An empty database, deployed by the first test; the others take copies of it. */
const deployed = copiedDatabase(() => createDatabase("pascal_history"));

/** The fixture's migrations plus extra ones (folder name -> migration.sql). */
function history(extra: Record<string, string> = {}): string {
	const dir = join(mkdtempSync(join(tmpdir(), "runbook-history-")), "m");
	cpSync(join(FIXTURE, "migrations"), dir, { recursive: true });
	for (const [name, sql] of Object.entries(extra)) {
		mkdirSync(join(dir, name));
		writeFileSync(join(dir, name, "migration.sql"), sql);
	}
	return dir;
}

const env = (url: string, migrations: string) =>
	runbookEnv(url, {
		PRISMA_MIGRATIONS_DIR: migrations,
		PRISMA_SCHEMA: join(FIXTURE, "schema.prisma"),
	});

const deploy = (
	url: string,
	migrations: string,
	extra: string[] = [],
	opts = {},
) =>
	runRunbook("deploy-production", confirmedDeploy(url, "0", ...extra), {
		env: env(url, migrations),
		...opts,
	});

describe("a real-world history (PascalCase, enums, drops, foreign keys)", () => {
	it("deploys on an empty database with no --allow, findings as notes, and validate is healthy", async () => {
		const run = await deploy(deployed.url, history());
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toContain(
			"fresh install: no _prisma_migrations and no tables",
		);
		expect(run.stdout).toContain(
			'Accepted: public."User" is created by 20240101000000_init, earlier in this deploy: it has no rows',
		);
		expect(run.stdout).toContain("[ban-drop-not-null]");
		expect(run.stdout).not.toContain("✗ unsafe");
		expect(run.stdout).toContain("applied 22 migration(s)");
		const validate = await runRunbook("validate", ["--json"], {
			env: env(deployed.url, history()),
		});
		expect(validate.code, validate.stdout + validate.stderr).toBe(0);
		expect(JSON.parse(validate.stdout)).toMatchObject({ healthy: true });
	});

	it("with rows in some tables, refuses a further migration only for findings on tables with rows, naming the rows", async () => {
		const url = await deployed.clone("pascal_rows");
		await queryRows(
			url,
			`insert into "User" (email, name) values ('a@example.com', 'A'), ('b@example.com', 'B');
			 insert into "Team" (name) values ('T');`,
		);
		const more = history({
			"20240301000000_more": `-- AlterTable
ALTER TABLE "User" ADD COLUMN "nickname" TEXT NOT NULL;

-- CreateIndex
CREATE INDEX "Recipient_email_idx" ON "Recipient"("email");

-- AlterTable
ALTER TABLE "Field" ALTER COLUMN "page" DROP NOT NULL;

-- AddForeignKey
ALTER TABLE "Field" ADD CONSTRAINT "Field_team_fkey" FOREIGN KEY ("page") REFERENCES "Team"("id");
`,
		});
		const run = await deploy(url, more);
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stdout).toContain(
			"✗ unsafe: NOT NULL column without a default [adding-required-field]",
		);
		expect(run.stdout).toContain('On: public."User" has 2 row(s) (counted)');
		expect(run.stdout).toContain(
			'Accepted: public."Recipient" has no rows (counted)',
		);
		expect(run.stdout).toContain(
			'Accepted: public."Field" has no rows (counted)',
		);
		expect(run.stdout.match(/✗ unsafe/g)).toHaveLength(1);
		expect(run.stderr).toContain("--allow adding-required-field");
		expect(run.stderr).not.toContain("--allow ban-drop-not-null");

		// A lint baseline up to that migration: its findings are notes (a dry run: nothing changes).
		const since = await deploy(url, more, [
			"--dry-run",
			"--lint-since",
			"20240301000000_more",
		]);
		expect(since.code, since.stdout + since.stderr).toBe(0);
		expect(since.stdout).toContain(
			"Accepted: 20240301000000_more is at or before the lint baseline (--lint-since 20240301000000_more).",
		);
		const unknown = await deploy(url, more, [
			"--dry-run",
			"--lint-since",
			"nope",
		]);
		expect(unknown.code).toBe(2);
	});
});

describe("CREATE INDEX CONCURRENTLY with --lock-timeout 1s while an older transaction stays open", () => {
	const indexSql = `CREATE INDEX CONCURRENTLY "User_email_idx" ON "User" ("email");\n`;
	const migrations = () => history({ [INDEX_MIGRATION]: indexSql });
	/** A short lock timeout, and a build that gives up after 3 s. */
	const TIMEOUTS = ["--lock-timeout", "1s", "--concurrent-timeout", "3s"];
	const indexes = (url: string) =>
		queryRows<{ name: string; valid: boolean }>(
			url,
			`select indexrelid::regclass::text as name, indisvalid as valid from pg_index where indexrelid = to_regclass('${INDEX}')`,
		);

	/** A session that read another table and keeps its transaction open for `ms`. */
	async function holder(url: string, ms: number) {
		const c = await session(url, "nightly-report");
		await c.query("begin");
		await c.query('select count(*) from "Team"');
		const pid = await backendPid(c);
		const done = c
			.query(`select pg_sleep(${ms / 1000})`)
			.then(() => c.query("commit"))
			.catch(() => {})
			.finally(() => c.end());
		// Closing the socket is not enough: a backend in pg_sleep reads no input until it wakes.
		const end = () =>
			queryRows(url, `select pg_terminate_backend(${pid})`)
				.then(() => done)
				.catch(() => {});
		return { done, end };
	}

	/** Runs `test` on a copy of the deployed database while a holder is open on it (for at most `ms`). */
	async function withHolder(
		prefix: string,
		ms: number,
		test: (url: string, h: Awaited<ReturnType<typeof holder>>) => Promise<void>,
	) {
		const url = await deployed.clone(prefix);
		const h = await holder(url, ms);
		try {
			await test(url, h);
		} finally {
			await h.end();
		}
	}

	it("times out within --concurrent-timeout, drops the INVALID index it left, names the blocker, and succeeds once the holder ends", () =>
		// The holder is open from before the deploy starts (its lint, backup and confirmation take
		// 15-40 s on a loaded machine); it ends once the first attempt has timed out and its index
		// was dropped.
		withHolder("cic_timeout", 120_000, async (url, h) => {
			const run = await deploy(url, migrations(), TIMEOUTS, {
				onMatch: { pattern: /dropped it \(DROP INDEX/, run: () => h.end() },
			});
			expect(run.code, run.stdout + run.stderr).toBe(0);
			expect(run.stdout + run.stderr).toMatch(
				/waiting for pid \d+ \("nightly-report"\)/,
			);
			expect(run.stdout + run.stderr).toContain(
				`left ${INDEX} INVALID; dropped it (DROP INDEX CONCURRENTLY IF EXISTS ${INDEX})`,
			);
			expect(run.stdout + run.stderr).toContain(
				"waited 3s (--concurrent-timeout)",
			);
			expect(await indexes(url)).toEqual([
				{ name: '"User_email_idx"', valid: true },
			]);
		}));

	it("cancelled by an operator: exit 1, the INVALID index dropped, and the text says none of it stays", () =>
		withHolder("cic_cancel", 60_000, async (url) => {
			const run = await deploy(url, migrations(), ["--lock-timeout", "1s"], {
				onMatch: {
					pattern: /CREATE INDEX CONCURRENTLY: waiting/,
					delayMs: 500,
					run: () =>
						queryRows(
							url,
							"select pg_cancel_backend(pid) from pg_stat_activity where application_name = 'runbook:deploy-production:prisma' and query ilike 'CREATE INDEX%'",
						),
				},
			});
			expect(run.code, run.stdout + run.stderr).toBe(1);
			expect(run.stdout + run.stderr).toContain(
				`dropped it (DROP INDEX CONCURRENTLY IF EXISTS ${INDEX})`,
			);
			expect(run.stdout + run.stderr).toContain(
				`the INVALID index it left (${INDEX}) was dropped, so none of it is in the database; it is marked rolled back`,
			);
			expect(await indexes(url)).toEqual([]);
		}));

	it("the runbook killed mid-build: the rerun says what the database holds and how to resolve it", () =>
		withHolder("cic_kill", 60_000, async (url) => {
			const killed = await deploy(url, migrations(), TIMEOUTS, {
				signalOn: {
					pattern: /CREATE INDEX CONCURRENTLY: waiting/,
					signal: "SIGKILL",
				},
			});
			expect(killed.code).not.toBe(0);
			// The server session gives up at --concurrent-timeout, leaving its index INVALID.
			const end = Date.now() + 15_000;
			while (
				(
					await queryRows<{ n: string }>(
						url,
						"select count(*) as n from pg_stat_activity where application_name = 'runbook:deploy-production:prisma'",
					)
				)[0].n !== "0" &&
				Date.now() < end
			)
				await new Promise((r) => setTimeout(r, 200));
			const rerun = await deploy(url, migrations());
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(3);
			expect(rerun.stdout + rerun.stderr).toContain(
				`left ${INDEX} INVALID in the database`,
			);
			expect(rerun.stdout + rerun.stderr).toContain(
				`DROP INDEX CONCURRENTLY IF EXISTS ${INDEX};`,
			);
			expect(await indexes(url)).toEqual([
				{ name: '"User_email_idx"', valid: false },
			]);
		}));
});

describe("a migration whose second statement fails", () => {
	it("exits 1, none of it stays, and the text says so", async () => {
		const url = await deployed.clone("second_fails");
		const run = await deploy(
			url,
			history({
				"20240401000000_two": `ALTER TABLE "Team" ADD COLUMN "motto" TEXT;\nALTER TABLE "Nope" ADD COLUMN "x" TEXT;\n`,
			}),
		);
		expect(run.code, run.stdout + run.stderr).toBe(1);
		expect(run.stderr).toContain(
			"Failed: 20240401000000_two. PostgreSQL rolled its transaction back, so none of it is in the database",
		);
		expect(
			await queryRows(
				url,
				"select 1 from information_schema.columns where table_name = 'Team' and column_name = 'motto'",
			),
		).toEqual([]);
	});
});
