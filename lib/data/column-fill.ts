// Filling the new column of a type change with the backfill engine: keyset batches, adaptive size,
// a checkpoint per batch (a rerun carries on), progress on long work. The trigger keeps rows the app
// writes meanwhile in step, so the engine's final count proves every row converted.

import { formatCount, formatDuration } from "../kit/format.ts";
import { type Progress, startProgress } from "../kit/progress.ts";
import { connect, quoteIdent } from "../pg/db.ts";
import {
	type BackfillEvent,
	type BackfillResult,
	DEFAULTS,
	defineJob,
	readCheckpoint,
	resolveTable,
	runBackfill,
} from "./backfill.ts";
import type { ColumnChange } from "./column-type.ts";
import type { Io } from "./recorded-steps.ts";

export interface FillOptions {
	batchSize: number;
	targetBatchMs: number;
	sleepMs: number;
	runbook: string;
}

/** Sets new = converted(old) on every row where they differ; returns the engine's result. */
export async function fillNewColumn(
	io: Io,
	c: ColumnChange,
	opts: FillOptions,
): Promise<BackfillResult> {
	// "Differ" compares in the new type: the engine's default (new IS DISTINCT FROM old) has no
	// operator across types (text = integer). The SET keeps the assignment cast, which refuses a
	// value that does not fit instead of truncating it.
	return fillBatches(
		io,
		c,
		`${quoteIdent(c.newColumn)} = ${c.using}`,
		`${quoteIdent(c.newColumn)} IS DISTINCT FROM (${c.using})::${c.toType}`,
		opts,
	);
}

/** Runs one backfill job (SET, WHERE) on the change's table, with progress; carries on from a checkpoint. */
export async function fillBatches(
	io: Io,
	c: { schema: string; table: string },
	set: string,
	where: string | undefined,
	opts: FillOptions,
): Promise<BackfillResult> {
	const db = await io.db();
	const table = await resolveTable(db, `${c.schema}.${c.table}`);
	const job = defineJob(table, set, where, opts.runbook);
	const cp = await readCheckpoint(db, job.id);
	const progress = fillProgress(io.log, "converted");
	try {
		const result = await runBackfill(job, {
			...DEFAULTS,
			batchSize: opts.batchSize,
			targetBatchMs: opts.targetBatchMs,
			sleepMs: opts.sleepMs,
			minBatchSize: Math.min(DEFAULTS.minBatchSize, opts.batchSize),
			mode: cp && !cp.finished_at ? "resume" : "new",
			signal: io.signal,
			connect: () =>
				connect(io.target.direct, `runbook:${opts.runbook}:batches`),
			onEvent: progress.onEvent,
		});
		io.log(
			`locks: ROW EXCLUSIVE on ${c.table} (blocks no reads or writes); each batch's rows locked until its commit, at most ${formatDuration(result.longestBatchMs)}`,
		);
		return result;
	} finally {
		progress.stop();
	}
}

/**
 * A fill's progress (this module's and add-required-field's): a bar over the rows, `done` naming
 * what a batch did to its rows, notes for retries and for what `note` words (other events).
 */
export function fillProgress(
	log: (text: string) => void,
	done: string,
	note?: (e: BackfillEvent) => string | undefined,
): { onEvent: (e: BackfillEvent) => void; stop: () => void } {
	let bar: Progress | undefined;
	return {
		onEvent(e) {
			if (e.kind === "start") {
				if (e.resumedFrom)
					log("carrying on from the checkpoint of an earlier run");
				bar = startProgress({
					unit: "rows",
					total: Math.max(e.estimatedRows, 1),
					estimated: true,
					initial: e.resumedFrom?.rows_scanned ?? 0,
				});
			} else if (e.kind === "batch") {
				bar?.update(
					e.phase === "walk" ? e.totalScanned : e.estimatedRows,
					`${formatCount(e.totalUpdated)} ${done}, batch ${formatCount(e.batchSize)} in ${Math.round(e.ms)}ms`,
				);
			} else if (e.kind === "retry") {
				bar?.note(`retry ${e.attempt}: ${e.reason}`);
			} else {
				const text = note?.(e);
				if (text) bar?.note(text);
			}
		},
		stop() {
			bar?.stop();
			bar = undefined;
		},
	};
}
