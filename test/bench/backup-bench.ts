// Benchmark: the backup step (lib/backup/archive.ts: pg_dump --snapshot with exact row counts taken in
// that snapshot meanwhile, sha256, manifest, then verification with sha256 + pg_restore --list)
// against a bare `pg_dump -Fc` of the same ~1 GB Face Swap database. Target: at most 10% slower.
//
//   npx tsx test/bench/backup-bench.ts                 # throw-away cluster, seeds ~1 GB (about 4 min)
//   BENCH_DATABASE_URL=postgresql://... npx tsx test/bench/backup-bench.ts   # reuse a seeded database
//   BENCH_ROUNDS=3 BENCH_USERS=230000

import { mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import {
	createBackup,
	estimateDumpBytes,
	verifyBackup,
} from "../../lib/backup/archive.ts";
import { findTool, runTool } from "../../lib/pg/client-tools.ts";
import { parseConnection } from "../../lib/pg/target.ts";
import { faceSwapDatabase, median, secs } from "./face-swap-db.ts";

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const db = await faceSwapDatabase();
const conn = parseConnection(db.url);
const pgDump = await findTool("pg_dump");
const dir = mkdtempSync(join(tmpdir(), "backup-bench-"));
const env = { BACKUP_DIR: join(dir, "backups"), BACKUP_MIN_FREE_MB: "0" };

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
	const t = performance.now();
	const r = await fn();
	return [performance.now() - t, r];
}

async function bare(args: string[], out: string): Promise<number> {
	const [ms, run] = await timed(() =>
		runTool(pgDump, [...args, `--file=${out}`], conn),
	);
	if (run.exitCode !== 0) throw new Error(run.stderr);
	return ms;
}

const sizeOf = (p: string): number => {
	const s = statSync(p);
	if (!s.isDirectory()) return s.size;
	return 0;
};

// Exact counts alone, outside pg_dump, to see what they would cost if done one after the other.
async function countsAlone(): Promise<number> {
	const c = new pg.Client({ connectionString: db.url });
	await c.connect();
	const [ms] = await timed(async () => {
		const { rows } = await c.query<{ t: string }>(
			"select format('%I.%I', schemaname, tablename) as t from pg_tables where schemaname = 'public'",
		);
		for (const r of rows) await c.query(`select count(*) from ${r.t}`);
	});
	await c.end();
	return ms;
}

console.log(
	`database: ${(db.bytes / 1e9).toFixed(2)} GB (pg_database_size), PostgreSQL client ${pgDump.version}, ${rounds} rounds`,
);
// Warm the page cache once, so the first measured run is not penalised.
await bare(["--format=custom"], join(dir, "warm.dump"));
rmSync(join(dir, "warm.dump"));

const results: Record<string, number[]> = {
	bare: [],
	dump: [],
	verify: [],
	step: [],
	ratio: [],
	counts: [],
	bareDir: [],
	stepDir: [],
	ratioDir: [],
};
let dumpBytes = 0;

async function bareCustom(): Promise<number> {
	const ms = await bare(["--format=custom"], join(dir, "bare.dump"));
	dumpBytes = sizeOf(join(dir, "bare.dump"));
	rmSync(join(dir, "bare.dump"));
	return ms;
}

async function stepCustom(): Promise<[number, number]> {
	const [dumpMs, m] = await timed(() =>
		createBackup(conn, { kind: "manual", env }),
	);
	const [verifyMs, v] = await timed(() =>
		verifyBackup({ manifest: m, archivePresent: true }, env),
	);
	if (!v.ok) throw new Error(`verification failed: ${v.problems.join("; ")}`);
	rmSync(env.BACKUP_DIR, { recursive: true, force: true });
	return [dumpMs, verifyMs];
}

async function bareDirectory(): Promise<number> {
	const ms = await bare(
		["--format=directory", "--jobs=2"],
		join(dir, "bare.dir"),
	);
	rmSync(join(dir, "bare.dir"), { recursive: true });
	return ms;
}

async function stepDirectory(): Promise<number> {
	const [ms] = await timed(async () => {
		const m = await createBackup(conn, {
			kind: "manual",
			env,
			format: "directory",
			jobs: 2,
		});
		await verifyBackup({ manifest: m, archivePresent: true }, env);
	});
	rmSync(env.BACKUP_DIR, { recursive: true, force: true });
	return ms;
}

// Paired rounds, the order alternating (bare first, then the step first), so that load from
// other processes drifting during the run weighs on both sides alike; the ratio is per round.
for (let i = 0; i < rounds; i++) {
	let bareMs: number;
	let dumpMs: number;
	let verifyMs: number;
	if (i % 2 === 0) {
		bareMs = await bareCustom();
		[dumpMs, verifyMs] = await stepCustom();
	} else {
		[dumpMs, verifyMs] = await stepCustom();
		bareMs = await bareCustom();
	}
	results.bare.push(bareMs);
	results.dump.push(dumpMs);
	results.verify.push(verifyMs);
	results.step.push(dumpMs + verifyMs);
	results.ratio.push((dumpMs + verifyMs) / bareMs);
	results.counts.push(await countsAlone());
	let bareDirMs: number;
	let stepDirMs: number;
	if (i % 2 === 0) {
		bareDirMs = await bareDirectory();
		stepDirMs = await stepDirectory();
	} else {
		stepDirMs = await stepDirectory();
		bareDirMs = await bareDirectory();
	}
	results.bareDir.push(bareDirMs);
	results.stepDir.push(stepDirMs);
	results.ratioDir.push(stepDirMs / bareDirMs);
	console.log(
		`round ${i + 1}: bare -Fc ${secs(bareMs)}, createBackup ${secs(dumpMs)} + verify ${secs(verifyMs)} = ${((results.ratio[i] - 1) * 100).toFixed(1)}%; ` +
			`counts alone ${secs(results.counts[i])}; bare -Fd -j2 ${secs(bareDirMs)}, step -Fd -j2 ${secs(stepDirMs)} = ${((results.ratioDir[i] - 1) * 100).toFixed(1)}%`,
	);
}
rmSync(dir, { recursive: true, force: true });

const m = Object.fromEntries(
	Object.entries(results).map(([k, v]) => [k, median(v)]),
);
const pct = (r: number) => `${((r - 1) * 100).toFixed(1)}%`;
console.log(
	`\nmedians over ${rounds} rounds (load average at the end: ${loadavg()
		.map((x) => x.toFixed(1))
		.join(" ")}):`,
);
console.log(`  bare pg_dump -Fc:                       ${secs(m.bare)}`);
console.log(`  createBackup (dump + counts + sha256):  ${secs(m.dump)}`);
console.log(`  verify (sha256 + pg_restore --list):    ${secs(m.verify)}`);
console.log(
	`  backup step (createBackup + verify):    ${secs(m.step)}; per-round step/bare: ${pct(m.ratio)} (target <= 10%)`,
);
console.log(`  exact counts alone (sequential):        ${secs(m.counts)}`);
console.log(`  bare pg_dump -Fd -j2:                   ${secs(m.bareDir)}`);
console.log(
	`  backup step -Fd -j2:                    ${secs(m.stepDir)}; per-round step/bare: ${pct(m.ratioDir)}`,
);
console.log(
	`  dump size ${(dumpBytes / 1e6).toFixed(0)} MB = ${(dumpBytes / db.bytes).toFixed(3)} x pg_database_size; the estimate reserves ${(estimateDumpBytes(db.bytes) / 1e6).toFixed(0)} MB`,
);
await db.stop();
