// One column's type change as both runbooks drive it: the plan (the column, the road, its
// migrations, written or to write), what is left of it, and --abort.

import { readFileSync } from "node:fs";
import { EXIT, RunbookError, refusal } from "../kit/errors.ts";
import type { Context, Step } from "../kit/runner.ts";
import { planOf } from "../messages/column-type.ts";
import { SCHEMA_PATH } from "../migrations/prisma-cli.ts";
import type { Db } from "../pg/db.ts";
import { type FillOptions, fillNewColumn } from "./column-fill.ts";
import {
	abortChange,
	type ColumnChange,
	changeTag,
	directSteps,
	onlineSteps,
	type Phase,
	readColumnChange,
	retypeField,
} from "./column-type.ts";
import {
	applyPhases,
	type Io,
	type PlannedMigration,
	planMigrations,
	removePlanned,
} from "./recorded-steps.ts";

export interface ChangePlan {
	change: ColumnChange;
	planned: PlannedMigration[];
	direct: boolean;
}

export interface ChangeSpec {
	table: string;
	column: string;
	type: string;
	using?: string;
	/** false when the type does not exist yet (an enum's replacement, created by an earlier migration). */
	probe?: boolean;
	smallTableMb: number;
	/** Check first that schema.prisma has a field for the column and a Prisma type for the new type. */
	checkSchema?: boolean;
	/** The migrations' first lines, given what they do. */
	header: (what: string) => string;
}

/** Reads the column and plans its migrations (an earlier run's, when it wrote them). */
export async function planColumnChange(
	db: Db,
	env: Io["env"],
	s: ChangeSpec,
): Promise<ChangePlan> {
	const change = await readColumnChange(db, s);
	if (s.checkSchema)
		retypeField(
			readFileSync(SCHEMA_PATH, "utf8"),
			change.table,
			change.column,
			change.toType,
		);
	const small = change.bytes < s.smallTableMb * 1024 * 1024;
	const what = `Change ${change.table}.${change.column} from ${change.fromType} to ${change.toType}`;
	let planned = await planMigrations(
		db,
		env,
		changeTag(change),
		() => (small ? directSteps(change) : onlineSteps(change)),
		s.header(what),
	);
	if (!planned.some((p) => p.exists) && change.fromType === change.toType)
		planned = [];
	return { change, planned, direct: planned.some((p) => p.phase === "direct") };
}

export const pendingOf = (p: ChangePlan, phases: Phase[]) =>
	p.planned.filter((m) => phases.includes(m.phase) && !m.applied);
export const appliedOf = (p: ChangePlan, phases: Phase[]) =>
	p.planned.some((m) => phases.includes(m.phase) && m.applied);
export const swapped = (p: ChangePlan) => appliedOf(p, ["swap", "direct"]);

export interface LockSettings {
	lockTimeoutMs: number;
	retries: number;
}

/** Applies what is left of the phases; the summary says what was applied and the longest lock. */
export const applyLeft = (
	io: Io,
	p: ChangePlan,
	phases: Phase[],
	s: LockSettings,
) => applyPhases(io, p.planned, phases, { ...s, tableSql: p.change.tableSql });

/** Fills the new column; an error when rows still differ (the app keeps writing values that differ). */
export async function fill(
	io: Io,
	p: ChangePlan,
	opts: FillOptions,
): Promise<string> {
	const r = await fillNewColumn(io, p.change, opts);
	if (r.remaining > 0)
		throw new RunbookError(
			`${r.remaining} rows of ${p.change.table} still differ after the catch-up rounds.`,
			EXIT.failed,
			"Rerun the same command.",
		);
	return `${r.updatedThisRun.toLocaleString("en-US")} rows converted in ${Math.round(r.elapsedMs)}ms, longest batch ${Math.round(r.longestBatchMs)}ms`;
}

/** Every phase in order, the fill between expand and the indexes (remove-enum-value, per column). */
export async function runWholeChange(
	io: Io,
	p: ChangePlan,
	s: LockSettings & { fill: FillOptions },
): Promise<void> {
	await applyLeft(io, p, ["expand", "direct"], s);
	if (!p.direct && !swapped(p))
		io.log(`${p.change.column}: ${await fill(io, p, s.fill)}`);
	await applyLeft(io, p, ["index", "check", "validate", "swap", "after"], s);
}

/** --abort: undoes what an unfinished run applied; refused once the swap is done. */
export async function undoColumnChange(
	io: Io,
	p: ChangePlan,
	s: LockSettings,
): Promise<string> {
	if (swapped(p))
		throw refusal(
			`The swap is done: ${p.change.table}.${p.change.column} has its new type. Change it back with another run.`,
		);
	await abortChange(
		await io.db(),
		p.change,
		p.planned.map((m) => m.name),
		s.lockTimeoutMs,
		s.retries,
	);
	removePlanned(io, p.planned);
	return `${p.planned.length} migration(s) undone and removed; ${p.change.table}.${p.change.column} is as it was`;
}

/** A runbook step that applies what is left of some phases (skipped when nothing is), its plan the SQL. */
export function phaseStep<P extends LockSettings>(
	title: string,
	phases: Phase[],
	plan: (ctx: Context<unknown, P>) => ChangePlan,
	extra: Partial<Step<unknown, P>> = {},
): Step<unknown, P> {
	return {
		title,
		kind: "change",
		skip: (ctx) =>
			pendingOf(plan(ctx), phases).length ? false : "nothing to apply",
		plan: (ctx) => pendingOf(plan(ctx), phases).flatMap(planOf),
		run: async (ctx) => ({
			summary: await applyLeft(ctx, plan(ctx), phases, ctx.settings),
		}),
		...extra,
	};
}
