// Carrying out the chosen fix, under the run lock: mark a migration rolled back or applied (on
// _prisma_migrations directly, or through Prisma's CLI with its native engine), signal the
// blockers of a hanging migration, reset a local database with prisma migrate reset.

import type { Env } from "../config/env.ts";
import { RunbookError } from "../kit/errors.ts";
import { acquireRunLock } from "../kit/run-lock.ts";
import { TROUBLESHOOT } from "../messages/diagnose.ts";
import { prismaErrorText, runPrisma } from "../migrations/prisma-cli.ts";
import {
	applyResolve,
	type ResolveKind,
	type ResolvePlan,
	resolveArgs,
} from "../migrations/resolve.ts";
import type { BlockNode } from "../pg/blocking-tree.ts";
import type { Db } from "../pg/db.ts";
import { type SignalKind, signalSession } from "../pg/signal.ts";
import type { Target } from "../pg/target.ts";

export const RESET_ARGS = ["migrate", "reset", "--force", "--skip-generate"];

interface Run {
	target: Target;
	env: Env;
	signal: AbortSignal;
	/** Registers cleanup for the end of the run (the run lock's release). */
	defer: (fn: () => Promise<void>) => void;
}

async function lockRun(run: Run): Promise<void> {
	const lock = await acquireRunLock(run.target.direct, "troubleshoot");
	run.defer(() => lock.release());
}

export async function resolveMigration(
	run: Run & { db: () => Promise<Db> },
	plan: ResolvePlan,
	kind: ResolveKind,
	native: boolean,
): Promise<void> {
	await lockRun(run);
	if (!native) return applyResolve(await run.db(), plan);
	const r = await runPrisma(
		resolveArgs(kind, plan.migration),
		run.target,
		{ ...run.env, PRISMA_ENGINE: "native" },
		run.signal,
	);
	if (r.exitCode !== 0) {
		throw new RunbookError(
			`prisma migrate resolve failed: ${prismaErrorText(r).split("\n").slice(0, 4).join(" ")}`,
			1,
			`Without --engine-native this runbook makes the same change itself: ${TROUBLESHOOT} --resolve-${kind} ${plan.migration}`,
		);
	}
}

/** Signals each blocker; one line a session saying how it ended. */
export async function signalBlockers(
	db: Db,
	targets: BlockNode[],
	kind: SignalKind,
): Promise<string[]> {
	const results: string[] = [];
	for (const b of targets) {
		const r = await signalSession(db, b.pid, kind);
		results.push(
			`pid ${b.pid} ${kind === "cancel" ? "cancelled" : "terminated"} (${r.after ? `now ${r.after.state}` : "gone"})`,
		);
	}
	return results;
}

export async function resetDatabase(run: Run): Promise<void> {
	await lockRun(run);
	const r = await runPrisma(RESET_ARGS, run.target, run.env, run.signal);
	if (r.exitCode !== 0)
		throw new RunbookError(
			`prisma migrate reset failed: ${prismaErrorText(r).split("\n").slice(0, 6).join(" ")}`,
		);
}
