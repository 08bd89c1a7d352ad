// Fault injection for the two runbooks that change a column's type in expand-and-contract steps,
// each step a Prisma migration: change-column-type.ts and remove-enum-value.ts. At every step that
// changes something, and between the migrations of a step that applies several, the run is killed
// (SIGKILL to its process group); at one step of each it is interrupted (SIGINT). After each fault:
// each migration is applied and recorded in _prisma_migrations together or not at all, no row is
// lost and each value is its original or its original converted once; then the same command again
// exits 0 and ends exactly where an uninterrupted reference run ends: the database, Prisma's
// history, the migration files and schema.prisma.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
	endState,
	faultCases,
	runInterrupted,
} from "./support/deploy-faults.ts";
import { copiedDatabase, queryRows as sql } from "./support/deploy-suite.ts";
import { type Fault, settle } from "./support/faults.ts";
import {
	columnFlags,
	PROCESSING_TO_PENDING,
	slowFill,
} from "./support/field-flags.ts";
import {
	copyRepository,
	createSeededDatabase,
	dbName,
	ROOT,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

// 750 generated_videos: fills of 4 batches of 200 rows, 300 ms apart, for a kill to land in.
const template = copiedDatabase(() =>
	createSeededDatabase("faults_colchange_tpl", 150),
);
const SLOWLY = slowFill("300ms");

/** The end state two runs are compared by (_prisma_migrations is compared by `history`). */
const snapshot = endState;

/** The checkout's own migrations: the runbooks' are the others. */
const SEEDED = new Set(readdirSync(join(ROOT, "prisma", "migrations")));

/**
 * The migration folders a runbook wrote, by name without the timestamp, with their SQL; the
 * database's name (in the rerun command each one's header gives) as <database>.
 */
function migrationFiles(repo: string, url: string): Record<string, string> {
	const dir = join(repo, "prisma", "migrations");
	const out: Record<string, string> = {};
	for (const d of readdirSync(dir).filter((x) => !SEEDED.has(x))) {
		const f = join(dir, d, "migration.sql");
		out[d.slice(15)] = existsSync(f)
			? readFileSync(f, "utf8").replaceAll(dbName(url), "<database>")
			: "MISSING";
	}
	return out;
}

const schemaOf = (repo: string) =>
	readFileSync(join(repo, "prisma", "schema.prisma"), "utf8");

/**
 * _prisma_migrations as names without the timestamp; each row finished, none rolled back, and
 * each of the runbook's recorded with the checksum of its migration.sql in `repo`.
 */
async function history(url: string, repo: string): Promise<string[]> {
	const rows = await sql<{
		name: string;
		checksum: string;
		finished: boolean;
		rolled_back: boolean;
	}>(
		url,
		"select migration_name as name, checksum, finished_at is not null as finished, rolled_back_at is not null as rolled_back from _prisma_migrations order by migration_name",
	);
	for (const r of rows.filter((r) => !SEEDED.has(r.name))) {
		const f = join(repo, "prisma", "migrations", r.name, "migration.sql");
		const sum = existsSync(f)
			? createHash("sha256").update(readFileSync(f)).digest("hex")
			: "no file";
		expect({ ...r, sum }, r.name).toEqual({
			...r,
			finished: true,
			rolled_back: false,
			sum: r.checksum,
		});
	}
	return rows.map((r) => r.name.slice(15));
}

/** Every row of generated_videos by id, as to_jsonb gives it. */
const rowsOf = async (url: string) =>
	new Map(
		(
			await sql<{ id: string; r: Record<string, unknown> }>(
				url,
				"select id, to_jsonb(g) as r from generated_videos g",
			)
		).map((x) => [x.id, x.r]),
	);

/**
 * What the catalog holds of a type change of generated_videos.<column> (the names column-type.ts
 * gives its column, trigger, check and indexes) and of VideoStatus (remove-enum-value's types).
 */
async function catalogState(url: string, column: string) {
	const [s] = await sql<Record<string, unknown>>(
		url,
		`select
		   (select format_type(atttypid, atttypmod) from pg_attribute where attrelid = 'generated_videos'::regclass and attname = $1 and not attisdropped) as type,
		   exists (select 1 from pg_attribute where attrelid = 'generated_videos'::regclass and attname = $1 || '__new' and not attisdropped) as "newColumn",
		   exists (select 1 from pg_trigger where tgrelid = 'generated_videos'::regclass and tgname = 'generated_videos_' || $1 || '_type_sync') as trigger,
		   (select case when convalidated then 'valid' else 'not valid' end from pg_constraint where conname = 'generated_videos_' || $1 || '_type_not_null') as "notNullCheck",
		   (select count(*) filter (where i.indisvalid) from pg_index i join pg_class x on x.oid = i.indexrelid where i.indrelid = 'generated_videos'::regclass and right(x.relname, 5) = '__new')::int as "newIndexes",
		   (select count(*) filter (where not i.indisvalid) from pg_index i join pg_class x on x.oid = i.indexrelid where i.indrelid = 'generated_videos'::regclass and right(x.relname, 5) = '__new')::int as "invalidIndexes",
		   (select count(*) from pg_constraint k join pg_attribute a on a.attrelid = k.conrelid and a.attnum = any(k.conkey) where k.conrelid = 'generated_videos'::regclass and a.attname = $1 and not k.convalidated)::int as "notValidated",
		   exists (select 1 from pg_type where typname = 'VideoStatus__new') as "newType",
		   exists (select 1 from pg_enum e join pg_type t on t.oid = e.enumtypid where t.typname = 'VideoStatus' and e.enumlabel = 'PROCESSING') as "oldValue"`,
		[column],
	);
	return s;
}

interface ColumnChangeFaults {
	runbook: "change-column-type" | "remove-enum-value";
	/** Its arguments but --yes --confirm <database>. */
	args: string[];
	steps: number;
	/** The column of generated_videos whose type changes. */
	column: string;
	/** Its type before the swap, after it, and (remove-enum-value) once the new type has the old name. */
	types: string[];
	/** The value a row ends with, from the value it had. */
	converted: (was: unknown) => unknown;
	faults: Fault[];
}

/** Applied and recorded in _prisma_migrations: whether the migration ending in `_<suffix>` is. */
const recordedSet = (names: string[]) => (suffix: RegExp | string) =>
	names.filter((n) =>
		typeof suffix === "string" ? n.endsWith(`_${suffix}`) : suffix.test(n),
	).length;

/**
 * One describe block: an uninterrupted reference run, then one case per fault, each in its own copy
 * of the repository (the runbooks write migration folders and schema.prisma) and of the database.
 */
function describeFaults(title: string, c: ColumnChangeFaults) {
	describe(title, () => {
		const NEW = `${c.column}__new`;
		let original: Map<string, Record<string, unknown>>;
		let originalSchema: string;
		let reference: {
			db: Record<string, string>;
			history: string[];
			files: Record<string, string>;
			schema: string;
		};
		const args = (url: string) => [
			...c.args,
			"--yes",
			"--confirm",
			dbName(url),
		];
		const setup = (url: string) => ({
			repo: copyRepository(),
			env: {
				DATABASE_URL: url,
				RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
			},
		});

		/**
		 * Rows: the same ids, every other column as it was; the column its original value or that
		 * value converted, once (converted twice, a value would be neither); the new column, while
		 * it exists, empty or the converted value. `done`: every row converted.
		 */
		const expectRows = async (url: string, done: boolean, what: string) => {
			const now = await rowsOf(url);
			const wrong: string[] = [];
			for (const [id, was] of original) {
				const row = now.get(id);
				if (!row) {
					wrong.push(`${id}: lost`);
					continue;
				}
				const { [c.column]: value, [NEW]: fresh, ...rest } = row;
				const { [c.column]: old, ...wasRest } = was;
				const want = c.converted(old);
				const ok =
					JSON.stringify(rest) === JSON.stringify(wasRest) &&
					(done ? [want] : [old, want]).some(
						(v) => JSON.stringify(v) === JSON.stringify(value),
					) &&
					[undefined, null, want].some(
						(v) => JSON.stringify(v) === JSON.stringify(fresh),
					);
				if (!ok)
					wrong.push(
						`${id}: was ${JSON.stringify(was)}, now ${JSON.stringify(row)}`,
					);
			}
			expect(wrong.slice(0, 5), what).toEqual([]);
			expect(now.size, what).toBe(original.size);
		};

		beforeAll(async () => {
			original = await rowsOf(template.url);
			const url = await template.clone("faults_cc_ref");
			const { repo, env } = setup(url);
			originalSchema = schemaOf(repo);
			const ref = await runRunbook(c.runbook, args(url), { env, root: repo });
			expect(ref.code, ref.stdout + ref.stderr).toBe(0);
			await expectRows(url, true, "the reference run");
			reference = {
				db: await snapshot(url),
				history: await history(url, repo),
				files: migrationFiles(repo, url),
				schema: schemaOf(repo),
			};
			expect(reference.schema).not.toBe(originalSchema);
			expect(
				(await catalogState(url, c.column)).type,
				"the reference run",
			).toBe(c.types.at(-1));
		});

		it.each(faultCases(c.faults))(
			"%s: each migration applied and recorded together or not at all, no row lost or converted twice, a rerun ends as an uninterrupted run",
			async (_, f) => {
				const url = await template.clone("faults_cc");
				const { repo, env } = setup(url);
				const { run, out } = await runInterrupted(
					c.runbook,
					args(url),
					f,
					url,
					c.steps,
					{
						env: uncached.has(f) ? { ...env, RUNBOOK_NO_CACHE: "1" } : env,
						root: repo,
					},
				);
				// A fault that never came would test nothing.
				expect(run.injected, out).toBe(true);
				await settle(url, { all: true });

				// 1. What _prisma_migrations records is what the catalog holds.
				const names = await history(url, repo);
				const has = recordedSet(names);
				const swapped = has("swap") > 0;
				const s = await catalogState(url, c.column);
				const carried = Object.keys(reference.files).filter((n) =>
					/_validate_\d+$/.test(n),
				).length;
				expect(
					{ ...s, newIndexes: undefined, invalidIndexes: undefined },
					out,
				).toEqual({
					type: c.types[swapped ? (has("drop_old_type") ? 2 : 1) : 0],
					newColumn: has("expand") > 0 && !swapped,
					trigger: has("expand") > 0 && !swapped,
					notNullCheck:
						swapped || !has("check_not_valid")
							? null
							: has("validate_check")
								? "valid"
								: "not valid",
					// The swap adds the column's check and foreign keys back NOT VALID; each then its migration.
					notValidated: swapped ? carried - has(/_validate_\d+$/) : 0,
					newType: has("create_type") > 0 && !has("drop_old_type"),
					oldValue: !has("drop_old_type"),
					newIndexes: undefined,
					invalidIndexes: undefined,
				});
				// CREATE INDEX CONCURRENTLY cannot run in a transaction: a kill between the build and its
				// record leaves one index more than recorded (valid, or invalid mid-build); the rerun's
				// IF NOT EXISTS (after dropping an invalid one) then records it. Never more than one.
				const indexes = swapped ? 0 : has(/_index_\d+$/);
				const built = (s.newIndexes as number) + (s.invalidIndexes as number);
				expect(s.newIndexes as number, out).toBeGreaterThanOrEqual(indexes);
				expect([indexes, indexes + 1], out).toContain(built);
				// 2. Rows: none lost, none converted twice; all converted once the swap is recorded.
				await expectRows(url, swapped, out);
				// 3. Files: each migration.sql written whole (as the reference's); schema.prisma as it
				// was or as the reference left it (it is renamed into place).
				for (const [k, text] of Object.entries(migrationFiles(repo, url)))
					expect(text, k).toBe(reference.files[k]);
				expect([originalSchema, reference.schema]).toContain(schemaOf(repo));

				// 4. The same command again carries on and ends as the uninterrupted run did.
				const rerun = await runRunbook(c.runbook, args(url), {
					env,
					root: repo,
				});
				expect(rerun.code, out + rerun.stdout + rerun.stderr).toBe(0);
				await expectRows(url, true, rerun.stdout + rerun.stderr);
				// The killed fill's checkpoint carried on to its end (not left for a later run to find).
				expect(
					await sql(
						url,
						"select job_id from runbooks.backfill_checkpoints where finished_at is null",
					),
				).toEqual([]);
				expect(await snapshot(url)).toEqual(reference.db);
				expect(await history(url, repo)).toEqual(reference.history);
				expect(migrationFiles(repo, url)).toEqual(reference.files);
				expect(schemaOf(repo)).toBe(reference.schema);
			},
		);
	});
}

/**
 * Faults aimed at a Prisma child (prisma format): their run reads nothing from the runbooks' cache
 * (RUNBOOK_NO_CACHE=1), so the child runs, as on a first run of that edit.
 */
const uncached = new WeakSet<Fault>();
const whilePrismaRuns = (f: Fault): Fault => {
	uncached.add(f);
	return f;
};

/** A fault once the step's output says the migration ending in `_<suffix>` is applied. */
const afterApplied = (
	kind: "SIGKILL" | "SIGINT",
	step: number,
	suffix: string,
	offsetMs = 0,
): Fault => ({
	kind,
	step,
	offsetMs,
	after: new RegExp(`applied and recorded: \\S+_${suffix} `),
});
const kill = (step: number, offsetMs = 0): Fault => ({
	kind: "SIGKILL",
	step,
	offsetMs,
});

// ---------------------------------------------------------------------------------------------
// change-column-type.ts's steps: 3 expand (migration: the new column and its sync trigger), 4 fill,
// 5 indexes (one migration each, CONCURRENTLY), 6 NOT NULL (CHECK NOT VALID, then VALIDATE), 7 swap
// (migration, then schema.prisma), 8 validate the carried-over constraints; 9 Prisma's view.

// processing_ms, nullable and bare: expand, fill and swap. Converted to microseconds (--using) so
// that a row converted twice shows (x 1,000,000).
describeFaults(
	"change-column-type.ts, processing_ms int -> bigint, interrupted",
	{
		runbook: "change-column-type",
		args: [
			...columnFlags("generated_videos", "processing_ms", "bigint"),
			"--using",
			"processing_ms::bigint * 1000",
			"--small-table-mb",
			"0",
			...SLOWLY,
		],
		steps: 9,
		column: "processing_ms",
		types: ["integer", "bigint"],
		converted: (was) => (was === null ? null : (was as number) * 1000),
		faults: [
			kill(3),
			kill(4, 400),
			{ kind: "SIGINT", step: 4, offsetMs: 400 },
			kill(7),
			// The swap applied, schema.prisma not yet rewritten (prisma format is running).
			whilePrismaRuns(afterApplied("SIGKILL", 7, "swap")),
		],
	},
);

// user_id, NOT NULL, in two indexes and a foreign key: every step, and each of its migrations.
describeFaults(
	"change-column-type.ts, user_id text -> varchar(64), interrupted",
	{
		runbook: "change-column-type",
		args: [
			...columnFlags("generated_videos", "user_id", "varchar(64)"),
			"--small-table-mb",
			"0",
			...SLOWLY,
		],
		steps: 9,
		column: "user_id",
		types: ["text", "character varying(64)"],
		converted: (was) => was,
		faults: [
			kill(5),
			afterApplied("SIGKILL", 5, "index_1"),
			kill(6),
			afterApplied("SIGKILL", 6, "check_not_valid"),
			// (The swap, step 7, is killed in the other two blocks.)
			kill(8),
		],
	},
);

// ---------------------------------------------------------------------------------------------
// remove-enum-value.ts's steps: 2 move the rows (batches), 3 create the new type (migration), 4
// change the column (the online road above, all in one step: expand, fill, 2 indexes, check,
// validate, swap), 5 drop the old type (migration) and schema.prisma; 6 Prisma's view.

describeFaults(
	"remove-enum-value.ts, VideoStatus without PROCESSING, interrupted",
	{
		runbook: "remove-enum-value",
		args: [...PROCESSING_TO_PENDING, "--small-table-mb", "0", ...SLOWLY],
		steps: 6,
		column: "status",
		types: ['"VideoStatus"', '"VideoStatus__new"', '"VideoStatus"'],
		converted: (was) => (was === "PROCESSING" ? "PENDING" : was),
		faults: [
			kill(2, 400),
			{ kind: "SIGINT", step: 2, offsetMs: 400 },
			kill(3),
			// In the fill, and in the swap (the other migrations of that road are killed above).
			afterApplied("SIGKILL", 4, "expand", 400),
			afterApplied("SIGKILL", 4, "validate_check"),
			kill(5),
			afterApplied("SIGKILL", 5, "drop_old_type"),
		],
	},
);
