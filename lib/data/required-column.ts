// Making a column required on a large, busy table as four Prisma migrations (add it nullable,
// CHECK NOT VALID, VALIDATE, SET NOT NULL): the plan checked against the database and
// schema.prisma, each migration applied online and recorded, and the field written into the schema.

import { existsSync, readFileSync } from "node:fs";
import type { FlagValues } from "../kit/cli.ts";
import { refusal, usageError } from "../kit/errors.ts";
import { formatCount as fmt, formatDuration } from "../kit/format.ts";
import { rerunCommand } from "../kit/rerun.ts";
import {
	finishedMigrations,
	type LocalMigration,
	readHistory,
	readLocalMigrations,
	writeMigrationFolder,
} from "../migrations/history.ts";
import type { Reporter } from "../migrations/preflight.ts";
import {
	displayPath,
	migrationsDir,
	SCHEMA_PATH,
} from "../migrations/prisma-cli.ts";
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
} from "../migrations/prisma-schema.ts";
import { type Db, quoteIdent } from "../pg/db.ts";
import type { Target } from "../pg/target.ts";
import {
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
} from "./backfill.ts";
import { fillProgress } from "./column-fill.ts";
import {
	applyOnline,
	LOCK_EFFECT,
	type LockMode,
	type LockReport,
	migrationTimestamp,
} from "./online-ddl.ts";
import { rewriteSchemaFile } from "./recorded-steps.ts";
import { sqlErrorIsBadInput } from "./sql-fragment.ts";

export type StepKey = "add" | "check" | "validate" | "not_null";

export interface MigrationStep {
	key: StepKey;
	name: string;
	sql: string;
	mode: LockMode;
	statementTimeoutMs: number;
	/** In the migrations folder already (an earlier run wrote it). */
	exists: boolean;
	applied: boolean;
}

export interface Plan {
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
	/** The Prisma model's name. */
	model: string;
	/** --backfill was given (else --default). */
	backfill: boolean;
}

const SUFFIX: Record<StepKey, (t: string, c: string) => string> = {
	add: (t, c) => `add_${t}_${c}`,
	check: (t, c) => `${t}_${c}_not_null_check_not_valid`,
	validate: (t, c) => `${t}_${c}_validate_not_null_check`,
	not_null: (t, c) => `${t}_${c}_set_not_null`,
};

export const TITLES: Record<StepKey, string> = {
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

/** What the operator asked for. */
export interface FieldRequest {
	table: string;
	column: string;
	type: string;
	default?: string;
	backfill?: string;
}

/** The request from the flags: --table, --column (snake_case), --type, and --default or --backfill. */
export function fieldRequest(f: FlagValues): FieldRequest {
	const [table, column, type] = [f.table, f.column, f.type] as Array<
		string | undefined
	>;
	if (!table || !column || !type)
		throw usageError(
			"--table, --column and --type are required.",
			"Run with --help for an example.",
		);
	if ((f.default === undefined) === (f.backfill === undefined))
		throw usageError(
			"Pass either --default <expr> (the column keeps it) or --backfill <expr> (for existing rows only).",
		);
	if (!/^[a-z_][a-z0-9_]{0,62}$/.test(column))
		throw usageError(
			`--column ${column}: use a snake_case name (lower-case letters, digits, _), at most 63 characters.`,
		);
	const text = (v: unknown) => v as string | undefined;
	return {
		table,
		column,
		type,
		default: text(f.default),
		backfill: text(f.backfill),
	};
}

/**
 * The plan, checked before anything changes: the table, a clean history (but for this column's
 * own pending migrations), the model in schema.prisma, the type and default (in a rolled-back
 * transaction), the column as it is, and --backfill on every row to fill.
 */
export async function planRequiredColumn(
	db: Db,
	env: Record<string, string | undefined>,
	f: FieldRequest,
	r: Reporter,
): Promise<Plan> {
	const { column, type } = f;
	const table = await resolveTable(db, f.table);
	const history = await readHistory(db, migrationsDir(env));
	if (history.tableMissing) {
		throw refusal(
			"This database has no _prisma_migrations table: deploy its migrations first. Nothing was changed.",
		);
	}
	const ours = new Set(Object.values(SUFFIX).map((s) => s(table.name, column)));
	const isOurs = (name: string) => ours.has(name.slice(15));
	const issues = history.issues.filter(
		(i) => !(i.kind === "pending" && isOurs(i.migration)),
	);
	if (issues.length) {
		for (const i of issues) r.warn(`migration ${i.migration}: ${i.detail}`);
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
	const probe = await probeType(db, type, f.default);
	const prisma = prismaTypeOf(probe.type, enumsOf(schema));
	if (!prisma) {
		throw usageError(
			`--type ${type} (${probe.type}) has no plain Prisma type.`,
			"Use text, varchar(n), char(n), integer, smallint, bigint, boolean, double precision, real, numeric(p,s), timestamp(n), timestamptz(n), date, uuid, json, jsonb, bytea or an enum.",
		);
	}
	if (probe.isNull)
		throw usageError("--default gives NULL: a required column needs a value.");

	const existing = table.columns.get(column);
	const local = readLocalMigrations(migrationsDir(env));
	const found = (key: StepKey) =>
		local.find((m) => m.name.slice(15) === SUFFIX[key](table.name, column));
	const applied = new Set(finishedMigrations(history.applied));
	const columnExisted = existing !== undefined && !found("add");
	if (existing !== undefined && existing !== probe.type) {
		throw usageError(
			`${table.display}.${column} exists already, as ${existing}, not ${probe.type}.`,
		);
	}
	if (columnExisted && (await isNotNull(db, table.sql, column))) {
		throw refusal(
			`${table.display}.${column} exists and is NOT NULL already. Nothing was changed.`,
		);
	}
	if (columnExisted)
		r.log(`${table.display}.${column} exists (nullable): making it required.`);
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
	const fillExpr = f.backfill ?? "DEFAULT";
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
			r.log(
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
			mode: key === "validate" ? "SHARE UPDATE EXCLUSIVE" : "ACCESS EXCLUSIVE",
			statementTimeoutMs: key === "validate" ? 0 : 10_000,
			exists: Boolean(file),
			applied: Boolean(file && applied.has(file.name)),
		};
	});
	return {
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
		model: model.name,
		backfill: f.backfill !== undefined,
	};
}

export interface AppliedStep {
	step: string;
	migration: string;
	lock: LockReport;
}

/** Writes one of the four migrations (unless an earlier run did), applies it online and records it. */
export async function applyMigration(
	db: Db,
	plan: Plan,
	key: StepKey,
	o: Reporter & {
		env: Record<string, string | undefined>;
		signal: AbortSignal;
		settings: { lockTimeoutMs: number; retries: number };
	},
): Promise<AppliedStep> {
	const step = plan.steps.find((s) => s.key === key) as MigrationStep;
	const dir = migrationsDir(o.env);
	const migration: LocalMigration = step.exists
		? (readLocalMigrations(dir).find(
				(m) => m.name === step.name,
			) as LocalMigration)
		: writeMigrationFolder(dir, step.name, step.sql);
	if (!step.exists) o.log(`wrote ${displayPath(migration.path)}`);
	step.exists = true;
	const report = await applyOnline(db, {
		migration,
		tableSql: plan.tableSql,
		mode: step.mode,
		lockTimeoutMs: o.settings.lockTimeoutMs,
		statementTimeoutMs: step.statementTimeoutMs,
		retries: o.settings.retries,
		signal: o.signal,
		onRetry: (x) => {
			o.warn(
				`attempt ${x.attempt}: ${x.reason}; retrying in ${formatDuration(x.waitMs)}`,
			);
			for (const h of x.holders) o.log(`  held by ${h}`);
		},
	});
	step.applied = true;
	o.log(`applied and recorded in _prisma_migrations: ${step.name}`);
	o.log(
		`lock: ${report.mode} on ${plan.table.display}, waited ${formatDuration(report.waitedMs)}, held ${formatDuration(report.heldMs)}` +
			`${report.attempts > 1 ? ` (attempt ${report.attempts})` : ""}: ${LOCK_EFFECT[report.mode]}`,
	);
	return { step: TITLES[key], migration: step.name, lock: report };
}

/** The field's line in schema.prisma, optional or required. */
const expectedLine = (plan: Plan, optional: boolean) =>
	fieldLine(
		plan.field,
		plan.column,
		plan.prisma,
		optional,
		plan.storedDefault ? prismaDefaultOf(plan.storedDefault, plan.prisma) : "",
	);

/** Whether schema.prisma already has the field as it should be (spacing aside). */
export function schemaHasField(plan: Plan, optional: boolean): boolean {
	const model = findModel(readFileSync(SCHEMA_PATH, "utf8"), plan.table.name);
	const field = model && findField(model, plan.column);
	const squash = (l: string) => l.trim().replace(/\s+/g, " ");
	return Boolean(
		field && squash(field.line) === squash(expectedLine(plan, optional)),
	);
}

/** Puts the field into schema.prisma and lets `prisma format` align it, atomically. */
export async function updateSchema(
	plan: Plan,
	optional: boolean,
	o: Reporter & {
		target: Target;
		env: Record<string, string | undefined>;
		signal: AbortSignal;
	},
): Promise<void> {
	if (schemaHasField(plan, optional)) return;
	const line = expectedLine(plan, optional);
	await rewriteSchemaFile(
		o,
		(text) => upsertField(text, plan.table.name, plan.column, line),
		"the field",
	);
	o.log(`${displayPath(SCHEMA_PATH)}: ${line.trim()}`);
}

/** Whether the column is NOT NULL now. */
export async function isNotNull(
	db: Db,
	tableSql: string,
	column: string,
): Promise<boolean> {
	const r = await db.query<{ notnull: boolean }>(
		"select attnotnull as notnull from pg_attribute where attrelid = $1::regclass and attname = $2",
		[tableSql, column],
	);
	return Boolean(r.rows[0]?.notnull);
}

/**
 * Fills the NULL rows in short batches with the backfill engine (resuming its checkpoint); null
 * when no row needed it. Rows still NULL at the end (the app inserts without the column) are
 * counted in `remaining`.
 */
export async function fillColumn(
	db: Db,
	p: Plan,
	o: Reporter & {
		settings: { batchSize: number; targetBatchMs: number; sleepMs: number };
		verbose: boolean;
		signal: AbortSignal;
	},
	connect: () => Promise<Db>,
): Promise<BackfillResult | null> {
	const table = await resolveTable(db, `${p.table.schema}.${p.table.name}`);
	const job = defineJob(
		table,
		`${quoteIdent(p.column)} = ${p.fillExpr}`,
		`${quoteIdent(p.column)} IS NULL`,
		"add-required-field",
	);
	const cp = await readCheckpoint(db, job.id);
	if (!cp) {
		const n = await countMatching(db, job);
		if (n === 0) return null;
		o.log(`${fmt(n)} rows to fill`);
	}
	for (const line of describeBatch(job, {
		lockTimeoutMs: DEFAULTS.lockTimeoutMs,
		statementTimeoutMs: DEFAULTS.statementTimeoutMs,
	}).slice(2, 4)) {
		if (o.verbose) o.log(line);
	}
	await validateJob(db, job);
	const progress = fillProgress(o.log, "filled", (e) =>
		e.kind === "check" && e.remaining > 0
			? `${fmt(e.remaining)} rows are NULL again (inserted by the app meanwhile): catching up`
			: undefined,
	);
	try {
		const result = await runBackfill(job, {
			...DEFAULTS,
			batchSize: o.settings.batchSize,
			targetBatchMs: o.settings.targetBatchMs,
			sleepMs: o.settings.sleepMs,
			minBatchSize: Math.min(DEFAULTS.minBatchSize, o.settings.batchSize),
			mode: cp ? "resume" : "new",
			signal: o.signal,
			connect,
			onEvent: progress.onEvent,
		});
		progress.stop();
		o.log(
			`locks: ROW EXCLUSIVE on ${p.table.display} (blocks no reads or writes); each batch's rows locked until its commit, at most ${Math.round(result.longestBatchMs)}ms`,
		);
		return result;
	} finally {
		progress.stop();
	}
}

/** The field's line in schema.prisma as it is now, if there is one. */
export function schemaFieldLine(p: Plan): string | null {
	if (!existsSync(SCHEMA_PATH)) return null;
	const model = findModel(readFileSync(SCHEMA_PATH, "utf8"), p.table.name);
	return (model && findField(model, p.column)?.line.trim()) || null;
}

/** The problem when the column is still nullable (none when it is NOT NULL). */
export const nullable = async (db: Db, p: Plan): Promise<string[]> =>
	(await isNotNull(db, p.table.sql, p.column))
		? []
		: [`${p.column} is not NOT NULL`];

/** The plan's migrations and whether each is applied, for --json. */
export const migrations = (p: Plan) =>
	p.steps.map((s) => ({ name: s.name, applied: s.applied }));
