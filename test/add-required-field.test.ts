// add-required-field.ts as an operator runs it, in a copy of the repository (it writes migration
// folders and prisma/schema.prisma there), on generated_videos: end to end under a concurrent
// writer, Prisma's status and validate clean afterwards, a constant default, a lock held by
// another session (lock_timeout and retries), reruns, and bad input (exit 2, nothing changed).

import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { resumeAdvice } from "./support/faults.ts";
import {
	columnFlags,
	schemaChangeSuite,
	startWriter,
	THUMBNAIL_FIELD,
} from "./support/field-suite.ts";
import {
	copyRepository,
	createSeededDatabase,
	descendants,
	dropDatabase,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

const suite = schemaChangeSuite("addrequired", 2000);
const { runbook, sql, migrations, schema, column } = suite;
/** add-required-field's plan (--dry-run) for generated_videos.thumbnail_path. */
const planThumbnail = () =>
	runbook("add-required-field", [...THUMBNAIL_FIELD, "--dry-run"]);

describe("add-required-field.ts", () => {
	it("plans with --dry-run and changes nothing", async () => {
		const before = { migrations: migrations(), schema: schema() };
		const run = await planThumbnail();
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toContain(
			'ALTER TABLE "generated_videos" ADD COLUMN "thumbnail_path" text;',
		);
		expect(run.stdout).toContain("VALIDATE CONSTRAINT");
		expect(run.stdout).toContain("ACCESS EXCLUSIVE");
		expect(migrations()).toEqual(before.migrations);
		expect(schema()).toBe(before.schema);
		expect(await column("thumbnail_path")).toBeUndefined();
	});

	it("refuses bad input with exit 2 and changes nothing", async () => {
		const before = { migrations: migrations(), schema: schema() };
		// biome-ignore format: a table, one case a line
		const cases: Array<[string[], RegExp]> = [
			[[...columnFlags("generated_video", "x", "text"), "--default", "'a'"], /no table "generated_video"/],
			[[...columnFlags("generated_videos", "x", "texte"), "--default", "'a'"], /--type texte is not a PostgreSQL type/],
			[[...columnFlags("generated_videos", "x", "text"), "--default", "'a'", "--backfill", "'b'"], /either --default/],
			[[...columnFlags("generated_videos", "x", "text"), "--backfill", "output_pth"], /--backfill is not valid SQL here: column "output_pth" does not exist/],
			[[...columnFlags("generated_videos", "x", "text"), "--backfill", "output_path"], /--backfill gives NULL for [\d,]+ of [\d,]+ rows.*\n.*coalesce/],
			[[...columnFlags("generated_videos", "x", "text"), "--default", "user_id"], /cannot refer to other columns|cannot use column reference/],
			[[...columnFlags("generated_videos", "Bad-Name", "text"), "--default", "'a'"], /snake_case/],
			[[...columnFlags("generated_videos", "status", "text"), "--default", "'a'"], /exists already, as "VideoStatus", not text/],
		];
		for (const [args, message] of cases) {
			const run = await runbook("add-required-field", [...args, "--yes"]);
			expect(run.code, `${args.join(" ")}\n${run.stdout}${run.stderr}`).toBe(2);
			expect(run.stdout + run.stderr).toMatch(message);
		}
		expect(migrations()).toEqual(before.migrations);
		expect(schema()).toBe(before.schema);
		expect(await column("x")).toBeUndefined();
	});

	it("makes a column required under a concurrent writer, in Prisma's history, with no drift", async () => {
		const before = migrations();
		let inserted = 0;
		const writer = await startWriter(suite.url, {
			pickIds: "select id from generated_videos order by random() limit 2000",
			pauseMs: 3,
			insert: async (db, id) => {
				// New rows: the app writes the column once it exists (deployed first).
				const has = await column("thumbnail_path");
				await db.query(
					`insert into generated_videos (id, user_id, face_source_id, template_id, updated_at${has ? ", thumbnail_path" : ""})
					 select 'cw' || md5(random()::text), user_id, face_source_id, template_id, now()${has ? ", 'thumbs/new.jpg'" : ""}
					   from generated_videos where id = $1`,
					[id],
				);
				inserted++;
			},
		});
		const run = await runbook("add-required-field", [
			...THUMBNAIL_FIELD,
			"--yes",
			"--json",
		]);
		const { errors, ops, worst } = await writer.stop();
		expect(run.code, run.stdout + run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.healthy).toBe(true);
		expect(errors).toEqual([]);
		expect(ops).toBeGreaterThan(50);
		expect(inserted).toBeGreaterThan(5);
		// The writer never waited long: each lock was short (a loaded CI machine gets some slack).
		expect(worst).toBeLessThan(3000);

		// The column is NOT NULL and every row has its value.
		expect(await column("thumbnail_path")).toEqual({
			notnull: true,
			type: "text",
		});
		const [r] = await sql<{ wrong: string }>(
			`select count(*) filter (where id not like 'cw%' and thumbnail_path <> 'thumbs/' || id || '.jpg') as wrong from generated_videos`,
		);
		expect(Number(r.wrong)).toBe(0);
		const checks = await sql(
			"select 1 from pg_constraint where conname like 'generated_videos_thumbnail_path%'",
		);
		expect(checks).toEqual([]);

		// Four migrations, recorded as Prisma records them; the field in schema.prisma.
		const added = migrations().filter((m) => !before.includes(m));
		expect(added.map((m) => m.slice(15))).toEqual([
			"add_generated_videos_thumbnail_path",
			"generated_videos_thumbnail_path_not_null_check_not_valid",
			"generated_videos_thumbnail_path_validate_not_null_check",
			"generated_videos_thumbnail_path_set_not_null",
		]);
		const rows = await sql<{
			migration_name: string;
			finished_at: Date | null;
			applied_steps_count: number;
		}>(
			"select migration_name, finished_at, applied_steps_count from _prisma_migrations where migration_name = any($1) order by migration_name",
			[added],
		);
		expect(rows.map((x) => x.migration_name)).toEqual(added);
		expect(
			rows.every((x) => x.finished_at && x.applied_steps_count === 1),
		).toBe(true);
		expect(schema()).toMatch(
			/^ {2}thumbnailPath +String +@map\("thumbnail_path"\)$/m,
		);
		expect(report.locks).toHaveLength(4);
		expect(report.locks.map((l: { mode: string }) => l.mode)).toEqual([
			"ACCESS EXCLUSIVE",
			"ACCESS EXCLUSIVE",
			"SHARE UPDATE EXCLUSIVE",
			"ACCESS EXCLUSIVE",
		]);
		expect(run.stderr).toMatch(
			/lock: ACCESS EXCLUSIVE on generated_videos, waited \d+ms, held \d+ms/,
		);

		// Prisma agrees (its own CLI), and validate reports the database healthy.
		const status = await runPrismaCli(["migrate", "status"], suite.url, {
			PRISMA_MIGRATIONS_DIR: join(suite.repo, "prisma", "migrations"),
		});
		expect(status.code, status.stdout + status.stderr).toBe(0);
		expect(status.stdout).toContain("Database schema is up to date");
		const validate = await runbook("validate", ["--json"]);
		expect(validate.code, validate.stdout + validate.stderr).toBe(0);
		expect(JSON.parse(validate.stdout).healthy).toBe(true);

		// Run again, it finds every step done and would change nothing.
		const again = await planThumbnail();
		expect(again.code, again.stdout + again.stderr).toBe(0);
		expect(again.stdout).toContain(
			"4 of 4 migrations applied by an earlier run",
		);
		expect(again.stdout.match(/skipped: (?:\S+ is )?applied$/gm)?.length).toBe(
			4,
		);
		expect(migrations().length).toBe(before.length + 4);
	});

	it("adds a column with a constant default, waiting out a session that holds the table", async () => {
		// Another session keeps the table locked for a while: the schema change times out
		// (lock_timeout) and retries instead of queueing the app behind it.
		const holder = new pg.Client({ connectionString: suite.url });
		await holder.connect();
		await holder.query(
			"begin; lock table generated_videos in access share mode",
		);
		// It lets go once the runbook has timed out on the lock and said so (or after a minute).
		let released = false;
		const release = () => {
			if (released) return;
			released = true;
			holder.query("commit").catch(() => {});
		};
		const fallback = setTimeout(release, 60_000);
		const priority = columnFlags("generated_videos", "priority", "integer");
		const run = await runbook(
			"add-required-field",
			[...priority, "--default", "0", "--lock-timeout-ms", "200", "--yes"],
			{
				onSpawn: (child) => {
					let out = "";
					child.stdout?.on("data", (d) => {
						out += d;
						if (/attempt 1: /.test(out)) release();
					});
				},
			},
		);
		clearTimeout(fallback);
		release();
		await holder.end().catch(() => {});
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(
			/attempt 1: the ACCESS EXCLUSIVE lock was not granted within 200ms/,
		);
		expect(run.stdout).toMatch(/held by pid \d+/);
		// Released as soon as the runbook said so: it got the lock on one of the next attempts.
		expect(run.stdout).not.toMatch(/attempt 4: /);
		expect(run.stdout).toContain("existing rows read the default");
		expect(await column("priority")).toEqual({
			notnull: true,
			type: "integer",
		});
		expect(schema()).toMatch(/^ {2}priority +Int +@default\(0\)$/m);
	});
});

describe("add-required-field.ts, when prisma format fails", () => {
	it("says why, in Prisma's own words", async () => {
		// Its own checkout, whose schema.prisma Prisma cannot read (a field of an unknown type), and
		// its own small database.
		const broken = copyRepository();
		const file = join(broken, "prisma", "schema.prisma");
		writeFileSync(
			file,
			`${readFileSync(file, "utf8")}\nmodel Broken {\n  id   String @id\n  oops Nope\n}\n`,
		);
		const db = await createSeededDatabase("addrequired_format", 5);
		try {
			const run = await runRunbook(
				"add-required-field",
				[...THUMBNAIL_FIELD, "--yes"],
				{
					env: {
						DATABASE_URL: db,
						RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
					},
					root: broken,
				},
			);
			const out = run.stdout + run.stderr;
			expect(out).toMatch(
				/! prisma format failed, so the field goes in unformatted: \S/,
			);
			expect(out).toContain(
				'Type "Nope" is neither a built-in type, nor refers to another model',
			);
			// The field went in all the same, and the broken model is still there for its owner to fix.
			expect(readFileSync(file, "utf8")).toMatch(/thumbnailPath/);
			expect(readFileSync(file, "utf8")).toContain("oops Nope");
		} finally {
			await dropDatabase(db);
		}
	});
});

describe("add-required-field.ts, when only its prisma format child is stopped", () => {
	it("leaves schema.prisma unchanged, says so after waiting for an interrupt of its own, and a rerun finishes", async () => {
		const repo = copyRepository();
		const file = join(repo, "prisma", "schema.prisma");
		const db = await createSeededDatabase("addrequired_child", 5);
		const env = {
			DATABASE_URL: db,
			RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
		};
		try {
			let stopped = "";
			const run = await runRunbook(
				"add-required-field",
				[...THUMBNAIL_FIELD, "--yes"],
				{
					// Not from the cache (an earlier test formatted the same edit): the child must run.
					env: { ...env, RUNBOOK_NO_CACHE: "1" },
					root: repo,
					// Step 6 applies the last migration, then formats schema.prisma: SIGINT that child only.
					onMatch: {
						pattern: /\[6\/7\] /,
						async run(pid) {
							for (let i = 0; i < 1500 && !stopped; i++) {
								for (const [child, cmd] of descendants(pid))
									if (/ format --schema /.test(cmd)) {
										process.kill(child, "SIGINT");
										stopped = cmd;
									}
								await new Promise((r) => setTimeout(r, 20));
							}
						},
					},
				},
			);
			const out = run.stdout + run.stderr;
			expect(stopped, out).not.toBe("");
			expect(run.code, out).toBe(1);
			expect(out).toMatch(
				/prisma format was stopped \((SIGINT|exit 130)\); schema\.prisma is unchanged/,
			);
			expect(run.stderr).toMatch(resumeAdvice("add-required-field"));
			// As step 2 left it: the field optional (step 6 would make it required).
			expect(readFileSync(file, "utf8")).toMatch(
				/^ {2}thumbnailPath +String\? +@map\("thumbnail_path"\)$/m,
			);

			const rerun = await runRunbook(
				"add-required-field",
				[...THUMBNAIL_FIELD, "--yes"],
				{
					env,
					root: repo,
				},
			);
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
			expect(readFileSync(file, "utf8")).toMatch(
				/^ {2}thumbnailPath +String +@map\("thumbnail_path"\)$/m,
			);
		} finally {
			await dropDatabase(db);
		}
	});
});
