#!/usr/bin/env -S npx tsx --

// The seed's "Cannot add NOT NULL column without default" (add optional, populate, make
// required), made safe for a large, busy table and kept in Prisma's migration history: four
// migrations, each applied in its own short transaction with a lock_timeout and retries, the
// backfill between the first two done by the batch engine, and prisma/schema.prisma updated.

import {
	existsSync,
	mkdtempSync,
	readFileSync,
	renameSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
	type BackfillEvent,
	type BackfillJob,
	type BackfillResult,
	type BackfillTable,
	countMatching,
	DEFAULTS,
	defineJob,
	describeBatch,
	readCheckpoint,
	resolveTable,
	runBackfill,
	validateJob,
} from "../lib/data/backfill.ts";
import {
	applyOnline,
	LOCK_EFFECT,
	type LockMode,
	type LockReport,
	migrationTimestamp,
	writeMigration,
} from "../lib/data/online-ddl.ts";
import { sqlErrorIsBadInput } from "../lib/data/sql-fragment.ts";
import { renamedDuration } from "../lib/kit/cli.ts";
import { EXIT, RunbookError, refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration } from "../lib/kit/output.ts";
import { type Progress, startProgress } from "../lib/kit/progress.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import { detectDrift, explainDriftStatement } from "../lib/migrations/drift.ts";
import {
	type LocalMigration,
	readHistory,
	readLocalMigrations,
} from "../lib/migrations/history.ts";
import {
	displayPath,
	migrationsDir,
	prismaErrorText,
	runPrisma,
	SCHEMA_PATH,
} from "../lib/migrations/prisma-cli.ts";
import {
	enumsOf,
	fieldLine,
	fieldNameOf,
	findField,
	findModel,
	type PrismaColumn,
	prismaDefaultOf,
	prismaTypeOf,
	upsertField,
} from "../lib/migrations/prisma-schema.ts";
import { connect, type Db, quoteIdent } from "../lib/pg/db.ts";

type StepKey = "add" | "check" | "validate" | "not_null";

interface MigrationStep {
	key: StepKey;
	name: string;
	sql: string;
	mode: LockMode;
	statementTimeoutMs: number;
	/** In the migrations folder already (an earlier run wrote it). */
	exists: boolean;
	applied: boolean;
}

interface Plan {
	table: BackfillTable;
	tableSql: string;
	column: string;
	sqlType: string;
	prisma: PrismaColumn;
	field: string;
	/** --default as PostgreSQL stores it (pg_get_expr), when given. */
	storedDefault?: string;
	/** The default fills existing rows without a rewrite (non-volatile, column added by ADD COLUMN). */
	fastDefault: boolean;
	/** What existing rows are set to. */
	fillExpr: string;
	constraint: string;
	columnExisted: boolean;
	steps: MigrationStep[];
}

interface State {
	plan?: Plan;
	locks: Array<{ step: string; migration: string } & LockReport>;
	backfill?: BackfillResult;
	healthy?: boolean;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const again = () => rerunCommand("runbooks/add-required-field.ts");

const SUFFIX: Record<StepKey, (t: string, c: string) => string> = {
	add: (t, c) => `add_${t}_${c}`,
	check: (t, c) => `${t}_${c}_not_null_check_not_valid`,
	validate: (t, c) => `${t}_${c}_validate_not_null_check`,
	not_null: (t, c) => `${t}_${c}_set_not_null`,
};

const TITLES: Record<StepKey, string> = {
	add: "step 1 of 4: add the column, nullable",
	check:
		"step 2 of 4: add CHECK (column IS NOT NULL) NOT VALID (existing rows are not scanned)",
	validate:
		"step 3 of 4: VALIDATE the check (scans the table; reads and writes go on)",
	not_null:
		"step 4 of 4: SET NOT NULL (PostgreSQL 12+ trusts the validated check: no scan), drop the check",
};

function header(p: { table: string; column: string }, key: StepKey): string {
	const command = rerunCommand("runbooks/add-required-field.ts", {
		drop: ["yes", "json", "verbose"],
	});
	return [
		`-- Make ${p.table}.${p.column} required, ${TITLES[key]}.`,
		"-- Written by runbooks/add-required-field.ts, which applies these migrations one at a time (each",
		"-- lock short, with lock_timeout and retries) and backfills existing rows between steps 1 and 2:",
		`--   ${command.replace(/\n/g, " ")}`,
		...(key === "validate"
			? [
					"-- It fails while rows are still NULL: run the runbook rather than a plain migrate deploy.",
				]
			: []),
		"",
	].join("\n");
}

async function probeType(
	db: Db,
	type: string,
	defaultExpr: string | undefined,
): Promise<{
	type: string;
	fast: boolean;
	stored: string | null;
	isNull: boolean;
}> {
	await db.query(
		"BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '10s'",
	);
	try {
		await db.query(
			"CREATE TEMP TABLE runbook_type_probe (k int) ON COMMIT DROP; INSERT INTO runbook_type_probe VALUES (1)",
		);
		try {
			await db.query(`ALTER TABLE runbook_type_probe ADD COLUMN c ${type}`);
		} catch (err) {
			if (sqlErrorIsBadInput(err))
				throw usageError(
					`--type ${type} is not a PostgreSQL type here: ${(err as Error).message}.`,
				);
			throw err;
		}
		if (defaultExpr !== undefined) {
			try {
				await db.query("SAVEPOINT d");
				await db.query(
					`ALTER TABLE runbook_type_probe ADD COLUMN d ${type} DEFAULT ${defaultExpr}`,
				);
			} catch (err) {
				if (sqlErrorIsBadInput(err)) {
					throw usageError(
						`--default is not valid here: ${(err as Error).message}.`,
						/column reference/i.test((err as Error).message)
							? "A default cannot refer to other columns: use --backfill for a value computed from the row."
							: "Write a constant or an expression such as now() or gen_random_uuid().",
					);
				}
				throw err;
			}
		}
		const { rows } = await db.query<{
			name: string;
			type: string;
			missing: boolean;
			stored: string | null;
		}>(
			`select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, a.atthasmissing as missing,
              pg_get_expr(d.adbin, d.adrelid) as stored
         from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
        where a.attrelid = 'runbook_type_probe'::regclass and a.attname in ('c', 'd')`,
		);
		const c = rows.find((r) => r.name === "c");
		const d = rows.find((r) => r.name === "d");
		let isNull = false;
		if (d)
			isNull = (
				await db.query<{ n: boolean }>(
					"select d is null as n from runbook_type_probe",
				)
			).rows[0].n;
		return {
			type: c?.type ?? type,
			fast: Boolean(d?.missing),
			stored: d?.stored ?? null,
			isNull,
		};
	} finally {
		await db.query("ROLLBACK").catch(() => {});
	}
}

/** Applies one of the four migrations online and records it; returns its lock report. */
async function applyStep(
	ctx: Context<State>,
	key: StepKey,
): Promise<{ summary: string; data: unknown }> {
	const plan = ctx.state.plan as Plan;
	const step = plan.steps.find((s) => s.key === key) as MigrationStep;
	const dir = migrationsDir(ctx.env);
	const migration: LocalMigration = step.exists
		? (readLocalMigrations(dir).find(
				(m) => m.name === step.name,
			) as LocalMigration)
		: writeMigration(dir, step.name, step.sql);
	if (!step.exists) ctx.log(`wrote ${displayPath(migration.path)}`);
	step.exists = true;
	const report = await applyOnline(await ctx.db(), {
		migration,
		tableSql: plan.tableSql,
		mode: step.mode,
		lockTimeoutMs: ctx.flags["lock-timeout"] as number,
		statementTimeoutMs: step.statementTimeoutMs,
		retries: ctx.flags.retries as number,
		signal: ctx.signal,
		onRetry: (r) => {
			ctx.warn(
				`attempt ${r.attempt}: ${r.reason}; retrying in ${formatDuration(r.waitMs)}`,
			);
			for (const h of r.holders) ctx.log(`  held by ${h}`);
		},
	});
	step.applied = true;
	ctx.state.locks.push({ step: TITLES[key], migration: step.name, ...report });
	ctx.log(`applied and recorded in _prisma_migrations: ${step.name}`);
	ctx.log(
		`lock: ${report.mode} on ${plan.table.display}, waited ${formatDuration(report.waitedMs)}, held ${formatDuration(report.heldMs)}` +
			`${report.attempts > 1 ? ` (attempt ${report.attempts})` : ""}: ${LOCK_EFFECT[report.mode]}`,
	);
	return {
		summary: `${step.name} applied; ${report.mode} held ${formatDuration(report.heldMs)}`,
		data: { migration: step.name, lock: report },
	};
}

/** Puts the field into schema.prisma (optional or required) and lets `prisma format` align it. */
const expectedLine = (plan: Plan, optional: boolean) =>
	fieldLine(
		plan.field,
		plan.column,
		plan.prisma,
		optional,
		plan.storedDefault ? prismaDefaultOf(plan.storedDefault, plan.prisma) : "",
	);

/** Whether schema.prisma already has the field as it should be (spacing aside). */
function schemaHasField(plan: Plan, optional: boolean): boolean {
	const model = findModel(readFileSync(SCHEMA_PATH, "utf8"), plan.table.name);
	const field = model && findField(model, plan.column);
	const squash = (l: string) => l.trim().replace(/\s+/g, " ");
	return Boolean(
		field && squash(field.line) === squash(expectedLine(plan, optional)),
	);
}

const stepOf = (ctx: Context<State>, key: StepKey) =>
	ctx.state.plan?.steps.find((x) => x.key === key);

/** A migration step's plan: its file, the lock it takes and what that blocks, then its SQL. */
function describeMigrationStep(
	ctx: Context<State>,
	key: StepKey,
	note: string,
): string[] {
	const s = stepOf(ctx, key) as MigrationStep;
	return [
		`-- ${s.name}/migration.sql (lock: ${s.mode}, which ${LOCK_EFFECT[s.mode]}; ${note}):`,
		s.sql.replace(/^--.*\n/gm, "").trim(),
	];
}

async function updateSchema(
	ctx: Context<State>,
	optional: boolean,
): Promise<void> {
	const plan = ctx.state.plan as Plan;
	if (schemaHasField(plan, optional)) return;
	const text = readFileSync(SCHEMA_PATH, "utf8");
	const line = expectedLine(plan, optional);
	// Formatted in a scratch copy, then renamed into place: a kill at any moment leaves
	// schema.prisma either as it was or wholly updated and formatted.
	const scratch = mkdtempSync(join(tmpdir(), "add-required-field-"));
	try {
		const draft = join(scratch, "schema.prisma");
		writeFileSync(draft, upsertField(text, plan.table.name, plan.column, line));
		const formatted = await runPrisma(
			["format", "--schema", draft],
			ctx.target,
			ctx.env,
			ctx.signal,
		);
		if (formatted.exitCode !== 0)
			ctx.warn(
				`prisma format failed, so the field goes in unformatted: ${prismaErrorText(formatted)}`,
			);
		const next = join(
			dirname(SCHEMA_PATH),
			`.schema.prisma.${process.pid}.tmp`,
		);
		writeFileSync(next, readFileSync(draft));
		renameSync(next, SCHEMA_PATH);
	} finally {
		rmSync(scratch, { recursive: true, force: true });
	}
	ctx.log(`${displayPath(SCHEMA_PATH)}: ${line.trim()}`);
}

const failedStep = () =>
	"This step runs in one transaction: nothing of it is applied. The steps before it are applied and recorded in _prisma_migrations.";

await runRunbook<State>({
	name: "add-required-field",
	summary:
		"Add a NOT NULL column to a large, busy table without downtime, as Prisma migrations.",
	description:
		"The seed's three steps (add optional, populate, make required), made safe for a busy table:\n" +
		"  1. ALTER TABLE ADD COLUMN, nullable (with --default: the default too; a constant default fills\n" +
		"     existing rows without rewriting the table);\n" +
		"  2. the existing rows are filled in short batches by the backfill engine (see backfill.ts);\n" +
		"  3. ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT (a scan that\n" +
		"     blocks no reads or writes), then SET NOT NULL (PostgreSQL 12+ skips its scan thanks to the\n" +
		"     validated check) and DROP CONSTRAINT.\n" +
		"Each schema change is a migration folder in prisma/migrations, applied in its own transaction with a\n" +
		"lock_timeout and retries, and recorded in _prisma_migrations as `prisma migrate deploy` records it;\n" +
		"prisma/schema.prisma gets the field. It reports the lock each step took and how long it held it.\n" +
		"Rerun the same command after a failure: it carries on where it stopped.\n" +
		"\n" +
		"--default and --backfill are SQL that you write (checked in a rolled-back transaction first).\n" +
		"With --backfill, rows the app inserts without the column fail once step 2 of the migrations is in:\n" +
		"deploy the app version that writes the column first.",
	flags: {
		table: {
			type: "string",
			value: "<table>",
			description:
				"The table, as named in the database (the model's @@map), e.g. generated_videos.",
		},
		column: {
			type: "string",
			value: "<column>",
			description:
				"The new column, snake_case (the Prisma field is its camelCase with @map).",
		},
		type: {
			type: "string",
			value: "<sql type>",
			description:
				"Its PostgreSQL type, e.g. text, integer, varchar(32), timestamp(3), or an enum's name.",
		},
		default: {
			type: "string",
			value: "<expr>",
			description:
				"A default the column keeps (and existing rows get), e.g. \"'720p'\" or now().",
		},
		backfill: {
			type: "string",
			value: "<expr>",
			description:
				"The value for existing rows, computed from the row, e.g. \"'thumbs/' || id || '.jpg'\"; no default is kept.",
		},
		...renamedDuration("lock-timeout", "lock-timeout-ms", "ms", {
			default: `${500}ms`,
			description:
				"lock_timeout of each schema change: the longest the app may queue behind it.",
		}),
		retries: {
			type: "number",
			value: "<n>",
			default: 20,
			description:
				"Attempts after a lock timeout, with growing pauses, before giving up.",
		},
		"batch-size": {
			type: "number",
			value: "<rows>",
			default: DEFAULTS.batchSize,
			description: "Backfill: rows per batch to start with.",
		},
		...renamedDuration("target-batch", "target-batch-ms", "ms", {
			default: `${DEFAULTS.targetBatchMs}ms`,
			description: "Backfill: target duration of one batch.",
		}),
		...renamedDuration("sleep", "sleep-ms", "ms", {
			default: `${DEFAULTS.sleepMs}ms`,
			description: "Backfill: pause between batches.",
		}),
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
	},
	examples: [
		`npx tsx runbooks/add-required-field.ts --table generated_videos --column thumbnail_path --type text --backfill "'thumbs/' || id || '.jpg'" --dry-run`,
		`npx tsx runbooks/add-required-field.ts --table generated_videos --column priority --type integer --default 0 --yes`,
	],
	exclusive: true,
	state: () => ({ locks: [] }),
	steps: [
		{
			title: "Check the table, the column, the type and the expression",
			async run(ctx) {
				const f = ctx.flags;
				const tableName = f.table as string | undefined;
				const column = f.column as string | undefined;
				const type = f.type as string | undefined;
				if (!tableName || !column || !type) {
					throw usageError(
						"--table, --column and --type are required.",
						"Run with --help for an example.",
					);
				}
				if ((f.default === undefined) === (f.backfill === undefined)) {
					throw usageError(
						"Pass either --default <expr> (the column keeps it) or --backfill <expr> (for existing rows only).",
					);
				}
				if (!/^[a-z_][a-z0-9_]{0,62}$/.test(column)) {
					throw usageError(
						`--column ${column}: use a snake_case name (lower-case letters, digits, _), at most 63 characters.`,
					);
				}
				for (const flag of [
					"lock-timeout",
					"retries",
					"batch-size",
					"target-batch",
					"sleep",
				]) {
					if (!Number.isInteger(f[flag]))
						throw usageError(`--${flag} needs a whole number.`);
				}
				const db = await ctx.db();
				const table = await resolveTable(db, tableName);
				const history = await readHistory(db, migrationsDir(ctx.env));
				if (history.tableMissing) {
					throw refusal(
						"This database has no _prisma_migrations table: deploy its migrations first. Nothing was changed.",
					);
				}
				const ours = new Set(
					Object.values(SUFFIX).map((s) => s(table.name, column)),
				);
				const isOurs = (name: string) => ours.has(name.slice(15));
				const issues = history.issues.filter(
					(i) => !(i.kind === "pending" && isOurs(i.migration)),
				);
				if (issues.length) {
					for (const i of issues)
						ctx.warn(`migration ${i.migration}: ${i.detail}`);
					throw refusal(
						"The migration history is not clean (see above). Nothing was changed.",
						"Deploy pending migrations (or resolve failed ones) first, then rerun; validate.ts explains each problem.",
					);
				}
				const schema = readFileSync(SCHEMA_PATH, "utf8");
				const model = findModel(schema, table.name);
				if (!model) {
					throw usageError(
						`No model in ${displayPath(SCHEMA_PATH)} maps to the table ${table.name} (no @@map("${table.name}")).`,
					);
				}

				// The type, and the default: checked in a rolled-back transaction on a temporary table.
				const probe = await probeType(
					db,
					type,
					f.default as string | undefined,
				);
				const prisma = prismaTypeOf(probe.type, enumsOf(schema));
				if (!prisma) {
					throw usageError(
						`--type ${type} (${probe.type}) has no plain Prisma type.`,
						"Use text, varchar(n), char(n), integer, smallint, bigint, boolean, double precision, real, numeric(p,s), timestamp(n), timestamptz(n), date, uuid, json, jsonb, bytea or an enum.",
					);
				}
				if (probe.isNull)
					throw usageError(
						"--default gives NULL: a required column needs a value.",
					);

				const existing = table.columns.get(column);
				const local = readLocalMigrations(migrationsDir(ctx.env));
				const found = (key: StepKey) =>
					local.find(
						(m) => m.name.slice(15) === SUFFIX[key](table.name, column),
					);
				const applied = new Set(
					history.applied
						.filter((r) => r.finished_at && !r.rolled_back_at)
						.map((r) => r.migration_name),
				);
				const columnExisted = existing !== undefined && !found("add");
				if (existing !== undefined && existing !== probe.type) {
					throw usageError(
						`${table.display}.${column} exists already, as ${existing}, not ${probe.type}.`,
					);
				}
				const notNull = await db.query<{ notnull: boolean }>(
					"select attnotnull as notnull from pg_attribute where attrelid = $1::regclass and attname = $2",
					[table.sql, column],
				);
				if (columnExisted && notNull.rows[0]?.notnull) {
					throw refusal(
						`${table.display}.${column} exists and is NOT NULL already. Nothing was changed.`,
					);
				}
				if (columnExisted)
					ctx.log(
						`${table.display}.${column} exists (nullable): making it required.`,
					);
				const field = findField(model, column)?.name ?? fieldNameOf(column);
				if (!columnExisted && !found("add")) {
					const clash = model.body
						.split("\n")
						.find((l) => new RegExp(`^\\s+${field}\\s`).test(l));
					if (clash)
						throw usageError(
							`The model ${model.name} has a field named ${field} already: ${clash.trim()}`,
						);
				}

				// What existing rows get: checked on every row now (a read), so a NULL or an error shows
				// up before anything changes.
				const fillExpr = (f.backfill as string | undefined) ?? "DEFAULT";
				if (f.backfill !== undefined) {
					await db.query(
						"BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '5s'",
					);
					try {
						const k = table.key
							.map((c) => `${quoteIdent(c.name)}::text`)
							.join(" || ', ' || ");
						const { rows } = await db.query<{
							nulls: string;
							example: string | null;
							n: string;
						}>(
							`select count(*) as n, count(*) filter (where v is null) as nulls, (array_agg(k) filter (where v is null))[1] as example
                 from (select (${f.backfill})::${probe.type} as v, ${k} as k from ${table.sql}${existing ? ` where ${quoteIdent(column)} is null` : ""}) s`,
						);
						if (Number(rows[0].nulls) > 0) {
							throw usageError(
								`--backfill gives NULL for ${fmt(Number(rows[0].nulls))} of ${fmt(Number(rows[0].n))} rows (e.g. key ${rows[0].example}): a required column needs a value in every row. Nothing was changed.`,
								"Wrap it in coalesce(<expr>, <fallback>).",
							);
						}
						ctx.log(
							`--backfill gives a value for every one of the ${fmt(Number(rows[0].n))} rows to fill`,
						);
					} catch (err) {
						if (sqlErrorIsBadInput(err))
							throw usageError(
								`--backfill is not valid SQL here: ${(err as Error).message}. Nothing was changed.`,
							);
						throw err;
					} finally {
						await db.query("ROLLBACK").catch(() => {});
					}
				}

				const tableSql =
					table.schema === "public" ? quoteIdent(table.name) : table.sql;
				const col = quoteIdent(column);
				const constraint = `${table.name}_${column}_not_null`.slice(0, 63);
				const latest = local.length ? local[local.length - 1].name : null;
				const now = new Date();
				const p = { table: tableSql, column: col };
				const addSql = columnExisted
					? `ALTER TABLE ${tableSql} ALTER COLUMN ${col} SET DEFAULT ${f.default};\n`
					: probe.fast || f.default === undefined
						? `ALTER TABLE ${tableSql} ADD COLUMN ${col} ${probe.type}${f.default !== undefined ? ` DEFAULT ${f.default}` : ""};\n`
						: `ALTER TABLE ${tableSql} ADD COLUMN ${col} ${probe.type};\nALTER TABLE ${tableSql} ALTER COLUMN ${col} SET DEFAULT ${f.default};\n`;
				const sqlOf: Record<StepKey, string> = {
					add: addSql,
					check: `ALTER TABLE ${tableSql} ADD CONSTRAINT ${quoteIdent(constraint)} CHECK (${col} IS NOT NULL) NOT VALID;\n`,
					validate: `ALTER TABLE ${tableSql} VALIDATE CONSTRAINT ${quoteIdent(constraint)};\n`,
					not_null:
						"-- The CHECK validated in the previous step proves no row is NULL: PostgreSQL 12+ skips the scan.\n" +
						"-- squawk-ignore adding-not-nullable-field\n" +
						`ALTER TABLE ${tableSql} ALTER COLUMN ${col} SET NOT NULL;\nALTER TABLE ${tableSql} DROP CONSTRAINT ${quoteIdent(constraint)};\n`,
				};
				const keys: StepKey[] =
					columnExisted && f.default === undefined
						? ["check", "validate", "not_null"]
						: ["add", "check", "validate", "not_null"];
				const steps: MigrationStep[] = keys.map((key, i) => {
					const file = found(key);
					return {
						key,
						name:
							file?.name ??
							`${migrationTimestamp(now, latest, i)}_${SUFFIX[key](table.name, column)}`,
						sql: file?.sql ?? header(p, key) + sqlOf[key],
						mode:
							key === "validate"
								? "SHARE UPDATE EXCLUSIVE"
								: "ACCESS EXCLUSIVE",
						statementTimeoutMs: key === "validate" ? 0 : 10_000,
						exists: Boolean(file),
						applied: Boolean(file && applied.has(file.name)),
					};
				});
				ctx.state.plan = {
					table,
					tableSql,
					column,
					sqlType: probe.type,
					prisma,
					field,
					storedDefault: probe.stored ?? undefined,
					fastDefault: probe.fast && !columnExisted,
					fillExpr,
					constraint,
					columnExisted,
					steps,
				};
				ctx.log(
					`table:   ${table.display} (~${fmt(Math.max(0, table.estimatedRows))} rows), model ${model.name}`,
				);
				ctx.log(
					`column:  ${column} ${probe.type}${probe.stored ? ` DEFAULT ${probe.stored}` : ""} -> Prisma field ${field} ${prisma.type}${prisma.native ? ` ${prisma.native}` : ""}`,
				);
				ctx.log(
					`existing rows: ${
						probe.fast && !columnExisted
							? "read the default at once (a non-volatile default is stored, not written into each row)"
							: `filled in batches with ${fillExpr === "DEFAULT" ? `the default (${probe.stored})` : fillExpr}`
					}`,
				);
				for (const s of steps)
					ctx.log(
						`${s.applied ? "applied " : s.exists ? "written " : "to write"}  ${s.name}`,
					);
				if (f.backfill !== undefined) {
					ctx.warn(
						`once the check is added, INSERTs that leave ${column} NULL fail: the app must write ${column} before then`,
					);
				}
				const done = steps.filter((s) => s.applied).length;
				return {
					summary: done
						? `${done} of ${steps.length} migrations applied by an earlier run: carrying on`
						: `${steps.length} migrations to apply`,
					data: {
						column,
						type: probe.type,
						prisma: `${field} ${prisma.type}`,
						migrations: steps.map((s) => ({
							name: s.name,
							applied: s.applied,
						})),
					},
				};
			},
		},
		{
			title: "Add the column, nullable (migration 1)",
			kind: "change",
			skip: (ctx) => {
				const s = stepOf(ctx, "add");
				if (!s) return "the column exists already";
				// Applied, and schema.prisma already has the field (or step 4 is in).
				const schemaDone =
					stepOf(ctx, "not_null")?.applied ||
					schemaHasField(ctx.state.plan as Plan, true);
				return s.applied && schemaDone ? `${s.name} is applied` : false;
			},
			plan: (ctx) =>
				describeMigrationStep(
					ctx,
					"add",
					`lock_timeout ${ctx.flags["lock-timeout"]}ms`,
				),
			async run(ctx) {
				const s = stepOf(ctx, "add") as MigrationStep;
				const r = s.applied
					? {
							summary: `${s.name} was applied; schema.prisma updated`,
							data: {},
						}
					: await applyStep(ctx, "add");
				if (!stepOf(ctx, "not_null")?.applied) await updateSchema(ctx, true);
				return r;
			},
			onFailure: failedStep,
		},
		{
			title: "Fill the existing rows in batches",
			kind: "change",
			skip: (ctx) =>
				ctx.state.plan?.steps.find((x) => x.key === "validate")?.applied
					? "the check is validated already"
					: false,
			plan: (ctx) => {
				const p = ctx.state.plan as Plan;
				return [
					`-- UPDATE ${p.table.display} SET ${p.column} = ${p.fillExpr} WHERE ${p.column} IS NULL, in primary-key order, batches toward ${ctx.flags["target-batch"]}ms`,
					"-- (the batch statements are those of runbooks/backfill.ts; progress is checkpointed in runbooks.backfill_checkpoints)",
				];
			},
			async run(ctx) {
				const p = ctx.state.plan as Plan;
				const db = await ctx.db();
				const table = await resolveTable(
					db,
					`${p.table.schema}.${p.table.name}`,
				);
				const job: BackfillJob = defineJob(
					table,
					`${quoteIdent(p.column)} = ${p.fillExpr}`,
					`${quoteIdent(p.column)} IS NULL`,
					"add-required-field",
				);
				const cp = await readCheckpoint(db, job.id);
				if (!cp) {
					const n = await countMatching(db, job);
					if (n === 0) {
						return {
							summary: p.fastDefault
								? "no row is NULL: existing rows read the default"
								: "no row is NULL: nothing to fill",
						};
					}
					ctx.log(`${fmt(n)} rows to fill`);
				}
				for (const line of describeBatch(job, {
					lockTimeoutMs: DEFAULTS.lockTimeoutMs,
					statementTimeoutMs: DEFAULTS.statementTimeoutMs,
				}).slice(2, 4)) {
					if (ctx.verbose) ctx.log(line);
				}
				await validateJob(db, job);
				let progress: Progress | undefined;
				const onEvent = (e: BackfillEvent) => {
					if (e.kind === "start") {
						if (e.resumedFrom)
							ctx.log("carrying on from the checkpoint of an earlier run");
						progress = startProgress({
							unit: "rows",
							total: Math.max(e.estimatedRows, 1),
							estimated: true,
							initial: e.resumedFrom?.rows_scanned ?? 0,
						});
					} else if (e.kind === "batch") {
						progress?.update(
							e.phase === "walk" ? e.totalScanned : e.estimatedRows,
							`${fmt(e.totalUpdated)} filled, batch ${fmt(e.batchSize)} in ${Math.round(e.ms)}ms`,
						);
					} else if (e.kind === "retry") {
						progress?.note(`retry ${e.attempt}: ${e.reason}`);
					} else if (e.kind === "check" && e.remaining > 0) {
						progress?.note(
							`${fmt(e.remaining)} rows are NULL again (inserted by the app meanwhile): catching up`,
						);
					}
				};
				try {
					const result = await runBackfill(job, {
						...DEFAULTS,
						batchSize: ctx.flags["batch-size"] as number,
						targetBatchMs: ctx.flags["target-batch"] as number,
						sleepMs: ctx.flags.sleep as number,
						minBatchSize: Math.min(
							DEFAULTS.minBatchSize,
							ctx.flags["batch-size"] as number,
						),
						mode: cp ? "resume" : "new",
						signal: ctx.signal,
						connect: () =>
							connect(ctx.target.direct, "runbook:add-required-field:batches"),
						onEvent,
					});
					progress?.stop();
					progress = undefined;
					ctx.state.backfill = result;
					ctx.log(
						`locks: ROW EXCLUSIVE on ${p.table.display} (blocks no reads or writes); each batch's rows locked until its commit, at most ${Math.round(result.longestBatchMs)}ms`,
					);
					if (result.remaining > 0) {
						throw new RunbookError(
							`${fmt(result.remaining)} rows are still NULL after ${result.catchUpRounds} catch-up rounds: the app keeps inserting rows without ${p.column}.`,
							EXIT.failed,
							`Deploy the app version that writes ${p.column}, then rerun: ${again()}`,
						);
					}
					return {
						summary: `${fmt(result.updatedThisRun)} rows filled in ${formatDuration(result.elapsedMs)} (${fmt((result.updatedThisRun * 1000) / Math.max(1, result.elapsedMs))} rows/s), longest batch ${Math.round(result.longestBatchMs)}ms`,
						data: {
							rows: result.updated,
							batches: result.batches,
							elapsed_ms: Math.round(result.elapsedMs),
							longest_batch_ms: Math.round(result.longestBatchMs),
						},
					};
				} finally {
					progress?.stop();
				}
			},
			onFailure: () =>
				"Filled rows stay filled (the batches committed, the checkpoint says how far); the column is still nullable.",
		},
		{
			title: "Add CHECK (column IS NOT NULL) NOT VALID (migration 2)",
			kind: "change",
			skip: (ctx) => (stepOf(ctx, "check")?.applied ? "applied" : false),
			plan: (ctx) => describeMigrationStep(ctx, "check", "no scan"),
			run: (ctx) => applyStep(ctx, "check"),
			onFailure: failedStep,
		},
		{
			title: "Validate the check (migration 3)",
			kind: "change",
			skip: (ctx) => (stepOf(ctx, "validate")?.applied ? "applied" : false),
			plan: (ctx) => describeMigrationStep(ctx, "validate", "scans every row"),
			async run(ctx) {
				try {
					return await applyStep(ctx, "validate");
				} catch (err) {
					if ((err as { code?: string }).code === "23514") {
						const p = ctx.state.plan as Plan;
						throw new RunbookError(
							`Some rows of ${p.table.display} have ${p.column} NULL again (inserted or updated after the fill): the check cannot be validated. Nothing of this step was applied.`,
							EXIT.failed,
							`Deploy the app version that writes ${p.column}, then rerun (it fills the new NULLs first): ${again()}`,
						);
					}
					throw err;
				}
			},
			onFailure: failedStep,
		},
		{
			title: "SET NOT NULL and drop the check (migration 4)",
			kind: "change",
			skip: (ctx) =>
				stepOf(ctx, "not_null")?.applied &&
				schemaHasField(ctx.state.plan as Plan, false)
					? "applied"
					: false,
			plan: (ctx) => {
				return [
					...describeMigrationStep(
						ctx,
						"not_null",
						"no scan: the validated check proves it",
					),
					`-- then ${displayPath(SCHEMA_PATH)}: the field becomes required`,
				];
			},
			async run(ctx) {
				const s = stepOf(ctx, "not_null") as MigrationStep;
				const r = s.applied
					? {
							summary: `${s.name} was applied; schema.prisma updated`,
							data: {},
						}
					: await applyStep(ctx, "not_null");
				await updateSchema(ctx, false);
				return r;
			},
			onFailure: failedStep,
		},
		{
			title: "Check Prisma's view: migrate status and drift",
			skip: (ctx) => (ctx.dryRun ? "dry run: nothing was applied" : false),
			async run(ctx) {
				const p = ctx.state.plan as Plan;
				if (existsSync(SCHEMA_PATH)) {
					const model = findModel(
						readFileSync(SCHEMA_PATH, "utf8"),
						p.table.name,
					);
					const field = model && findField(model, p.column);
					if (field) ctx.log(`schema.prisma: ${field.line.trim()}`);
				}
				const status = await runPrisma(
					["migrate", "status"],
					ctx.target,
					ctx.env,
					ctx.signal,
				);
				const statusText = prismaErrorText(status);
				const upToDate =
					status.exitCode === 0 && /up to date/i.test(statusText);
				ctx.log(
					`prisma migrate status: ${upToDate ? "Database schema is up to date!" : statusText}`,
				);
				const history = await readHistory(
					await ctx.db(),
					migrationsDir(ctx.env),
				);
				const drift = await detectDrift(ctx.target, ctx.env, ctx.signal);
				const problems = [
					...history.issues.map((i) => `migration ${i.migration}: ${i.detail}`),
					...drift.databaseVsMigrations.map(
						(s) => `drift: ${explainDriftStatement(s)} (${s})`,
					),
					...drift.migrationsVsSchema.map(
						(s) => `schema.prisma differs from the migrations: ${s}`,
					),
				];
				if (!upToDate)
					problems.unshift(
						"prisma migrate status does not report the database up to date",
					);
				for (const x of problems) ctx.warn(x);
				const notNull = await (await ctx.db()).query<{ notnull: boolean }>(
					"select attnotnull as notnull from pg_attribute where attrelid = $1::regclass and attname = $2",
					[p.table.sql, p.column],
				);
				if (!notNull.rows[0]?.notnull)
					problems.push(`${p.column} is not NOT NULL`);
				ctx.state.healthy = problems.length === 0;
				return {
					status: problems.length ? "problem" : "ok",
					summary: problems.length
						? `${problems.length} problem(s)`
						: `${p.table.display}.${p.column} is NOT NULL; migrate status up to date; no drift`,
					data: { problems },
				};
			},
		},
	],
	summarize: (ctx) => ({
		table: ctx.state.plan?.table.display ?? null,
		column: ctx.state.plan?.column ?? null,
		migrations:
			ctx.state.plan?.steps.map((s) => ({
				name: s.name,
				applied: s.applied,
			})) ?? [],
		locks: ctx.state.locks.map((l) => ({
			migration: l.migration,
			mode: l.mode,
			waited_ms: Math.round(l.waitedMs),
			held_ms: Math.round(l.heldMs),
			attempts: l.attempts,
		})),
		backfill: ctx.state.backfill
			? {
					rows: ctx.state.backfill.updated,
					elapsed_ms: Math.round(ctx.state.backfill.elapsedMs),
					longest_batch_ms: Math.round(ctx.state.backfill.longestBatchMs),
				}
			: null,
		healthy: ctx.state.healthy ?? null,
	}),
});
