// Benchmark: what --keep-new-rows adds to an emergency rollback. On a ~1 GB Face Swap database:
// a backup, then 10,000 rows inserted (5,000 users, 5,000 purchases), the safety backup, the
// restore (transaction method, as the runbook's default), then the keep step: the rows the safety
// backup holds and the backup does not, put back in one transaction. Goal: keep step <= 10% of the
// restore. Also timed: the preview restore mode shows before it asks (backup vs database, per table).
//
//   npx tsx test/bench/keep-rows-bench.ts               # throw-away cluster, seeds ~1 GB (minutes)
//   BENCH_DATABASE_URL=postgresql://... npx tsx test/bench/keep-rows-bench.ts
//   BENCH_ROUNDS=3 BENCH_USERS=230000 BENCH_NEW_ROWS=10000

import { loadavg } from "node:os";
import { join } from "node:path";
import { createBackup } from "../../lib/backup/archive.ts";
import { putBackRows } from "../../lib/backup/keep-new-rows.ts";
import { restoreInTransaction } from "../../lib/backup/restore.ts";
import * as rowChanges from "../../lib/backup/row-changes.ts";
import { findTool } from "../../lib/pg/client-tools.ts";
import { connect } from "../../lib/pg/db.ts";
import { backupBenchSetup, median, secs } from "./face-swap-db.ts";

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const newRows = Number(process.env.BENCH_NEW_ROWS ?? 10_000);
const { db, conn, env } = await backupBenchSetup("keep-rows-bench-");
const pgRestore = await findTool("pg_restore");
const psql = await findTool("psql");
const client = await connect(conn, "keep-rows-bench");

// Each round takes its own backup first, as each deploy does: the restore of the round before
// rewrote every row, so the filter on the backup's snapshot would otherwise match them all.
let backup = await createBackup(conn, { kind: "pre-deploy", env });
const archive = (id: string) => join(env.BACKUP_DIR, `${id}.dump`);
const rows = Object.values(backup.row_counts).reduce((a, b) => a + b, 0);
console.log(
	`database: ${(db.bytes / 1e9).toFixed(2)} GB, ${rows.toLocaleString("en-US")} rows; ${newRows.toLocaleString("en-US")} rows inserted after the backup; ${rounds} rounds; load ${loadavg()[0].toFixed(1)}`,
);

const timed = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
	const t = performance.now();
	const r = await fn();
	return [performance.now() - t, r];
};
const results = {
	preview: [] as number[],
	restore: [] as number[],
	keep: [] as number[],
	ratio: [] as number[],
	readAllKeys: [] as number[],
};

for (let round = 1; round <= rounds; round++) {
	if (round > 1) backup = await createBackup(conn, { kind: "pre-deploy", env });
	const half = Math.floor(newRows / 2);
	await client.query(
		`insert into users (id, name, email, updated_at)
     select 'bench-' || $1::int || '-' || i, 'Bench ' || i, 'bench-' || $1::int || '-' || i || '@example.com', now()
       from generate_series(1, $2::int) i`,
		[round, half],
	);
	await client.query(
		`insert into purchases (id, user_id, amount_cents, currency, status, provider, updated_at)
     select 'bench-p-' || $1::int || '-' || i, 'bench-' || $1::int || '-' || i, 999, 'usd', 'SUCCEEDED', 'stripe', now()
       from generate_series(1, $2::int) i`,
		[round, newRows - half],
	);
	const tables = await rowChanges.appTables(client, ["public"]);
	const [previewMs, index] = await timed(async () => {
		const index = await rowChanges.indexBackup(
			pgRestore,
			archive(backup.id),
			tables,
			{
				compareWith: true,
			},
		);
		await rowChanges.compareWithDatabase(tables, index, psql, conn);
		return index;
	});
	await createBackup(conn, { kind: "safety", env });
	// The keep step's two parts: the new rows read just before the restore, put back after it.
	// Read as the runbook does (rows written after the backup's snapshot), and for comparison
	// as before the snapshot was recorded (every key).
	const [readAllMs] = await timed(() =>
		rowChanges.newRowsInDatabase(tables, index, client, psql, conn),
	);
	const [readMs, captured] = await timed(() =>
		rowChanges.newRowsInDatabase(tables, index, client, psql, conn, {
			since: backup.snapshot,
		}),
	);
	const [restoreMs] = await timed(() =>
		restoreInTransaction(conn, {
			archive: archive(backup.id),
			format: "custom",
			pgRestore,
			psql,
			lockTimeoutMs: 5000,
		}),
	);
	const [insertMs, put] = await timed(() =>
		putBackRows(client, captured, { lockTimeoutMs: 5000 }),
	);
	const keepMs = readMs + insertMs;
	const back = put.reduce((a, p) => a + p.inserted, 0);
	if (back !== newRows)
		throw new Error(`put back ${back} rows, expected ${newRows}`);
	results.preview.push(previewMs);
	results.restore.push(restoreMs);
	results.keep.push(keepMs);
	results.ratio.push(keepMs / restoreMs);
	results.readAllKeys.push(readAllMs);
	console.log(
		`round ${round}: preview ${secs(previewMs)}, restore ${secs(restoreMs)}, keep step ${secs(keepMs)} (read ${secs(readMs)} + put back ${secs(insertMs)}; reading every key instead: ${secs(readAllMs)}; +${((100 * keepMs) / restoreMs).toFixed(1)}% of the restore), ${back} rows back; load ${loadavg()[0].toFixed(1)}`,
	);
	// Back to the backup's state for the next round.
	await client.query("delete from purchases where id like 'bench-p-%'");
	await client.query("delete from users where id like 'bench-%'");
}
console.log(
	`median: preview ${secs(median(results.preview))}, restore ${secs(median(results.restore))}, keep step ${secs(median(results.keep))}, keep/restore +${(100 * median(results.ratio)).toFixed(1)}%; read of every key instead ${secs(median(results.readAllKeys))}`,
);
await client.end();
await db.stop();
