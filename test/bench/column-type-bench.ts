// Benchmark of runbooks/change-column-type.ts against a plain ALTER TABLE ... TYPE, on 1,000,000
// generated_videos rows (processing_ms int -> bigint), each on its own copy of the same seeded
// database, each under a writer doing a single-row update or insert every 20 ms: wall time, and the
// writer's worst wait (the plain ALTER holds ACCESS EXCLUSIVE for its whole rewrite).
//
//   npx tsx test/bench/column-type-bench.ts
//
// BENCH_USERS (default 200000: 5 videos each), BENCH_DATABASE_URL (an existing seeded database).
// Prints a Markdown table and the load average.

import { spawnSync } from "node:child_process";
import { loadavg } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { copyCheckout, withClient } from "../support/field-checkout.ts";
import { columnFlags } from "../support/field-flags.ts";
import { faceSwapDatabase, secs } from "./face-swap-db.ts";

const bench = await faceSwapDatabase(
	Number(process.env.BENCH_USERS ?? 200_000),
);
const named = (name: string) =>
	Object.assign(new URL(bench.url), { pathname: `/${name}` }).toString();

const sql = (url: string, text: string) =>
	withClient(url, async (db) => (await db.query(text)).rows);

/** A copy of the seeded database (CREATE DATABASE ... TEMPLATE), so both contenders start alike. */
async function copyOf(label: string): Promise<string> {
	const source = new URL(bench.url).pathname.slice(1);
	const name = `coltype_${label}_${Date.now().toString(36)}`;
	await sql(
		named("postgres"),
		`select pg_terminate_backend(pid) from pg_stat_activity where datname = '${source}'`,
	);
	await sql(
		named("postgres"),
		`create database "${name}" template "${source}"`,
	);
	return named(name);
}

/** Runs `work` while a writer updates or inserts one row every 20 ms; its worst wait and errors. */
async function underWriter(url: string, work: () => Promise<void>) {
	const w = new pg.Client({ connectionString: url });
	await w.connect();
	const ids = (
		await w.query(
			"select id from generated_videos order by random() limit 5000",
		)
	).rows.map((r) => r.id);
	let stop = false;
	let worst = 0;
	let errors = 0;
	const loop = (async () => {
		for (let i = 0; !stop; i++) {
			const t0 = performance.now();
			await (i % 10
				? w.query(
						"update generated_videos set progress = (progress + 1) % 100 where id = $1",
						[ids[i % ids.length]],
					)
				: w.query(
						"insert into generated_videos (id, user_id, face_source_id, template_id, updated_at, processing_ms) select 'bw' || md5(random()::text), user_id, face_source_id, template_id, now(), 7 from generated_videos where id = $1",
						[ids[i % ids.length]],
					)
			).catch(() => errors++);
			worst = Math.max(worst, performance.now() - t0);
			await new Promise((r) => setTimeout(r, 20));
		}
	})();
	const t0 = performance.now();
	await work();
	const wall = performance.now() - t0;
	stop = true;
	await loop;
	await w.end();
	return { wall, worst, errors };
}

const rows: string[] = [];
const runbookUrl = await copyOf("runbook");
const repo = copyCheckout("coltype-bench-");
const viaRunbook = await underWriter(runbookUrl, async () => {
	const args = [
		"tsx",
		"runbooks/change-column-type.ts",
		...columnFlags("generated_videos", "processing_ms", "bigint"),
		"--yes",
		"--confirm",
		new URL(runbookUrl).pathname.slice(1),
	];
	const r = spawnSync("npx", args, {
		cwd: repo,
		env: {
			...process.env,
			DATABASE_URL: runbookUrl,
			RUNBOOK_AUDIT_LOG: join(repo, "audit.jsonl"),
		},
		stdio: ["ignore", "ignore", "inherit"],
	});
	if (r.status !== 0)
		throw new Error(`change-column-type.ts exited ${r.status}`);
});
rows.push(
	`| change-column-type.ts (online) | ${secs(viaRunbook.wall)} | ${secs(viaRunbook.worst)} | ${viaRunbook.errors} |`,
);
const plainUrl = await copyOf("plain");
const plain = await underWriter(plainUrl, async () => {
	await sql(
		plainUrl,
		"ALTER TABLE generated_videos ALTER COLUMN processing_ms TYPE bigint",
	);
});
rows.push(
	`| plain ALTER TABLE ... TYPE | ${secs(plain.wall)} | ${secs(plain.worst)} | ${plain.errors} |`,
);
for (const u of [runbookUrl, plainUrl])
	await sql(
		named("postgres"),
		`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`,
	);
await bench.stop();

console.log(
	`generated_videos: ~${Number(process.env.BENCH_USERS ?? 200_000) * 5} rows, processing_ms int -> bigint, writer every 20 ms`,
);
console.log(
	"| contender | wall time | writer's worst wait | writer errors |\n| --- | --- | --- | --- |",
);
for (const r of rows) console.log(r);
console.log(
	`load average (1, 5, 15 min): ${loadavg()
		.map((l) => l.toFixed(1))
		.join(", ")}`,
);
