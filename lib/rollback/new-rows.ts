// The rows inserted since the backup: read from the database just before the restore (or, with
// --put-back, from the safety backup), then put back in one transaction, now or later.

import type { BackupEntry } from "../backup/archive.ts";
import { backupDir } from "../backup/archive.ts";
import { putBackCommand, putBackRows } from "../backup/keep-new-rows.ts";
import {
	appTables,
	type BackupIndex,
	indexBackup,
	type NewRows,
	newRowsInArchive,
	newRowsInDatabase,
} from "../backup/row-changes.ts";
import * as say from "../messages/rollback.ts";
import type { Db } from "../pg/db.ts";
import type { Chosen, PutBackOutcome, Safety, Tools } from "./results.ts";
import { type RollbackCtx, SCRIPT } from "./settings.ts";

/** The safety step: read the new rows now, while the database still holds them. */
export async function captureNewRows(
	ctx: RollbackCtx,
	index: BackupIndex,
): Promise<NewRows[]> {
	const { psql } = ctx.result<Tools>("verify-backup");
	const db = await ctx.db();
	return newRowsInDatabase(
		await appTables(db, ["public"]),
		index,
		db,
		psql,
		ctx.target.direct,
		{
			env: ctx.env,
			signal: ctx.signal,
			// Only rows written after the backup's snapshot are read (older backups: every key).
			since: ctx.result<Chosen>("choose").backup?.manifest.snapshot,
		},
	);
}

/** The rows a safety backup holds whose key the restored backup does not: what --put-back puts back. */
async function newRowsFromSafety(
	ctx: RollbackCtx,
	db: Db,
	safety: BackupEntry,
): Promise<NewRows[]> {
	const { pgRestore } = ctx.result<Tools>("verify-backup");
	const opts = { env: ctx.env, signal: ctx.signal };
	const dir = backupDir(ctx.env);
	const tables = await appTables(db, ["public"]);
	const m = ctx.result<Chosen>("choose").backup?.manifest;
	const index = await indexBackup(
		pgRestore,
		`${dir}/${m?.archive}`,
		tables,
		opts,
	);
	return newRowsInArchive(
		tables,
		index,
		pgRestore,
		`${dir}/${safety.manifest.archive}`,
		opts,
	);
}

/** The safety backup whose rows go back: --put-back's, or the one this run took. */
export function safetyId(ctx: RollbackCtx): string | undefined {
	const chosen = ctx.result<Chosen>("choose");
	if (chosen.safetyEntry) return chosen.safetyEntry.manifest.id;
	return ctx.has("safety")
		? ctx.result<Safety>("safety").manifest.id
		: undefined;
}

/** The command that puts the rows back later (also the step's resume command). */
export const putBackLater = (ctx: RollbackCtx) =>
	putBackCommand(
		SCRIPT,
		safetyId(ctx) as string,
		ctx.result<Chosen>("choose").backup?.manifest.id as string,
		ctx.target.direct.database,
	);

/** Puts the new rows back (--keep-new-rows, --put-back, or when the operator says yes), or says how to later. */
export async function putBack(ctx: RollbackCtx, db: Db) {
	const s = ctx.settings;
	const chosen = ctx.result<Chosen>("choose");
	const safety =
		chosen.safetyEntry ??
		({
			manifest: ctx.result<Safety>("safety").manifest,
			archivePresent: true,
		} as BackupEntry);
	const captured = ctx.has("safety")
		? ctx.result<Safety>("safety").captured
		: undefined;
	const newRows = captured ?? (await newRowsFromSafety(ctx, db, safety));
	const value: PutBackOutcome = { newRows };
	const count = newRows.reduce((a, c) => a + c.rows.length, 0);
	if (!count) return { summary: "no row was inserted since the backup", value };
	const perTable = newRows
		.map((c) => `${c.table} +${say.fmt(c.rows.length)}`)
		.join(", ");
	ctx.log(`inserted since the backup: ${perTable}`);
	const later = putBackLater(ctx);
	const decided = s.mode === "put-back" || s.keepNewRows;
	if (decided)
		ctx.log(
			`if this step is stopped, none of them goes in (one transaction); then run: ${later}`,
		);
	const choice = decided
		? "keep"
		: await ctx.choose(
				say.putBackQuestion(count, perTable),
				say.PUT_BACK_CHOICES,
				"later",
			);
	if (choice !== "keep") {
		ctx.log(`to put them back later: ${later}`);
		return {
			status: "warning" as const,
			summary: say.leftOut(count, perTable, later),
			value,
		};
	}
	value.putBack = await putBackRows(db, newRows, {
		lockTimeoutMs: s.lockTimeoutMs,
		signal: ctx.signal,
	});
	for (const p of value.putBack)
		if (p.conflicts.length) ctx.warn(say.conflicts(p));
	const put = value.putBack.reduce((a, p) => a + p.inserted, 0);
	return {
		status: put < count ? ("warning" as const) : ("ok" as const),
		summary: say.putBackDone(put, count, value.putBack),
		data: value.putBack,
		value,
	};
}
