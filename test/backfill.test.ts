// backfill.ts as an operator runs it, on generated_videos of the Face Swap schema (text cuid-like
// keys in random order) and on a table with a composite (text, date) key: every matching row
// set exactly once and no other row touched, resume after SIGKILL, a concurrent writer, a lost
// connection, bad names and bad SQL (exit 2, nothing changed).

import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nextBatchSize } from "../lib/data/backfill.ts";
import { parseAssignments, splitTopLevel } from "../lib/data/sql-fragment.ts";
import { describeProgress } from "../lib/kit/progress.ts";
import { rerunCommand, shellQuote } from "../lib/kit/rerun.ts";

import {
	admin,
	createSeededDatabase,
	dropDatabase,
	runRunbook,
	scratchDir,
	urlFor,
} from "./support/harness.ts";

const USERS = 3000; // 15,000 generated_videos
let template: string;
const created: string[] = [];
let audit: string;

beforeAll(async () => {
	template = await createSeededDatabase("backfill_tpl", USERS);
	audit = join(scratchDir(), "audit.jsonl");
	await sql(
		template,
		`alter table generated_videos add column thumbnail_path text, add column touched int not null default 0;
		 create table video_views (
		   video_id text not null, viewed_on date not null, views int not null, label text, touched int not null default 0,
		   primary key (video_id, viewed_on));
		 insert into video_views (video_id, viewed_on, views)
		   select v.id, date '2024-01-01' + d, (abs(hashtext(v.id)) + d) % 97
		     from (select id from generated_videos order by id limit 2000) v, generate_series(0, 4) d;
		 analyze`,
	);
});

afterAll(async () => {
	for (const url of created) await dropDatabase(url);
	await dropDatabase(template);
});

async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(
	url: string,
	text: string,
	values: unknown[] = [],
): Promise<T[]> {
	return admin(async (db) => (await db.query<T>(text, values)).rows, url);
}

/** A fresh copy of the seeded database for one test. */
async function fresh(prefix: string): Promise<string> {
	const name = `${prefix}_${Math.random().toString(16).slice(2, 10)}`;
	await admin((db) =>
		db.query(
			`create database "${name}" template "${new URL(template).pathname.slice(1)}"`,
		),
	);
	const url = urlFor(name);
	created.push(url);
	return url;
}

const env = (url: string) => ({
	DATABASE_URL: url,
	RUNBOOK_AUDIT_LOG: audit,
	RUNBOOK_PROGRESS_INTERVAL_MS: "200",
});

const SET = "thumbnail_path = 'thumbs/' || id || '.jpg', touched = touched + 1";
const WHERE = "thumbnail_path IS NULL AND status = 'COMPLETED'";
/** The backfill most cases run: thumbnails for the completed videos that lack one. */
const THUMBNAILS = [
	"--table",
	"generated_videos",
	"--set",
	SET,
	"--where",
	WHERE,
];

/** Batches of a fixed size (no tuning to a target time), with a pause of `sleepMs` between. */
const fixedBatches = (size: number, sleepMs?: number) => [
	"--batch-size",
	String(size),
	"--target-batch-ms",
	"0",
	...(sleepMs === undefined ? [] : ["--sleep-ms", String(sleepMs)]),
];

/** A digest of every row, to show that a failed or refused run changed nothing. */
async function digest(
	url: string,
	table = "generated_videos",
): Promise<string> {
	const rows = await sql<{ d: string }>(
		url,
		`select md5(string_agg(t::text, '|' order by t::text)) as d from ${table} t`,
	);
	return rows[0].d;
}

async function checkExactlyOnce(url: string): Promise<void> {
	const [r] = await sql<{
		completed: string;
		set_once: string;
		others_touched: string;
		wrong: string;
	}>(
		url,
		`select count(*) filter (where status = 'COMPLETED') as completed,
		        count(*) filter (where status = 'COMPLETED' and touched = 1 and thumbnail_path = 'thumbs/' || id || '.jpg') as set_once,
		        count(*) filter (where status <> 'COMPLETED' and (touched <> 0 or thumbnail_path is not null)) as others_touched,
		        count(*) filter (where touched > 1) as wrong
		   from generated_videos`,
	);
	expect(Number(r.completed)).toBeGreaterThan(5000);
	expect(Number(r.set_once)).toBe(Number(r.completed));
	expect(Number(r.others_touched)).toBe(0);
	expect(Number(r.wrong)).toBe(0);
}

describe("backfill.ts", () => {
	it("prints its help without a database", async () => {
		const run = await runRunbook("backfill", ["--help"], { env: {} });
		expect(run.code).toBe(0);
		expect(run.stdout).toContain("--target-batch-ms");
		expect(run.stdout).toContain("SQL that you write");
	});

	it("updates every matching row exactly once and no other (many small batches)", async () => {
		const url = await fresh("bf_ok");
		const before = await sql<{ id: string; updated_at: Date }>(
			url,
			"select id, updated_at from generated_videos where status <> 'COMPLETED' order by id limit 50",
		);
		const run = await runRunbook(
			"backfill",
			[...THUMBNAILS, ...fixedBatches(700, 15), "--yes", "--json"],
			{ env: env(url) },
		);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.remaining).toBe(0);
		const step = report.steps[2].data;
		expect(step.batches).toBeGreaterThanOrEqual(Math.floor((USERS * 5) / 700));
		await checkExactlyOnce(url);
		expect(step.rows_updated).toBe(
			Number(
				(
					await sql<{ n: string }>(
						url,
						"select count(*) as n from generated_videos where touched = 1",
					)
				)[0].n,
			),
		);
		const after = await sql<{ id: string; updated_at: Date }>(
			url,
			"select id, updated_at from generated_videos where status <> 'COMPLETED' order by id limit 50",
		);
		expect(after).toEqual(before);
		// Progress went to stderr (--json), with rows, a rate and an ETA.
		expect(run.stderr).toMatch(
			/of ~[\d,]+ rows \(\d+(\.\d)?%\), [\d,]+ rows\/s/,
		);
		const [cp] = await sql<{ phase: string; rows_updated: string }>(
			url,
			"select phase, rows_updated from runbooks.backfill_checkpoints",
		);
		expect(cp.phase).toBe("done");
		// The checkpoint lives outside the app's schema: no drift for Prisma.
		const publicTables = await sql(
			url,
			"select 1 from pg_tables where schemaname = 'public' and tablename like '%checkpoint%'",
		);
		expect(publicTables).toEqual([]);

		// Again: nothing matches any more, so nothing changes.
		const d = await digest(url);
		const again = await runRunbook("backfill", [...THUMBNAILS, "--yes"], {
			env: env(url),
		});
		expect(again.code, again.stderr).toBe(0);
		expect(again.stdout).toContain("0 rows updated");
		expect(await digest(url)).toBe(d);
	});

	it("resumes after SIGKILL from the last committed batch, applying no batch twice", async () => {
		const url = await fresh("bf_kill");
		const args = [...THUMBNAILS, ...fixedBatches(150, 25), "--yes"];
		let child: ChildProcess | undefined;
		const running = runRunbook("backfill", args, {
			env: env(url),
			onSpawn: (c) => {
				child = c;
			},
		});
		// Kill it once a few batches are committed, like `kill -9` on the whole process group.
		let killedAt = 0;
		for (let i = 0; i < 600 && killedAt === 0; i++) {
			await new Promise((r) => setTimeout(r, 50));
			const rows = await sql<{ batches: number }>(
				url,
				"select batches from runbooks.backfill_checkpoints",
			).catch(() => []);
			if (rows[0] && rows[0].batches >= 8 + Math.floor(Math.random() * 8)) {
				process.kill(-(child?.pid as number), "SIGKILL");
				killedAt = rows[0].batches;
			}
		}
		const killed = await running;
		expect(killedAt).toBeGreaterThan(0);
		expect(killed.code).toBeNull();
		const [mid] = await sql<{ batches: number; rows_updated: string }>(
			url,
			"select batches, rows_updated from runbooks.backfill_checkpoints",
		);
		const done = Number(
			(
				await sql<{ n: string }>(
					url,
					"select count(*) as n from generated_videos where touched = 1",
				)
			)[0].n,
		);
		// The checkpoint was committed with each batch: it says exactly what is done.
		expect(Number(mid.rows_updated)).toBe(done);
		expect(done).toBeGreaterThan(0);

		// Without --resume or --restart it refuses (exit 3) and changes nothing.
		const d = await digest(url);
		const refused = await runRunbook("backfill", args, { env: env(url) });
		expect(refused.code, refused.stderr).toBe(3);
		expect(refused.stderr).toContain("--resume");
		expect(await digest(url)).toBe(d);

		const resumed = await runRunbook(
			"backfill",
			[
				...args.filter(
					(a, i) => a !== "--sleep-ms" && args[i - 1] !== "--sleep-ms",
				),
				"--resume",
			],
			{ env: env(url) },
		);
		expect(resumed.code, resumed.stderr).toBe(0);
		expect(resumed.stdout).toContain("resuming");
		await checkExactlyOnce(url);
		const [end] = await sql<{ batches: number; phase: string }>(
			url,
			"select batches, phase from runbooks.backfill_checkpoints",
		);
		expect(end.phase).toBe("done");
		expect(end.batches).toBeGreaterThan(mid.batches);
	});

	it("walks a composite (text, date) primary key", async () => {
		const url = await fresh("bf_composite");
		const run = await runRunbook(
			"backfill",
			[
				"--table",
				"video_views",
				"--set",
				"label = video_id || '@' || viewed_on, touched = touched + 1",
				"--where",
				"label IS NULL AND views % 3 <> 0",
				...fixedBatches(333),
				"--yes",
			],
			{ env: env(url) },
		);
		expect(run.code, run.stderr).toBe(0);
		expect(run.stdout).toContain("primary key (video_id text, viewed_on date)");
		const [r] = await sql<{ all: string; ok: string; bad: string }>(
			url,
			`select count(*) as all,
			        count(*) filter (where views % 3 <> 0 and touched = 1 and label = video_id || '@' || viewed_on) as ok,
			        count(*) filter (where (views % 3 = 0 and (touched <> 0 or label is not null)) or touched > 1) as bad
			   from video_views`,
		);
		expect(Number(r.all)).toBe(10_000);
		expect(Number(r.ok)).toBe(
			Number(
				(
					await sql<{ n: string }>(
						url,
						"select count(*) as n from video_views where views % 3 <> 0",
					)
				)[0].n,
			),
		);
		expect(Number(r.bad)).toBe(0);
	});

	it("catches up rows a concurrent writer inserts and keeps the writer's updates", async () => {
		const url = await fresh("bf_writer");
		const writer = new pg.Client({ connectionString: url });
		await writer.connect();
		let stop = false;
		let inserted = 0;
		let updated = 0;
		const updatedIds = new Set<string>();
		const writing = (async () => {
			for (let i = 0; !stop && i < 2000; i++) {
				// It writes until the walk is well under way (10 batches committed), then stops, so
				// the final check comes after its last write; its rows behind the cursor are left
				// for the catch-up.
				const progress = await writer
					.query("select batches from runbooks.backfill_checkpoints")
					.catch(() => ({ rows: [] as Array<{ batches: number }> }));
				if ((progress.rows[0]?.batches ?? 0) >= 10) break;
				// New jobs (thumbnail not yet set) whose keys sort first: behind the cursor as soon
				// as the walk is under way, so only the catch-up can find them.
				await writer.query(
					`insert into generated_videos (id, user_id, face_source_id, template_id, status, updated_at)
					 select '0' || md5(random()::text), user_id, face_source_id, template_id, 'COMPLETED', now()
					   from generated_videos order by random() limit 1`,
				);
				inserted++;
				const { rows } = await writer.query(
					`update generated_videos set progress = 77, updated_at = now()
					  where id = (select id from generated_videos where status = 'COMPLETED' order by random() limit 1)
					  returning id`,
				);
				if (rows[0]) updatedIds.add(rows[0].id);
				updated++;
				await new Promise((r) => setTimeout(r, 5));
			}
		})();
		const run = await runRunbook(
			"backfill",
			[
				...THUMBNAILS,
				// Ten pauses of 200 ms give the writer time for its rows even on a loaded machine.
				...fixedBatches(400, 200),
				"--yes",
			],
			{ env: env(url) },
		);
		stop = true;
		await writing;
		await writer.end();
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(inserted).toBeGreaterThan(20);
		expect(updated).toBeGreaterThan(20);
		await checkExactlyOnce(url);
		const [r] = await sql<{ inserted_set: string; kept: string }>(
			url,
			`select count(*) filter (where id like '0%' and touched = 1) as inserted_set,
			        count(*) filter (where id = any($1) and progress = 77) as kept
			   from generated_videos`,
			[[...updatedIds]],
		);
		expect(Number(r.inserted_set)).toBe(inserted);
		// Rows inserted behind the cursor were found by the final check and caught up.
		expect(run.stdout).toMatch(/[\d,]+ rows match again .*: catching up/);
		expect(Number(r.kept)).toBe(updatedIds.size);
	});

	it("reconnects after losing its connection and carries on from the checkpoint", async () => {
		const url = await fresh("bf_conn");
		let terminated = false;
		const run = runRunbook(
			"backfill",
			[...THUMBNAILS, ...fixedBatches(300, 20), "--yes"],
			{ env: env(url) },
		);
		for (let i = 0; i < 400 && !terminated; i++) {
			await new Promise((r) => setTimeout(r, 50));
			const rows = await sql<{ batches: number }>(
				url,
				"select batches from runbooks.backfill_checkpoints",
			).catch(() => []);
			if (rows[0] && rows[0].batches >= 5) {
				const killed = await sql(
					url,
					"select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'runbook:backfill:batches'",
				);
				terminated = killed.length > 0;
			}
		}
		const result = await run;
		expect(terminated).toBe(true);
		expect(result.code, result.stdout + result.stderr).toBe(0);
		expect(result.stdout).toContain("connection lost");
		await checkExactlyOnce(url);
	});

	it("stops cleanly on Ctrl-C (exit 130) and says how to resume", async () => {
		const url = await fresh("bf_int");
		const run = await runRunbook(
			"backfill",
			[...THUMBNAILS, ...fixedBatches(200, 30), "--yes"],
			{
				env: env(url),
				signalOn: { pattern: /rows\/s/, signal: "SIGINT", to: "runbook" },
			},
		);
		expect(run.code, run.stdout + run.stderr).toBe(130);
		expect(run.stderr).toContain("--resume");
		const [cp] = await sql<{ rows_updated: string; phase: string }>(
			url,
			"select rows_updated, phase from runbooks.backfill_checkpoints",
		);
		const [n] = await sql<{ n: string }>(
			url,
			"select count(*) as n from generated_videos where touched = 1",
		);
		expect(cp.phase).toBe("walk");
		expect(Number(cp.rows_updated)).toBe(Number(n.n));
	});

	describe("refuses bad input with exit 2 and changes nothing", () => {
		let url: string;
		let before: string;
		beforeAll(async () => {
			url = await fresh("bf_bad");
			before = await digest(url);
		});

		const cases: Array<[string, string[], RegExp]> = [
			[
				"an unknown table",
				["--table", "generated_video", "--set", "thumbnail_path = 'x'"],
				/no table "generated_video".*\n.*generated_videos/,
			],
			[
				"an unknown column in --set",
				["--table", "generated_videos", "--set", "thumbnail = 'x'"],
				/no column "thumbnail"/,
			],
			[
				"a primary-key column in --set",
				["--table", "generated_videos", "--set", "id = id || 'x'"],
				/primary-key column/,
			],
			[
				"a malformed --set",
				["--table", "generated_videos", "--set", "'x'"],
				/must read "<column> = <expression>"/,
			],
			[
				"a syntax error in --where",
				[
					"--table",
					"generated_videos",
					"--set",
					"thumbnail_path = 'x'",
					"--where",
					"thumbnail_path IS NULL AND AND status = 'FAILED'",
				],
				/--where is not valid SQL here: syntax error/,
			],
			[
				"a second statement in --where",
				[
					"--table",
					"generated_videos",
					"--set",
					"thumbnail_path = 'x'",
					"--where",
					"true; drop table users",
				],
				/semicolon/,
			],
			[
				"an unknown column in --where",
				[
					"--table",
					"generated_videos",
					"--set",
					"thumbnail_path = 'x'",
					"--where",
					"thumb IS NULL",
				],
				/column "thumb" does not exist/,
			],
			[
				"a type error in --set",
				["--table", "generated_videos", "--set", "progress = 'lots'"],
				/--set is not valid SQL here: invalid input syntax for type integer/,
			],
			[
				"an enum value that does not exist",
				[
					"--table",
					"generated_videos",
					"--set",
					"status = 'DONE'",
					"--where",
					"status = 'COMPLETED'",
				],
				/invalid input value for enum/,
			],
			[
				"a condition the update does not clear",
				[
					"--table",
					"generated_videos",
					"--set",
					"quality = '1080p'",
					"--where",
					"status = 'COMPLETED'",
				],
				/still match --where after --set is applied/,
			],
			[
				"--resume without an earlier run",
				[
					"--table",
					"generated_videos",
					"--set",
					"thumbnail_path = 'x'",
					"--where",
					"thumbnail_path IS NULL",
					"--resume",
				],
				/no checkpoint to resume/,
			],
		];
		for (const [what, args, message] of cases) {
			it(what, async () => {
				const run = await runRunbook("backfill", [...args, "--yes"], {
					env: env(url),
				});
				expect(run.code, run.stdout + run.stderr).toBe(2);
				expect(run.stdout + run.stderr).toMatch(message);
				expect(await digest(url)).toBe(before);
			});
		}

		it("leaves no checkpoint behind", async () => {
			const rows = await sql(
				url,
				"select 1 from pg_namespace where nspname = 'runbooks'",
			);
			expect(rows).toEqual([]);
		});
	});
});

describe("the mechanisms behind it", () => {
	it("splits operator SQL at top-level commas only", () => {
		expect(
			splitTopLevel(
				"a = 'x, y', b = coalesce(c, 1), d = $q$, $q$ || \"e,f\" -- g, h\n, i = 1",
				",",
				"--set",
			).map((p) => p.trim()),
		).toEqual([
			"a = 'x, y'",
			"b = coalesce(c, 1)",
			'd = $q$, $q$ || "e,f" -- g, h',
			"i = 1",
		]);
		expect(parseAssignments("\"Mixed\" = 1, plain = E'it\\'s'")).toEqual([
			{ column: "Mixed", expr: "1" },
			{ column: "plain", expr: "E'it\\'s'" },
		]);
		for (const bad of ["a = (1", "a = 'x", "a = 1; drop table t", "a = 1)"]) {
			expect(() => parseAssignments(bad)).toThrow(/--set/);
		}
	});

	it("adapts the batch size toward the target, within bounds", () => {
		const o = { targetBatchMs: 200, minBatchSize: 100, maxBatchSize: 50_000 };
		expect(nextBatchSize(1000, 100, o)).toBe(1500);
		expect(nextBatchSize(1000, 400, o)).toBe(500);
		expect(nextBatchSize(1000, 5000, o)).toBe(500);
		expect(nextBatchSize(40_000, 10, o)).toBe(50_000);
		expect(nextBatchSize(150, 10_000, o)).toBe(100);
		expect(nextBatchSize(1000, 10, { ...o, targetBatchMs: 0 })).toBe(1000);
	});

	it("describes progress with rate and ETA, and quotes a rerun command", () => {
		expect(
			describeProgress(
				250_000,
				{ unit: "rows", total: 1_000_000, estimated: true },
				50_000,
				"x",
			),
		).toBe("250,000 of ~1,000,000 rows (25%), 50,000 rows/s, ETA ~15.0s, x");
		expect(shellQuote("'thumbs/' || id")).toBe(`"'thumbs/' || id"`);
		expect(shellQuote("it's $HOME")).toBe(`'it'"'"'s $HOME'`);
		expect(
			rerunCommand("runbooks/backfill.ts", {
				argv: [
					"--table",
					"t",
					"--restart",
					"--database-url",
					"postgresql://u:p@h/d",
					"--yes",
				],
				drop: ["restart"],
				add: ["--resume"],
			}),
		).toBe("npx tsx runbooks/backfill.ts --table t --yes --resume");
		// Another runbook's command keeps only the flags named, with their values.
		expect(
			rerunCommand("runbooks/validate.ts", {
				argv: [
					"--yes",
					"--dotenv",
					".env.prod",
					"--allow",
					"x",
					"--env-file=a b",
				],
				keep: ["dotenv", "env-file"],
			}),
		).toBe("npx tsx runbooks/validate.ts --dotenv .env.prod '--env-file=a b'");
	});
});
