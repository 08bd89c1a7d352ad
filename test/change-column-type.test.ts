// change-column-type.ts as an operator runs it, in a copy of the repository, on generated_videos
// (10,000 rows here; the 200,000 and 1,000,000 are in test/bench/column-type-bench.ts):
// int -> bigint online under a writer every 20 ms, varchar(16) -> varchar(8) refused (exit 3,
// nothing changed) then done, a SIGKILL mid-run then a rerun, --abort, and columns read by views
// (a view on a view, with options, a comment and grants) on both roads.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runWithFault } from "./support/faults.ts";
import { slowFill } from "./support/field-flags.ts";
import {
	columnFlags,
	schemaChangeSuite,
	startWriter,
} from "./support/field-suite.ts";
import { dbName } from "./support/harness.ts";
import { deployOwnMigration } from "./support/migration-fixtures.ts";

const suite = schemaChangeSuite("coltype", 2000);
const { env, runbook, sql, migrations, schema, column: typeOf } = suite;
const columns = async () =>
	(
		await sql<{ n: string }>(
			"select attname as n from pg_attribute where attrelid = 'generated_videos'::regclass and attnum > 0 and not attisdropped",
		)
	).map((r) => r.n);
const validate = () => runbook("validate", ["--json"]);
const changeType = (args: string[]) => runbook("change-column-type", args);
/** SIGKILLs change-column-type `offsetMs` into its step 4 (the fill). */
const killDuringFill = (args: string[], offsetMs: number) =>
	runWithFault(
		"change-column-type",
		args,
		{ kind: "SIGKILL", step: 4, offsetMs },
		{ env: env(), root: suite.repo },
	);

/** A writer doing single-row updates and inserts every 20 ms; returns how to stop it and what it saw. */
const startWriterEvery20ms = () =>
	startWriter(suite.url, {
		pickIds: "select id from generated_videos order by id limit 500",
		pauseMs: 20,
		insert: (writer, id) =>
			writer.query(
				`insert into generated_videos (id, user_id, face_source_id, template_id, updated_at, processing_ms)
				 select 'cw' || md5(random()::text), user_id, face_source_id, template_id, now(), 5 from generated_videos where id = $1`,
				[id],
			),
	});

const yes = () => ["--yes", "--confirm", dbName(suite.url)];
/** The online road on a small table (slowFill: a slow fill, to land a kill in). */
const online = (column: string, type: string) => [
	...columnFlags("generated_videos", column, type),
	"--small-table-mb",
	"0",
];
const PROCESSING = online("processing_ms", "bigint");

describe("change-column-type.ts", () => {
	it("prints every statement with its lock under --dry-run and changes nothing", async () => {
		const before = { migrations: migrations(), schema: schema() };
		const run = await changeType([...PROCESSING, "--dry-run"]);
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
		const writer = await startWriterEvery20ms();
		const run = await changeType([...PROCESSING, ...yes(), "--json"]);
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
		const again = await changeType([...PROCESSING, ...yes()]);
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
		const run = await changeType(args);
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stdout + run.stderr).toMatch(
			/3 row\(s\) of generated_videos have a quality that does not convert to character varying\(8\)/,
		);
		for (const id of ids) expect(run.stdout + run.stderr).toContain(id);
		// Nothing to finish or undo: no "--abort" advice after a refusal.
		expect(run.stderr).toContain("Nothing was changed by this step.");
		expect(run.stderr).not.toContain("--abort");
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
		const ok = await changeType([...args, "--json"]);
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
		const args = [
			...online("progress", "bigint"),
			...yes(),
			...slowFill("20ms"),
		];
		const killed = await killDuringFill(args, 300);
		expect(killed.code).not.toBe(0);
		expect(await typeOf("progress")).toEqual({
			type: "integer",
			notnull: true,
		});
		const rerun = await changeType([...args.slice(0, -6), "--json"]);
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
			...slowFill("50ms"),
		];
		const killed = await killDuringFill(args, 200);
		expect(killed.code).not.toBe(0);
		expect(await columns()).toContain("created_at__new");
		const undo = await changeType([...args, "--abort"]);
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
		const toText = await changeType([...online("progress", "text"), ...yes()]);
		expect(toText.code, toText.stdout + toText.stderr).toBe(0);
		expect((await typeOf("progress")).type).toBe("text");
		expect(await sum()).toBe(before);
		const back = await changeType([
			...online("progress", "integer"),
			"--using",
			"progress::integer",
			...yes(),
		]);
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

	it("recreates the views that read the column (and the views on them) with their options, comment and grants, on both roads", async () => {
		// As a team would have them: a migration of their own, deployed.
		await deployOwnMigration(
			suite.repo,
			suite.url,
			"20250101000000_video_views",
			`CREATE VIEW video_timings WITH (security_barrier) AS SELECT id, status, started_at, completed_at, completed_at - started_at AS took FROM generated_videos;
COMMENT ON VIEW video_timings IS 'one row per video, with how long it took';
CREATE VIEW slow_videos AS SELECT id, took FROM video_timings WHERE took > interval '1 minute';
CREATE VIEW failed_videos AS SELECT id, error_message FROM generated_videos WHERE status = 'FAILED';
`,
		);
		await sql(
			`DO $$ BEGIN CREATE ROLE coltype_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
			 DO $$ BEGIN CREATE ROLE coltype_app; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
			 GRANT SELECT ON video_timings, slow_videos TO coltype_reader;
			 -- As Supabase does: a new relation would be granted to coltype_app; the old views were not.
			 ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO coltype_app`,
		);
		const views = () =>
			sql<Record<string, unknown>>(
				`select c.relname, pg_get_viewdef(c.oid) as def, c.reloptions, obj_description(c.oid, 'pg_class') as comment,
				        has_table_privilege('coltype_reader', c.oid, 'SELECT') as reader, has_table_privilege('coltype_app', c.oid, 'SELECT') as app
				   from pg_class c where c.relname in ('video_timings', 'slow_videos', 'failed_videos') order by 1`,
			);
		const before = await views();
		expect(before).toHaveLength(3);
		const rows = async () =>
			(
				await sql<{ n: string; h: string }>(
					"select count(*) as n, md5(string_agg(t::text, ',' order by id)) as h from slow_videos t",
				)
			)[0];
		const slow = await rows();

		const online = await changeType([
			...columnFlags("generated_videos", "completed_at", "timestamptz(3)"),
			"--small-table-mb",
			"0",
			...yes(),
			"--json",
		]);
		expect(online.code, online.stdout + online.stderr).toBe(0);
		expect(JSON.parse(online.stdout).healthy).toBe(true);
		const direct = await changeType([
			...columnFlags("generated_videos", "error_message", "varchar(500)"),
			...yes(),
			"--json",
		]);
		expect(direct.code, direct.stdout + direct.stderr).toBe(0);
		expect(JSON.parse(direct.stdout).healthy).toBe(true);

		expect(await typeOf("completed_at")).toEqual({
			type: "timestamp(3) with time zone",
			notnull: false,
		});
		expect((await typeOf("error_message")).type).toBe("character varying(500)");
		const [{ t }] = await sql<{ t: string }>(
			"select format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = 'video_timings'::regclass and attname = 'completed_at'",
		);
		expect(t).toBe("timestamp(3) with time zone");
		// The same definitions (re-read against the new type: PostgreSQL casts started_at where
		// took mixes the two), options, comment and grants; coltype_app still has nothing.
		expect(await views()).toEqual(
			before.map((v) => ({
				...v,
				def: String(v.def).replace(
					"- generated_videos.started_at)",
					"- (generated_videos.started_at)::timestamp with time zone)",
				),
			})),
		);
		expect(before.map((v) => [v.reader, v.app])).toEqual([
			[false, false],
			[true, false],
			[true, false],
		]);
		expect(await rows()).toEqual(slow);
		// Recorded: the views go and come back inside the migrations Prisma holds.
		const swap = migrations().find((m) =>
			m.endsWith("completed_at_to_timestamp_3_with_time_zone_swap"),
		);
		expect(swap).toBeDefined();
		const text = readFileSync(
			join(suite.repo, "prisma", "migrations", String(swap), "migration.sql"),
			"utf8",
		);
		expect(text).toMatch(/DROP VIEW slow_videos, video_timings;/);
		expect(text).toMatch(
			/CREATE VIEW video_timings WITH \(security_barrier=true\) AS/,
		);
		const v = await validate();
		expect(v.code, v.stdout + v.stderr).toBe(0);
		await sql(
			"ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT ON TABLES FROM coltype_app",
		);
	}, 900_000);

	it("plans again when a killed run wrote only part of its plan (none of it applied)", async () => {
		// What a kill between writing two folders leaves (ten minutes ago): the plan's first folder, alone.
		const stamp = new Date(Date.now() - 600_000)
			.toISOString()
			.replace(/\D/g, "")
			.slice(0, 14);
		const partial = `${stamp}_generated_videos_output_path_to_character_varying_300_expand`;
		const dir = join(suite.repo, "prisma", "migrations", partial);
		mkdirSync(dir);
		writeFileSync(
			join(dir, "migration.sql"),
			"-- the first folder of a plan whose run was killed before it wrote the rest\nSELECT 1;\n",
		);
		const run = await changeType([
			...online("output_path", "varchar(300)"),
			...yes(),
			"--json",
		]);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(JSON.parse(run.stdout).healthy).toBe(true);
		expect((await typeOf("output_path")).type).toBe("character varying(300)");
		const mine = migrations().filter((m) =>
			m.includes("output_path_to_character_varying_300"),
		);
		expect(mine).not.toContain(partial);
		expect(mine.map((m) => m.slice(15))).toEqual([
			"generated_videos_output_path_to_character_varying_300_expand",
			"generated_videos_output_path_to_character_varying_300_swap",
		]);
	}, 900_000);
});
