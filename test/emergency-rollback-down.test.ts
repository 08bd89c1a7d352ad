// emergency-rollback.ts --mode down: after a deploy of one additive migration (a nullable column
// and a new table), Prisma's down SQL removes exactly them, keeps every other row, brings
// _prisma_migrations back, and --git-revert removes the migration's files, after which
// validate is healthy and prisma migrate status is up to date.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
	admin,
	createSeededDatabase,
	dbName,
	dropDatabase,
	runPrismaCli,
	runRunbook,
} from "./support/harness.ts";
import {
	ADDED,
	addedRepo,
	deployRatingsAndUse,
	downArgs,
	KEEP,
	type MigrationsRepo,
	runEnv,
} from "./support/rollback-suite.ts";

let url: string;
let db: string;
let env: Record<string, string>;
let repo: MigrationsRepo;

/** Per table: row count and a checksum of the rows without the added column. */
async function contents(
	without = "rating",
): Promise<Record<string, { n: number; sum: string }>> {
	return admin(async (c) => {
		const tables = await c.query<{ t: string }>(
			"select tablename as t from pg_tables where schemaname = 'public' order by 1",
		);
		const out: Record<string, { n: number; sum: string }> = {};
		for (const { t } of tables.rows) {
			const r = await c.query<{ n: string; h: string }>(
				`select count(*) as n, coalesce(md5(string_agg(md5((to_jsonb(x) - '${without}')::text), '' order by md5((to_jsonb(x) - '${without}')::text))), '') as h from "${t}" x`,
			);
			out[t] = { n: Number(r.rows[0].n), sum: r.rows[0].h };
		}
		return out;
	}, url);
}

beforeAll(async () => {
	url = await createSeededDatabase("rollback_down", 1000);
	db = dbName(url);
	repo = addedRepo("Add video ratings and user preferences");
	env = runEnv({ DATABASE_URL: url }, repo.dir);
});

afterAll(async () => {
	if (url) await dropDatabase(url);
});

describe("emergency-rollback.ts --mode down", () => {
	it("removes exactly the added column and table, keeps every other row, and leaves validate healthy once the files are reverted", async () => {
		const historyBefore = await admin(
			(c) =>
				c.query("select * from _prisma_migrations order by migration_name"),
			url,
		);
		// The deploy (prisma migrate deploy of the additive migration), then traffic using it.
		await deployRatingsAndUse(url, repo.dir);
		await admin(async (c) => {
			await c.query(
				"insert into users (id, email, updated_at) select 'after' || i, 'after' || i || '@example.com', now() from generate_series(1, 12) i",
			);
		}, url);
		const rated = await admin(
			(c) =>
				c.query<{ n: string }>(
					"select count(rating) as n from generated_videos",
				),
			url,
		);
		const before = await contents();

		const run = await runRunbook(
			"emergency-rollback",
			[...downArgs(db), "--git-revert", repo.commit.slice(0, 10), "--json"],
			{ env },
		);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.rolled_back_migrations).toEqual([ADDED]);

		// The down SQL Prisma computed, and the data it said it would drop.
		expect(report.down_sql.join("\n")).toMatch(/DROP COLUMN "rating"/);
		expect(report.down_sql.join("\n")).toMatch(
			/DROP TABLE "public"."user_preferences"/,
		);
		expect(run.stderr).toContain(
			`drops column generated_videos.rating and its ${Number(rated.rows[0].n).toLocaleString("en-US")} non-null value(s)`,
		);
		expect(run.stderr).toContain(
			"drops table user_preferences and its 40 row(s)",
		);
		expect(run.stderr).toContain("[ban-drop-column]");

		// Exactly the column and the table are gone ...
		const gone = await admin(
			(c) =>
				c.query<{ t: string | null; c: number }>(
					"select to_regclass('public.user_preferences')::text as t, (select count(*)::int from information_schema.columns where table_name = 'generated_videos' and column_name = 'rating') as c",
				),
			url,
		);
		expect(gone.rows[0]).toEqual({ t: null, c: 0 });
		// ... every other row is kept, the rows written after the deploy included ...
		const after = await contents();
		const {
			user_preferences: _dropped,
			_prisma_migrations: _h1,
			...keptBefore
		} = before;
		const { _prisma_migrations: _h2, ...keptAfter } = after;
		expect(keptAfter).toEqual(keptBefore);
		expect(keptAfter.users.n).toBe(1012);
		// ... and _prisma_migrations is as before the deploy.
		const historyAfter = await admin(
			(c) =>
				c.query("select * from _prisma_migrations order by migration_name"),
			url,
		);
		expect(historyAfter.rows).toEqual(historyBefore.rows);

		// A safety backup was taken first; --git-revert removed the migration's folder.
		expect(report.safety_backup_id).toBeTruthy();
		expect(report.reverted).toEqual([repo.commit]);
		expect(existsSync(join(repo.dir, ADDED))).toBe(false);

		// validate is healthy and Prisma sees the database up to date.
		const validate = await runRunbook("validate", [], { env });
		expect(validate.code, `${validate.stdout}\n${validate.stderr}`).toBe(0);
		const status = await runPrismaCli(["migrate", "status"], url, {
			PRISMA_MIGRATIONS_DIR: repo.dir,
		});
		expect(status.code, status.stdout + status.stderr).toBe(0);
		expect(status.stdout).toContain("Database schema is up to date!");
	});

	it("refuses --to a migration that is not in the folder (exit 2) and says so when nothing is after it (exit 0)", async () => {
		const unknown = await runRunbook(
			"emergency-rollback",
			downArgs(db, "20991231000000_nope"),
			{ env },
		);
		expect(unknown.code).toBe(2);
		expect(unknown.stderr).toContain("there is no such migration");
		const nothing = await runRunbook("emergency-rollback", downArgs(db), {
			env,
		});
		expect(nothing.code, nothing.stderr).toBe(0);
		expect(nothing.stdout).toContain(
			`nothing to roll back: ${KEEP} is the latest applied migration`,
		);
	});
});
