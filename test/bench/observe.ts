// What observing costs: one monitor snapshot (sessions, pg_blocking_pids, the tree) with many
// sessions and a long lock queue, and the wall time of db-health, monitor --once and troubleshoot
// (with and without the drift check) as an operator runs them.
//   npx tsx test/bench/observe.ts            (BENCH_USERS=50000 by default; BENCH_DATABASE_URL to reuse one)

import { spawnSync } from "node:child_process";
import { join } from "node:path";
import pg from "pg";
import { readActivity } from "../../lib/pg/blocking-tree.ts";
import { faceSwapDatabase } from "./face-swap-db.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const IDLE = Number(process.env.BENCH_IDLE_SESSIONS ?? 100);
const QUEUE = Number(process.env.BENCH_QUEUE ?? 40);

const bench = await faceSwapDatabase(Number(process.env.BENCH_USERS ?? 50_000));
const url = bench.url;
const clients: pg.Client[] = [];
const open = async (name: string) => {
	const c = new pg.Client({ connectionString: url, application_name: name });
	c.on("error", () => {});
	await c.connect();
	clients.push(c);
	return c;
};

function runbook(
	name: string,
	args: string[],
): { ms: number; code: number | null } {
	const t = performance.now();
	const r = spawnSync(
		process.execPath,
		[
			join(ROOT, "node_modules/tsx/dist/cli.mjs"),
			join(ROOT, "runbooks", `${name}.ts`),
			...args,
		],
		{
			cwd: ROOT,
			env: {
				...process.env,
				DATABASE_URL: url,
				RUNBOOK_AUDIT_LOG: "/tmp/bench-observe-audit.jsonl",
				NO_COLOR: "1",
			},
			stdio: ["ignore", "ignore", "ignore"],
		},
	);
	return { ms: performance.now() - t, code: r.status };
}

const median = (xs: number[]) =>
	[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms: number) =>
	ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;

try {
	const rows: string[] = [];
	console.log(`database: ${(bench.bytes / 1024 ** 2).toFixed(0)} MB`);

	// Quiet: only the monitor's own session.
	const probe = await open("bench-probe");
	const snap = async () => {
		const times: number[] = [];
		for (let i = 0; i < 20; i++) {
			const t = performance.now();
			await readActivity(probe);
			times.push(performance.now() - t);
		}
		return median(times);
	};
	rows.push(
		`| monitor snapshot (readActivity), quiet database | ${fmt(await snap())} |`,
	);

	for (let i = 0; i < IDLE; i++) await open(`bench-idle-${i}`);
	rows.push(
		`| monitor snapshot, ${IDLE} idle sessions | ${fmt(await snap())} |`,
	);

	// A lock queue: one idle transaction holds users, an ALTER waits, QUEUE readers wait behind it.
	const holder = await open("bench-holder");
	await holder.query("begin");
	await holder.query("select 1 from users limit 1");
	const alter = await open("bench-alter");
	const pending: Promise<unknown>[] = [
		alter.query("alter table users add column bench_x text").catch(() => {}),
	];
	for (let i = 0; i < QUEUE; i++)
		pending.push(
			(await open(`bench-reader-${i}`))
				.query("select count(*) from users")
				.catch(() => {}),
		);
	for (;;) {
		const s = await readActivity(probe);
		if (s.sessions.filter((x) => x.blockedBy.length).length >= QUEUE + 1) break;
		await new Promise((r) => setTimeout(r, 50));
	}
	rows.push(
		`| monitor snapshot, ${IDLE} idle + a queue of ${QUEUE + 1} blocked sessions | ${fmt(await snap())} |`,
	);

	const mon = runbook("monitor", ["--once", "--json"]);
	rows.push(
		`| \`monitor.ts --once --json\` (process start to exit), same queue | ${fmt(mon.ms)} (exit ${mon.code}) |`,
	);
	await holder.query("rollback");
	await Promise.all(pending);
	await alter.query("alter table users drop column if exists bench_x");

	const health = runbook("db-health", ["--json"]);
	rows.push(
		`| \`db-health.ts --json\` | ${fmt(health.ms)} (exit ${health.code}) |`,
	);
	const quick = runbook("troubleshoot", ["--skip-drift", "--json"]);
	rows.push(
		`| \`troubleshoot.ts --skip-drift\` | ${fmt(quick.ms)} (exit ${quick.code}) |`,
	);
	const full = runbook("troubleshoot", ["--json"]);
	rows.push(
		`| \`troubleshoot.ts\` (with the drift check: 3 Prisma runs) | ${fmt(full.ms)} (exit ${full.code}) |`,
	);

	console.log("| measurement | median / wall time |\n| --- | --- |");
	for (const r of rows) console.log(r);
} finally {
	for (const c of clients) await c.end().catch(() => {});
	await bench.stop();
}
