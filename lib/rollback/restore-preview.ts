// Restore mode, before it asks: per table, the rows written since the backup that the restore
// takes away, and what --mode down would do instead (keeping them).

import { backupDir } from "../backup/archive.ts";
import {
	appTables,
	type BackupIndex,
	byImportance,
	compareWithDatabase,
	describeChanges,
	indexBackup,
} from "../backup/row-changes.ts";
import { insertedNote } from "../messages/rollback.ts";
import { downInstead } from "./down-plan.ts";
import type { Chosen, Tools } from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

/** Shows what the restore takes away; returns the backup's keys per table (the safety step reads the new rows by them). */
export async function showWhatRestoreTakes(
	ctx: RollbackCtx,
): Promise<BackupIndex> {
	const chosen = ctx.result<Chosen>("choose");
	const m = chosen.backup?.manifest;
	const { pgRestore, psql } = ctx.result<Tools>("verify-backup");
	const opts = { env: ctx.env, signal: ctx.signal };
	const tables = await appTables(await ctx.db(), ["public"]);
	const archive = `${backupDir(ctx.env)}/${m?.archive}`;
	const index = await indexBackup(pgRestore, archive, tables, {
		...opts,
		compareWith: true,
	});
	const changes = byImportance(
		await compareWithDatabase(tables, index, psql, ctx.target.direct, opts),
	);
	for (const line of describeChanges(changes)) ctx.log(line);
	const inserted = changes.reduce((a, c) => a + c.inserted, 0);
	if (inserted) ctx.log(insertedNote(inserted, ctx.settings.keepNewRows));
	for (const line of await downInstead(ctx, chosen)) ctx.log(line);
	return index;
}
