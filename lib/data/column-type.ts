// Changing a column's type on a large, busy table without rewriting it under ACCESS EXCLUSIVE:
// expand and contract. A column of the new type is added and kept in step by a trigger, filled by
// the backfill engine, given the old column's NOT NULL (CHECK NOT VALID, then VALIDATE), indexes
// (CONCURRENTLY) and constraints, then swapped in by one short transaction that drops the old
// column. Every schema change is a Prisma migration (written once, so a rerun replays the same
// plan); a small table takes one direct ALTER ... TYPE instead.

import { randomUUID } from "node:crypto";
import { sleep } from "../kit/duration.ts";
import { EXIT, RunbookError, refusal, usageError } from "../kit/errors.ts";
import type { LocalMigration } from "../migrations/history.ts";
import {
	enumsOf,
	findField,
	findModel,
	prismaTypeOf,
} from "../migrations/prisma-schema.ts";
import { type Db, quoteIdent, quoteLiteral } from "../pg/db.ts";
import { PRISMA_MIGRATE_LOCK } from "../pg/sessions.ts";
import { resolveTable } from "./backfill.ts";
import {
	createViews,
	type DependentView,
	dropViews,
	readDependentViews,
} from "./dependent-views.ts";
import type { LockMode } from "./online-ddl.ts";
import { sqlErrorIsBadInput } from "./sql-fragment.ts";

export interface ColumnChange {
	schema: string;
	table: string;
	/** The table as SQL names it (quoted, qualified outside public). */
	tableSql: string;
	column: string;
	newColumn: string;
	fromType: string;
	/** The old type is an enum: the views' casts to it follow the column to the new type. */
	fromEnum: boolean;
	/** The new type as format_type() prints it. */
	toType: string;
	/** SQL over the old column that gives the new value (default: the column itself). */
	using: string;
	usingGiven: boolean;
	notNull: boolean;
	default: string | null;
	bytes: number;
	estimatedRows: number;
	indexes: Array<{ name: string; def: string; constraint: string | null }>;
	constraints: Array<{ name: string; def: string }>;
	/** Views that read the column: dropped and created again where the type changes. */
	views: DependentView[];
}

export type Phase =
	| "expand"
	| "index"
	| "check"
	| "validate"
	| "swap"
	| "after"
	| "direct"
	| "create_type"
	| "drop_old_type";

/** One schema change, recorded as one Prisma migration. */
export interface SchemaStep {
	phase: Phase;
	/** Suffix of the migration's folder name. */
	suffix: string;
	sql: string;
	mode: LockMode;
	/** CREATE INDEX CONCURRENTLY: outside a transaction. */
	concurrent: boolean;
	/** What the lock costs, in the operator's terms. */
	holds: string;
}

const q = quoteIdent;
const cut = (s: string, n = 63) => s.slice(0, n);

/** The column and everything hanging on it; exit 2 for a bad table, column or type, 3 for what is not supported. */
export async function readColumnChange(
	db: Db,
	spec: {
		table: string;
		column: string;
		type: string;
		using?: string;
		probe?: boolean;
	},
): Promise<ColumnChange> {
	const dot = spec.table.indexOf(".");
	const [schema, table] =
		dot === -1
			? ["public", spec.table]
			: [spec.table.slice(0, dot), spec.table.slice(dot + 1)];
	const tableSql = schema === "public" ? q(table) : `${q(schema)}.${q(table)}`;
	const { rows } = await db.query(
		`select c.oid, a.attnum, format_type(a.atttypid, a.atttypmod) as type, a.attnotnull as notnull,
		        (select typtype = 'e' from pg_type where oid = a.atttypid) as enum,
		        pg_get_expr(d.adbin, d.adrelid) as def, pg_total_relation_size(c.oid)::float8 as bytes, c.reltuples::float8 as est
		   from pg_class c join pg_namespace n on n.oid = c.relnamespace
		   left join pg_attribute a on a.attrelid = c.oid and a.attname = $3 and not a.attisdropped and a.attnum > 0
		   left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
		  where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p')`,
		[schema, table, spec.column],
	);
	const r = rows[0];
	if (!r)
		throw usageError(
			`There is no table "${spec.table}" in this database.`,
			"Use the table's name in the database (the model's @@map), e.g. generated_videos.",
		);
	if (r.attnum === null)
		throw usageError(`${spec.table} has no column "${spec.column}".`);
	const toType =
		spec.probe === false ? spec.type : await probeType(db, spec.type);
	const deps = await db.query<{
		kind: string;
		name: string;
		def: string;
		constraint: string | null;
	}>(
		`select 'index' as kind, ic.relname as name, pg_get_indexdef(i.indexrelid) as def, con.conname as constraint
		   from pg_index i join pg_class ic on ic.oid = i.indexrelid
		   left join pg_constraint con on con.conindid = i.indexrelid and con.conrelid = i.indrelid and con.contype in ('p', 'u', 'x')
		  where i.indrelid = $1 and i.indexrelid in (select objid from pg_depend where refobjid = $1 and refobjsubid = $2 and classid = 'pg_class'::regclass)
		 union all
		 select case contype when 'p' then 'primary key' when 'x' then 'exclusion' else 'constraint' end, conname, pg_get_constraintdef(oid), null
		   from pg_constraint where conrelid = $1 and $2 = any(conkey) and contype in ('c', 'f', 'p', 'x')
		 union all
		 select 'referenced', conname || ' on ' || conrelid::regclass::text, '', null from pg_constraint where confrelid = $1 and $2 = any(confkey)
		 union all
		 select 'trigger', tgname, '', null from pg_trigger where tgrelid = $1 and not tgisinternal and $2 = any(tgattr) and tgname <> $3`,
		[r.oid, r.attnum, trigger({ table, column: spec.column })],
	);
	const blockers = deps.rows.filter((d) =>
		["primary key", "exclusion", "referenced", "trigger"].includes(d.kind),
	);
	if (blockers.length)
		throw refusal(
			`${spec.table}.${spec.column} has what this runbook does not carry over: ${blockers.map((b) => `${b.kind} ${b.name}`).join(", ")}. Nothing was changed.`,
			"Change those by hand in a migration of your own.",
		);
	const views = await readDependentViews(db, r.oid, r.attnum);
	const change: ColumnChange = {
		schema,
		table,
		tableSql,
		column: spec.column,
		newColumn: cut(`${spec.column}__new`),
		fromType: r.type,
		fromEnum: r.enum === true,
		toType,
		using: spec.using ?? q(spec.column),
		usingGiven: spec.using !== undefined,
		notNull: r.notnull,
		default: r.def,
		bytes: Number(r.bytes),
		estimatedRows: Number(r.est),
		indexes: deps.rows
			.filter((d) => d.kind === "index")
			.map((d) => ({ name: d.name, def: d.def, constraint: d.constraint })),
		constraints: deps.rows
			.filter((d) => d.kind === "constraint")
			.map((d) => ({ name: d.name, def: d.def })),
		views,
	};
	if (spec.using !== undefined && spec.probe !== false)
		await checkUsing(db, change);
	return change;
}

/** The type as PostgreSQL spells it; a usage error when it is none. */
async function probeType(db: Db, type: string): Promise<string> {
	await db.query("BEGIN; SET LOCAL lock_timeout = '5s'");
	try {
		await db.query(
			`CREATE TEMP TABLE runbook_type_probe (c ${type}) ON COMMIT DROP`,
		);
		const { rows } = await db.query(
			"select format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = 'runbook_type_probe'::regclass and attname = 'c'",
		);
		return rows[0].t;
	} catch (err) {
		if (sqlErrorIsBadInput(err))
			throw usageError(
				`--type ${type} is not a PostgreSQL type here: ${(err as Error).message}.`,
			);
		throw err;
	} finally {
		await db.query("ROLLBACK").catch(() => {});
	}
}

async function checkUsing(db: Db, c: ColumnChange): Promise<void> {
	try {
		await db.query(
			`EXPLAIN SELECT (${c.using})::${c.toType} FROM ${c.tableSql}`,
		);
	} catch (err) {
		if (sqlErrorIsBadInput(err))
			throw usageError(
				`--using is not valid SQL here: ${(err as Error).message}.`,
			);
		throw err;
	}
}

/** The value the new column gets, inside a PL/pgSQL function over a row `r` of the table. */
const convertedIn = (c: ColumnChange, row: string) =>
	c.usingGiven
		? `(SELECT ${c.using} FROM (SELECT ${row}.*) s)`
		: `${row}.${q(c.column)}`;

export interface Unconvertible {
	count: number;
	/** Primary keys (as text) of the first rows that do not convert. */
	examples: string[];
}

/**
 * Rows whose value does not convert (an error, a value too long for the new length, NULL for a
 * NOT NULL column), found by assigning each one to a variable of the new type (a full scan).
 */
export async function findUnconvertible(
	db: Db,
	c: ColumnChange,
): Promise<Unconvertible> {
	const key = (await resolveTable(db, `${c.schema}.${c.table}`)).key.map(
		(k) => k.name,
	);
	await db.query(
		"BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '5s'",
	);
	try {
		await db.query(
			`CREATE FUNCTION pg_temp.runbook_converts(r ${c.tableSql}) RETURNS boolean LANGUAGE plpgsql AS $f$
			 DECLARE v ${c.toType}; BEGIN v := ${convertedIn(c, "r")}; RETURN v IS NOT NULL OR ${c.notNull ? "false" : "true"} OR r.${q(c.column)} IS NULL;
			 EXCEPTION WHEN others THEN RETURN false; END $f$`,
		);
		const k = key.map((x) => `t.${q(x)}::text`).join(" || ', ' || ");
		const { rows } = await db.query(
			`select count(*)::int as n, (array_agg(${k} order by ${key.map((x) => `t.${q(x)}`).join(", ")}))[1:5] as ex
			   from ${c.tableSql} t where not pg_temp.runbook_converts(t)`,
		);
		return { count: rows[0].n, examples: rows[0].ex ?? [] };
	} finally {
		await db.query("ROLLBACK").catch(() => {});
	}
}

/** The old default, for the new type. */
function newDefault(c: ColumnChange): string | null {
	if (c.default === null) return null;
	// A number stays bare (as Prisma writes @default(0)); a quoted literal is cast to the new type.
	if (/^-?\d+(\.\d+)?$/.test(c.default))
		// For a string type, the number quoted: SET DEFAULT 0 on text stores (0)::text, which
		// Prisma reads as an expression, not as @default("0").
		return /^(text|character|char|varchar)/.test(c.toType)
			? `'${c.default}'`
			: c.default;
	const literal = /^('(?:[^']|'')*')::/.exec(c.default);
	return literal ? `${literal[1]}::${c.toType}` : `(${c.default})::${c.toType}`;
}

const trigger = (c: { table: string; column: string }) =>
	cut(`${c.table}_${c.column}_type_sync`);
const checkName = (c: ColumnChange) =>
	cut(`${c.table}_${c.column}_type_not_null`);
const newIndex = (name: string) => `${cut(name, 58)}__new`;
const AE = "ACCESS EXCLUSIVE" as const;
const SUE = "SHARE UPDATE EXCLUSIVE" as const;
const CATALOG = "a catalog change only: held for milliseconds";

/** Puts the new column's name where the old one is named in an index or constraint definition. */
function renameIn(def: string, c: ColumnChange): string {
	const bare = /^[a-z_][a-z0-9_$]*$/.test(c.column) ? `|\\b${c.column}\\b` : "";
	return def.replace(
		new RegExp(
			`${q(c.column).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}${bare}`,
			"g",
		),
		q(c.newColumn),
	);
}

/** The views as they are created again: where an enum is replaced, their literals name the new type. */
const viewsOf = (c: ColumnChange) =>
	c.fromEnum
		? c.views.map((v) => ({
				...v,
				select: v.select.replaceAll(`::${c.fromType}`, `::${c.toType}`),
			}))
		: c.views;

/** The migrations of an online change, in order (the backfill runs between expand and index). */
export function onlineSteps(c: ColumnChange): SchemaStep[] {
	const t = c.tableSql;
	const fn = `${c.schema === "public" ? "" : `${q(c.schema)}.`}${q(trigger(c))}`;
	const steps: SchemaStep[] = [
		{
			phase: "expand",
			suffix: "expand",
			mode: AE,
			concurrent: false,
			holds: CATALOG,
			sql:
				`ALTER TABLE ${t} ADD COLUMN ${q(c.newColumn)} ${c.toType};\n` +
				`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $f$\nBEGIN\n  NEW.${q(c.newColumn)} := ${convertedIn(c, "NEW")};\n  RETURN NEW;\nEND\n$f$;\n` +
				`CREATE TRIGGER ${q(trigger(c))} BEFORE INSERT OR UPDATE OF ${q(c.column)} ON ${t} FOR EACH ROW EXECUTE FUNCTION ${fn}();\n`,
		},
	];
	for (const [i, ix] of c.indexes.entries())
		steps.push({
			phase: "index",
			suffix: `index_${i + 1}`,
			mode: SUE,
			concurrent: true,
			holds: "blocks no reads or writes; scans the table",
			sql: `${renameIn(ix.def, c).replace(/^CREATE (UNIQUE )?INDEX \S+ ON/, (_m, u = "") => `CREATE ${u}INDEX CONCURRENTLY IF NOT EXISTS ${q(newIndex(ix.name))} ON`)};\n`,
		});
	if (c.notNull) {
		steps.push({
			phase: "check",
			suffix: "check_not_valid",
			mode: AE,
			concurrent: false,
			holds: `${CATALOG} (no scan)`,
			sql: `ALTER TABLE ${t} ADD CONSTRAINT ${q(checkName(c))} CHECK (${q(c.newColumn)} IS NOT NULL) NOT VALID;\n`,
		});
		steps.push({
			phase: "validate",
			suffix: "validate_check",
			mode: SUE,
			concurrent: false,
			holds: "blocks no reads or writes; scans the table",
			sql: `ALTER TABLE ${t} VALIDATE CONSTRAINT ${q(checkName(c))};\n`,
		});
	}
	const def = newDefault(c);
	const swap = [
		...dropViews(c.views),
		`DROP TRIGGER ${q(trigger(c))} ON ${t};`,
		`DROP FUNCTION ${fn}();`,
		`ALTER TABLE ${t} DROP COLUMN ${q(c.column)};`,
		`ALTER TABLE ${t} RENAME COLUMN ${q(c.newColumn)} TO ${q(c.column)};`,
		...(def
			? [`ALTER TABLE ${t} ALTER COLUMN ${q(c.column)} SET DEFAULT ${def};`]
			: []),
		...(c.notNull
			? [
					`ALTER TABLE ${t} ALTER COLUMN ${q(c.column)} SET NOT NULL;`,
					`ALTER TABLE ${t} DROP CONSTRAINT ${q(checkName(c))};`,
				]
			: []),
		...c.indexes.map((ix) =>
			ix.constraint
				? `ALTER TABLE ${t} ADD CONSTRAINT ${q(ix.constraint)} UNIQUE USING INDEX ${q(newIndex(ix.name))};`
				: `ALTER INDEX ${c.schema === "public" ? "" : `${q(c.schema)}.`}${q(newIndex(ix.name))} RENAME TO ${q(ix.name)};`,
		),
		...c.constraints.map(
			(k) => `ALTER TABLE ${t} ADD CONSTRAINT ${q(k.name)} ${k.def} NOT VALID;`,
		),
		...createViews(viewsOf(c)),
	];
	steps.push({
		phase: "swap",
		suffix: "swap",
		mode: AE,
		concurrent: false,
		holds: CATALOG,
		sql: `${swap.join("\n")}\n`,
	});
	for (const [i, k] of c.constraints.entries())
		steps.push({
			phase: "after",
			suffix: `validate_${i + 1}`,
			mode: SUE,
			concurrent: false,
			holds: "blocks no reads or writes; scans the table",
			sql: `ALTER TABLE ${t} VALIDATE CONSTRAINT ${q(k.name)};\n`,
		});
	return steps;
}

/** One ALTER ... TYPE: rewrites the table (and its indexes) under ACCESS EXCLUSIVE. */
export function directSteps(c: ColumnChange): SchemaStep[] {
	const col = `ALTER COLUMN ${q(c.column)}`;
	const def = newDefault(c);
	const parts = [
		...(def ? [`${col} DROP DEFAULT`] : []),
		`${col} TYPE ${c.toType}${c.usingGiven ? ` USING ${c.using}` : ""}`,
		...(def ? [`${col} SET DEFAULT ${def}`] : []),
	];
	return [
		{
			phase: "direct",
			suffix: "alter",
			mode: AE,
			concurrent: false,
			holds: "blocks every read and write while it rewrites the table",
			sql: [
				...dropViews(c.views),
				`ALTER TABLE ${c.tableSql}\n  ${parts.join(",\n  ")};`,
				...createViews(viewsOf(c)),
				"",
			].join("\n"),
		},
	];
}

/** The suffix that names one change's migrations: <table>_<column>_to_<type>_<step>. */
export const changeTag = (c: {
	table: string;
	column: string;
	toType: string;
}) =>
	cut(
		`${c.table}_${c.column}_to_${c.toType
			.replace(/[^a-z0-9]+/gi, "_")
			.replace(/^_|_$/g, "")
			.toLowerCase()}`,
		200,
	);

export interface Recorded {
	waitedMs: number;
	heldMs: number;
	attempts: number;
}

/**
 * CREATE INDEX CONCURRENTLY (which cannot run in a transaction), then its _prisma_migrations row. A
 * build a kill left INVALID is dropped first; IF NOT EXISTS makes a rerun after the build a no-op.
 */
export async function applyConcurrently(
	db: Db,
	m: LocalMigration,
	opts: {
		lockTimeoutMs: number;
		retries: number;
		signal?: AbortSignal;
		onRetry?: (attempt: number, waitMs: number) => void;
	},
): Promise<Recorded> {
	const name = /INDEX CONCURRENTLY IF NOT EXISTS ("(?:[^"]|"")+")/.exec(
		m.sql,
	)?.[1];
	for (let attempt = 1; ; attempt++) {
		const t0 = performance.now();
		try {
			await db.query(
				`SET lock_timeout = '${opts.lockTimeoutMs}ms'; SET statement_timeout = 0`,
			);
			const invalid = await db.query(
				"select 1 from pg_index where indexrelid = to_regclass($1) and not indisvalid",
				[name],
			);
			if (invalid.rowCount) await db.query(`DROP INDEX CONCURRENTLY ${name}`);
			await db.query(m.sql);
			await db.query("BEGIN");
			await db.query("select pg_advisory_xact_lock($1)", [PRISMA_MIGRATE_LOCK]);
			await db.query(
				`INSERT INTO public._prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at, started_at, applied_steps_count)
				 VALUES ($1, $2, clock_timestamp(), $3, NULL, NULL, clock_timestamp(), 1)`,
				[randomUUID(), m.checksum, m.name],
			);
			await db.query("COMMIT; RESET lock_timeout; RESET statement_timeout");
			return { waitedMs: 0, heldMs: performance.now() - t0, attempts: attempt };
		} catch (err) {
			await db
				.query("ROLLBACK; RESET lock_timeout; RESET statement_timeout")
				.catch(() => {});
			if (
				(err as { code?: string }).code !== "55P03" ||
				attempt > opts.retries ||
				opts.signal?.aborted
			)
				throw err;
			const waitMs = Math.min(1000 * attempt, 10_000);
			opts.onRetry?.(attempt, waitMs);
			await sleep(waitMs, opts.signal);
		}
	}
}

/**
 * --abort before the swap: the new column (with its indexes and check), the trigger and its
 * function go, and the migrations that made them leave _prisma_migrations, in one transaction.
 */
export async function abortChange(
	db: Db,
	c: ColumnChange,
	migrations: string[],
	lockTimeoutMs: number,
	retries: number,
): Promise<void> {
	const fn = `${c.schema === "public" ? "" : `${q(c.schema)}.`}${q(trigger(c))}`;
	for (let attempt = 1; ; attempt++) {
		try {
			await db.query(`BEGIN; SET LOCAL lock_timeout = '${lockTimeoutMs}ms'`);
			await db.query(
				`DROP TRIGGER IF EXISTS ${q(trigger(c))} ON ${c.tableSql}; DROP FUNCTION IF EXISTS ${fn}(); ALTER TABLE ${c.tableSql} DROP COLUMN IF EXISTS ${q(c.newColumn)}`,
			);
			await db.query(
				`DELETE FROM public._prisma_migrations WHERE migration_name = ANY($1)`,
				[migrations],
			);
			await db.query("COMMIT");
			return;
		} catch (err) {
			await db.query("ROLLBACK").catch(() => {});
			if ((err as { code?: string }).code !== "55P03" || attempt > retries)
				throw new RunbookError(
					`--abort could not take the lock on ${c.table}: ${(err as Error).message}. Nothing was undone.`,
					EXIT.failed,
				);
			await sleep(Math.min(1000 * attempt, 10_000));
		}
	}
}

export const quoteList = (values: string[]) =>
	values.map(quoteLiteral).join(", ");

/** schema.prisma with the column's field given the Prisma type of `sqlType` (other attributes kept). */
export function retypeField(
	schema: string,
	table: string,
	column: string,
	sqlType: string,
): string {
	const model = findModel(schema, table);
	const field = model && findField(model, column);
	if (!field)
		throw refusal(
			`No field of schema.prisma maps to ${table}.${column}. Nothing was changed.`,
		);
	const prisma = prismaTypeOf(sqlType, enumsOf(schema));
	if (!prisma)
		throw refusal(
			`Prisma has no plain type for ${sqlType}. Nothing was changed.`,
			"Pick a type Prisma maps (see its PostgreSQL type mapping).",
		);
	const line = retypeDefault(
		field.line
			.replace(/^(\s+\w+\s+)\w+/, `$1${prisma.type}`)
			.replace(/\s*@db\.\w+(\([^)]*\))?/, ""),
		prisma.type,
	);
	return schema.replace(
		field.line,
		`${line}${prisma.native ? ` ${prisma.native}` : ""}`,
	);
}

/** A literal @default in the new type's spelling: @default(0) for a String is @default("0"), and back. */
function retypeDefault(line: string, prismaType: string): string {
	if (prismaType === "String")
		return line.replace(
			/@default\((-?\d+(?:\.\d+)?|true|false)\)/,
			'@default("$1")',
		);
	if (/^(Int|BigInt|Float|Decimal)$/.test(prismaType))
		return line.replace(/@default\("(-?\d+(?:\.\d+)?)"\)/, "@default($1)");
	return line;
}
