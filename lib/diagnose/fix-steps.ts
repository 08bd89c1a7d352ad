// The steps that carry out the fix troubleshoot chose (by flag or from its menu): each skipped
// unless chosen, planned with its exact SQL or command, and saying what it leaves if it stops.

import type { Step } from "../kit/runner.ts";
import {
	resolvePlanLines,
	signalPlanLines,
	TROUBLESHOOT,
} from "../messages/diagnose.ts";
import { prismaCommand } from "../migrations/prisma-cli.ts";
import type { ResolveKind, ResolvePlan } from "../migrations/resolve.ts";
import type { SignalKind } from "../pg/signal.ts";
import { refuseReset, signalTargets } from "./actions.ts";
import {
	RESET_ARGS,
	resetDatabase,
	resolveMigration,
	signalBlockers,
} from "./fixes.ts";
import {
	blockers,
	type Ctx,
	chosen,
	history,
	resolvePlan,
	type Settings,
} from "./results.ts";

type FixStep = Step<unknown, Settings>;

const unlessChosen = (kind: string) => (ctx: Ctx) =>
	chosen(ctx)?.kind === kind ? false : "not chosen";

/** Marks a migration rolled back or applied in _prisma_migrations. */
export function resolveStep(
	kind: ResolveKind,
	title: string,
	check: string,
): FixStep {
	return {
		id: kind,
		title,
		kind: "change",
		skip: unlessChosen(kind),
		plan: (ctx) => {
			const p = resolvePlan(ctx);
			return p ? resolvePlanLines(p, ctx.settings.native) : [];
		},
		async run(ctx) {
			const p = resolvePlan(ctx) as ResolvePlan;
			const native = ctx.settings.native;
			await resolveMigration({ ...ctx, db: () => ctx.db() }, p, kind, native);
			const what = kind === "rolled-back" ? "rolled back" : "applied";
			if (kind === "rolled-back")
				ctx.log(
					`Next: fix prisma/migrations/${p.migration}/migration.sql or the data, then deploy; it runs again from the start.`,
				);
			return {
				summary: `${p.migration} marked ${what}${native ? " (by Prisma's CLI)" : ""}`,
				data: p,
				value: [`${p.migration} marked ${what}`],
			};
		},
		onFailure: () =>
			`_prisma_migrations is unchanged (the change runs in one transaction). ${check} ${TROUBLESHOOT} --skip-drift`,
	};
}

/** Cancels or terminates the sessions at the roots of the chains a migration waits in. */
export function signalStep(
	kind: SignalKind,
	title: string,
	stepKind: "change" | "destroy",
): FixStep {
	return {
		id: kind,
		title,
		kind: stepKind,
		skip: unlessChosen(`${kind}-blocker`),
		plan: (ctx) => signalPlanLines(signalTargets(blockers(ctx), kind), kind),
		async run(ctx) {
			const targets = signalTargets(blockers(ctx), kind);
			const results = await signalBlockers(await ctx.db(), targets, kind);
			return { summary: results.join("; "), data: results, value: results };
		},
		onFailure: () =>
			"The blocker may still be running: npx tsx runbooks/monitor.ts shows it.",
	};
}

/** prisma migrate reset, on a local database only. */
export function resetStep(title: string): FixStep {
	return {
		id: "reset",
		title,
		kind: "destroy",
		skip: unlessChosen("reset"),
		plan: (ctx) => [
			`-- drops every table, type and row in ${ctx.target.direct.display}, then applies all ${history(ctx).h.local.length} migrations`,
			prismaCommand(RESET_ARGS),
		],
		async run(ctx) {
			refuseReset(ctx.target);
			await resetDatabase(ctx);
			return {
				summary: `reset: ${history(ctx).h.local.length} migrations applied to an empty database`,
				value: ["reset"],
			};
		},
		onFailure: () =>
			"The database may be partly rebuilt: a rerun resets it again (or restore a backup instead).",
	};
}
