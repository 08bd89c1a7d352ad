// What an emergency-rollback run tells at its end (the Summary step and --json) and after a step
// stopped midway (what the database holds), from the steps' results.

import { rollbackCommand } from "../backup/archive.ts";
import { putBackCommand } from "../backup/keep-new-rows.ts";
import { formatDuration } from "../kit/format.ts";
import { table } from "../kit/output.ts";
import type { StepResult } from "../kit/runner.ts";
import * as say from "../messages/rollback.ts";
import { quoteIdent } from "../pg/db.ts";
import { midway, results } from "./results.ts";
import { type RollbackCtx, SCRIPT } from "./settings.ts";

const ran = (ctx: RollbackCtx, title: string) =>
	ctx.reports.some(
		(r) => r.title === title && ["ok", "warning", "failed"].includes(r.status),
	);

/** The runbook-level failure advice: what the database holds now, and the way back. */
export function stoppedState(ctx: RollbackCtx): string {
	const r = results(ctx);
	return say.rollbackState({
		restoredId: r.restore ? r.backup?.id : undefined,
		downApplied: Boolean(r.applied),
		committing: midway.restorePhase === "committing",
		appStopped:
			ran(ctx, say.APP_HOOK.stop.title) && !ran(ctx, say.APP_HOOK.start.title),
		safetyId: r.safety?.manifest.id,
		files: r.git,
	});
}

/** The closing step: each step's time, then what was done and what is left to do. */
export function summary(ctx: RollbackCtx): StepResult {
	const s = ctx.settings;
	const r = results(ctx);
	ctx.log(
		table(
			ctx.reports
				.filter((x) => x.title !== "Summary" && x.status !== "skipped")
				.map((x) => ({
					step: `${x.no}. ${x.title}`,
					status: x.status,
					time:
						x.duration_ms === undefined ? "" : formatDuration(x.duration_ms),
				})),
		),
	);
	if (r.chosen?.nothing) return { summary: r.chosen.nothing };
	const m = r.backup;
	if (ctx.dryRun)
		return {
			summary: say.dryRunSummary(s.mode, {
				later: r.later,
				statements: r.down?.down.statements.length ?? 0,
				backupId: m?.id,
				display: ctx.target.direct.display,
				method: s.method,
			}),
		};
	if (s.mode === "rehearse") {
		const ms = r.restore?.durationMs ?? 0;
		for (const line of say.rehearsalLines(
			m,
			ms,
			s.method,
			ctx.target.direct.display,
			r.restore?.scratch,
		))
			ctx.log(line);
		return {
			summary: `${m?.id} restores in ${formatDuration(ms)} and verifies; target untouched`,
		};
	}
	if (s.mode === "put-back") {
		const put = (r.putBack?.putBack ?? []).reduce((a, p) => a + p.inserted, 0);
		return {
			summary: r.putBack?.newRows.length
				? `put back ${say.fmt(put)} row(s) from ${r.chosen?.safetyEntry?.manifest.id}`
				: "no row to put back",
		};
	}
	// From stopping the app to starting it again.
	const stop = ctx.reports.findIndex(
		(x) => x.title === say.APP_HOOK.stop.title,
	);
	const start = ctx.reports.findIndex(
		(x) => x.title === say.APP_HOOK.start.title,
	);
	const downtime = ctx.reports
		.slice(stop, start + 1)
		.reduce((a, x) => a + (x.duration_ms ?? 0), 0);
	if (s.mode === "down")
		ctx.log(`rolled back: ${r.later.join(", ")} (down SQL, one transaction)`);
	else
		ctx.log(
			`restored: ${m?.id} (made ${m ? say.when(m.created_at) : "?"}, latest migration ${m?.latest_migration ?? "none"}) in ${formatDuration(r.restore?.durationMs ?? 0)}`,
		);
	ctx.log(`from stopping the app to starting it: ${formatDuration(downtime)}`);
	const safety = r.safety?.manifest;
	if (safety) ctx.log(`to undo this rollback: ${rollbackCommand(safety.id)}`);
	const rows = r.putBack?.newRows;
	if (safety && rows?.length && !r.putBack?.putBack)
		ctx.log(
			`rows inserted since the backup, not put back: ${rows.map((c) => `${c.table} ${say.fmt(c.rows.length)}`).join(", ")}; to put them back: ${putBackCommand(SCRIPT, safety.id, m?.id as string, ctx.target.direct.database)}`,
		);
	const old = r.restore?.oldDatabase;
	if (old)
		ctx.log(
			`the previous database is kept as ${old}: DROP DATABASE ${quoteIdent(old)}; when satisfied`,
		);
	const files = say.filesAdvice(r.git);
	if (files) ctx.log(files);
	const toDo = r.git.files.length && !r.git.reverted.length;
	return {
		status: toDo ? "warning" : "ok",
		summary:
			s.mode === "down"
				? `rolled back ${r.later.length} migration(s), data kept`
				: `restored ${m?.id}${toDo ? `; still to run: ${r.git.revert ?? "remove the migration files"}` : ""}`,
	};
}

/** The --json fields beyond the runner's. */
export function summarize(ctx: RollbackCtx): Record<string, unknown> {
	const s = ctx.settings;
	const r = results(ctx);
	const m = r.backup;
	return {
		mode: s.mode,
		method: s.mode === "down" ? null : s.method,
		backup_id: m?.id ?? null,
		backup: m
			? {
					created_at: m.created_at,
					kind: m.kind,
					latest_migration: m.latest_migration,
				}
			: null,
		safety_backup_id: r.safety?.manifest.id ?? null,
		undo_command: r.safety ? rollbackCommand(r.safety.manifest.id) : null,
		restore_ms: r.restore?.durationMs ?? null,
		old_database: r.restore?.oldDatabase ?? null,
		rolled_back_migrations: r.later,
		migration_files: r.git.files,
		git_revert: r.git.revert ?? null,
		reverted: r.git.reverted,
		down_sql: r.down?.down.statements ?? null,
		data_losses: r.down?.losses ?? [],
		scratch_database: r.restore?.scratch ?? midway.scratch ?? null,
		verification: r.verification ?? null,
		nothing: r.chosen?.nothing ?? null,
	};
}
