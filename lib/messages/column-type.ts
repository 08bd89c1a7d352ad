// What change-column-type.ts and remove-enum-value.ts tell the operator: the plan (each statement
// with the lock it takes and how long), the refusal naming rows that do not convert, the header of
// the migrations they write, and what the database holds when a step stops.

import type { ChangePlan } from "../data/column-change.ts";
import type { ColumnChange, Unconvertible } from "../data/column-type.ts";
import type { EnumUsage } from "../data/enum-value.ts";
import type { PlannedMigration } from "../data/recorded-steps.ts";
import { formatCount as fmt } from "../kit/format.ts";
import { quoteIdent } from "../pg/db.ts";

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

/** One migration as a plan shows it: its folder, the lock and its cost, then its SQL. */
export function planOf(p: PlannedMigration): string[] {
	return [
		`-- ${p.name}/migration.sql${p.applied ? " (applied)" : ""}: ${p.mode}${p.concurrent ? " (CONCURRENTLY, outside a transaction)" : ""}, ${p.holds}`,
		p.sql.replace(/^--.*\n/gm, "").trim(),
	];
}

/** Why the runbook takes the direct or the online road. */
export function roadOf(
	c: ColumnChange,
	direct: boolean,
	smallTableMb: number,
): string {
	return direct
		? `${c.table} is small (${mb(c.bytes)}, under --small-table-mb ${smallTableMb}): one direct ALTER TABLE ... TYPE, which rewrites it under ACCESS EXCLUSIVE for about as long as a scan takes`
		: `${c.table} is ${mb(c.bytes)} (~${fmt(Math.max(0, c.estimatedRows))} rows): online, expand and contract (a new column kept in step by a trigger, filled in batches, swapped in)`;
}

/** The refusal when some rows do not convert (exit 3, before any change). */
export function unconvertibleMessage(
	c: ColumnChange,
	u: Unconvertible,
): string {
	return `${fmt(u.count)} row(s) of ${c.table} have a ${c.column} that does not convert to ${c.toType} (e.g. id ${u.examples.join(", ")}). Nothing was changed.`;
}

export const unconvertibleHint = (c: ColumnChange) =>
	`Fix those rows first (or pass --using with an expression that converts them), e.g.: select * from ${c.tableSql} where id in (...);`;

/** The first lines of each migration the runbook writes. */
export function migrationHeader(what: string, command: string): string {
	return [
		`-- ${what}.`,
		"-- Written by a runbook that applies these migrations one at a time (each lock short, with",
		"-- lock_timeout and retries) and fills the new column between them. Rerun it, not a plain migrate deploy:",
		`--   ${command.replace(/\n/g, " ")}`,
		"",
	].join("\n");
}

/** What the database holds after a step stopped midway. */
export function stoppedAt(
	planned: PlannedMigration[] | undefined,
	command: string,
): string | undefined {
	// Stopped before any folder was written (a refusal, bad input): the runner says nothing changed.
	if (!planned?.some((p) => p.exists)) return undefined;
	const applied = planned.filter((p) => p.applied).length;
	const swapped = planned.some(
		(p) => (p.phase === "swap" || p.phase === "direct") && p.applied,
	);
	return (
		`${applied} of ${planned.length} migrations are applied and recorded; each is one transaction (or one CONCURRENTLY build), so none is half done. ` +
		(swapped
			? "The swap is done: the column has its new type."
			: `The old column is untouched and still used by the app. Rerun to finish, or undo with: ${command} --abort`)
	);
}

/** The run's one-line result. */
export function changedSummary(p: ChangePlan): string {
	const c = p.change;
	return p.planned.length
		? `${c.table}.${c.column} is ${c.toType} (was ${c.fromType})${p.direct ? ", by a direct ALTER" : ", online"}`
		: `${c.table}.${c.column} was ${c.toType} already`;
}

/** The plan step's lines: the road, then each migration and where it stands. */
export function planLines(p: ChangePlan, smallTableMb: number): string[] {
	const c = p.change;
	return [
		p.planned.length
			? roadOf(c, p.direct, smallTableMb)
			: `${c.table}.${c.column} is ${c.toType} already`,
		...(p.planned.length && c.views.length
			? [
					`${c.views.length} view(s) read the column: ${c.views.map((v) => v.name).join(", ")}; dropped and created again (with their grants) in the ${p.direct ? "ALTER" : "swap"}'s transaction`,
				]
			: []),
		...p.planned.map(
			(m) =>
				`${m.applied ? "applied " : m.exists ? "written " : "to write"}  ${m.name}`,
		),
	];
}

/** The plan step's summary. */
export function planSummary(planned: PlannedMigration[]): string {
	const done = planned.filter((p) => p.applied).length;
	return planned.length
		? `${planned.length} migrations${done ? `, ${done} applied by an earlier run: carrying on` : ""}`
		: "nothing to do";
}

/** The fill as a plan shows it. */
export const fillPlan = (c: ColumnChange) => [
	`-- UPDATE ${c.tableSql} SET ${quoteIdent(c.newColumn)} = ${c.using} WHERE they differ, in primary-key batches of its own transaction each (ROW EXCLUSIVE: blocks no reads or writes; a checkpoint per batch)`,
];

/** --abort as a plan shows it. */
export const abortPlan = (c: ColumnChange) => [
	`-- one transaction under lock_timeout: DROP TRIGGER, DROP FUNCTION, ALTER TABLE ${c.tableSql} DROP COLUMN ${quoteIdent(c.newColumn)} (ACCESS EXCLUSIVE, a catalog change only);`,
	"-- DELETE their rows from _prisma_migrations; then their folders are removed",
];

export const CHANGE_COLUMN_TYPE_ABOUT =
	"Expand and contract: first every value is checked to convert (exit 3 naming rows if not, before any change);\n" +
	"then a column of the new type is added, kept in step by a trigger, filled in keyset batches (backfill engine),\n" +
	"given the old column's indexes (CREATE INDEX CONCURRENTLY), NOT NULL (CHECK NOT VALID, then VALIDATE), default,\n" +
	"unique, check and foreign-key constraints; one short transaction (lock_timeout, retries) drops the trigger and\n" +
	"the old column and renames the new one. Each schema change is a migration in prisma/migrations, recorded in\n" +
	"_prisma_migrations; schema.prisma gets the field's new type. A table under --small-table-mb takes one direct\n" +
	"ALTER TABLE ... TYPE instead. Rerun the same command after a failure or a kill; --abort undoes an unfinished run.\n" +
	"While it runs, the app's writes of a value that does not convert fail (the trigger converts each one).";

export const REMOVE_ENUM_VALUE_ABOUT =
	"PostgreSQL cannot drop an enum value, so the type is replaced: the rows using the value are counted in every\n" +
	"column of the type (in use without --replace-with: exit 3, nothing changed); with --replace-with they are moved\n" +
	"in keyset batches (backfill engine); then CREATE TYPE <enum>__new without the value, every column changed to it\n" +
	"as change-column-type.ts does (online on large tables, one direct ALTER under --small-table-mb), DROP TYPE <enum>\n" +
	"and RENAME the new one. Each schema change is a Prisma migration; schema.prisma's enum loses the value.\n" +
	"Deploy the app version that no longer writes the value first: its writes of the value fail once the column changes.";

/** The enum's values and, per column of its type, the rows holding the value. */
export function enumPlanLines(u: EnumUsage, value: string): string[] {
	if (!u.values.includes(value))
		return [`${u.name}: ${u.values.join(", ")} (${value} is gone)`];
	return [
		`${u.name}: ${u.values.join(", ")}`,
		...u.columns.map(
			(c) => `${c.table}.${c.column}: ${fmt(c.rows)} row(s) hold ${value}`,
		),
	];
}

/** The refusal while rows use the value and no replacement was named (exit 3). */
export function enumInUse(u: EnumUsage, value: string, rows: number): string {
	const where = u.columns
		.filter((c) => c.rows)
		.map((c) => `${c.table}.${c.column} (${fmt(c.rows)})`);
	return `${fmt(rows)} row(s) still hold ${u.name}.${value}: ${where.join(", ")}. Nothing was changed.`;
}
