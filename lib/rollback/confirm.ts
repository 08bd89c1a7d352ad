// The one confirmation of a rollback, after showing what it changes: for a restore, the rows
// written since the backup that it takes away; for --mode down, the data the down SQL drops.

import { formatMs } from "../kit/format.ts";
import * as say from "../messages/rollback.ts";
import { describeLoss } from "../migrations/down.ts";
import { showWhatRestoreTakes } from "./restore-preview.ts";
import type { Chosen, DownPlan } from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

export async function confirmRollback(ctx: RollbackCtx) {
	const s = ctx.settings;
	const t = ctx.target.direct;
	const { backup, safetyEntry, later } = ctx.result<Chosen>("choose");
	// The backup's keys per table: the safety step reads the new rows by them.
	const index =
		s.mode === "restore" ? await showWhatRestoreTakes(ctx) : undefined;
	if (ctx.dryRun)
		return {
			summary: "dry run: shown what the restore would take away",
			value: index,
		};
	ctx.log(
		`target:  ${t.display}${ctx.target.isProduction ? " [production]" : ""}`,
	);
	if (s.skipSafetyBackup)
		ctx.warn(
			"--skip-safety-backup: no backup of the current state will be taken; this rollback cannot be undone.",
		);
	if (s.mode === "put-back") {
		await ctx.confirmRun(
			say.confirmPutBack(
				backup?.manifest.id,
				safetyEntry?.manifest.id,
				t.display,
			),
		);
	} else if (s.mode === "down") {
		const losses = ctx.result<DownPlan>("down-sql").losses.map(describeLoss);
		ctx.log(
			`roll back: ${later.join(", ")} (down SQL above, one transaction, lock_timeout ${formatMs(s.lockTimeoutMs)})`,
		);
		await ctx.confirmRunDestructive(say.confirmDown(later, t.display, losses));
	} else if (backup) {
		const m = backup.manifest;
		ctx.log(
			`restore: ${m.id}, made ${say.when(m.created_at)} (${say.age(m.created_at)}), method ${s.method}`,
		);
		await ctx.confirmRunDestructive(say.confirmRestore(m, t.display));
	}
	return {
		summary: ctx.flags.yes
			? `confirmed with --yes --confirm ${t.database}`
			: "confirmed by the operator",
		value: index,
	};
}
