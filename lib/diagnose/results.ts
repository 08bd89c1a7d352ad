// What troubleshoot's steps hand forward, read back by step id: the history, the locks, drift,
// the diagnoses so far, the chosen action and what the fixes did; and the run's --json summary.

import type { Context, StepResult } from "../kit/runner.ts";
import {
	describeAction,
	diagnosisLines,
	findingsSummary,
} from "../messages/diagnose.ts";
import type { History } from "../migrations/history.ts";
import { displayPath, migrationsDir } from "../migrations/prisma-cli.ts";
import type { ResolvePlan } from "../migrations/resolve.ts";
import type { ActivitySnapshot } from "../pg/blocking-tree.ts";
import type { Action } from "./actions.ts";
import type { Diagnosis, unfinishedRows, Where } from "./diagnosis.ts";
import { type DriftCheck, NOT_CHECKED } from "./drift.ts";
import { type LockFindings, migrationBusy } from "./locks.ts";

export interface Settings {
	action: Action | null;
	native: boolean;
	skipDrift: boolean;
}
export type Ctx = Context<unknown, Settings>;
/** The "history" step's value. */
export interface HistoryRead {
	h: History;
	unfinished: ReturnType<typeof unfinishedRows>;
	holders: number[];
}
/** The "conclude" step's value. */
export interface Concluded {
	remaining: Diagnosis[];
	drift?: { against: string[]; databaseVsMigrations: string[] };
}

const q = (name: string) =>
	/^[\w.-]+$/.test(name) ? name : `'${name.replace(/'/g, "'\\''")}'`;
export const where = (ctx: Ctx): Where => ({
	migrationsDir: displayPath(migrationsDir(ctx.env)),
	resettable: ctx.target.isLocal && !ctx.target.isProduction,
	confirmFlags: `--yes --confirm ${q(ctx.target.direct.database)}`,
});
export const history = (ctx: Ctx) => ctx.result<HistoryRead>("history");
export const blockers = (ctx: Ctx) =>
	ctx.has("locks")
		? ctx.result<{ locks: LockFindings }>("locks").locks.roots
		: [];
/** A migration session was seen running or waiting (Prisma's introspection would queue behind it). */
export const busy = (ctx: Ctx) =>
	migrationBusy(
		ctx.result<{ s: ActivitySnapshot }>("locks").s,
		history(ctx).holders,
	);
export const drift = (ctx: Ctx) =>
	ctx.has("drift")
		? ctx.result<{ drift: DriftCheck }>("drift").drift
		: NOT_CHECKED;
export const chosen = (ctx: Ctx) =>
	ctx.has("choose")
		? ctx.result<{ action: Action | null }>("choose").action
		: ctx.settings.action;
export const resolvePlan = (ctx: Ctx) =>
	ctx.result<{ plan?: ResolvePlan }>("choose").plan;
export const diagnoses = (ctx: Ctx) =>
	["history", "locks", "drift", "required"].flatMap((id) =>
		ctx.has(id) ? ctx.result<{ diagnoses: Diagnosis[] }>(id).diagnoses : [],
	);
export const doneSoFar = (ctx: Ctx) =>
	["rolled-back", "applied", "cancel", "terminate", "reset"].flatMap((id) =>
		ctx.has(id) ? ctx.result<string[]>(id) : [],
	);

/** Prints a step's diagnoses; the verdict comes at the end, so a problem here is a warning. */
export function report(
	ctx: Ctx,
	found: Diagnosis[],
	ok: string,
	data: unknown,
	value: object = {},
): StepResult {
	for (const d of found) show(ctx, d);
	return {
		...findingsSummary(found, ok),
		data,
		value: { ...value, diagnoses: found },
	};
}

export function show(ctx: Ctx, d: Diagnosis, full = true): void {
	(d.problem ? ctx.warn : ctx.log)(d.title);
	if (full) for (const l of diagnosisLines(d)) ctx.log(l);
}

/** The --json summary's fields. */
export function summary(ctx: Ctx, ok: boolean): Record<string, unknown> {
	const end = ctx.has("conclude")
		? ctx.result<Concluded>("conclude")
		: undefined;
	const action = chosen(ctx);
	return {
		healthy: ok && (end?.remaining.length ?? 0) === 0,
		action: action ? { ...action, description: describeAction(action) } : null,
		done: doneSoFar(ctx),
		diagnoses: diagnoses(ctx),
		remaining: (end?.remaining ?? []).map((d) => d.title),
		drift: end?.drift
			? { ...drift(ctx), checked: true, ...end.drift }
			: drift(ctx),
		latest_applied: ctx.has("history") ? history(ctx).h.latestApplied : null,
	};
}
