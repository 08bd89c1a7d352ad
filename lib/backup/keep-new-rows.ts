// After a restore: put back the rows inserted since the backup (users who signed up, purchases paid),
// read from the database just before the restore or, later, from the safety backup. Only inserted
// rows, only the columns the restored schema has, parents before children, all in one transaction: killed or failed, none of them is in.
// A row whose key (or another unique value) exists again is left out and named: the restored value
// wins, as it does for rows changed or deleted since the backup.

import { rerunCommand } from "../kit/rerun.ts";
import { columnTypes } from "../pg/catalog.ts";
import type { Db } from "../pg/db.ts";
import { quoteIdent } from "../pg/db.ts";
import type { NewRows } from "./row-changes.ts";

/** Parameters per INSERT stay under PostgreSQL's 65,535. */
const MAX_PARAMS = 30_000;

export interface PutBack {
	schema: string;
	table: string;
	/** Rows inserted since the backup, found in the safety backup. */
	found: number;
	/** Rows put back. */
	inserted: number;
	/** Keys of the rows left out because their key (or another unique value) exists again. */
	conflicts: string[];
}

/**
 * Inserts the new rows in one transaction (tables in the order given: parents first), then moves
 * each serial/identity sequence past the largest value now in its column.
 */
export async function putBackRows(
	db: Db,
	changes: NewRows[],
	opts: { lockTimeoutMs: number; signal?: AbortSignal },
): Promise<PutBack[]> {
	const results: PutBack[] = [];
	await db.query("BEGIN");
	try {
		await db.query(
			`SET LOCAL lock_timeout = ${Math.round(opts.lockTimeoutMs)}`,
		);
		await db.query("SET LOCAL datestyle = ISO");
		await db.query("SET LOCAL extra_float_digits = 3");
		for (const c of changes) {
			if (!c.rows.length) continue;
			if (opts.signal?.aborted) throw new Error("aborted");
			results.push(await insertRows(db, c));
			await advanceSequences(db, c.schema, c.table);
		}
		await db.query("COMMIT");
	} catch (err) {
		await db.query("ROLLBACK").catch(() => {});
		throw err;
	}
	return results;
}

async function insertRows(db: Db, c: NewRows): Promise<PutBack> {
	const rel = `${quoteIdent(c.schema)}.${quoteIdent(c.table)}`;
	const typeOf = await columnTypes(db, c.schema, c.table);
	const keyAt = c.key.map((k) => c.columns.indexOf(k));
	const keyCast = c.key
		.map((k) => `${quoteIdent(k)}::text`)
		.join(` || E'\\t' || `);
	const perBatch = Math.max(1, Math.floor(MAX_PARAMS / c.columns.length));
	const put = new Set<string>();
	for (let i = 0; i < c.rows.length; i += perBatch) {
		const batch = c.rows.slice(i, i + perBatch);
		const params: (string | null)[] = [];
		const values = batch.map((fields) => {
			const row = c.columns.map((col, j) => {
				params.push(fields[j]);
				return `$${params.length}::${typeOf.get(col) ?? "text"}`;
			});
			return `(${row.join(", ")})`;
		});
		const { rows } = await db.query<{ k: string }>(
			`INSERT INTO ${rel} (${c.columns.map(quoteIdent).join(", ")}) VALUES ${values.join(", ")}
       ON CONFLICT DO NOTHING RETURNING ${keyCast} AS k`,
			params,
		);
		for (const r of rows) put.add(r.k);
	}
	const keyOf = (fields: (string | null)[]) =>
		keyAt.map((i) => fields[i] ?? "").join("\t");
	return {
		schema: c.schema,
		table: c.table,
		found: c.rows.length,
		inserted: put.size,
		conflicts: c.rows.map(keyOf).filter((k) => !put.has(k)),
	};
}

/** setval for each sequence owned by a column of the table, to the column's largest value. */
async function advanceSequences(db: Db, schema: string, table: string) {
	const rel = `${quoteIdent(schema)}.${quoteIdent(table)}`;
	const { rows } = await db.query<{ col: string; seq: string }>(
		`select a.attname as col, pg_get_serial_sequence($1, a.attname) as seq
       from pg_attribute a where a.attrelid = $1::regclass and a.attnum > 0 and not a.attisdropped
        and pg_get_serial_sequence($1, a.attname) is not null`,
		[rel],
	);
	for (const r of rows)
		await db.query(
			`select setval($1::regclass, m) from (select max(${quoteIdent(r.col)}) as m from ${rel}) s
        where m is not null and m > coalesce(pg_sequence_last_value($1::regclass), 0)`,
			[r.seq],
		);
}

/** The command that puts the rows back later, keeping this run's --env-file. */
export function putBackCommand(
	script: string,
	safetyId: string,
	backupId: string,
	database: string,
	argv = process.argv.slice(2),
): string {
	const envFile = argv.indexOf("--env-file");
	const keep =
		envFile >= 0
			? argv.slice(envFile, envFile + 2)
			: argv.filter((a) => a.startsWith("--env-file="));
	return rerunCommand(script, {
		argv: keep,
		add: [
			"--put-back",
			safetyId,
			"--backup",
			backupId,
			"--yes",
			"--confirm",
			database,
		],
	});
}
