#!/usr/bin/env -S npx tsx --

// The seed's "Migration Hangs on Large Tables" (batched updates), done right: a keyset walk in
// primary-key order instead of OFFSET paging (which skips rows as they leave the condition and
// rescans from the start each page), short batches with lock and statement timeouts, a
// checkpoint to resume from, progress, and a final check that no row still matches.

import {
	type BackfillEvent,
	type BackfillJob,
	type BackfillOptions,
	type BackfillResult,
	CHECKPOINT_TABLE,
	type Checkpoint,
	countMatching,
	DEFAULTS,
	defineJob,
	describeBatch,
	describeCheckpoint,
	otherCheckpoints,
	readCheckpoint,
	resolveTable,
	runBackfill,
	validateJob,
} from "../lib/data/backfill.ts";
import { renamedDuration } from "../lib/kit/cli.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration } from "../lib/kit/output.ts";
import { type Progress, startProgress } from "../lib/kit/progress.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import { connect, serverVersion } from "../lib/pg/db.ts";

interface State {
	job?: BackfillJob;
	options?: Omit<BackfillOptions, "connect" | "mode" | "signal" | "onEvent">;
	estimatedMatching?: number;
	checkpoint?: Checkpoint | null;
	mode?: BackfillOptions["mode"];
	result?: BackfillResult;
	last?: { updated: number; scanned: number; batches: number };
	remaining?: number;
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

function options(ctx: Context<State>): NonNullable<State["options"]> {
	const f = ctx.flags;
	const int = (name: string, min: number) => {
		const v = f[name] as number;
		if (!Number.isInteger(v) || v < min)
			throw usageError(
				`--${name} needs a whole number of at least ${min}, not ${v}.`,
			);
		return v;
	};
	const o = {
		batchSize: int("batch-size", 1),
		targetBatchMs: int("target-batch", 0),
		minBatchSize: DEFAULTS.minBatchSize,
		maxBatchSize: int("max-batch-size", 1),
		sleepMs: int("sleep", 0),
		lockTimeoutMs: int("lock-timeout", 1),
		statementTimeoutMs: int("statement-timeout", 1),
		maxReplicationLagMs: int("max-replication-lag", 0),
		maxRetries: DEFAULTS.maxRetries,
		maxCatchUpRounds: DEFAULTS.maxCatchUpRounds,
	};
	o.minBatchSize = Math.min(o.minBatchSize, o.batchSize, o.maxBatchSize);
	if (o.batchSize > o.maxBatchSize)
		throw usageError("--batch-size is larger than --max-batch-size.");
	return o;
}

const resumeCommand = () =>
	rerunCommand("runbooks/backfill.ts", {
		drop: ["restart", "resume"],
		add: ["--resume"],
	});

await runRunbook<State>({
	name: "backfill",
	summary:
		"Update the matching rows of a large, busy table in short batches, resumable, with progress.",
	description:
		"Walks --table in primary-key order (keyset pagination: composite and non-integer keys work), and\n" +
		"in each batch runs UPDATE <table> SET <--set> WHERE <key range> AND (<--where>) in its own short\n" +
		"transaction with a lock_timeout and a statement_timeout. The batch size adapts toward\n" +
		"--target-batch; lock timeouts, slow batches and replica lag make it back off. Progress is\n" +
		`committed with each batch to ${CHECKPOINT_TABLE} in the target database, so Ctrl-C, a kill or a\n` +
		"lost connection loses at most the batch in flight: rerun with --resume to carry on. At the end it\n" +
		"counts the rows that still match --where (rows the app wrote behind the cursor are caught up).\n" +
		"\n" +
		"--set and --where are SQL that you write, placed into the statement as written (column names in\n" +
		"--set are checked against the catalog and quoted; the table name too). They are checked by\n" +
		"EXPLAIN in a rolled-back transaction before anything changes (exit 2 when PostgreSQL rejects them).\n" +
		"--where must stop matching a row once --set has been applied to it (e.g. 'col IS NULL' with\n" +
		"--set 'col = ...'), so a rerun never applies a batch twice; the runbook checks this on every\n" +
		"batch. Without --where it updates the rows where a --set column differs from its expression.",
	flags: {
		table: {
			type: "string",
			value: "<table>",
			description:
				"Table to update, as named in the database (e.g. generated_videos; schema.table for another schema).",
		},
		set: {
			type: "string",
			value: '"<col> = <expr>[, ...]"',
			description: "Assignments, as after SET (operator-written SQL).",
		},
		where: {
			type: "string",
			value: '"<condition>"',
			description:
				"Rows to update, as after WHERE (operator-written SQL), e.g. 'thumbnail_path IS NULL'.",
		},
		"batch-size": {
			type: "number",
			value: "<rows>",
			default: DEFAULTS.batchSize,
			description:
				"Rows per batch to start with; the size then adapts toward --target-batch.",
		},
		"max-batch-size": {
			type: "number",
			value: "<rows>",
			default: DEFAULTS.maxBatchSize,
			description: "Largest batch the adaptation may reach.",
		},
		...renamedDuration("target-batch", "target-batch-ms", "ms", {
			default: `${DEFAULTS.targetBatchMs}ms`,
			description:
				"Target duration of one batch (rows stay locked that long at most); 0 keeps --batch-size fixed.",
		}),
		...renamedDuration("sleep", "sleep-ms", "ms", {
			default: `${DEFAULTS.sleepMs}ms`,
			description: "Pause between batches, to leave room for the app.",
		}),
		...renamedDuration("lock-timeout", "lock-timeout-ms", "ms", {
			default: `${DEFAULTS.lockTimeoutMs}ms`,
			description:
				"lock_timeout of each batch; a batch that waits longer is rolled back and retried smaller.",
		}),
		...renamedDuration("statement-timeout", "statement-timeout-ms", "ms", {
			default: `${DEFAULTS.statementTimeoutMs}ms`,
			description: "statement_timeout of each batch statement.",
		}),
		...renamedDuration("max-replication-lag", "max-replication-lag-ms", "ms", {
			default: `${DEFAULTS.maxReplicationLagMs}ms`,
			description:
				"Pause while a replica (pg_stat_replication) lags more than this; 0 ignores replicas.",
		}),
		resume: {
			type: "boolean",
			description:
				"Carry on from the last committed batch of an earlier, unfinished run (same --table/--set/--where).",
		},
		restart: {
			type: "boolean",
			description:
				"Forget an earlier, unfinished run's checkpoint and start from the beginning of the table.",
		},
	},
	examples: [
		`npx tsx runbooks/backfill.ts --table generated_videos --set "thumbnail_path = 'thumbs/' || id || '.jpg'" --where "thumbnail_path IS NULL" --dry-run`,
		`npx tsx runbooks/backfill.ts --table generated_videos --set "quality = '720p'" --where "quality = '480p'" --yes`,
		`npx tsx runbooks/backfill.ts --table generated_videos --set "thumbnail_path = 'thumbs/' || id || '.jpg'" --where "thumbnail_path IS NULL" --resume`,
	],
	exclusive: true,
	state: () => ({}),
	steps: [
		{
			title: "Check the table, the columns and the SQL",
			async run(ctx) {
				const table = ctx.flags.table as string | undefined;
				const set = ctx.flags.set as string | undefined;
				if (!table)
					throw usageError(
						"--table is required: the table to update, e.g. --table generated_videos.",
					);
				if (!set)
					throw usageError(
						`--set is required, e.g. --set "thumbnail_path = 'thumbs/' || id || '.jpg'".`,
					);
				if (ctx.flags.resume && ctx.flags.restart)
					throw usageError("Pass --resume or --restart, not both.");
				ctx.state.options = options(ctx);
				const db = await ctx.db();
				const version = await serverVersion(db);
				const t = await resolveTable(db, table);
				const job = defineJob(
					t,
					set,
					ctx.flags.where as string | undefined,
					"backfill",
				);
				const v = await validateJob(db, job);
				ctx.state.job = job;
				ctx.state.estimatedMatching = v.estimatedMatching;
				ctx.log(
					`table:   ${t.display} (~${fmt(Math.max(0, t.estimatedRows))} rows), primary key (${t.key.map((k) => `${k.name} ${k.type}`).join(", ")})`,
				);
				ctx.log(`set:     ${job.setSql.replace(/\n\s*/g, " ")}`);
				ctx.log(
					`where:   ${job.where.replace(/\n\s*/g, " ")}${job.whereGiven ? "" : "  (derived: no --where given)"}`,
				);
				ctx.log(
					`job id:  ${job.id} (the same --table/--set/--where give the same id, for --resume)`,
				);
				return {
					summary: `PostgreSQL ${version.text}; the table, its key and the SQL are valid`,
					data: {
						job_id: job.id,
						table: t.display,
						key: t.key,
						where: job.where,
						estimated_matching: v.estimatedMatching,
					},
				};
			},
		},
		{
			title: "Look for an earlier run of this backfill (checkpoint)",
			async run(ctx) {
				const db = await ctx.db();
				const job = ctx.state.job as BackfillJob;
				const cp = await readCheckpoint(db, job.id);
				ctx.state.checkpoint = cp;
				if (!cp) {
					if (ctx.flags.resume) {
						const others = await otherCheckpoints(db, job.table, job.id);
						for (const o of others)
							ctx.log(
								`other backfill of ${job.table.display}: set ${o.set_sql.replace(/\s+/g, " ")} where ${o.where_sql.replace(/\s+/g, " ")} (${o.phase})`,
							);
						throw usageError(
							`There is no checkpoint to resume for this backfill of ${job.table.display} (job ${job.id}).`,
							"--resume needs exactly the --table, --set and --where of the earlier run; or run without --resume to start.",
						);
					}
					ctx.state.mode = "new";
					return { summary: "none: starting from the beginning of the table" };
				}
				ctx.log(`earlier run (job ${job.id}): ${describeCheckpoint(cp)}`);
				if (ctx.flags.restart) {
					ctx.state.mode = "restart";
					return {
						summary:
							"--restart: starting again from the beginning of the table",
					};
				}
				if (ctx.flags.resume) {
					ctx.state.mode = "resume";
					return {
						summary:
							cp.phase === "done"
								? "it finished: only the final check remains"
								: `resuming (${describeCheckpoint(cp)})`,
					};
				}
				if (cp.phase === "done") {
					ctx.state.mode = "new";
					return {
						summary:
							"an earlier run finished: running it again (rows already set no longer match)",
					};
				}
				throw refusal(
					`An earlier run of this backfill did not finish: ${describeCheckpoint(cp)}. Nothing was changed.`,
					`Carry on from there with: ${resumeCommand()}\n  or start over with --restart.`,
				);
			},
		},
		{
			title: "Update the rows in batches",
			kind: "change",
			plan(ctx) {
				const o = ctx.state.options as NonNullable<State["options"]>;
				return [
					`-- first ${CHECKPOINT_TABLE} (CREATE SCHEMA/TABLE IF NOT EXISTS), then`,
					`-- batches of ${fmt(o.batchSize)} rows to start, adapting toward ${o.targetBatchMs || "(fixed size)"}${o.targetBatchMs ? "ms per batch" : ""}, at most ${fmt(o.maxBatchSize)} rows${o.sleepMs ? `, ${o.sleepMs}ms apart` : ""}`,
					...describeBatch(ctx.state.job as BackfillJob, o),
				];
			},
			async run(ctx) {
				const job = ctx.state.job as BackfillJob;
				const o = ctx.state.options as NonNullable<State["options"]>;
				let progress: Progress | undefined;
				const lastNote = new Map<string, number>();
				const note = (kind: string, text: string, everyMs = 0) => {
					const now = Date.now();
					if (everyMs && now - (lastNote.get(kind) ?? 0) < everyMs) return;
					lastNote.set(kind, now);
					if (progress) progress.note(text);
					else ctx.log(text);
				};
				const onEvent = (e: BackfillEvent) => {
					switch (e.kind) {
						case "start":
							if (e.resumedFrom)
								ctx.log(`resuming: ${describeCheckpoint(e.resumedFrom)}`);
							progress = startProgress({
								unit: "rows",
								total: Math.max(e.estimatedRows, 1),
								estimated: true,
								initial: e.resumedFrom?.rows_scanned ?? 0,
							});
							break;
						case "batch":
							ctx.state.last = {
								updated: e.totalUpdated,
								scanned: e.totalScanned,
								batches: (ctx.state.last?.batches ?? 0) + 1,
							};
							progress?.update(
								e.phase === "walk" ? e.totalScanned : e.estimatedRows,
								`${fmt(e.totalUpdated)} updated, batch ${fmt(e.batchSize)} rows in ${Math.round(e.ms)}ms${e.phase === "catch-up" ? " (catch-up)" : ""}`,
							);
							break;
						case "retry":
							note(
								"retry",
								`retry ${e.attempt}: ${e.reason}; waiting ${e.ms}ms, then a smaller batch`,
							);
							break;
						case "backoff":
							note("backoff", `backing off ${e.ms}ms: ${e.reason}`, 10_000);
							break;
						case "reconnect":
							note(
								"reconnect",
								`connection lost (${e.reason}); reconnecting (attempt ${e.attempt}) and carrying on from the checkpoint`,
							);
							break;
						case "check":
							if (e.remaining > 0) {
								note(
									"check",
									`${fmt(e.remaining)} rows match again (written behind the cursor while the walk ran)${e.round < o.maxCatchUpRounds ? ": catching up" : ""}`,
								);
							}
							break;
					}
				};
				try {
					const result = await runBackfill(job, {
						...o,
						mode: ctx.state.mode ?? "new",
						signal: ctx.signal,
						connect: () =>
							connect(ctx.target.direct, "runbook:backfill:batches"),
						onEvent,
					});
					ctx.state.result = result;
					ctx.state.remaining = result.remaining;
					progress?.stop();
					progress = undefined;
					const rate =
						(result.updatedThisRun * 1000) / Math.max(1, result.elapsedMs);
					ctx.log(
						`${fmt(result.updatedThisRun)} rows updated in ${formatDuration(result.elapsedMs)} (${fmt(rate)} rows/s), ${result.batches} batches in all, ` +
							`longest batch ${Math.round(result.longestBatchMs)}ms (row locks held at most that long), last batch size ${fmt(result.finalBatchSize)}` +
							`${result.retries ? `, ${result.retries} retries` : ""}${result.catchUpRounds ? `, ${result.catchUpRounds} catch-up round(s)` : ""}`,
					);
					ctx.log(
						"locks: ROW EXCLUSIVE on the table (blocks no reads or writes); row locks on each batch's rows until its commit",
					);
					return {
						summary: `${fmt(result.updated)} rows updated${result.resumedFrom ? ` (${fmt(result.updatedThisRun)} by this run)` : ""} in ${formatDuration(result.elapsedMs)}`,
						status: result.remaining > 0 ? "warning" : "ok",
						data: {
							job_id: result.jobId,
							rows_updated: result.updated,
							rows_updated_this_run: result.updatedThisRun,
							batches: result.batches,
							elapsed_ms: Math.round(result.elapsedMs),
							rows_per_second: Math.round(rate),
							longest_batch_ms: Math.round(result.longestBatchMs),
							retries: result.retries,
							catch_up_rounds: result.catchUpRounds,
							remaining: result.remaining,
						},
					};
				} finally {
					progress?.stop();
				}
			},
			onFailure: (ctx) => {
				const last = ctx.state.last;
				return (
					`Every batch that committed stays committed (${fmt(last?.updated ?? 0)} rows updated so far in all); the batch in flight was rolled back. ` +
					`The position is in ${CHECKPOINT_TABLE} (job ${ctx.state.job?.id}).`
				);
			},
			resume: resumeCommand,
		},
		{
			title: "Final check: no row still matches the condition",
			async run(ctx) {
				const job = ctx.state.job as BackfillJob;
				const started = performance.now();
				// The engine counted as its batches ended; count again only when that found rows.
				const counted = ctx.state.remaining === 0 && !ctx.dryRun;
				const n = counted ? 0 : await countMatching(await ctx.db(), job);
				const took = formatDuration(performance.now() - started);
				ctx.state.remaining = n;
				if (ctx.dryRun)
					return {
						summary: `${fmt(n)} rows match now (counted in ${took}): a real run would update them`,
					};
				if (n === 0)
					return {
						summary: `no row matches the condition${counted ? " (counted as the batches ended)" : ""}: every row is set`,
					};
				return {
					status: "problem",
					summary: `${fmt(n)} rows still match the condition: the app keeps writing rows that need the update`,
					data: { remaining: n },
				};
			},
			onFailure: () =>
				"Every batch is committed; this check changes nothing, the rows stay as they are.",
			resume: resumeCommand,
		},
	],
	summarize: (ctx) => ({
		job_id: ctx.state.job?.id ?? null,
		table: ctx.state.job?.table.display ?? null,
		rows_updated: ctx.state.result?.updated ?? null,
		remaining: ctx.state.remaining ?? null,
	}),
});
