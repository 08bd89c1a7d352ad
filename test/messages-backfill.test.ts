// The words backfill.ts prints, from typed results: pure, no database.

import { describe, expect, it } from "vitest";
import {
	type BackfillResult,
	type Checkpoint,
	DEFAULTS,
	defineJob,
} from "../lib/data/backfill.ts";
import {
	batchesDone,
	batchesStopped,
	batchPlan,
	earlierRun,
	eventNote,
	finalCheck,
	jobLines,
	otherJobLine,
} from "../lib/messages/backfill.ts";

const job = defineJob(
	{
		schema: "public",
		name: "generated_videos",
		sql: '"public"."generated_videos"',
		display: "public.generated_videos",
		key: [{ name: "id", type: "text" }],
		columns: new Map([
			["id", "text"],
			["thumbnail_path", "text"],
		]),
		estimatedRows: 120_000,
	},
	"thumbnail_path = 'thumbs/' || id",
	"thumbnail_path IS NULL",
	"backfill",
);

const checkpoint = (phase: Checkpoint["phase"]): Checkpoint => ({
	job_id: job.id,
	table_name: "public.generated_videos",
	set_sql: "thumbnail_path = 'x'",
	where_sql: "thumbnail_path\n  IS NULL",
	last_key: phase === "walk" ? ["v_0420"] : null,
	phase,
	pass: 1,
	rows_scanned: 4200,
	rows_updated: 4100,
	batches: 7,
	batch_size: 700,
	started_at: new Date(Date.UTC(2025, 0, 7, 3, 0)),
	updated_at: new Date(Date.UTC(2025, 0, 7, 3, 15)),
	finished_at: null,
});

const result: BackfillResult = {
	jobId: job.id,
	updated: 120_000,
	scanned: 130_000,
	batches: 61,
	updatedThisRun: 80_000,
	scannedThisRun: 90_000,
	elapsedMs: 64_000,
	batchMs: 50_000,
	longestBatchMs: 412.4,
	finalBatchSize: 2400,
	retries: 2,
	catchUpRounds: 1,
	remaining: 0,
	resumedFrom: checkpoint("walk"),
};

describe("backfill messages", () => {
	it("shows the checked job and another job's checkpoint", () => {
		expect(
			jobLines(job).map((l) => l.replace(job.id, "<id>")),
		).toMatchInlineSnapshot(`
			[
			  "table:   public.generated_videos (~120,000 rows), primary key (id text)",
			  "set:     "thumbnail_path" = 'thumbs/' || id",
			  "where:   thumbnail_path IS NULL",
			  "job id:  <id> (the same --table/--set/--where give the same id, for --resume)",
			]
		`);
		expect(otherJobLine(job, checkpoint("catch-up"))).toMatchInlineSnapshot(
			`"other backfill of public.generated_videos: set thumbnail_path = 'x' where thumbnail_path IS NULL (catch-up)"`,
		);
	});

	it("plans the batches, fixed or adapting", () => {
		const o = { ...DEFAULTS, sleepMs: 50 };
		expect(batchPlan(job, o).slice(0, 2)).toMatchInlineSnapshot(`
			[
			  "-- first runbooks.backfill_checkpoints (CREATE SCHEMA/TABLE IF NOT EXISTS), then",
			  "-- batches of 1,000 rows to start, adapting toward 200ms per batch, at most 50,000 rows, 50ms apart",
			]
		`);
		expect(
			batchPlan(job, { ...o, targetBatchMs: 0, sleepMs: 0 })[1],
		).toMatchInlineSnapshot(
			`"-- batches of 1,000 rows to start, adapting toward (fixed size), at most 50,000 rows"`,
		);
	});

	it("notes retries, back-offs, reconnects and rows to catch up", () => {
		expect([
			eventNote(
				{ kind: "retry", reason: "lock timeout", attempt: 2, ms: 400 },
				3,
			),
			eventNote({ kind: "backoff", reason: "replica lag 12s", ms: 1000 }, 3),
			eventNote({ kind: "reconnect", reason: "57P01", attempt: 1 }, 3),
			eventNote({ kind: "check", remaining: 1234, round: 1 }, 3),
			eventNote({ kind: "check", remaining: 12, round: 3 }, 3),
			eventNote({ kind: "check", remaining: 0, round: 1 }, 3),
		]).toMatchInlineSnapshot(`
			[
			  "retry 2: lock timeout; waiting 400ms, then a smaller batch",
			  "backing off 1000ms: replica lag 12s",
			  "connection lost (57P01); reconnecting (attempt 1) and carrying on from the checkpoint",
			  "1,234 rows match again (written behind the cursor while the walk ran): catching up",
			  "12 rows match again (written behind the cursor while the walk ran)",
			  undefined,
			]
		`);
	});

	it("says what the batches did, and what a stop leaves", () => {
		const done = batchesDone(result);
		expect(done.lines).toMatchInlineSnapshot(`
			[
			  "80,000 rows updated in 1m04s (1,250 rows/s), 61 batches in all, longest batch 412ms (row locks held at most that long), last batch size 2,400, 2 retries, 1 catch-up round(s)",
			  "locks: ROW EXCLUSIVE on the table (blocks no reads or writes); row locks on each batch's rows until its commit",
			]
		`);
		expect(done.summary).toMatchInlineSnapshot(
			`"120,000 rows updated (80,000 by this run) in 1m04s"`,
		);
		expect(done.data.rows_per_second).toBe(1250);
		expect(
			batchesDone({
				...result,
				resumedFrom: null,
				retries: 0,
				catchUpRounds: 0,
			}).summary,
		).toMatchInlineSnapshot(`"120,000 rows updated in 1m04s"`);
		expect(batchesStopped(4100, "j1")).toMatchInlineSnapshot(
			`"Every batch that committed stays committed (4,100 rows updated so far in all); the batch in flight was rolled back. The position is in runbooks.backfill_checkpoints (job j1)."`,
		);
	});

	it("sums up the final check and an earlier run", () => {
		const how = { dryRun: false, counted: true, took: "12ms" };
		expect([
			finalCheck(1500, { ...how, dryRun: true }),
			finalCheck(0, how),
			finalCheck(0, { ...how, counted: false }),
			finalCheck(37, how),
		]).toMatchInlineSnapshot(`
			[
			  "1,500 rows match now (counted in 12ms): a real run would update them",
			  "no row matches the condition (counted as the batches ended): every row is set",
			  "no row matches the condition: every row is set",
			  "37 rows still match the condition: the app keeps writing rows that need the update",
			]
		`);
		expect([
			earlierRun(checkpoint("walk"), "restart"),
			earlierRun(checkpoint("walk"), "resume"),
			earlierRun(checkpoint("done"), "resume"),
			earlierRun(checkpoint("done"), "none"),
		]).toMatchInlineSnapshot(`
			[
			  "--restart: starting again from the beginning of the table",
			  "resuming (stopped after key (v_0420), 4,100 rows updated in 7 batches, last progress 2025-01-07T03:15:00.000Z)",
			  "it finished: only the final check remains",
			  "an earlier run finished: running it again (rows already set no longer match)",
			]
		`);
	});
});
