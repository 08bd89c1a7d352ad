// After a fix: read the history and the locks again, measure drift again when marking a migration
// changed what "applied" means, and carry over what a fix cannot have changed.

import type { Env } from "../config/env.ts";
import {
	driftDiagnoses,
	historyDiagnoses,
	lockDiagnoses,
} from "../messages/diagnose.ts";
import { readHistory } from "../migrations/history.ts";
import { migrationsDir } from "../migrations/prisma-cli.ts";
import { readActivity } from "../pg/blocking-tree.ts";
import type { Db } from "../pg/db.ts";
import { prismaLockHolders } from "../pg/sessions.ts";
import type { Target } from "../pg/target.ts";
import { type Diagnosis, unfinishedRows, type Where } from "./diagnosis.ts";
import { measureDrift } from "./drift.ts";
import { findStuckMigrations } from "./locks.ts";
import {
	busy,
	type Ctx,
	chosen,
	diagnoses,
	drift,
	show,
	where,
} from "./results.ts";

export interface Recheck {
	diagnoses: Diagnosis[];
	/** Drift measured again (empty when not measured, or none left). */
	drift: Diagnosis[];
	measured?: { against: string[]; databaseVsMigrations: string[] };
}

export async function recheck(
	run: { db: Db; target: Target; env: Env; signal: AbortSignal; where: Where },
	before: Diagnosis[],
	o: { reset: boolean; remeasure: boolean },
): Promise<Recheck> {
	const h = await readHistory(run.db, migrationsDir(run.env));
	const holders = await prismaLockHolders(run.db);
	const unfinished = unfinishedRows(h);
	const locks = findStuckMigrations(await readActivity(run.db), holders);
	const carried = before.filter(
		(d) =>
			(d.kind === "drift" && !o.reset && !o.remeasure) ||
			d.kind === "schema_drift" ||
			// A failed migration marked rolled back runs again on the next deploy: its NOT NULL problem stays.
			(d.kind === "required_field" && !o.reset),
	);
	const measured = o.remeasure
		? await measureDrift(run.target, run.env, h, run.signal)
		: undefined;
	const drift = measured
		? driftDiagnoses(
				measured,
				unfinished.map((r) => r.migration_name),
				run.where,
			)
		: [];
	return {
		diagnoses: [
			...historyDiagnoses(run.where, h, unfinished, holders),
			...lockDiagnoses(locks, run.where),
			...drift,
			...carried,
		],
		drift,
		measured,
	};
}

/** The conclude step's re-read after a fix, printed: titles of the history and locks, drift in full. */
export async function checkAgain(ctx: Ctx): Promise<Recheck> {
	const resolved = ["rolled-back", "applied"].includes(chosen(ctx)?.kind ?? "");
	const remeasure = resolved && drift(ctx).checked && !busy(ctx);
	const db = await ctx.db();
	const again = await recheck(
		{ ...ctx, db, where: where(ctx) },
		diagnoses(ctx),
		{ reset: ctx.has("reset"), remeasure },
	);
	for (const d of again.diagnoses)
		if (d.kind === "history" || d.kind.endsWith("_migration"))
			show(ctx, d, false);
	for (const d of again.drift) show(ctx, d);
	if (remeasure && again.drift.length === 0)
		ctx.log("No drift against the applied migrations any more.");
	return again;
}
