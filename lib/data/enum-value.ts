// Removing a value from an enum type: PostgreSQL has no ALTER TYPE ... DROP VALUE, so a new type
// without the value replaces it: CREATE TYPE E__new, every column of type E changed to it (online
// or directly, by the column-type machinery), DROP TYPE E, ALTER TYPE E__new RENAME TO E.

import { refusal, usageError } from "../kit/errors.ts";
import type { Context } from "../kit/runner.ts";
import { type Db, quoteIdent, quoteLiteral } from "../pg/db.ts";
import { type ChangePlan, planColumnChange } from "./column-change.ts";
import type { SchemaStep } from "./column-type.ts";
import { type PlannedMigration, planMigrations } from "./recorded-steps.ts";

export interface EnumColumn {
	schema: string;
	table: string;
	column: string;
	/** Rows holding the value. */
	rows: number;
}

export interface EnumUsage {
	name: string;
	/** The type as SQL names it, quoted. */
	sql: string;
	newSql: string;
	values: string[];
	columns: EnumColumn[];
}

/** The enum, its values and every column of its type with the rows holding `value`; exit 2 for bad names. */
export async function readEnumUsage(
	db: Db,
	name: string,
	value: string,
	replaceWith?: string,
): Promise<EnumUsage> {
	const t = await db.query(
		"select oid from pg_type where typname = $1 and typtype = 'e'",
		[name],
	);
	if (!t.rowCount)
		throw usageError(`There is no enum type "${name}" in this database.`);
	const oid = t.rows[0].oid;
	const labels = await db.query(
		"select enumlabel as v from pg_enum where enumtypid = $1 order by enumsortorder",
		[oid],
	);
	const values: string[] = labels.rows.map((r) => r.v);
	const sql = quoteIdent(name);
	const newSql = quoteIdent(`${name}__new`);
	const exists = await db.query("select 1 from pg_type where typname = $1", [
		`${name}__new`,
	]);
	if (!values.includes(value) && !exists.rowCount)
		return { name, sql, newSql, values, columns: [] };
	if (
		replaceWith !== undefined &&
		(replaceWith === value || !values.includes(replaceWith))
	)
		throw usageError(
			`--replace-with ${replaceWith} is not another value of ${name} (${values.join(", ")}).`,
		);
	const arrays = await db.query(
		"select 1 from pg_attribute a join pg_type t on t.oid = a.atttypid where t.typelem = $1 and not a.attisdropped and a.attnum > 0",
		[oid],
	);
	if (arrays.rowCount)
		throw refusal(
			`A column holds arrays of ${name}: this runbook changes plain columns only. Nothing was changed.`,
		);
	// A view that names the value could not be created again over the new type.
	const naming = await db.query<{ name: string }>(
		`select distinct r.ev_class::regclass::text as name from pg_depend d join pg_rewrite r on r.oid = d.objid
		  where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_type'::regclass and d.refobjid = $1
		    and strpos(pg_get_viewdef(r.ev_class), $2) > 0 order by 1`,
		[oid, `${quoteLiteral(value)}::${sql}`],
	);
	if (naming.rowCount)
		throw refusal(
			`${naming.rows.map((r) => `View ${r.name}`).join(", ")} names ${value}. Nothing was changed.`,
			`Change the view so it no longer names ${value} (a migration of its own), then rerun.`,
		);
	const cols = await db.query(
		`select n.nspname as schema, c.relname as table, a.attname as column, pg_get_expr(d.adbin, d.adrelid) as def
		   from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
		   left join pg_attrdef d on d.adrelid = c.oid and d.adnum = a.attnum
		  where a.atttypid = $1 and c.relkind in ('r', 'p') and not a.attisdropped and a.attnum > 0 order by 1, 2, 3`,
		[oid],
	);
	const columns: EnumColumn[] = [];
	for (const c of cols.rows) {
		if (c.def === `${quoteLiteral(value)}::${sql}`)
			throw refusal(
				`${c.table}.${c.column} defaults to ${value}. Nothing was changed.`,
				"Change that default first (a migration of its own), then rerun.",
			);
		const n = await db.query(
			`select count(*)::int as n from ${quoteIdent(c.schema)}.${quoteIdent(c.table)} where ${quoteIdent(c.column)} = ${quoteLiteral(value)}`,
		);
		columns.push({
			schema: c.schema,
			table: c.table,
			column: c.column,
			rows: n.rows[0].n,
		});
	}
	return { name, sql, newSql, values, columns };
}

/** The two migrations around the column changes: the new type, then the old one's replacement. */
export function enumTypeSteps(u: EnumUsage, value: string): SchemaStep[] {
	const kept = u.values.filter((v) => v !== value).map(quoteLiteral);
	const base = {
		mode: "SHARE UPDATE EXCLUSIVE" as const,
		concurrent: false,
		holds: "a catalog change only: held for milliseconds",
	};
	return [
		{
			...base,
			phase: "create_type",
			suffix: "create_type",
			sql: `CREATE TYPE ${u.newSql} AS ENUM (${kept.join(", ")});\n`,
		},
		{
			...base,
			phase: "drop_old_type",
			suffix: "drop_old_type",
			sql: `DROP TYPE ${u.sql};\nALTER TYPE ${u.newSql} RENAME TO ${u.sql};\n`,
		},
	];
}

/** schema.prisma without the value in the enum's block. */
export function removeEnumValue(
	schema: string,
	name: string,
	value: string,
): string {
	const block = new RegExp(
		`(^enum\\s+${name}\\s*\\{[^}]*?)^\\s+${value}\\b[^\\n]*\\n`,
		"m",
	);
	return schema.replace(block, "$1");
}

/** What planning needs: the run, the usage read first, the settings and the migrations' header. */
export interface EnumRun {
	ctx: Pick<Context, "db" | "env">;
	u: EnumUsage;
	s: { enum: string; value: string; smallTableMb: number };
	header: (what: string) => string;
}

const tagOf = (r: EnumRun, part: string) =>
	`${r.s.enum}_without_${r.s.value}_${part}`
		.toLowerCase()
		.replace(/[^a-z0-9_]+/g, "_");

/**
 * One side of the type swap (0: create the new type, 1: drop the old one), planned or found. Each is
 * planned when its step comes, so its migration sorts after the column changes before it.
 */
export async function planEnumType(
	r: EnumRun,
	side: 0 | 1,
): Promise<PlannedMigration[]> {
	return planMigrations(
		await r.ctx.db(),
		r.ctx.env,
		tagOf(r, side ? "old_type" : "new_type"),
		() => [enumTypeSteps(r.u, r.s.value)[side]],
		r.header(`Remove ${r.s.value} from ${r.s.enum}`),
	);
}

/** Each column of the type, changed to the new type as change-column-type.ts would. */
export async function planEnumColumns(r: EnumRun): Promise<ChangePlan[]> {
	const plans: ChangePlan[] = [];
	for (const c of r.u.columns)
		plans.push(
			await planColumnChange(await r.ctx.db(), r.ctx.env, {
				...r.s,
				header: r.header,
				table: `${c.schema}.${c.table}`,
				column: c.column,
				type: r.u.newSql,
				using: `${quoteIdent(c.column)}::text::${r.u.newSql}`,
				probe: false,
			}),
		);
	return plans;
}

/** The table whose lock the type migrations take (a weak one: it blocks no reads or writes). */
export const lockTableOf = (u: EnumUsage) =>
	u.columns.length
		? `${quoteIdent(u.columns[0].schema)}.${quoteIdent(u.columns[0].table)}`
		: "public._prisma_migrations";
