// The safety backup of the state a rollback replaces (the rollback itself can be undone), and the
// rows inserted since the restored backup, read while the database still holds them.

import { createVerifiedBackup, rollbackCommand } from "../backup/archive.ts";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { formatBytes } from "../kit/format.ts";
import { fmt } from "../messages/rollback.ts";
import { captureNewRows } from "./new-rows.ts";
import { sum } from "./restore-run.ts";
import { results, type Safety } from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

export async function takeSafetyBackup(ctx: RollbackCtx) {
	const { env, signal, log } = ctx;
	const r = await createVerifiedBackup(ctx.target.direct, {
		kind: "safety",
		env,
		signal,
		log,
	});
	const m = r.manifest;
	if (!r.ok)
		throw new RunbookError(
			`The safety backup ${m.id} failed verification (${r.problems[0]}). Nothing was rolled back.`,
			EXIT.failed,
			"Check BACKUP_DIR's disk, then rerun.",
		);
	ctx.log(`to undo the rollback later: ${rollbackCommand(m.id)}`);
	// Read now, while the database still holds them: the put-back step puts them back.
	const index = results(ctx).index;
	const value: Safety = {
		manifest: m,
		captured: index ? await captureNewRows(ctx, index) : undefined,
	};
	return {
		summary: `${m.id} (${formatBytes(m.size_bytes)}, ${fmt(sum(m.row_counts))} rows), verified`,
		data: m,
		value,
	};
}
