// troubleshoot.ts on a migrated Face Swap database: drift from a manual ALTER TABLE, a failed
// migration resolved and checked with the real `prisma migrate status`, a migration hanging behind
// an open transaction, and reset (refused unless local; run on a local one).

import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { readLocalMigrations } from "../lib/migrations/history.ts";
import {
	activityOf,
	backendPid,
	session,
	sleep,
} from "./support/deploy-suite.ts";
import { seedFaceSwap } from "./support/fixtures.ts";
import {
	createDatabase,
	dbName,
	fileDatabase,
	ROOT,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

/** A database of its own, migrated by the real Prisma CLI and seeded with 200 users. */
const database = fileDatabase(async () => {
	const url = await createDatabase("troubleshoot");
	const deploy = await runPrismaCli(["migrate", "deploy"], url);
	expect(deploy.code, deploy.stderr).toBe(0);
	await seedFaceSwap(url, { users: 200 });
	return url;
});
const { env, sql } = database;

const LAST = "20241230000000_comprehensive_schema";

/** LAST's rows in _prisma_migrations (the given columns), oldest first. */
const rowsOfLast = async (columns: string) =>
	(
		await sql(
			`select ${columns} from _prisma_migrations where migration_name = $1 order by started_at`,
			[LAST],
		)
	).rows;

interface Diagnosis {
	kind: string;
	title: string;
	detail: string[];
	commands: string[];
	problem: boolean;
	migration?: string;
}

describe("troubleshoot.ts", () => {
	it("diagnoses a manual ALTER TABLE as drift and prints the SQL, changing nothing (exit 1)", async () => {
		await sql("alter table users add column nickname text");
		const before = await snapshotDatabase(database.url);
		const run = await runRunbook("troubleshoot", ["--json"], { env: env() });
		expect(run.code, run.stderr).toBe(1);
		const report = JSON.parse(run.stdout);
		expect(report.drift.checked).toBe(true);
		expect(report.drift.databaseVsMigrations).toEqual([
			'ALTER TABLE "public"."users" DROP COLUMN "nickname";',
		]);
		const drift: Diagnosis = report.diagnoses.find(
			(d: Diagnosis) => d.kind === "drift",
		);
		expect(drift.problem).toBe(true);
		expect(drift.detail).toContain(
			"- column users.nickname exists in the database but in no migration",
		);
		expect(drift.commands).toContain(
			"npx tsx runbooks/troubleshoot.ts --reset",
		);
		expect(run.stderr).toContain(
			'ALTER TABLE "public"."users" DROP COLUMN "nickname";',
		);
		expect(report.action).toBeNull();
		expect(report.remaining).toEqual([drift.title]);
		expect(await snapshotDatabase(database.url)).toEqual(before);
	});

	it("diagnoses a failed migration; marked rolled back, prisma migrate status no longer reports it failed", async () => {
		await sql(
			`update _prisma_migrations set finished_at = null, applied_steps_count = 0,
              logs = E'Database error code: 40P01\\n\\nERROR: deadlock detected\\nDETAIL: Process 4242 waits for AccessExclusiveLock' where migration_name = $1`,
			[LAST],
		);
		const statusBefore = await runPrismaCli(
			["migrate", "status"],
			database.url,
		);
		expect(statusBefore.code).toBe(1);
		expect(`${statusBefore.stdout}${statusBefore.stderr}`).toContain(
			`Following migration have failed:\n${LAST}`,
		);

		// Diagnosed, with the fix chosen by flag; but without a terminal and without --yes it asks
		// nothing and changes nothing (exit 3).
		const diagnosed = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-rolled-back", LAST, "--json"],
			{ env: env() },
		);
		expect(diagnosed.code, diagnosed.stderr).toBe(3);
		expect(diagnosed.stderr).toContain("standard input is not a terminal");
		const failed: Diagnosis = JSON.parse(diagnosed.stdout).diagnoses.find(
			(d: Diagnosis) => d.kind === "failed_migration",
		);
		expect(failed.migration).toBe(LAST);
		expect(failed.title).toBe(
			`Migration ${LAST} failed: ERROR: deadlock detected`,
		);
		expect(failed.detail).toContain(
			"  | DETAIL: Process 4242 waits for AccessExclusiveLock",
		);
		expect(failed.commands).toContain(
			`npx tsx runbooks/troubleshoot.ts --resolve-rolled-back ${LAST}`,
		);
		expect(failed.commands).toContain(
			`npx tsx runbooks/troubleshoot.ts --resolve-applied ${LAST}`,
		);

		expect(
			(
				await sql(
					"select count(*)::int as n from _prisma_migrations where rolled_back_at is not null",
				)
			).rows[0].n,
		).toBe(0);

		const resolved = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-rolled-back", LAST, "--yes", "--json"],
			{
				env: env(),
			},
		);
		expect(resolved.code, resolved.stderr).toBe(0);
		expect(JSON.parse(resolved.stdout).done).toEqual([
			`${LAST} marked rolled back`,
		]);
		expect(resolved.stderr).toContain(
			"UPDATE public._prisma_migrations SET rolled_back_at = now() WHERE id = '",
		);
		const rows = await rowsOfLast("finished_at, rolled_back_at");
		expect(rows).toHaveLength(1);
		expect(rows[0].finished_at).toBeNull();
		expect(rows[0].rolled_back_at).not.toBeNull();

		const statusAfter = await runPrismaCli(["migrate", "status"], database.url);
		expect(`${statusAfter.stdout}${statusAfter.stderr}`).not.toMatch(
			/have failed|failed migration/i,
		);

		// The second choice, as `migrate resolve --applied` does it: a new finished row with the file's checksum.
		const applied = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-applied", LAST, "--yes"],
			{ env: env() },
		);
		expect(applied.code, applied.stderr).toBe(0);
		const after = await rowsOfLast(
			"checksum, logs, applied_steps_count, finished_at, rolled_back_at",
		);
		expect(after).toHaveLength(2);
		const local = readLocalMigrations().find((m) => m.name === LAST);
		expect(after[1]).toMatchObject({
			checksum: local?.checksum,
			logs: "",
			applied_steps_count: 0,
			rolled_back_at: null,
		});
		expect(after[1].finished_at).not.toBeNull();

		// Prisma's refusals, with its error codes.
		const again = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-applied", LAST, "--yes"],
			{ env: env() },
		);
		expect(again.code).toBe(3);
		expect(again.stderr).toContain(
			"is already recorded as applied in the database (P3008)",
		);
		const notFailed = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-rolled-back", LAST, "--yes"],
			{ env: env() },
		);
		expect(notFailed.code).toBe(3);
		expect(notFailed.stderr).toContain("is not in a failed state (P3012)");
		const unknown = await runRunbook(
			"troubleshoot",
			["--resolve-applied", "20990101000000_nope", "--yes"],
			{ env: env() },
		);
		expect(unknown.code).toBe(2);
	});

	it("shows who holds the lock a hanging migration waits for, and terminates the blocker when told to", async () => {
		const holder = await session(database.url, "report-export");
		const holderPid = await backendPid(holder);
		await holder.query("begin");
		await holder.query("select * from purchases limit 1");
		const migration = new pg.Client({
			connectionString: database.url,
			application_name: "prisma-migrate",
		});
		await migration.connect();
		const migrationPid = await backendPid(migration);
		const altered = migration.query(
			'alter table purchases add column "note" text',
		);
		try {
			for (let i = 0; i < 200; i++) {
				const row = await activityOf(
					database.url,
					migrationPid,
					"wait_event_type",
				);
				if (row?.wait_event_type === "Lock") break;
				await sleep(50);
			}
			const run = await runRunbook("troubleshoot", ["--json"], { env: env() });
			expect(run.code, run.stderr).toBe(1);
			const report = JSON.parse(run.stdout);
			const hang: Diagnosis = report.diagnoses.find(
				(d: Diagnosis) => d.kind === "hanging_migration",
			);
			expect(hang.title).toContain(`pid ${migrationPid} has waited`);
			expect(hang.title).toContain(
				`for AccessExclusiveLock on table purchases, held by pid ${holderPid} (idle in transaction)`,
			);
			expect(hang.commands).toContain(
				`npx tsx runbooks/troubleshoot.ts --terminate-blocker --yes --confirm ${dbName(database.url)}   # = select pg_terminate_backend(${holderPid}); (rolls back its transaction)`,
			);
			// Prisma's introspection would queue behind the ALTER: the drift check waits for another run.
			expect(report.steps[3].status).toBe("skipped");

			// A cancel cannot free a lock held by an idle transaction: refused, nothing changed.
			const cancel = await runRunbook(
				"troubleshoot",
				["--cancel-blocker", "--yes"],
				{ env: env() },
			);
			expect(cancel.code).toBe(3);
			expect(cancel.stderr).toContain("Cancelling cannot free the migration");
			const stillThere = await sql(
				"select state from pg_stat_activity where pid = $1",
				[holderPid],
			);
			expect(stillThere.rows[0].state).toBe("idle in transaction");

			const terminate = await runRunbook(
				"troubleshoot",
				[
					"--terminate-blocker",
					"--yes",
					"--confirm",
					dbName(database.url),
					"--json",
				],
				{
					env: env(),
				},
			);
			expect(terminate.code, terminate.stderr).toBe(0);
			expect(JSON.parse(terminate.stdout).done).toEqual([
				`pid ${holderPid} terminated (gone)`,
			]);
			await altered;
			const cols = await sql(
				"select 1 from information_schema.columns where table_name = 'purchases' and column_name = 'note'",
			);
			expect(cols.rowCount).toBe(1);
		} finally {
			await altered.catch(() => {});
			await migration.end();
			await holder.end().catch(() => {});
		}
	});

	it("points a pending NOT NULL column without a default on a table with rows to add-required-field", async () => {
		const dir = join(scratchDir(), "migrations");
		cpSync(join(ROOT, "prisma", "migrations"), dir, { recursive: true });
		mkdirSync(join(dir, "20250101000000_add_user_tier"));
		writeFileSync(
			join(dir, "20250101000000_add_user_tier", "migration.sql"),
			'-- AlterTable\nALTER TABLE "users" ADD COLUMN "tier" TEXT NOT NULL;\n',
		);
		const run = await runRunbook("troubleshoot", ["--skip-drift", "--json"], {
			env: env({ PRISMA_MIGRATIONS_DIR: dir }),
		});
		expect(run.code, run.stderr).toBe(1);
		const required: Diagnosis[] = JSON.parse(run.stdout).diagnoses.filter(
			(d: Diagnosis) => d.kind === "required_field",
		);
		expect(required.map((d) => d.title)).toEqual([
			"pending migration 20250101000000_add_user_tier: required column users.tier without a default on a table with rows: it fails (existing rows have no value)",
		]);
		expect(required[0].commands[0]).toMatch(
			/^npx tsx runbooks\/add-required-field\.ts --table users --column tier --type text --backfill /,
		);
	});

	it("refuses to reset a production-marked or remote target (exit 3), changing nothing", async () => {
		const before = await snapshotDatabase(database.url);
		const production = await runRunbook(
			"troubleshoot",
			["--reset", "--yes", "--confirm", dbName(database.url)],
			{
				env: env({ RUNBOOK_ENV: "production" }),
			},
		);
		expect(production.code).toBe(3);
		expect(production.stderr).toContain(
			"the target is marked production (RUNBOOK_ENV=production). Nothing was changed.",
		);
		const remote = await runRunbook(
			"troubleshoot",
			["--reset", "--yes", "--confirm", "faceswap"],
			{
				env: env({
					DATABASE_URL:
						"postgresql://app:secret-pw@db.example.com:5432/faceswap",
				}),
			},
		);
		expect(remote.code).toBe(3);
		expect(remote.stderr).toContain(
			"app@db.example.com:5432/faceswap is not a local database",
		);
		expect(`${remote.stdout}${remote.stderr}`).not.toContain("secret-pw");
		expect(await snapshotDatabase(database.url)).toEqual(before);
	});

	it("resets a local database with prisma migrate reset after the typed confirmation", async () => {
		const unconfirmed = await runRunbook(
			"troubleshoot",
			["--reset", "--skip-drift", "--yes"],
			{ env: env() },
		);
		expect(unconfirmed.code).toBe(3);
		expect((await sql("select count(*)::int as n from users")).rows[0].n).toBe(
			200,
		);

		const run = await runRunbook(
			"troubleshoot",
			["--reset", "--skip-drift", "--yes", "--confirm", dbName(database.url)],
			{ env: env() },
		);
		expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
		expect(run.stdout).toContain(
			"npx prisma migrate reset --force --skip-generate",
		);
		const nickname = await sql(
			"select 1 from information_schema.columns where table_name = 'users' and column_name = 'nickname'",
		);
		expect(nickname.rowCount).toBe(0);
		expect((await sql("select count(*)::int as n from users")).rows[0].n).toBe(
			0,
		);
		const history = await sql(
			"select count(*)::int as n from _prisma_migrations where finished_at is not null and rolled_back_at is null",
		);
		expect(history.rows[0].n).toBe(readLocalMigrations().length);
	});
});
