// change-column-type.ts as an operator runs it, in a copy of the repository, on generated_videos
// (10,000 rows here; the 200,000 and 1,000,000 are in test/bench/column-type-bench.ts):
// int -> bigint online under a writer every 20 ms, varchar(16) -> varchar(8) refused (exit 3,
// nothing changed) then done, a SIGKILL mid-run then a rerun, and --abort.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWithFault } from "./support/faults.ts";
import * as h from "./support/harness.ts";

let repo: string;
let url: string;
let audit: string;

beforeAll(async () => {
	repo = h.copyRepository();
	url = await h.createSeededDatabase("coltype", 2000);
	audit = join(h.scratchDir(), "audit.jsonl");
});

afterAll(async () => {
	await h.dropDatabase(url);
});

const env = () => ({
	DATABASE_URL: url,
	RUNBOOK_AUDIT_LOG: audit,
	RUNBOOK_PROGRESS_INTERVAL_MS: "200",
});
const sql = <T extends pg.QueryResultRow = Record<string, unknown>>(
	text: string,
	values: unknown[] = [],
) => h.admin(async (db) => (await db.query<T>(text, values)).rows, url);
const migrations = () =>
	readdirSync(join(repo, "prisma", "migrations")).filter((d) =>
		/^\d{14}_/.test(d),
	);
const schema = () =>
	readFileSync(join(repo, "prisma", "schema.prisma"), "utf8");
const typeOf = async (column: string) =>
	(
		await sql<{ type: string; notnull: boolean }>(
			`select format_type(atttypid, atttypmod) as type, attnotnull as notnull from pg_attribute
			  where attrelid = 'generated_videos'::regclass and attname = $1 and not attisdropped`,
			[column],
		)
	)[0];
const columns = async () =>
	(
		await sql<{ n: string }>(
			"select attname as n from pg_attribute where attrelid = 'generated_videos'::regclass and attnum > 0 and not attisdropped",
		)
	).map((r) => r.n);
const validate = () =>
	h.runRunbook("validate", ["--json"], { env: env(), root: repo });

/** A writer doing single-row updates and inserts every 20 ms; returns how to stop it and what it saw. */
async function startWriter() {
	const writer = new pg.Client({ connectionString: url });
	await writer.connect();
	const ids = (
		await writer.query<{ id: string }>(
			"select id from generated_videos order by id limit 500",
		)
	).rows.map((r) => r.id);
	let stop = false;
	let worst = 0;
	let ops = 0;
	const errors: string[] = [];
	const done = (async () => {
		for (let i = 0; !stop; i++) {
			const t0 = performance.now();
			try {
				if (i % 10 === 0)
					await writer.query(
						`insert into generated_videos (id, user_id, face_source_id, template_id, updated_at, processing_ms)
						 select 'cw' || md5(random()::text), user_id, face_source_id, template_id, now(), 5 from generated_videos where id = $1`,
						[ids[i % ids.length]],
					);
				else
					await writer.query(
						"update generated_videos set progress = (progress + 1) % 100, updated_at = now() where id = $1",
						[ids[i % ids.length]],
					);
				ops++;
			} catch (err) {
				errors.push((err as Error).message);
			}
			worst = Math.max(worst, performance.now() - t0);
			await new Promise((r) => setTimeout(r, 20));
		}
	})();
	return {
		async stop() {
			stop = true;
			await done;
			await writer.end();
			return { worst, ops, errors };
		},
	};
}

const yes = () => ["--yes", "--confirm", h.dbName(url)];
/** The online road on a small table, and a slow fill (fixed batches of 200 with a pause) to land a kill in. */
const online = (column: string, type: string) => [
	"--table",
	"generated_videos",
	"--column",
	column,
	"--type",
	type,
	"--small-table-mb",
	"0",
];
const slowly = (pause: string) => [
	"--batch-size",
	"200",
	"--target-batch",
	"0",
	"--sleep",
	pause,
];
const PROCESSING = [
	"--table",
	"generated_videos",
	"--column",
	"processing_ms",
	"--type",
	"bigint",
	"--small-table-mb",
	"0",
];

describe("change-column-type.ts", () => {
	it("prints every statement with its lock under --dry-run and changes nothing", async () => {
		const before = { migrations: migrations(), schema: schema() };
		const run = await h.runRunbook(
			"change-column-type",
			[...PROCESSING, "--dry-run"],
			{ env: env(), root: repo },
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toContain('ADD COLUMN "processing_ms__new" bigint');
		expect(run.stdout).toContain("CREATE TRIGGER");
		expect(run.stdout).toMatch(/ACCESS EXCLUSIVE, a catalog change only/);
		expect(run.stdout).toContain(
			'RENAME COLUMN "processing_ms__new" TO "processing_ms"',
		);
		expect(migrations()).toEqual(before.migrations);
		expect(schema()).toBe(before.schema);
		expect(await columns()).not.toContain("processing_ms__new");
	}, 900_000);

	it("changes int to bigint online under a writer: values kept, short waits, Prisma in step", async () => {
		const [{ sum: before }] = await sql<{ sum: string }>(
			"select sum(processing_ms)::text as sum from generated_videos",
		);
		const writer = await startWriter();
		const run = await h.runRunbook(
			"change-column-type",
			[...PROCESSING, ...yes(), "--json"],
			{ env: env(), root: repo },
		);
		const w = await writer.stop();
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(JSON.parse(run.stdout).healthy).toBe(true);
		expect(w.errors).toEqual([]);
		expect(w.ops).toBeGreaterThan(20);
		expect(w.worst).toBeLessThan(1000);
		expect(await typeOf("processing_ms")).toEqual({
			type: "bigint",
			notnull: false,
		});
		const [{ sum, inserted }] = await sql<{ sum: string; inserted: string }>(
			"select sum(processing_ms) filter (where id not like 'cw%')::text as sum, count(*) filter (where id like 'cw%' and processing_ms is distinct from 5) as inserted from generated_videos",
		);
		expect(sum).toBe(before);
		expect(Number(inserted)).toBe(0);
		expect(schema()).toMatch(
			/processingMs\s+BigInt\?\s+@map\("processing_ms"\)/,
		);
		expect(
			migrations()
				.filter((m) => m.includes("processing_ms_to_bigint"))
				.map((m) => m.slice(15)),
		).toEqual([
			"generated_videos_processing_ms_to_bigint_expand",
			"generated_videos_processing_ms_to_bigint_swap",
		]);
		const v = await validate();
		expect(v.code, v.stdout + v.stderr).toBe(0);
		// A rerun finds it done.
		const again = await h.runRunbook(
			"change-column-type",
			[...PROCESSING, ...yes()],
			{ env: env(), root: repo },
		);
		expect(again.code, again.stdout + again.stderr).toBe(0);
	}, 900_000);

	it("refuses to shrink varchar(16) to varchar(8) while a value is longer (exit 3, rows named, nothing changed)", async () => {
		const ids = (
			await sql<{ id: string }>(
				"update generated_videos set quality = 'ultra-hd-4k-hdr' where id in (select id from generated_videos order by id limit 3) returning id",
			)
		).map((r) => r.id);
		const before = { migrations: migrations(), schema: schema() };
		const args = [...online("quality", "varchar(8)"), ...yes()];
		const run = await h.runRunbook("change-column-type", args, {
			env: env(),
			root: repo,
		});
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stdout + run.stderr).toMatch(
			/3 row\(s\) of generated_videos have a quality that does not convert to character varying\(8\)/,
		);
		for (const id of ids) expect(run.stdout + run.stderr).toContain(id);
		expect(migrations()).toEqual(before.migrations);
		expect(schema()).toBe(before.schema);
		expect(await typeOf("quality")).toEqual({
			type: "character varying(16)",
			notnull: true,
		});
		expect(await columns()).not.toContain("quality__new");

		await sql(
			"update generated_videos set quality = '4k' where quality = 'ultra-hd-4k-hdr'",
		);
		const ok = await h.runRunbook("change-column-type", [...args, "--json"], {
			env: env(),
			root: repo,
		});
		expect(ok.code, ok.stdout + ok.stderr).toBe(0);
		expect(JSON.parse(ok.stdout).healthy).toBe(true);
		expect(await typeOf("quality")).toEqual({
			type: "character varying(8)",
			notnull: true,
		});
		const [{ d }] = await sql<{ d: string }>(
			"select pg_get_expr(adbin, adrelid) as d from pg_attrdef where adrelid = 'generated_videos'::regclass and adnum = (select attnum from pg_attribute where attrelid = 'generated_videos'::regclass and attname = 'quality')",
		);
		expect(d).toMatch(/^'720p'::character varying/);
		expect(schema()).toMatch(
			/quality\s+String\s+@default\("720p"\) @db\.VarChar\(8\)/,
		);
	}, 900_000);

	it("finishes after a SIGKILL mid-fill, with no row lost", async () => {
		const [{ n: rows, sum }] = await sql<{ n: string; sum: string }>(
			"select count(*)::text as n, sum(progress)::text as sum from generated_videos",
		);
		const args = [...online("progress", "bigint"), ...yes(), ...slowly("20ms")];
		const killed = await runWithFault(
			"change-column-type",
			args,
			{ kind: "SIGKILL", step: 4, offsetMs: 300 },
			{ env: env(), root: repo },
		);
		expect(killed.code).not.toBe(0);
		expect(await typeOf("progress")).toEqual({
			type: "integer",
			notnull: true,
		});
		const rerun = await h.runRunbook(
			"change-column-type",
			[...args.slice(0, -6), "--json"],
			{ env: env(), root: repo },
		);
		expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
		expect(JSON.parse(rerun.stdout).healthy).toBe(true);
		expect(await typeOf("progress")).toEqual({ type: "bigint", notnull: true });
		const [after] = await sql<{ n: string; sum: string }>(
			"select count(*)::text as n, sum(progress)::text as sum from generated_videos",
		);
		expect(after).toEqual({ n: rows, sum });
		const idx = await sql(
			"select indexname from pg_indexes where tablename = 'generated_videos' and indexdef like '%progress%'",
		);
		expect(idx).toEqual([]);
	}, 900_000);

	it("--abort undoes a change stopped before its swap", async () => {
		const before = { migrations: migrations(), schema: schema() };
		const args = [
			...online("created_at", "timestamptz(3)"),
			...yes(),
			...slowly("50ms"),
		];
		const killed = await runWithFault(
			"change-column-type",
			args,
			{ kind: "SIGKILL", step: 4, offsetMs: 200 },
			{ env: env(), root: repo },
		);
		expect(killed.code).not.toBe(0);
		expect(await columns()).toContain("created_at__new");
		const undo = await h.runRunbook(
			"change-column-type",
			[...args, "--abort"],
			{
				env: env(),
				root: repo,
			},
		);
		expect(undo.code, undo.stdout + undo.stderr).toBe(0);
		expect(await columns()).not.toContain("created_at__new");
		expect(migrations()).toEqual(before.migrations);
		const v = await validate();
		expect(v.code, v.stdout + v.stderr).toBe(0);
	}, 900_000);
	it("text and back with --using: progress to text, then to integer with --using, every value and the default kept", async () => {
		const sum = async () =>
			(
				await sql<{ s: string }>(
					"select sum(progress::integer)::text as s from generated_videos",
				)
			)[0].s;
		const before = await sum();
		const toText = await h.runRunbook(
			"change-column-type",
			[...online("progress", "text"), ...yes()],
			{ env: env(), root: repo },
		);
		expect(toText.code, toText.stdout + toText.stderr).toBe(0);
		expect((await typeOf("progress")).type).toBe("text");
		expect(await sum()).toBe(before);
		const back = await h.runRunbook(
			"change-column-type",
			[
				...online("progress", "integer"),
				"--using",
				"progress::integer",
				...yes(),
			],
			{ env: env(), root: repo },
		);
		expect(back.code, back.stdout + back.stderr).toBe(0);
		expect(await typeOf("progress")).toEqual({
			type: "integer",
			notnull: true,
		});
		expect(await sum()).toBe(before);
		expect(schema()).toMatch(/progress\s+Int\s+@default\(0\)/);
		const v = await validate();
		expect(v.code, v.stdout + v.stderr).toBe(0);
	}, 900_000);
});
