// Fault injection for the two runbooks that change large, busy tables in pieces: backfill.ts and
// add-required-field.ts. At every step that changes data, the run is killed (SIGKILL to its
// process group), interrupted (SIGINT) or, once, has its database sessions terminated mid-step.
// After each fault: every row is wholly old or wholly new (batches commit one by one), every
// schema change is applied and recorded in _prisma_migrations together or neither, the audit log
// says where the run stopped, and a rerun (or --resume, as the runbook says) ends exactly where an
// uninterrupted reference run ends.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
	endState,
	faultCases,
	killAndInterrupt,
	runInterrupted,
} from "./support/deploy-faults.ts";
import { copiedDatabase, queryRows as sql } from "./support/deploy-suite.ts";
import { type Fault, settle } from "./support/faults.ts";
import { SHARE_SLUG_FIELD } from "./support/field-flags.ts";
import {
	copyRepository,
	createSeededDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

const template = copiedDatabase(() =>
	createSeededDatabase("faults_large_tpl", 150),
);

/** The end state two runs are compared by (_prisma_migrations is compared by `history`). */
const snapshot = endState;

/** Finished migrations as name without its timestamp, and checksum. */
const history = async (url: string) =>
	(
		await sql<{ m: string }>(
			url,
			"select substr(migration_name, 16) || ' ' || checksum as m from _prisma_migrations where finished_at is not null and rolled_back_at is null order by migration_name",
		)
	).map((r) => r.m);

/** Each row of generated_videos without the given columns, as a digest, with the row count. */
const otherColumns = async (url: string, drop: string[]) =>
	(
		await sql<{ n: string; h: string }>(
			url,
			`select count(*) as n, md5(string_agg(md5((to_jsonb(g) - $1::text[])::text), '' order by id)) as h from generated_videos g`,
			[drop],
		)
	)[0];

// ---------------------------------------------------------------------------------------------
// backfill.ts: step 3 (the batches) sets two columns of generated_videos' unfinished jobs, in
// batches of 10 rows with a pause, so a fault lands between and inside batches.

describe("backfill.ts, interrupted", () => {
	const SET =
		"output_path = 'videos/' || id || '.mp4', progress = progress + 1000";
	const ARGS = [
		"--table",
		"generated_videos",
		"--set",
		SET,
		"--where",
		"output_path IS NULL",
		"--batch-size",
		"10",
		"--target-batch-ms",
		"0",
		"--sleep-ms",
		"40",
		"--yes",
	];
	let original: Map<string, { output_path: string | null; progress: number }>;
	let reference: Record<string, string>;

	const rows = async (url: string) =>
		new Map(
			(
				await sql<{ id: string; output_path: string | null; progress: number }>(
					url,
					"select id, output_path, progress from generated_videos",
				)
			).map((r) => [r.id, r]),
		);

	const env = (url: string) => ({
		DATABASE_URL: url,
		RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
	});

	beforeAll(async () => {
		original = await rows(template.url);
		const url = await template.clone("faults_bf_ref");
		const ref = await runRunbook("backfill", ARGS, { env: env(url) });
		expect(ref.code, ref.stdout + ref.stderr).toBe(0);
		reference = await snapshot(url);
		expect(reference["rows public.generated_videos"]).not.toBe(
			(await snapshot(template.url))["rows public.generated_videos"],
		);
	});

	const faults: Fault[] = [
		...killAndInterrupt(3, 300),
		{ kind: "terminate", step: 3, offsetMs: 300, database: "" },
	];

	it.each(faultCases(faults))(
		"%s: every row wholly old or wholly new, the audit log says where, --resume ends as an uninterrupted run",
		async (_, f) => {
			const url = await template.clone("faults_bf");
			const e = env(url);
			// Every fault here is aimed at step 3 of 4.
			const { run, out } = await runInterrupted("backfill", ARGS, f, url, 4, {
				env: e,
			});
			// Every batch before the fault committed: the resume line names --resume.
			if (run.code === 130 || run.code === 1)
				expect(run.stderr).toMatch(/To resume, run: .*--resume/);
			await settle(url, { all: true });

			// 1. Same rows; each one as it was, or with both columns set (never one without the other).
			const now = await rows(url);
			expect(now.size).toBe(original.size);
			let updated = 0;
			for (const [id, was] of original) {
				const row = now.get(id);
				expect(row, id).toBeDefined();
				if (row?.output_path === was.output_path) {
					expect(row?.progress, id).toBe(was.progress);
				} else {
					updated++;
					expect(was.output_path, id).toBeNull();
					expect(row, id).toEqual({
						id,
						output_path: `videos/${id}.mp4`,
						progress: was.progress + 1000,
					});
				}
			}
			// The other tables are untouched.
			const s = await snapshot(url);
			const t = await snapshot(template.url);
			for (const k of Object.keys(t).filter(
				(k) => k.startsWith("rows ") && !k.includes("generated_videos"),
			))
				expect(s[k], k).toBe(t[k]);
			// The checkpoint says exactly how many rows are done (it commits with each batch).
			const cp = await sql<{ rows_updated: string; phase: string }>(
				url,
				"select rows_updated, phase from runbooks.backfill_checkpoints",
			).catch(() => []);
			if (cp.length) expect(Number(cp[0].rows_updated), out).toBe(updated);
			else expect(updated).toBe(0);

			// 3. Rerun. An unfinished run makes a plain rerun refuse (exit 3), naming --resume: do that.
			let rerun = await runRunbook("backfill", ARGS, { env: e });
			if (rerun.code === 3) {
				expect(rerun.stderr).toContain("--resume");
				expect(cp[0]?.phase).toBe("walk");
				rerun = await runRunbook("backfill", [...ARGS, "--resume"], {
					env: e,
				});
			}
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
			expect(await snapshot(url)).toEqual(reference);
		},
	);
});

// ---------------------------------------------------------------------------------------------
// add-required-field.ts, each case in its own copy of the repository (it writes migration folders
// and schema.prisma) and of the database: steps 2 (migration 1: add the column), 3 (fill in
// batches), 4 (migration 2: CHECK NOT VALID), 5 (migration 3: VALIDATE), 6 (migration 4: SET NOT
// NULL, drop the check; schema.prisma).

describe("add-required-field.ts, interrupted", () => {
	const ARGS = [
		...SHARE_SLUG_FIELD,
		"--batch-size",
		"40",
		"--target-batch-ms",
		"0",
		"--sleep-ms",
		"30",
		"--yes",
	];
	const SUFFIXES = [
		"add_generated_videos_share_slug",
		"generated_videos_share_slug_not_null_check_not_valid",
		"generated_videos_share_slug_validate_not_null_check",
		"generated_videos_share_slug_set_not_null",
	];
	let originalSchema: string;
	let originalRows: { n: string; h: string };
	let reference: {
		db: Record<string, string>;
		history: string[];
		files: Record<string, string>;
		schema: string;
	};

	/** The migration folders the runbook wrote, by name without the timestamp, with their SQL. */
	const migrationFiles = (repo: string) => {
		const dir = join(repo, "prisma", "migrations");
		const out: Record<string, string> = {};
		for (const d of readdirSync(dir).filter((x) =>
			SUFFIXES.includes(x.slice(15)),
		)) {
			const f = join(dir, d, "migration.sql");
			out[d.slice(15)] = existsSync(f) ? readFileSync(f, "utf8") : "MISSING";
		}
		return out;
	};
	const schemaOf = (repo: string) =>
		readFileSync(join(repo, "prisma", "schema.prisma"), "utf8");

	function setup(url: string) {
		const repo = copyRepository();
		return {
			repo,
			env: {
				DATABASE_URL: url,
				RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
			},
		};
	}

	beforeAll(async () => {
		originalRows = await otherColumns(template.url, []);
		const url = await template.clone("faults_arf_ref");
		const { repo, env } = setup(url);
		originalSchema = schemaOf(repo);
		const ref = await runRunbook("add-required-field", ARGS, {
			env,
			root: repo,
		});
		expect(ref.code, ref.stdout + ref.stderr).toBe(0);
		reference = {
			db: await snapshot(url),
			history: await history(url),
			files: migrationFiles(repo),
			schema: schemaOf(repo),
		};
		expect(Object.keys(reference.files).sort()).toEqual([...SUFFIXES].sort());
		expect(reference.schema).toMatch(
			/^ {2}shareSlug +String +@map\("share_slug"\)$/m,
		);
	});

	const faults: Fault[] = [2, 3, 4, 5, 6].flatMap((step) =>
		killAndInterrupt(step, step === 3 ? 250 : 100),
	);
	faults.push({ kind: "terminate", step: 3, offsetMs: 250, database: "" });

	it.each(faultCases(faults))(
		"%s: each migration applied and recorded together or not at all, rows wholly old or new, a rerun ends as an uninterrupted run",
		async (_, f) => {
			const url = await template.clone("faults_arf");
			const { repo, env } = setup(url);
			const { out } = await runInterrupted(
				"add-required-field",
				ARGS,
				f,
				url,
				7,
				{ env, root: repo },
			);
			await settle(url, { all: true });

			// 1. What _prisma_migrations records is exactly what the catalog holds.
			const applied = new Set((await history(url)).map((m) => m.split(" ")[0]));
			const open = await sql(
				url,
				"select 1 from _prisma_migrations where finished_at is null",
			);
			expect(open).toEqual([]);
			const [col] = await sql<{ notnull: boolean }>(
				url,
				"select attnotnull as notnull from pg_attribute where attrelid = 'generated_videos'::regclass and attname = 'share_slug' and not attisdropped",
			);
			const [check] = await sql<{ validated: boolean }>(
				url,
				"select convalidated as validated from pg_constraint where conname = 'generated_videos_share_slug_not_null'",
			);
			const state = {
				column: Boolean(col),
				check: check ? (check.validated ? "valid" : "not valid") : "none",
				notNull: Boolean(col?.notnull),
			};
			const [add, chk, val, nn] = SUFFIXES.map((s) => applied.has(s));
			expect(state, out).toEqual({
				column: add,
				check: nn ? "none" : val ? "valid" : chk ? "not valid" : "none",
				notNull: nn,
			});
			// Rows: the same rows, every other column as it was; the new one NULL or its value.
			expect(await otherColumns(url, ["share_slug"])).toEqual(originalRows);
			if (add) {
				const [wrong] = await sql<{ n: string }>(
					url,
					"select count(*) as n from generated_videos where share_slug is not null and share_slug <> 'v-' || id",
				);
				expect(Number(wrong.n)).toBe(0);
			}
			// Files: each migration.sql written whole (as the reference's); schema.prisma is the
			// original with at most the new field line.
			for (const [k, text] of Object.entries(migrationFiles(repo)))
				expect(text, k).toBe(reference.files[k]);
			const schema = schemaOf(repo);
			const squash = (t: string) =>
				t
					.split("\n")
					.filter((l) => !/^\s+shareSlug\s/.test(l))
					.map((l) => l.replace(/\s+/g, " "))
					.join("\n");
			expect(squash(schema)).toBe(squash(originalSchema));

			// 3. The same command again carries on and ends as the uninterrupted run did.
			const rerun = await runRunbook("add-required-field", ARGS, {
				env,
				root: repo,
			});
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
			expect(await snapshot(url)).toEqual(reference.db);
			expect(await history(url)).toEqual(reference.history);
			expect(migrationFiles(repo)).toEqual(reference.files);
			expect(schemaOf(repo)).toBe(reference.schema);
		},
	);
});
