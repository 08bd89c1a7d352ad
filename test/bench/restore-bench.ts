// Benchmark: the emergency rollback's restore step (lib/backup/restore.ts) on a realistic Face Swap
// database, by method: the default "transaction" (one psql transaction: drop public's objects, the
// archive's SQL from pg_restore, COMMIT) against "swap" (pg_restore --jobs into a new database,
// then ALTER DATABASE RENAME twice in one transaction), and the plain
// `pg_restore --single-transaction --clean --if-exists` for reference (atomic too, but it leaves
// objects created after the backup in place).
//
//   npx tsx test/bench/restore-bench.ts                 # throw-away cluster, seeds ~1 GB (minutes)
//   BENCH_DATABASE_URL=postgresql://... npx tsx test/bench/restore-bench.ts   # reuse a seeded database
//   BENCH_ROUNDS=3 BENCH_USERS=230000 BENCH_JOBS=2

import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { createBackup, verifyBackup } from "../../lib/backup/archive.ts";
import {
	dropDatabase,
	restoreBySwap,
	restoreInTransaction,
} from "../../lib/backup/restore.ts";
import { findTool, runTool } from "../../lib/pg/client-tools.ts";
import { connect } from "../../lib/pg/db.ts";
import { withDatabase } from "../../lib/pg/target.ts";
import { backupBenchSetup, median, secs } from "./face-swap-db.ts";

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const jobs = Number(process.env.BENCH_JOBS ?? 2);
const { db, conn, dir, env } = await backupBenchSetup("restore-bench-");

const manifest = await createBackup(conn, { kind: "manual", env });
const verified = await verifyBackup({ manifest, archivePresent: true }, env);
if (!verified.ok) throw new Error(verified.problems.join("; "));
const archive = join(env.BACKUP_DIR, manifest.archive);
const rows = Object.values(manifest.row_counts).reduce((a, b) => a + b, 0);
const pgRestore = await findTool("pg_restore");
const psql = await findTool("psql");
console.log(
	`database: ${(db.bytes / 1e9).toFixed(2)} GB (pg_database_size), ${rows.toLocaleString("en-US")} rows; ` +
		`archive ${(manifest.size_bytes / 1e6).toFixed(0)} MB (dump ${secs(manifest.duration_ms)}); pg_restore ${pgRestore.version}; ${rounds} rounds`,
);

async function usersCount(): Promise<number> {
	const c = await connect(conn);
	try {
		return Number((await c.query("select count(*) as n from users")).rows[0].n);
	} finally {
		await c.end();
	}
}
const expectedUsers = manifest.row_counts.users;

async function check(label: string): Promise<void> {
	const n = await usersCount();
	if (n !== expectedUsers)
		throw new Error(
			`${label}: ${n} users after the restore, ${expectedUsers} expected`,
		);
}

async function transaction(): Promise<number> {
	const r = await restoreInTransaction(conn, {
		archive,
		format: manifest.format,
		pgRestore,
		psql,
		lockTimeoutMs: 5000,
	});
	await check("transaction");
	return r.durationMs;
}

async function swap(j: number): Promise<[number, number, number]> {
	const r = await restoreBySwap(conn, {
		archive,
		format: manifest.format,
		pgRestore,
		psql,
		lockTimeoutMs: 5000,
		jobs: j,
		maintenanceDb: "postgres",
	});
	const admin = await connect(withDatabase(conn, "postgres"));
	await dropDatabase(admin, r.oldDatabase);
	await admin.end();
	await check("swap");
	return [r.durationMs, r.restoreMs, r.swapMs];
}

async function plain(): Promise<number> {
	const t = performance.now();
	const r = await runTool(
		pgRestore,
		[
			"--single-transaction",
			"--clean",
			"--if-exists",
			"--exit-on-error",
			"--no-password",
			`--dbname=${conn.database}`,
			archive,
		],
		conn,
	);
	if (r.exitCode !== 0) throw new Error(r.stderr);
	await check("plain");
	return performance.now() - t;
}

const results: Record<string, number[]> = {
	transaction: [],
	swap: [],
	swapRestore: [],
	swapRename: [],
	swap1: [],
	plain: [],
};
// Alternate the order per round, so that drifting load from other processes weighs on all alike.
for (let i = 0; i < rounds; i++) {
	const order =
		i % 2 === 0
			? ["transaction", "swap", "swap1", "plain"]
			: ["plain", "swap1", "swap", "transaction"];
	for (const what of order) {
		if (what === "transaction") results.transaction.push(await transaction());
		if (what === "plain") results.plain.push(await plain());
		if (what === "swap1") results.swap1.push((await swap(1))[0]);
		if (what === "swap") {
			const [total, restore, rename] = await swap(jobs);
			results.swap.push(total);
			results.swapRestore.push(restore);
			results.swapRename.push(rename);
		}
	}
	console.log(
		`round ${i + 1}: transaction ${secs(results.transaction[i])}, swap -j${jobs} ${secs(results.swap[i])} (rename ${results.swapRename[i]} ms), swap -j1 ${secs(results.swap1[i])}, plain pg_restore -1 --clean ${secs(results.plain[i])}`,
	);
}
rmSync(dir, { recursive: true, force: true });

const m = Object.fromEntries(
	Object.entries(results).map(([k, v]) => [k, median(v)]),
);
console.log(
	`\nmedians over ${rounds} rounds (load average at the end: ${loadavg()
		.map((x) => x.toFixed(1))
		.join(" ")}):`,
);
console.log(
	`  transaction (default):                        ${secs(m.transaction)}`,
);
console.log(
	`  swap, pg_restore --jobs=${jobs} + rename:             ${secs(m.swap)} (restore ${secs(m.swapRestore)}, rename ${m.swapRename} ms)`,
);
console.log(
	`  swap, pg_restore --jobs=1 + rename:             ${secs(m.swap1)}`,
);
console.log(
	`  plain pg_restore --single-transaction --clean: ${secs(m.plain)}`,
);
console.log(
	`  transaction / swap -j${jobs}: ${(m.transaction / m.swap).toFixed(2)}; transaction / plain: ${(m.transaction / m.plain).toFixed(2)}`,
);
await db.stop();
