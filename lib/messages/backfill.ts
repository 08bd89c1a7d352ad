// What backfill.ts tells the operator: the job it checked, its plan, the notes while it runs,
// what it did, and what the database holds when it stops.

import {
	type BackfillEvent,
	type BackfillJob,
	type BackfillOptions,
	type BackfillResult,
	CHECKPOINT_TABLE,
	type Checkpoint,
	describeBatch,
	describeCheckpoint,
} from "../data/backfill.ts";
import { formatCount as fmt, formatDuration } from "../kit/format.ts";

/** The batch settings the flags give (everything runBackfill takes but the run's wiring). */
export type BatchSettings = Omit<
	BackfillOptions,
	"connect" | "mode" | "signal" | "onEvent"
>;

const oneLine = (sql: string) => sql.replace(/\n\s*/g, " ");

/** The checked job, as step 1 shows it. */
export function jobLines(job: BackfillJob): string[] {
	const t = job.table;
	return [
		`table:   ${t.display} (~${fmt(Math.max(0, t.estimatedRows))} rows), primary key (${t.key.map((k) => `${k.name} ${k.type}`).join(", ")})`,
		`set:     ${oneLine(job.setSql)}`,
		`where:   ${oneLine(job.where)}${job.whereGiven ? "" : "  (derived: no --where given)"}`,
		`job id:  ${job.id} (the same --table/--set/--where give the same id, for --resume)`,
	];
}

/** Another job's checkpoint on the same table, shown when --resume finds none of this job's. */
export function otherJobLine(job: BackfillJob, o: Checkpoint): string {
	return `other backfill of ${job.table.display}: set ${o.set_sql.replace(/\s+/g, " ")} where ${o.where_sql.replace(/\s+/g, " ")} (${o.phase})`;
}

/** What the batch step will run. */
export function batchPlan(job: BackfillJob, o: BatchSettings): string[] {
	return [
		`-- first ${CHECKPOINT_TABLE} (CREATE SCHEMA/TABLE IF NOT EXISTS), then`,
		`-- batches of ${fmt(o.batchSize)} rows to start, adapting toward ${o.targetBatchMs || "(fixed size)"}${o.targetBatchMs ? "ms per batch" : ""}, at most ${fmt(o.maxBatchSize)} rows${o.sleepMs ? `, ${o.sleepMs}ms apart` : ""}`,
		...describeBatch(job, o),
	];
}

/** The detail after a batch on the progress line. */
export function batchDetail(e: Extract<BackfillEvent, { kind: "batch" }>) {
	return `${fmt(e.totalUpdated)} updated, batch ${fmt(e.batchSize)} rows in ${Math.round(e.ms)}ms${e.phase === "catch-up" ? " (catch-up)" : ""}`;
}

/** A note while the batches run (retries, back-offs, reconnects, rows to catch up), or none. */
export function eventNote(
	e: BackfillEvent,
	maxCatchUpRounds: number,
): string | undefined {
	switch (e.kind) {
		case "retry":
			return `retry ${e.attempt}: ${e.reason}; waiting ${e.ms}ms, then a smaller batch`;
		case "backoff":
			return `backing off ${e.ms}ms: ${e.reason}`;
		case "reconnect":
			return `connection lost (${e.reason}); reconnecting (attempt ${e.attempt}) and carrying on from the checkpoint`;
		case "check":
			return e.remaining > 0
				? `${fmt(e.remaining)} rows match again (written behind the cursor while the walk ran)${e.round < maxCatchUpRounds ? ": catching up" : ""}`
				: undefined;
	}
}

const rateOf = (r: BackfillResult) =>
	(r.updatedThisRun * 1000) / Math.max(1, r.elapsedMs);

/** What the batches did: the lines under the step, its summary and its --json data. */
export function batchesDone(r: BackfillResult) {
	const rate = rateOf(r);
	return {
		lines: [
			`${fmt(r.updatedThisRun)} rows updated in ${formatDuration(r.elapsedMs)} (${fmt(rate)} rows/s), ${r.batches} batches in all, ` +
				`longest batch ${Math.round(r.longestBatchMs)}ms (row locks held at most that long), last batch size ${fmt(r.finalBatchSize)}` +
				`${r.retries ? `, ${r.retries} retries` : ""}${r.catchUpRounds ? `, ${r.catchUpRounds} catch-up round(s)` : ""}`,
			"locks: ROW EXCLUSIVE on the table (blocks no reads or writes); row locks on each batch's rows until its commit",
		],
		summary: `${fmt(r.updated)} rows updated${r.resumedFrom ? ` (${fmt(r.updatedThisRun)} by this run)` : ""} in ${formatDuration(r.elapsedMs)}`,
		data: {
			job_id: r.jobId,
			rows_updated: r.updated,
			rows_updated_this_run: r.updatedThisRun,
			batches: r.batches,
			elapsed_ms: Math.round(r.elapsedMs),
			rows_per_second: Math.round(rate),
			longest_batch_ms: Math.round(r.longestBatchMs),
			retries: r.retries,
			catch_up_rounds: r.catchUpRounds,
			remaining: r.remaining,
		},
	};
}

/** What the database holds when the batch step stops midway. */
export function batchesStopped(updated: number, jobId?: string): string {
	return (
		`Every batch that committed stays committed (${fmt(updated)} rows updated so far in all); the batch in flight was rolled back. ` +
		`The position is in ${CHECKPOINT_TABLE} (job ${jobId}).`
	);
}

/** The final count's summary: what a real run would do, all set, or rows the app keeps writing. */
export function finalCheck(
	remaining: number,
	how: { dryRun: boolean; counted: boolean; took: string },
): string {
	if (how.dryRun)
		return `${fmt(remaining)} rows match now (counted in ${how.took}): a real run would update them`;
	if (remaining === 0)
		return `no row matches the condition${how.counted ? " (counted as the batches ended)" : ""}: every row is set`;
	return `${fmt(remaining)} rows still match the condition: the app keeps writing rows that need the update`;
}

/** The step 2 summary for an earlier run found with this job's id. */
export function earlierRun(
	cp: Checkpoint,
	flag: "restart" | "resume" | "none",
): string {
	if (flag === "restart")
		return "--restart: starting again from the beginning of the table";
	if (flag === "resume")
		return cp.phase === "done"
			? "it finished: only the final check remains"
			: `resuming (${describeCheckpoint(cp)})`;
	return "an earlier run finished: running it again (rows already set no longer match)";
}
