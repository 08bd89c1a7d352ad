// What troubleshoot may change, chosen by flag or interactively: mark a migration rolled back or
// applied, cancel or terminate the blocker of a hanging migration, reset a local database. Each
// choice is checked against what was found before anything runs.

import type { FlagValues } from "../kit/cli.ts";
import type { Choice } from "../kit/confirm.ts";
import { refusal, usageError } from "../kit/errors.ts";
import type { StepResult } from "../kit/runner.ts";
import { describeAction, TROUBLESHOOT } from "../messages/diagnose.ts";
import { readLocalMigrations } from "../migrations/history.ts";
import { displayPath, migrationsDir } from "../migrations/prisma-cli.ts";
import {
	planApplied,
	planRolledBack,
	type ResolvePlan,
} from "../migrations/resolve.ts";
import type { BlockNode } from "../pg/blocking-tree.ts";
import type { Db } from "../pg/db.ts";
import { cancelEffect } from "../pg/signal.ts";
import type { Target } from "../pg/target.ts";
import type { Diagnosis } from "./diagnosis.ts";
import { blockers, type Ctx, diagnoses, history, where } from "./results.ts";

export type Action =
	| { kind: "rolled-back" | "applied"; migration: string }
	| { kind: "cancel-blocker" | "terminate-blocker" | "reset" };

/** The action the flags ask for (one at most), or null; --resolve-applied must name a folder of `dir`. */
export function actionFromFlags(f: FlagValues, dir: string): Action | null {
	const chosen: Action[] = [];
	if (f["resolve-rolled-back"] !== undefined)
		chosen.push({
			kind: "rolled-back",
			migration: String(f["resolve-rolled-back"]),
		});
	if (f["resolve-applied"] !== undefined)
		chosen.push({ kind: "applied", migration: String(f["resolve-applied"]) });
	if (f["cancel-blocker"]) chosen.push({ kind: "cancel-blocker" });
	if (f["terminate-blocker"]) chosen.push({ kind: "terminate-blocker" });
	if (f.reset) chosen.push({ kind: "reset" });
	if (chosen.length > 1) {
		throw usageError(
			"Pass one action at a time: --resolve-rolled-back, --resolve-applied, --cancel-blocker, --terminate-blocker or --reset.",
		);
	}
	const action = chosen[0] ?? null;
	if (
		action?.kind === "applied" &&
		!readLocalMigrations(dir).some((m) => m.name === action.migration)
	)
		throw usageError(
			`The migration ${action.migration} could not be found in ${displayPath(dir)} (P3017). Nothing was changed.`,
			"Pass the whole folder name, e.g. 20241230000000_comprehensive_schema.",
		);
	return action;
}

/** Reset is for local development databases only. */
export function refuseReset(target: Target): void {
	if (target.isProduction) {
		throw refusal(
			"Reset drops every table and all data: refused because the target is marked production (RUNBOOK_ENV=production). Nothing was changed.",
			"Resolve the migration instead (--resolve-rolled-back / --resolve-applied), or restore a backup with the restore runbook.",
		);
	}
	if (!target.isLocal) {
		throw refusal(
			`Reset drops every table and all data: refused because ${target.direct.display} is not a local database. Nothing was changed.`,
			"Reset only runs against localhost, 127.0.0.0/8, ::1 or a unix socket. Resolve the migration instead.",
		);
	}
}

/** The choices the diagnoses allow, for the interactive menu (none: nothing to offer). */
export function choicesFor(
	diagnoses: Diagnosis[],
	blockers: BlockNode[],
	resettable: boolean,
): Choice[] {
	const out: Choice[] = [];
	for (const d of diagnoses) {
		if (
			(d.kind === "failed_migration" || d.kind === "unfinished_migration") &&
			d.migration
		) {
			out.push({
				value: `rolled-back:${d.migration}`,
				title: `Mark ${d.migration} rolled back`,
				description:
					"It changed nothing or you undid it; fix it, then deploy again",
			});
			out.push({
				value: `applied:${d.migration}`,
				title: `Mark ${d.migration} applied`,
				description: "You completed its changes by hand",
			});
		}
	}
	const pids = blockers.map((b) => b.pid).join(", ");
	if (blockers.some((b) => b.pid !== 0 && cancelEffect(b).releasesLocks)) {
		out.push({
			value: "cancel-blocker",
			title: `Cancel the blocking statement (pid ${pids})`,
		});
	}
	if (blockers.some((b) => b.pid !== 0)) {
		out.push({
			value: "terminate-blocker",
			title: `Terminate the blocking session (pid ${pids}), rolling back its transaction`,
		});
	}
	const needsReset = diagnoses.some(
		(d) =>
			d.problem &&
			["drift", "failed_migration", "unfinished_migration", "history"].includes(
				d.kind,
			),
	);
	if (needsReset && resettable) {
		out.push({
			value: "reset",
			title:
				"Reset this local database (drops all data, reapplies every migration)",
		});
	}
	if (out.length)
		out.push({
			value: "none",
			title: "Change nothing now",
			description: "The commands are printed above",
		});
	return out;
}

export function parseChoice(value: string): Action | null {
	if (value === "none") return null;
	const [kind, ...rest] = value.split(":");
	if (kind === "rolled-back" || kind === "applied")
		return { kind, migration: rest.join(":") };
	if (
		kind === "cancel-blocker" ||
		kind === "terminate-blocker" ||
		kind === "reset"
	)
		return { kind };
	return null;
}

/** The blockers a cancel or terminate hits (a cancel only those it would free). */
export const signalTargets = (
	blockers: BlockNode[],
	kind: "cancel" | "terminate",
) =>
	blockers.filter(
		(b) =>
			b.pid !== 0 && (kind === "terminate" || cancelEffect(b).releasesLocks),
	);

/** Checks that the action applies to what was found; for a resolve, its plan. */
export async function prepareAction(
	action: Action,
	found: {
		db: () => Promise<Db>;
		target: Target;
		migrationsDir: string;
		prismaHolders: number[];
		blockers: BlockNode[];
		confirmFlags: string;
	},
): Promise<ResolvePlan | undefined> {
	switch (action.kind) {
		case "rolled-back":
		case "applied": {
			const db = await found.db();
			const plan =
				action.kind === "rolled-back"
					? await planRolledBack(db, action.migration)
					: await planApplied(
							db,
							action.migration,
							readLocalMigrations(found.migrationsDir),
						);
			if (found.prismaHolders.length) {
				throw refusal(
					`A Prisma migration is running (pid ${found.prismaHolders.join(", ")} holds Prisma Migrate's lock): not changing _prisma_migrations under it. Nothing was changed.`,
					"Wait for it to end, or stop it first (see the lock diagnosis above).",
				);
			}
			return plan;
		}
		case "cancel-blocker":
		case "terminate-blocker": {
			const blockers = found.blockers.filter((b) => b.pid !== 0);
			if (blockers.length === 0) {
				throw refusal(
					"No migration is waiting for a lock held by a session: there is no blocker to cancel or terminate. Nothing was changed.",
					"npx tsx runbooks/monitor.ts shows every lock wait.",
				);
			}
			if (
				action.kind === "cancel-blocker" &&
				!blockers.some((b) => cancelEffect(b).releasesLocks)
			) {
				throw refusal(
					`Cancelling cannot free the migration: ${blockers.map((b) => `pid ${b.pid}: ${cancelEffect(b).note}`).join("; ")}. Nothing was changed.`,
					`Terminate it instead: ${TROUBLESHOOT} --terminate-blocker ${found.confirmFlags}`,
				);
			}
			return undefined;
		}
		case "reset":
			refuseReset(found.target);
			return undefined;
	}
}

/** The "choose" step: the action named by flag, else the operator's pick from what was found; checked and planned. */
export async function chooseAction(ctx: Ctx): Promise<StepResult> {
	let action = ctx.settings.action;
	const choices = action
		? []
		: choicesFor(diagnoses(ctx), blockers(ctx), where(ctx).resettable);
	if (choices.length > 1) {
		const question =
			"What do you want to do? (each choice shows its SQL and asks again)";
		action = parseChoice(await ctx.choose(question, choices, "none"));
	}
	if (!action) {
		const problems = diagnoses(ctx).some((d) => d.problem);
		if (problems)
			ctx.log(
				"Nothing will be changed. To act, run one of the commands printed above.",
			);
		return {
			summary: problems ? "no change chosen" : "nothing to resolve",
			value: { action },
		};
	}
	const plan = await prepareAction(action, {
		db: () => ctx.db(),
		target: ctx.target,
		migrationsDir: migrationsDir(ctx.env),
		prismaHolders: history(ctx).holders,
		blockers: blockers(ctx),
		confirmFlags: where(ctx).confirmFlags,
	});
	return {
		summary: `chosen: ${describeAction(action)}`,
		value: { action, plan },
	};
}
