#!/usr/bin/env -S node --import tsx --

// The seed's "Migration Hangs on Large Tables" (batched updates), done right: a keyset walk in
// primary-key order instead of OFFSET paging (which skips rows as they leave the condition and
// rescans from the start each page), short batches with lock and statement timeouts, a
// checkpoint to resume from, progress, and a final check that no row still matches.

import {
	type BackfillJob,
	type BackfillResult,
	CHECKPOINT_TABLE,
	countMatching,
	DEFAULTS,
	defineJob,
	describeCheckpoint,
	otherCheckpoints,
	readCheckpoint,
	resolveTable,
	runBackfill,
	validateJob,
} from "../lib/data/backfill.ts";
import { BackfillProgress } from "../lib/data/backfill-progress.ts";
import { renamedDuration } from "../lib/kit/cli.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { batchFlags } from "../lib/kit/flags.ts";
import { formatDuration } from "../lib/kit/format.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import {
	type BatchSettings,
	batchesDone,
	batchesStopped,
	batchPlan,
	earlierRun,
	finalCheck,
	jobLines,
	otherJobLine,
} from "../lib/messages/backfill.ts";
import { connect, serverVersion } from "../lib/pg/db.ts";

interface Settings {
	table: string;
	set: string;
	where?: string;
	resume: boolean;
	restart: boolean;
	batches: BatchSettings;
}

/** The flags, checked once before any step (usage errors exit 2 before anything runs). */
function settings({ flags: f }: { flags: Record<string, unknown> }): Settings {
	const table = f.table as string | undefined;
	const set = f.set as string | undefined;
	if (!table)
		throw usageError(
			"--table is required: the table to update, e.g. --table generated_videos.",
		);
	if (!set)
		throw usageError(
			`--set is required, e.g. --set "thumbnail_path = 'thumbs/' || id || '.jpg'".`,
		);
	if (f.resume && f.restart)
		throw usageError("Pass --resume or --restart, not both.");
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
	const where = f.where as string | undefined;
	return {
		table,
		set,
		where,
		resume: Boolean(f.resume),
		restart: Boolean(f.restart),
		batches: o,
	};
}

const resumeCommand = () =>
	rerunCommand("runbooks/backfill.ts", {
		drop: ["restart", "resume"],
		add: ["--resume"],
	});

/** The running batches' display; it also keeps the rows updated so far, for a stop. */
const progress = new BackfillProgress();

await runRunbook({
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
		...batchFlags({
			...DEFAULTS,
			help: {
				batchSize:
					"Rows per batch to start with; the size then adapts toward --target-batch.",
				maxBatchSize: "Largest batch the adaptation may reach.",
				targetBatch:
					"Target duration of one batch (rows stay locked that long at most); 0 keeps --batch-size fixed.",
				sleep: "Pause between batches, to leave room for the app.",
			},
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
	settings,
	steps: [
		{
			id: "job",
			title: "Check the table, the columns and the SQL",
			async run(ctx) {
				const { table, set, where } = ctx.settings;
				const db = await ctx.db();
				const version = await serverVersion(db);
				const t = await resolveTable(db, table);
				const job = defineJob(t, set, where, "backfill");
				const v = await validateJob(db, job);
				for (const line of jobLines(job)) ctx.log(line);
				return {
					summary: `PostgreSQL ${version.text}; the table, its key and the SQL are valid`,
					data: {
						job_id: job.id,
						table: t.display,
						key: t.key,
						where: job.where,
						estimated_matching: v.estimatedMatching,
					},
					value: job,
				};
			},
		},
		{
			id: "mode",
			title: "Look for an earlier run of this backfill (checkpoint)",
			async run(ctx) {
				const { resume, restart } = ctx.settings;
				const db = await ctx.db();
				const job = ctx.result<BackfillJob>("job");
				const cp = await readCheckpoint(db, job.id);
				if (!cp && resume) {
					for (const o of await otherCheckpoints(db, job.table, job.id))
						ctx.log(otherJobLine(job, o));
					throw usageError(
						`There is no checkpoint to resume for this backfill of ${job.table.display} (job ${job.id}).`,
						"--resume needs exactly the --table, --set and --where of the earlier run; or run without --resume to start.",
					);
				}
				if (!cp)
					return {
						summary: "none: starting from the beginning of the table",
						value: "new",
					};
				ctx.log(`earlier run (job ${job.id}): ${describeCheckpoint(cp)}`);
				if (!resume && !restart && cp.phase !== "done")
					throw refusal(
						`An earlier run of this backfill did not finish: ${describeCheckpoint(cp)}. Nothing was changed.`,
						`Carry on from there with: ${resumeCommand()}\n  or start over with --restart.`,
					);
				const flag = restart ? "restart" : resume ? "resume" : "none";
				return {
					summary: earlierRun(cp, flag),
					value: flag === "none" ? "new" : flag,
				};
			},
		},
		{
			id: "update",
			title: "Update the rows in batches",
			kind: "change",
			plan: (ctx) =>
				batchPlan(ctx.result<BackfillJob>("job"), ctx.settings.batches),
			async run(ctx) {
				const o = ctx.settings.batches;
				try {
					const result = await runBackfill(ctx.result<BackfillJob>("job"), {
						...o,
						mode: ctx.result<"new" | "resume" | "restart">("mode"),
						signal: ctx.signal,
						connect: () =>
							connect(ctx.target.direct, "runbook:backfill:batches"),
						onEvent: (e) => progress.show(e, ctx.log, o.maxCatchUpRounds),
					});
					progress.stop();
					const done = batchesDone(result);
					for (const line of done.lines) ctx.log(line);
					return {
						summary: done.summary,
						status: result.remaining > 0 ? "warning" : "ok",
						data: done.data,
						value: result,
					};
				} finally {
					progress.stop();
				}
			},
			onFailure: (ctx) =>
				batchesStopped(progress.updated, ctx.result<BackfillJob>("job").id),
			resume: resumeCommand,
		},
		{
			id: "check",
			title: "Final check: no row still matches the condition",
			async run(ctx) {
				const started = performance.now();
				// The engine counted as its batches ended; count again only when that found rows.
				const counted =
					!ctx.dryRun && ctx.result<BackfillResult>("update").remaining === 0;
				const n = counted
					? 0
					: await countMatching(await ctx.db(), ctx.result<BackfillJob>("job"));
				const took = formatDuration(performance.now() - started);
				const summary = finalCheck(n, { dryRun: ctx.dryRun, counted, took });
				if (ctx.dryRun || n === 0) return { summary, value: n };
				return { status: "problem", summary, data: { remaining: n }, value: n };
			},
			onFailure: () =>
				"Every batch is committed; this check changes nothing, the rows stay as they are.",
			resume: resumeCommand,
		},
	],
	summarize: (ctx) => {
		const job = ctx.has("job") ? ctx.result<BackfillJob>("job") : undefined;
		const result = ctx.has("update")
			? ctx.result<BackfillResult>("update")
			: undefined;
		return {
			job_id: job?.id ?? null,
			table: job?.table.display ?? null,
			rows_updated: result?.updated ?? null,
			remaining: ctx.has("check")
				? ctx.result<number>("check")
				: (result?.remaining ?? null),
		};
	},
});
