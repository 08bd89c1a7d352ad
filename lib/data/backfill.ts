// The online backfill engine: sets columns on the rows of a large, busy table that match a
// condition, in primary-key order (keyset: each batch starts after the last key of the one before,
// composite and non-integer keys included), each batch its own short transaction with a lock
// timeout and a statement timeout. The batch size adapts toward a target batch duration (as
// GitLab's batch optimizer does), and the engine backs off when batches hit lock timeouts, when
// they slow down, and when a replica lags. Progress lives in a checkpoint table in the target
// database, written in the same transaction as each batch, so a Ctrl-C, a kill or a lost
// connection loses at most the batch in flight and a resumed run carries on after the last
// committed key. A final count checks that no row still matches the condition; rows written by
// others behind the cursor meanwhile are caught up.
//
// Table and column names are checked against the catalog and quoted. --set expressions and the
// --where condition are SQL written by the operator, placed as written; they are checked by
// EXPLAIN-ing the statements in a rolled-back transaction before anything changes.

import { createHash } from "node:crypto";
import type pg from "pg";
import { Aborted, sleep } from "../kit/duration.ts";
import { EXIT, RunbookError, usageError } from "../kit/errors.ts";
import { readSql } from "../migrations/sql.ts";
import { type Db, quoteIdent, quoteLiteral } from "../pg/db.ts";
import {
	type Assignment,
	parseAssignments,
	sqlErrorIsBadInput,
	topLevelOffsets,
} from "./sql-fragment.ts";

// ---------------------------------------------------------------------------------------------
// The table, read from the catalog

export interface KeyColumn {
	name: string;
	/** format_type(), e.g. "text", "integer", "uuid": the cast for key values sent back as text. */
	type: string;
}

export interface BackfillTable {
	schema: string;
	name: string;
	/** "schema"."name", quoted. */
	sql: string;
	/** schema.name for display. */
	display: string;
	key: KeyColumn[];
	columns: Map<string, string>;
	/** pg_class.reltuples (-1 when never analyzed). */
	estimatedRows: number;
}

/**
 * `name`, `schema.name`, or with PostgreSQL's quoting (`"Audit Log"`, `billing."Invoice"`, read by
 * its parser). Without quotes a name is taken as written (Recipient finds "Recipient"), as an
 * operator copies it from a Prisma model.
 */
export function tableSpec(spec: string): {
	schema: string | null;
	name: string;
} {
	if (spec.includes('"')) {
		try {
			const [s] = readSql(`TABLE ${spec}`);
			const t = s?.table;
			if (t && s.sql === `TABLE ${spec}`.trim()) return t;
		} catch {
			// not a quoted name: taken as written below
		}
	}
	const dot = spec.indexOf(".");
	return dot === -1
		? { schema: null, name: spec }
		: { schema: spec.slice(0, dot), name: spec.slice(dot + 1) };
}

/** Finds the table (`name` or `schema.name`) and its primary key; a usage error (exit 2) when absent. */
export async function resolveTable(
	db: Db,
	spec: string,
): Promise<BackfillTable> {
	const { schema: schemaGiven, name } = tableSpec(spec);
	const { rows } = await db.query<{
		oid: number;
		schema: string;
		name: string;
		relkind: string;
		est: number;
	}>(
		`select c.oid, n.nspname as schema, c.relname as name, c.relkind, c.reltuples::float8 as est
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relname = $1 and n.nspname = coalesce($2, current_schema())`,
		[name, schemaGiven],
	);
	const t = rows[0];
	if (!t || !["r", "p"].includes(t.relkind)) {
		const near = await db.query<{ name: string }>(
			`select case when n.nspname = current_schema() then c.relname else n.nspname || '.' || c.relname end as name
         from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
          and n.nspname not like 'pg_toast%'
        order by (lower(c.relname) = lower($1)) desc, (c.relname ilike '%' || replace($1, '_', '') || '%') desc,
                 n.nspname <> current_schema(), c.relname
        limit 12`,
			[name],
		);
		throw usageError(
			t
				? `${spec} is not a table (it is a view or another kind of relation).`
				: `There is no table "${spec}" in this database.`,
			`Tables: ${near.rows.map((r) => r.name).join(", ") || "(none)"}. Use the table's name in the database (the model's @@map), e.g. generated_videos.`,
		);
	}
	const key = await db.query<KeyColumn>(
		`select a.attname as name, format_type(a.atttypid, a.atttypmod) as type
       from pg_index i
       join lateral unnest(i.indkey) with ordinality as k(attnum, ord) on true
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = $1 and i.indisprimary
      order by k.ord`,
		[t.oid],
	);
	if (key.rows.length === 0) {
		throw usageError(
			`${t.schema}.${t.name} has no primary key: the backfill walks the table in primary-key order.`,
			"Add a primary key first (or update it with one statement if the table is small).",
		);
	}
	const cols = await db.query<{ name: string; type: string }>(
		`select attname as name, format_type(atttypid, atttypmod) as type
       from pg_attribute where attrelid = $1 and attnum > 0 and not attisdropped order by attnum`,
		[t.oid],
	);
	return {
		schema: t.schema,
		name: t.name,
		sql: `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`,
		display: t.schema === "public" ? t.name : `${t.schema}.${t.name}`,
		key: key.rows,
		columns: new Map(cols.rows.map((c) => [c.name, c.type])),
		estimatedRows: Number(t.est),
	};
}

// ---------------------------------------------------------------------------------------------
// The job: what to set, on which rows, and the statements that do it

export interface BackfillJob {
	id: string;
	table: BackfillTable;
	assignments: Assignment[];
	/** The condition in force: --where, or "a column differs from its expression" when none was given. */
	where: string;
	whereGiven: boolean;
	/** The SET list, columns quoted, expressions as written. */
	setSql: string;
	/** Who runs it (shown in the checkpoint table). */
	runbook: string;
}

/** Checks --set against the table's columns and builds the job; usage errors (exit 2) for bad input. */
export function defineJob(
	table: BackfillTable,
	setText: string,
	whereText: string | undefined,
	runbook: string,
): BackfillJob {
	const assignments = parseAssignments(setText, "--set");
	for (const a of assignments) {
		if (!table.columns.has(a.column)) {
			throw usageError(
				`${table.display} has no column "${a.column}" (named in --set).`,
				`Its columns: ${[...table.columns.keys()].join(", ")}. Quote a mixed-case name: --set '"thumbPath" = ...'.`,
			);
		}
		if (table.key.some((k) => k.name === a.column)) {
			throw usageError(
				`--set changes ${a.column}, a primary-key column: the backfill walks the primary key and cannot move rows along it.`,
			);
		}
	}
	if (whereText !== undefined) topLevelOffsets(whereText, "\u0000", "--where");
	let where = whereText?.trim();
	if (!where) {
		if (assignments.some((a) => /^default$/i.test(a.expr))) {
			throw usageError(
				"--set uses DEFAULT: pass --where to say which rows still need it (e.g. --where 'col IS NULL').",
			);
		}
		where = assignments
			.map((a) => `${quoteIdent(a.column)} IS DISTINCT FROM (${a.expr})`)
			.join("\n   OR ");
	}
	const setSql = assignments
		.map((a) => `${quoteIdent(a.column)} = ${a.expr}`)
		.join(",\n       ");
	const id = createHash("sha256")
		.update(`${table.schema}.${table.name}\n${setSql}\n${where}`)
		.digest("hex")
		.slice(0, 16);
	return {
		id,
		table,
		assignments,
		where,
		whereGiven: whereText !== undefined && whereText.trim() !== "",
		setSql,
		runbook,
	};
}

/** An operator's condition in parentheses; a trailing -- comment must not swallow the ")". */
const paren = (sql: string) => (sql.includes("--") ? `(${sql}\n)` : `(${sql})`);

const keyList = (t: BackfillTable, prefix = "") =>
	t.key.map((k) => `${prefix}${quoteIdent(k.name)}`).join(", ");
const keyTuple = (t: BackfillTable, prefix = "") =>
	t.key.length === 1 ? keyList(t, prefix) : `(${keyList(t, prefix)})`;
const params = (t: BackfillTable, from: number) => {
	const p = t.key.map((k, i) => `$${from + i}::${k.type}`).join(", ");
	return t.key.length === 1 ? p : `(${p})`;
};
const keyText = (t: BackfillTable) =>
	t.key.map((k, i) => `${quoteIdent(k.name)}::text as k${i}`).join(", ");

/** The statements of one job, with $n parameters (key values travel as text and are cast back). */
export function jobStatements(job: BackfillJob) {
	const t = job.table;
	const n = t.key.length;
	const lower = (from: number) => `${keyTuple(t)} > ${params(t, from)}`;
	const upper = (from: number) => `${keyTuple(t)} <= ${params(t, from)}`;
	// The n-th key after the cursor: where this batch ends (an index-only walk of the primary key).
	const bound = (first: boolean) =>
		`SELECT ${keyText(t)} FROM ${t.sql}${first ? "" : ` WHERE ${lower(1)}`} ORDER BY ${keyList(t)} OFFSET $${first ? 1 : n + 1} LIMIT 1`;
	const update = (first: boolean, last: boolean) => {
		const conds: string[] = [];
		if (!first) conds.push(lower(1));
		if (!last) conds.push(upper(first ? 1 : n + 1));
		conds.push(paren(job.where));
		return (
			`WITH updated AS (\n  UPDATE ${t.sql}\n     SET ${job.setSql}\n   WHERE ${conds.join("\n     AND ")}\n` +
			`  RETURNING ${paren(job.where)} AS still_matches, ${keyText(t)}\n)\n` +
			"SELECT count(*)::int AS updated, count(*) FILTER (WHERE still_matches)::int AS still,\n" +
			`       (array_agg(${t.key.map((_, i) => `k${i}`).join(" || ', ' || ")}) FILTER (WHERE still_matches))[1] AS example\n  FROM updated`
		);
	};
	// Catch-up: rows written behind the cursor while the walk ran, found by the condition itself,
	// in key order after the last key of the batch before (one pass over the key space per round).
	const todoKeys = t.key.map((_, i) => `todo.__backfill_k${i}`);
	const catchUp = (first: boolean) =>
		`WITH todo AS MATERIALIZED (\n  SELECT ${t.key.map((k, i) => `${quoteIdent(k.name)} AS __backfill_k${i}`).join(", ")}\n` +
		`    FROM ${t.sql} WHERE ${first ? "" : `${lower(1)} AND `}${paren(job.where)}\n    ORDER BY ${keyList(t)} LIMIT $${first ? 1 : n + 1}\n), updated AS (\n` +
		`  UPDATE ${t.sql}\n     SET ${job.setSql}\n    FROM todo\n   WHERE ${keyTuple(t, `${t.sql}.`)} = ${
			n === 1 ? todoKeys[0] : `(${todoKeys.join(", ")})`
		}\n     AND ${paren(job.where)}\n  RETURNING ${paren(job.where)} AS still_matches, ${keyText(t)}\n), last AS (\n` +
		`  SELECT ${t.key.map((_, i) => `__backfill_k${i}::text AS l${i}`).join(", ")} FROM todo\n` +
		`   ORDER BY ${t.key.map((_, i) => `__backfill_k${i} DESC`).join(", ")} LIMIT 1\n)\n` +
		"SELECT (SELECT count(*)::int FROM updated) AS updated,\n" +
		"       (SELECT count(*)::int FROM updated WHERE still_matches) AS still,\n" +
		`       (SELECT ${t.key.map((_, i) => `k${i}`).join(" || ', ' || ")} FROM updated WHERE still_matches LIMIT 1) AS example,\n` +
		"       (SELECT count(*)::int FROM todo) AS picked, last.*\n" +
		"  FROM (SELECT 1) AS one LEFT JOIN last ON true";
	const count = `SELECT count(*)::bigint AS n FROM ${t.sql} WHERE ${paren(job.where)}`;
	return { bound, update, catchUp, count };
}

// ---------------------------------------------------------------------------------------------
// Checking the operator's SQL before anything changes

function fragmentError(err: unknown, label: string, hint?: string): never {
	if (sqlErrorIsBadInput(err)) {
		throw usageError(
			`${label} is not valid SQL here: ${(err as Error).message}. Nothing was changed.`,
			hint,
		);
	}
	throw err;
}

export interface Validation {
	/** The planner's estimate of the rows matching the condition now. */
	estimatedMatching: number;
	/** Rows the trial batch updated (and rolled back). */
	trialUpdated: number;
}

/** Rows of the trial batch that validateJob updates and rolls back. */
export const TRIAL_ROWS = 100;

/** The error for a condition that still matches rows after --set: a rerun would update them again. */
function notIdempotent(
	job: BackfillJob,
	r: { still: number; example: string | null },
	nothingChanged: boolean,
): RunbookError {
	const message =
		`${r.still} row(s) still match ${job.whereGiven ? "--where" : "the condition"} after --set is applied (e.g. the row with key ${r.example}): ` +
		"the condition must stop matching a row once it is set, or a rerun would update it again and the final check could never pass.";
	const hint = job.whereGiven
		? `Make --where exclude rows already done, e.g. --where '(${job.where}) AND <column> IS DISTINCT FROM <expression>', or make --set never give a value that still matches (a NULL from the expression, for one).`
		: "The expression gives a different value each time (volatile) or refers to the column itself: pass --where to say which rows need the update.";
	return nothingChanged
		? usageError(`${message} Nothing was changed.`, hint)
		: new RunbookError(
				`${message} That batch was rolled back; the batches before it stay committed.`,
				EXIT.failed,
				hint,
			);
}

/**
 * EXPLAINs the condition, the assignments and the batch statement in a transaction that is rolled
 * back: a syntax error, an unknown column or a type mismatch is a usage error (exit 2), and
 * nothing has changed.
 */
export async function validateJob(
	db: Db,
	job: BackfillJob,
): Promise<Validation> {
	const t = job.table;
	const st = jobStatements(job);
	const whereLabel = job.whereGiven
		? "--where"
		: "The condition derived from --set (no --where given)";
	const whereHint = job.whereGiven
		? "Write it as you would after WHERE, e.g. --where 'thumbnail_path IS NULL'."
		: "Pass --where to say which rows need the update (e.g. --where 'col IS NULL').";
	const keys = t.key.map(() => null);
	await db.query(
		"BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '30s'",
	);
	try {
		try {
			await db.query(`EXPLAIN UPDATE ${t.sql} SET ${job.setSql} WHERE false`);
		} catch (err) {
			fragmentError(
				err,
				"--set",
				"Write it as you would after SET, e.g. --set \"thumbnail_path = 'thumbs/' || id\".",
			);
		}
		let estimatedMatching = 0;
		try {
			const { rows } = await db.query(
				`EXPLAIN (FORMAT JSON) SELECT 1 FROM ${t.sql} WHERE ${paren(job.where)}`,
			);
			estimatedMatching = Number(rows[0]["QUERY PLAN"][0].Plan["Plan Rows"]);
		} catch (err) {
			fragmentError(err, whereLabel, whereHint);
		}
		try {
			await db.query(`EXPLAIN ${st.update(false, false)}`, [...keys, ...keys]);
			await db.query(`EXPLAIN ${st.catchUp(false)}`, [...keys, 1000]);
		} catch (err) {
			fragmentError(err, "--set/--where");
		}
		// A trial of the first batch on at most TRIAL_ROWS rows, rolled back below: errors that only
		// data shows (a cast that fails, a constraint), and a condition that still matches updated rows.
		let trial: { updated: number; still: number; example: string | null };
		try {
			const b = await db.query(st.bound(true), [TRIAL_ROWS - 1]);
			const upper = b.rows[0]
				? t.key.map((_, i) => b.rows[0][`k${i}`] as string)
				: null;
			trial = (await db.query(st.update(true, upper === null), upper ?? []))
				.rows[0];
		} catch (err) {
			fragmentError(
				err,
				"--set/--where (tried on the first rows of the table, then rolled back)",
			);
		}
		if (trial.still > 0) throw notIdempotent(job, trial, true);
		return { estimatedMatching, trialUpdated: trial.updated };
	} finally {
		await db.query("ROLLBACK").catch(() => {});
	}
}

// ---------------------------------------------------------------------------------------------
// The checkpoint table

export const CHECKPOINT_SCHEMA = "runbooks";
export const CHECKPOINT_TABLE = `${CHECKPOINT_SCHEMA}.backfill_checkpoints`;

export const CHECKPOINT_DDL = [
	`CREATE SCHEMA IF NOT EXISTS ${CHECKPOINT_SCHEMA}`,
	`CREATE TABLE IF NOT EXISTS ${CHECKPOINT_TABLE} (
  job_id       text PRIMARY KEY,
  table_name   text NOT NULL,
  set_sql      text NOT NULL,
  where_sql    text NOT NULL,
  key_columns  text[] NOT NULL,
  last_key     text[],
  phase        text NOT NULL DEFAULT 'walk',
  pass         integer NOT NULL DEFAULT 1,
  rows_scanned bigint NOT NULL DEFAULT 0,
  rows_updated bigint NOT NULL DEFAULT 0,
  batches      integer NOT NULL DEFAULT 0,
  batch_size   integer NOT NULL,
  runbook      text,
  started_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
)`,
];

export interface Checkpoint {
	job_id: string;
	table_name: string;
	set_sql: string;
	where_sql: string;
	last_key: string[] | null;
	/** walk: keyset walk in progress; catch-up: rows behind the cursor; done. */
	phase: "walk" | "catch-up" | "done";
	pass: number;
	rows_scanned: number;
	rows_updated: number;
	batches: number;
	batch_size: number;
	started_at: Date;
	updated_at: Date;
	finished_at: Date | null;
}

/** The job's checkpoint, or null (also when the checkpoint table does not exist yet). */
export async function readCheckpoint(
	db: Db,
	jobId: string,
): Promise<Checkpoint | null> {
	const exists = await db.query<{ ok: boolean }>(
		"select to_regclass($1) is not null as ok",
		[CHECKPOINT_TABLE],
	);
	if (!exists.rows[0].ok) return null;
	const { rows } = await db.query<Checkpoint>(
		`select job_id, table_name, set_sql, where_sql, last_key, phase, pass, rows_scanned::float8 as rows_scanned,
            rows_updated::float8 as rows_updated, batches, batch_size, started_at, updated_at, finished_at
       from ${CHECKPOINT_TABLE} where job_id = $1`,
		[jobId],
	);
	return rows[0] ?? null;
}

/** Other checkpoints of the same table, to help an operator who changed --set or --where before --resume. */
export async function otherCheckpoints(
	db: Db,
	table: BackfillTable,
	jobId: string,
): Promise<Checkpoint[]> {
	const exists = await db.query<{ ok: boolean }>(
		"select to_regclass($1) is not null as ok",
		[CHECKPOINT_TABLE],
	);
	if (!exists.rows[0].ok) return [];
	const { rows } = await db.query<Checkpoint>(
		`select job_id, set_sql, where_sql, phase, rows_updated::float8 as rows_updated, updated_at
       from ${CHECKPOINT_TABLE} where table_name = $1 and job_id <> $2 order by updated_at desc limit 5`,
		[`${table.schema}.${table.name}`, jobId],
	);
	return rows;
}

export function describeCheckpoint(cp: Checkpoint): string {
	const where =
		cp.phase === "done"
			? "finished"
			: cp.phase === "catch-up"
				? "catching up rows written behind the cursor"
				: cp.last_key
					? `stopped after key (${cp.last_key.join(", ")})`
					: "stopped before its first batch committed";
	return `${where}, ${cp.rows_updated.toLocaleString("en-US")} rows updated in ${cp.batches} batches, last progress ${cp.updated_at.toISOString()}`;
}

// ---------------------------------------------------------------------------------------------
// Running it

export interface BackfillOptions {
	/** Rows per batch to start with. */
	batchSize: number;
	/** Target duration of one batch; 0 keeps batchSize fixed. */
	targetBatchMs: number;
	minBatchSize: number;
	maxBatchSize: number;
	/** Pause between batches. */
	sleepMs: number;
	lockTimeoutMs: number;
	statementTimeoutMs: number;
	/** Pause while a replica's replay lag exceeds this (0: do not watch replicas). */
	maxReplicationLagMs: number;
	/** Consecutive failed attempts (lock timeouts, statement timeouts, deadlocks) before giving up. */
	maxRetries: number;
	/** Catch-up rounds for rows written behind the cursor, after the walk. */
	maxCatchUpRounds: number;
	/** new: start (replacing a finished checkpoint); resume: carry on; restart: start over. */
	mode: "new" | "resume" | "restart";
	signal?: AbortSignal;
	/** Opens the engine's own connection (reopened after a lost connection). */
	connect: () => Promise<pg.Client>;
	onEvent?: (event: BackfillEvent) => void;
}

export const DEFAULTS = {
	batchSize: 1000,
	targetBatchMs: 200,
	minBatchSize: 100,
	maxBatchSize: 50_000,
	sleepMs: 0,
	lockTimeoutMs: 1000,
	statementTimeoutMs: 30_000,
	maxReplicationLagMs: 10_000,
	maxRetries: 10,
	maxCatchUpRounds: 3,
};

export type BackfillEvent =
	| {
			kind: "start";
			resumedFrom: Checkpoint | null;
			estimatedRows: number;
			batchSize: number;
	  }
	| {
			kind: "batch";
			scanned: number;
			updated: number;
			totalScanned: number;
			totalUpdated: number;
			estimatedRows: number;
			batchSize: number;
			ms: number;
			phase: "walk" | "catch-up";
	  }
	| { kind: "backoff"; reason: string; ms: number }
	| { kind: "retry"; reason: string; attempt: number; ms: number }
	| { kind: "reconnect"; reason: string; attempt: number }
	| { kind: "check"; remaining: number; round: number };

export interface BackfillResult {
	jobId: string;
	updated: number;
	scanned: number;
	batches: number;
	/** Updated and scanned by this run only (a resumed run's earlier work excluded). */
	updatedThisRun: number;
	scannedThisRun: number;
	elapsedMs: number;
	/** Time spent inside batch transactions (the rest is checks, sleeps and back-offs). */
	batchMs: number;
	longestBatchMs: number;
	finalBatchSize: number;
	retries: number;
	catchUpRounds: number;
	/** Rows matching the condition at the last check (0 when complete). */
	remaining: number;
	resumedFrom: Checkpoint | null;
}

const RETRYABLE = new Set(["55P03", "40P01", "40001", "57014"]);
const CONNECTION_LOST = new Set([
	"57P01",
	"57P02",
	"57P03",
	"08000",
	"08003",
	"08006",
	"ECONNRESET",
	"EPIPE",
	"ECONNREFUSED",
]);

const isConnectionLoss = (err: unknown) => {
	const e = err as { code?: string; message?: string };
	return (
		(e.code !== undefined && CONNECTION_LOST.has(e.code)) ||
		/Connection terminated|connection is closed|not queryable|Client was closed|socket hang up/i.test(
			e.message ?? "",
		)
	);
};

const reasonOf = (err: unknown) => {
	const e = err as { code?: string; message?: string };
	switch (e.code) {
		case "55P03":
			return "a row or table lock was not granted within the lock timeout";
		case "40P01":
			return "deadlock with another session";
		case "40001":
			return "serialization failure";
		case "57014":
			return "the batch hit the statement timeout";
		default:
			return e.message ?? String(err);
	}
};

const clamp = (v: number, lo: number, hi: number) =>
	Math.max(lo, Math.min(hi, v));

/** The next batch size from the last batch's duration (GitLab-style: grow at most 1.5x, shrink at most 2x per step). */
export function nextBatchSize(
	size: number,
	ms: number,
	opts: Pick<
		BackfillOptions,
		"targetBatchMs" | "minBatchSize" | "maxBatchSize"
	>,
): number {
	if (opts.targetBatchMs <= 0) return size;
	const factor = clamp(opts.targetBatchMs / Math.max(ms, 1), 0.5, 1.5);
	return Math.round(clamp(size * factor, opts.minBatchSize, opts.maxBatchSize));
}

/** Runs (or resumes) the job to the end: the keyset walk, then catch-up rounds until no row matches. */
export async function runBackfill(
	job: BackfillJob,
	opts: BackfillOptions,
): Promise<BackfillResult> {
	const t = job.table;
	const st = jobStatements(job);
	const started = performance.now();
	let db = await opts.connect();
	let inBatch = false;
	// Ctrl-C: let the batch in flight commit (it is short); if it does not end soon, drop the
	// connection so the server rolls it back. Either way the checkpoint matches what committed.
	const onAbort = () => {
		setTimeout(() => {
			if (inBatch) db.end().catch(() => {});
		}, 2500).unref();
	};
	opts.signal?.addEventListener("abort", onAbort, { once: true });

	const setup = async () => {
		await db.query(`BEGIN; SET LOCAL lock_timeout = '${opts.lockTimeoutMs}ms'`);
		try {
			for (const ddl of CHECKPOINT_DDL) await db.query(ddl);
			await db.query("COMMIT");
		} catch (err) {
			await db.query("ROLLBACK").catch(() => {});
			if ((err as { code?: string }).code === "42501") {
				throw new RunbookError(
					`Cannot create the checkpoint table ${CHECKPOINT_TABLE}: permission denied. Nothing was changed.`,
					EXIT.failed,
					`Grant the runbook's user CREATE on the database (or create schema ${CHECKPOINT_SCHEMA} for it).`,
				);
			}
			throw err;
		}
	};
	await setup();

	let cp = await readCheckpoint(db, job.id);
	const resumedFrom = opts.mode === "resume" ? cp : null;
	if (opts.mode === "resume" && !cp) {
		throw usageError(
			"There is no checkpoint to resume for this backfill (same --table, --set and --where).",
		);
	}
	if (opts.mode !== "resume" || !cp) {
		const { rows } = await db.query<Checkpoint>(
			`INSERT INTO ${CHECKPOINT_TABLE} (job_id, table_name, set_sql, where_sql, key_columns, batch_size, runbook)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (job_id) DO UPDATE SET last_key = NULL, phase = 'walk', pass = 1, rows_scanned = 0, rows_updated = 0,
         batches = 0, batch_size = EXCLUDED.batch_size, runbook = EXCLUDED.runbook, started_at = now(), updated_at = now(),
         finished_at = NULL
       RETURNING job_id, table_name, set_sql, where_sql, last_key, phase, pass, rows_scanned::float8 as rows_scanned,
                 rows_updated::float8 as rows_updated, batches, batch_size, started_at, updated_at, finished_at`,
			[
				job.id,
				`${t.schema}.${t.name}`,
				job.setSql,
				job.where,
				t.key.map((k) => k.name),
				opts.batchSize,
				job.runbook,
			],
		);
		cp = rows[0];
	}
	let state: Checkpoint = cp;
	let size = clamp(
		opts.mode === "resume" ? state.batch_size : opts.batchSize,
		1,
		opts.maxBatchSize,
	);
	if (opts.targetBatchMs > 0)
		size = clamp(size, opts.minBatchSize, opts.maxBatchSize);
	const base = { updated: state.rows_updated, scanned: state.rows_scanned };
	let estimatedRows = t.estimatedRows;
	if (estimatedRows < 0) {
		const { rows } = await db.query<{ n: number }>(
			`select count(*)::float8 as n from ${t.sql}`,
		);
		estimatedRows = rows[0].n;
	}
	opts.onEvent?.({
		kind: "start",
		resumedFrom,
		estimatedRows,
		batchSize: size,
	});

	let batchMs = 0;
	let longest = 0;
	let retries = 0;
	let consecutive = 0;
	let committedThisRun = false;
	let lastLagCheck = 0;
	let watchReplicas = opts.maxReplicationLagMs > 0;

	const checkReplicas = async () => {
		if (!watchReplicas || performance.now() - lastLagCheck < 2000) return;
		lastLagCheck = performance.now();
		for (;;) {
			const { rows } = await db.query<{ n: number; lag_ms: number | null }>(
				`select count(*)::int as n, max(extract(epoch from coalesce(replay_lag, '0'::interval)) * 1000)::float8 as lag_ms
           from pg_stat_replication`,
			);
			if (rows[0].n === 0) {
				// No replica streams from this server: stop asking until the next run.
				watchReplicas = false;
				return;
			}
			const lag = rows[0].lag_ms ?? 0;
			if (lag <= opts.maxReplicationLagMs) return;
			opts.onEvent?.({
				kind: "backoff",
				reason: `replica replay lag ${Math.round(lag)}ms > ${opts.maxReplicationLagMs}ms`,
				ms: 1000,
			});
			await sleep(1000, opts.signal);
		}
	};

	const reconnect = async (err: unknown) => {
		for (let attempt = 1; ; attempt++) {
			opts.onEvent?.({ kind: "reconnect", reason: reasonOf(err), attempt });
			await db.end().catch(() => {});
			await sleep(Math.min(1000 * 2 ** (attempt - 1), 8000), opts.signal);
			try {
				db = await opts.connect();
				const fresh = await readCheckpoint(db, job.id);
				if (fresh) state = fresh;
				return;
			} catch (e) {
				if (attempt >= 5) {
					throw new RunbookError(
						`Lost the connection and could not reconnect (${reasonOf(e)}).`,
						EXIT.failed,
						"Every committed batch is in the checkpoint: rerun with --resume when the database is reachable.",
					);
				}
			}
		}
	};

	/** One batch in its own transaction; returns null when the pass has reached the end of the table. */
	const batch = async (phase: "walk" | "catch-up") => {
		const first = !state.last_key;
		const began = performance.now();
		inBatch = true;
		try {
			await db.query(
				`BEGIN; SET LOCAL lock_timeout = '${opts.lockTimeoutMs}ms'; SET LOCAL statement_timeout = '${opts.statementTimeoutMs}ms'; SET LOCAL idle_in_transaction_session_timeout = '60s'`,
			);
			let result: { updated: number; still: number; example: string | null };
			let scanned: number;
			let newKey: string[] | null;
			let done: boolean;
			if (phase === "walk") {
				const lowerParams = first ? [] : (state.last_key as string[]);
				const b = await db.query(st.bound(first), [...lowerParams, size - 1]);
				const upperKey = b.rows[0]
					? t.key.map((_, i) => b.rows[0][`k${i}`] as string)
					: null;
				const r = await db.query(st.update(first, upperKey === null), [
					...lowerParams,
					...(upperKey ?? []),
				]);
				result = r.rows[0];
				done = upperKey === null;
				// The last batch runs to the end of the table: its size is unknown, at least what it updated.
				scanned = done ? result.updated : size;
				newKey = upperKey;
			} else {
				const lowerParams = first ? [] : (state.last_key as string[]);
				const r = await db.query(st.catchUp(first), [...lowerParams, size]);
				result = r.rows[0];
				const picked = r.rows[0].picked as number;
				done = picked < size;
				scanned = result.updated;
				newKey =
					done || r.rows[0].l0 === null
						? null
						: t.key.map((_, i) => r.rows[0][`l${i}`] as string);
			}
			if (result.still > 0) {
				await db.query("ROLLBACK");
				throw notIdempotent(
					job,
					result,
					!committedThisRun && state.rows_updated === 0,
				);
			}
			const totalScanned = state.rows_scanned + scanned;
			const totalUpdated = state.rows_updated + result.updated;
			const nextPhase = phase === "walk" && done ? "catch-up" : phase;
			await db.query(
				`UPDATE ${CHECKPOINT_TABLE} SET last_key = $2, phase = $3, rows_scanned = $4, rows_updated = $5,
                batches = batches + 1, batch_size = $6, updated_at = now() WHERE job_id = $1`,
				[job.id, newKey, nextPhase, totalScanned, totalUpdated, size],
			);
			await db.query("COMMIT");
			committedThisRun = true;
			const ms = performance.now() - began;
			state = {
				...state,
				last_key: newKey,
				phase: nextPhase,
				rows_scanned: totalScanned,
				rows_updated: totalUpdated,
				batches: state.batches + 1,
			};
			batchMs += ms;
			longest = Math.max(longest, ms);
			consecutive = 0;
			opts.onEvent?.({
				kind: "batch",
				scanned,
				updated: result.updated,
				totalScanned,
				totalUpdated,
				estimatedRows,
				batchSize: size,
				ms,
				phase,
			});
			if (!done || phase === "catch-up") {
				const full = phase === "walk" || result.updated === size;
				if (full) size = nextBatchSize(size, ms, opts);
				if (opts.targetBatchMs > 0 && ms > 2 * opts.targetBatchMs) {
					const pause = Math.min(Math.round(ms - opts.targetBatchMs), 5000);
					opts.onEvent?.({
						kind: "backoff",
						reason: `batch took ${Math.round(ms)}ms, over twice the ${opts.targetBatchMs}ms target (lock waits or load)`,
						ms: pause,
					});
					await sleep(pause, opts.signal);
				}
			}
			return done;
		} catch (err) {
			if (err instanceof RunbookError) throw err;
			if (isConnectionLoss(err) && !opts.signal?.aborted) {
				await reconnect(err);
				return false;
			}
			await db.query("ROLLBACK").catch(() => {});
			const code = (err as { code?: string }).code;
			if (code && RETRYABLE.has(code) && !opts.signal?.aborted) {
				consecutive++;
				retries++;
				if (consecutive > opts.maxRetries) {
					throw new RunbookError(
						`Gave up after ${opts.maxRetries} failed attempts in a row: ${reasonOf(err)}.`,
						EXIT.failed,
						"Another session keeps rows or the table locked (see pg_stat_activity / pg_locks), or the batches are too slow for the statement timeout.",
					);
				}
				const wait =
					Math.min(100 * 2 ** (consecutive - 1), 10_000) +
					Math.round(Math.random() * 100);
				size = Math.max(
					opts.targetBatchMs > 0 ? opts.minBatchSize : 1,
					Math.floor(size / 2),
				);
				opts.onEvent?.({
					kind: "retry",
					reason: reasonOf(err),
					attempt: consecutive,
					ms: wait,
				});
				await sleep(wait, opts.signal);
				return false;
			}
			if (opts.signal?.aborted) throw new Aborted();
			const e = err as { message?: string; code?: string };
			throw new RunbookError(
				`A batch failed${state.last_key ? ` after key (${state.last_key.join(", ")})` : " at the start of the table"}: ${e.message}${e.code ? ` (SQLSTATE ${e.code})` : ""}. It was rolled back.`,
				EXIT.failed,
				"Fix the data or the expression it trips on; batches before it stay committed.",
			);
		} finally {
			inBatch = false;
		}
	};

	const countRemaining = async (): Promise<number> => {
		for (;;) {
			try {
				await db.query(
					"BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '30s'",
				);
				const { rows } = await db.query<{ n: string }>(st.count);
				await db.query("COMMIT");
				return Number(rows[0].n);
			} catch (err) {
				await db.query("ROLLBACK").catch(() => {});
				if (isConnectionLoss(err) && !opts.signal?.aborted) {
					await reconnect(err);
					continue;
				}
				throw err;
			}
		}
	};

	let remaining = -1;
	let rounds = 0;
	try {
		if (state.phase === "walk") {
			for (;;) {
				if (opts.signal?.aborted) throw new Aborted();
				await checkReplicas();
				if (await batch("walk")) break;
				if (opts.sleepMs > 0) await sleep(opts.sleepMs, opts.signal);
			}
		}
		for (;;) {
			if (opts.signal?.aborted) throw new Aborted();
			remaining = await countRemaining();
			opts.onEvent?.({ kind: "check", remaining, round: rounds });
			if (remaining === 0 || rounds >= opts.maxCatchUpRounds) break;
			rounds++;
			for (;;) {
				if (opts.signal?.aborted) throw new Aborted();
				await checkReplicas();
				if (await batch("catch-up")) break;
				if (opts.sleepMs > 0) await sleep(opts.sleepMs, opts.signal);
			}
		}
		if (remaining === 0) {
			await db.query(
				`UPDATE ${CHECKPOINT_TABLE} SET phase = 'done', finished_at = now(), updated_at = now() WHERE job_id = $1`,
				[job.id],
			);
		}
	} catch (err) {
		if (err instanceof Aborted)
			throw new RunbookError("Interrupted by the operator.", EXIT.interrupted);
		throw err;
	} finally {
		opts.signal?.removeEventListener("abort", onAbort);
		await db.end().catch(() => {});
	}
	return {
		jobId: job.id,
		updated: state.rows_updated,
		scanned: state.rows_scanned,
		batches: state.batches,
		updatedThisRun: state.rows_updated - base.updated,
		scannedThisRun: state.rows_scanned - base.scanned,
		elapsedMs: performance.now() - started,
		batchMs,
		longestBatchMs: longest,
		finalBatchSize: size,
		retries,
		catchUpRounds: rounds,
		remaining,
		resumedFrom,
	};
}

/** Rows matching the job's condition now (a full scan; no timeout). */
export async function countMatching(db: Db, job: BackfillJob): Promise<number> {
	await db.query(
		"BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '30s'",
	);
	try {
		const { rows } = await db.query<{ n: string }>(jobStatements(job).count);
		return Number(rows[0].n);
	} finally {
		await db.query("COMMIT").catch(() => {});
	}
}

/** The statements of one batch as the operator reads them in a plan. */
export function describeBatch(
	job: BackfillJob,
	opts: Pick<BackfillOptions, "lockTimeoutMs" | "statementTimeoutMs">,
): string[] {
	const st = jobStatements(job);
	return [
		`-- each batch, its own transaction (key values: $n, the batch size: the OFFSET parameter)`,
		`BEGIN; SET LOCAL lock_timeout = '${opts.lockTimeoutMs}ms'; SET LOCAL statement_timeout = '${opts.statementTimeoutMs}ms';`,
		`${st.bound(false)};  -- the batch's last key`,
		`${st.update(false, false)};`,
		`UPDATE ${CHECKPOINT_TABLE} SET last_key = <batch's last key>, rows_updated = ... WHERE job_id = ${quoteLiteral(job.id)};`,
		"COMMIT;",
		"-- at the end, the final check (and catch-up batches for rows written behind the cursor meanwhile):",
		`${st.count};`,
	];
}
