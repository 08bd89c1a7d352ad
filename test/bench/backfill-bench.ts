// Benchmark of runbooks/backfill.ts and runbooks/add-required-field.ts on 1,000,000
// generated_videos rows, side by side in one run, each contender on its own fresh copy of the
// same database (CREATE DATABASE ... TEMPLATE):
//   1. backfill.ts with default settings, 2. one UPDATE doing the same work, 3. the seed's OFFSET
//   loop (its DO block, as the wiki has it) — each while a concurrent client does single-row
//   reads and updates on random rows (its latency percentiles);
//   4. backfill.ts killed with SIGKILL at a random moment, then --resume (every row exactly once);
//   5. add-required-field.ts under a concurrent writer (its worst wait).
//
//   npx tsx test/bench/backfill-bench.ts
//
// BENCH_USERS (default 200000: 5 videos each), BENCH_DATABASE_URL (an existing database to use as
// the template, seeded when empty), BENCH_ONLY=backfill,update,offset,kill,required (a subset),
// BENCH_OFFSET_TIMEOUT_S (default 900: the OFFSET loop's cap). Prints a Markdown table.

import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import pg from "pg";
import {
	CHECKOUT,
	copyCheckout,
	ROOT,
	tsxCli,
	withClient,
} from "../support/field-checkout.ts";
import { THUMBNAIL_FIELD } from "../support/field-flags.ts";
import { faceSwapDatabase } from "./face-swap-db.ts";

const USERS = Number(process.env.BENCH_USERS ?? 200_000);
const ONLY = new Set(
	(process.env.BENCH_ONLY ?? "backfill,update,offset,kill,required").split(","),
);
const OFFSET_TIMEOUT_S = Number(process.env.BENCH_OFFSET_TIMEOUT_S ?? 900);
const EXPR = "'thumbs/' || id || '.jpg'";

const log = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const query = <T extends pg.QueryResultRow>(
	url: string,
	text: string,
	values: unknown[] = [],
): Promise<T[]> =>
	withClient(url, async (db) => (await db.query<T>(text, values)).rows);

/** What `stream` has printed so far, as text. */
function collect(stream: Readable): () => string {
	let text = "";
	stream.on("data", (d) => {
		text += d;
	});
	return () => text;
}

const withDb = (url: string, name: string) => {
	const u = new URL(url);
	u.pathname = `/${name}`;
	return u.toString();
};

// ---------------------------------------------------------------------------------------------
// A fresh copy of the seeded database for each contender

const bench = await faceSwapDatabase(USERS);
const template = new URL(bench.url).pathname.slice(1);
const adminUrl = withDb(bench.url, "postgres");
const copies: string[] = [];

async function freshCopy(label: string, prepare: string): Promise<string> {
	const name = `bench_${label}_${Date.now().toString(36)}`;
	await query(
		adminUrl,
		`select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`,
		[template],
	);
	await query(
		adminUrl,
		`create database "${name}" template "${template}" strategy file_copy`,
	);
	copies.push(name);
	const url = withDb(bench.url, name);
	if (prepare) await query(url, prepare);
	await query(url, "checkpoint");
	return url;
}

async function dropCopy(url: string): Promise<void> {
	const name = new URL(url).pathname.slice(1);
	await query(adminUrl, `drop database if exists "${name}" with (force)`);
}

// ---------------------------------------------------------------------------------------------
// The concurrent client: single-row reads and updates on random rows, one connection each

interface Latency {
	count: number;
	p50: number;
	p99: number;
	max: number;
}

const pct = (xs: number[], p: number) => {
	if (xs.length === 0) return 0;
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const summarize = (xs: number[]): Latency => ({
	count: xs.length,
	p50: pct(xs, 50),
	p99: pct(xs, 99),
	max: pct(xs, 100),
});

async function startClient(url: string, opts: { insertColumn?: string } = {}) {
	const ids = (
		await query<{ id: string }>(
			url,
			"select id from generated_videos order by random() limit 20000",
		)
	).map((r) => r.id);
	const reads: number[] = [];
	const writes: number[] = [];
	const errors: string[] = [];
	let stop = false;
	const loop = async (kind: "read" | "write") => {
		const db = new pg.Client({
			connectionString: url,
			application_name: `bench-client-${kind}`,
		});
		await db.connect();
		for (let i = 0; !stop; i++) {
			const id = ids[Math.floor(Math.random() * ids.length)];
			const t0 = performance.now();
			try {
				if (kind === "read") {
					await db.query("select * from generated_videos where id = $1", [id]);
				} else if (opts.insertColumn && i % 10 === 0) {
					// An app that writes the new column once it exists (deployed before the change).
					const has = (
						await db.query(
							"select 1 from pg_attribute where attrelid = 'generated_videos'::regclass and attname = $1 and not attisdropped",
							[opts.insertColumn],
						)
					).rowCount;
					await db.query(
						`insert into generated_videos (id, user_id, face_source_id, template_id, updated_at${has ? `, ${opts.insertColumn}` : ""})
						 select 'bench' || md5(random()::text), user_id, face_source_id, template_id, now()${has ? ", 'thumbs/new.jpg'" : ""}
						   from generated_videos where id = $1`,
						[id],
					);
				} else {
					await db.query(
						"update generated_videos set progress = (progress + 1) % 100, updated_at = now() where id = $1",
						[id],
					);
				}
			} catch (err) {
				errors.push((err as Error).message);
			}
			(kind === "read" ? reads : writes).push(performance.now() - t0);
			await sleep(2);
		}
		await db.end();
	};
	const running = Promise.all([loop("read"), loop("write")]);
	return {
		async stop() {
			stop = true;
			await running;
			return {
				reads: summarize(reads),
				writes: summarize(writes),
				all: summarize([...reads, ...writes]),
				errors,
			};
		},
	};
}

// ---------------------------------------------------------------------------------------------
// Contenders

function runRunbook(
	name: string,
	args: string[],
	url: string,
	opts: { root?: string; killAfterMs?: number } = {},
): Promise<{
	code: number | null;
	stdout: string;
	stderr: string;
	ms: number;
}> {
	return new Promise((resolve) => {
		const t0 = performance.now();
		const child = spawn(
			process.execPath,
			[tsxCli, join(opts.root ?? ROOT, "runbooks", `${name}.ts`), ...args],
			{
				cwd: opts.root ?? ROOT,
				env: {
					...process.env,
					DATABASE_URL: url,
					DIRECT_URL: url,
					RUNBOOK_AUDIT_LOG: join(tmpdir(), "bench-audit.jsonl"),
					NO_COLOR: "1",
				},
				stdio: ["ignore", "pipe", "pipe"],
				detached: true,
			},
		);
		const stdout = collect(child.stdout);
		const stderr = collect(child.stderr);
		if (opts.killAfterMs !== undefined) {
			setTimeout(() => {
				try {
					process.kill(-(child.pid as number), "SIGKILL");
				} catch {
					// already ended
				}
			}, opts.killAfterMs);
		}
		child.on("close", (code) =>
			resolve({
				code,
				stdout: stdout(),
				stderr: stderr(),
				ms: performance.now() - t0,
			}),
		);
	});
}

interface Row {
	contender: string;
	seconds: number;
	rowsSet: number;
	rowsPerS: number;
	missed: number;
	client?: Awaited<ReturnType<Awaited<ReturnType<typeof startClient>>["stop"]>>;
	note: string;
}

const results: Row[] = [];
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function counts(url: string, col = "thumbnail_path") {
	const [r] = await query<{
		total: string;
		set: string;
		missed: string;
		wrong: string;
	}>(
		url,
		`select count(*) as total, count(*) filter (where ${col} = ${EXPR}) as set, count(*) filter (where ${col} is null) as missed,
		        count(*) filter (where ${col} is not null and ${col} <> ${EXPR}) as wrong
		   from generated_videos where id not like 'bench%'`,
	);
	return {
		total: Number(r.total),
		set: Number(r.set),
		missed: Number(r.missed),
		wrong: Number(r.wrong),
	};
}

async function contender(
	label: string,
	work: (url: string) => Promise<{ ms: number; note: string }>,
	prepare = "alter table generated_videos add column thumbnail_path text",
) {
	const url = await freshCopy(label.split(" ")[0].replace(/\W/g, ""), prepare);
	log(`--- ${label}`);
	const client = await startClient(url);
	await sleep(1000);
	const { ms, note } = await work(url);
	const stats = await client.stop();
	const c = await counts(url);
	if (c.wrong)
		throw new Error(`${label}: ${c.wrong} rows set to a wrong value`);
	results.push({
		contender: label,
		seconds: ms / 1000,
		rowsSet: c.set,
		rowsPerS: (c.set * 1000) / ms,
		missed: c.missed,
		client: stats,
		note,
	});
	log(
		`${label}: ${(ms / 1000).toFixed(1)} s, ${fmt(c.set)} set, ${fmt(c.missed)} missed; client p99 ${stats.all.p99.toFixed(1)} ms (max ${stats.all.max.toFixed(0)} ms)`,
	);
	await dropCopy(url);
}

log(
	`template ${template}: ${fmt(bench.bytes / 1048576)} MB; load average ${loadavg()[0].toFixed(1)}`,
);
let backfillMs = 20_000;

if (ONLY.has("backfill")) {
	await contender("backfill.ts (defaults)", async (url) => {
		const run = await runRunbook(
			"backfill",
			[
				"--table",
				"generated_videos",
				"--set",
				`thumbnail_path = ${EXPR}`,
				"--where",
				"thumbnail_path IS NULL",
				"--yes",
				"--json",
			],
			url,
		);
		if (run.code !== 0)
			throw new Error(
				`backfill.ts exited ${run.code}: ${run.stderr.slice(-2000)}`,
			);
		const r = JSON.parse(run.stdout);
		const step = r.steps[2].data;
		backfillMs = run.ms;
		return {
			ms: run.ms,
			note: `whole command incl. start-up and final check; batches alone ${(step.elapsed_ms / 1000).toFixed(1)} s in ${fmt(step.batches)} batches, longest ${step.longest_batch_ms} ms`,
		};
	});
}

if (ONLY.has("update")) {
	await contender("one UPDATE", async (url) => {
		const t0 = performance.now();
		await query(
			url,
			`update generated_videos set thumbnail_path = ${EXPR} where thumbnail_path is null`,
		);
		return {
			ms: performance.now() - t0,
			note: "one transaction: every updated row stays locked until it commits",
		};
	});
}

if (ONLY.has("offset")) {
	await contender("seed's OFFSET loop", async (url) => {
		const t0 = performance.now();
		let note =
			"the wiki's DO block (batch 1000, OFFSET paging): one transaction";
		try {
			await query(
				url,
				`SET statement_timeout = '${OFFSET_TIMEOUT_S}s';
				DO $$
				DECLARE
				    batch_size INTEGER := 1000;
				    offset_val INTEGER := 0;
				    rows_updated INTEGER;
				BEGIN
				    LOOP
				        UPDATE generated_videos
				        SET thumbnail_path = 'thumbs/' || id || '.jpg'
				        WHERE id IN (
				            SELECT id FROM generated_videos
				            WHERE thumbnail_path IS NULL
				            LIMIT batch_size OFFSET offset_val
				        );
				        GET DIAGNOSTICS rows_updated = ROW_COUNT;
				        EXIT WHEN rows_updated = 0;
				        offset_val := offset_val + batch_size;
				    END LOOP;
				END $$;`,
			);
		} catch (err) {
			note = `stopped by statement_timeout after ${OFFSET_TIMEOUT_S} s (${(err as Error).message}); rolled back`;
		}
		return { ms: performance.now() - t0, note };
	});
}

if (ONLY.has("kill")) {
	const url = await freshCopy(
		"kill",
		"alter table generated_videos add column thumbnail_path text, add column touched int not null default 0",
	);
	log("--- backfill.ts, SIGKILL at a random moment, then --resume");
	const args = [
		"--table",
		"generated_videos",
		"--set",
		`thumbnail_path = ${EXPR}, touched = touched + 1`,
		"--where",
		"thumbnail_path IS NULL",
		"--yes",
	];
	// A random moment between 10% and 80% of the uninterrupted run's time (start-up included).
	const killAfter = Math.round(backfillMs * (0.1 + Math.random() * 0.7));
	const first = await runRunbook("backfill", args, url, {
		killAfterMs: killAfter,
	});
	const mid = await counts(url);
	const [cp] = await query<{ rows_updated: string }>(
		url,
		"select rows_updated from runbooks.backfill_checkpoints",
	);
	const t0 = performance.now();
	const resumed = await runRunbook("backfill", [...args, "--resume"], url);
	const c = await counts(url);
	const [twice] = await query<{ n: string; once: string }>(
		url,
		"select count(*) filter (where touched > 1) as n, count(*) filter (where touched = 1) as once from generated_videos",
	);
	if (resumed.code !== 0)
		throw new Error(
			`resume exited ${resumed.code}: ${resumed.stderr.slice(-2000)}`,
		);
	results.push({
		contender: "backfill.ts, SIGKILL then --resume",
		seconds: (first.ms + resumed.ms) / 1000,
		rowsSet: c.set,
		rowsPerS: (c.set * 1000) / (first.ms + performance.now() - t0),
		missed: c.missed,
		note:
			`killed after ${(killAfter / 1000).toFixed(1)} s (exit ${first.code ?? "SIGKILL"}) with ${fmt(mid.set)} rows set and ${fmt(Number(cp?.rows_updated ?? 0))} in the checkpoint; ` +
			`--resume exit ${resumed.code}; rows updated twice: ${twice.n}, exactly once: ${fmt(Number(twice.once))}`,
	});
	log(results[results.length - 1].note);
	await dropCopy(url);
}

if (ONLY.has("required")) {
	// add-required-field writes migration folders and schema.prisma: run it in a copy of the checkout.
	// Without .config, as this benchmark always copied it (the runbooks pass --config themselves).
	const repo = copyCheckout(
		"bench-repo-",
		CHECKOUT.filter((e) => e !== ".config"),
	);
	const url = await freshCopy("required", "");
	log("--- add-required-field.ts under a concurrent writer");
	const client = await startClient(url, { insertColumn: "thumbnail_path" });
	await sleep(1000);
	const run = await runRunbook(
		"add-required-field",
		[...THUMBNAIL_FIELD, "--yes", "--json"],
		url,
		{ root: repo },
	);
	const stats = await client.stop();
	if (run.code !== 0)
		throw new Error(
			`add-required-field exited ${run.code}: ${run.stderr.slice(-3000)}`,
		);
	const r = JSON.parse(run.stdout);
	const c = await counts(url);
	const [nn] = await query<{ notnull: boolean }>(
		url,
		"select attnotnull as notnull from pg_attribute where attrelid = 'generated_videos'::regclass and attname = 'thumbnail_path'",
	);
	const locks = r.locks
		.map(
			(l: { mode: string; waited_ms: number; held_ms: number }) =>
				`${l.mode} waited ${l.waited_ms} ms, held ${l.held_ms} ms`,
		)
		.join("; ");
	results.push({
		contender: "add-required-field.ts under a writer",
		seconds: run.ms / 1000,
		rowsSet: c.set,
		rowsPerS: (c.set * 1000) / run.ms,
		missed: c.missed,
		client: stats,
		note:
			`NOT NULL: ${nn.notnull}; migrate status + drift check: ${r.healthy ? "clean" : "PROBLEM"}; writer errors: ${stats.errors.length}; ` +
			`worst write wait ${stats.writes.max.toFixed(0)} ms, worst read ${stats.reads.max.toFixed(0)} ms; backfill ${(r.backfill.elapsed_ms / 1000).toFixed(1)} s (longest batch ${r.backfill.longest_batch_ms} ms); locks: ${locks}`,
	});
	log(results[results.length - 1].note);
	rmSync(repo, { recursive: true, force: true });
	await dropCopy(url);
}

// ---------------------------------------------------------------------------------------------

const base = results.find((r) => r.contender === "one UPDATE");
const lines = [
	`| contender | time | rows set | rows/s | vs one UPDATE | rows missed | client p50 / p99 / max (ms) | client requests |`,
	"| --- | --- | --- | --- | --- | --- | --- | --- |",
	...results.map((r) =>
		[
			r.contender,
			`${r.seconds.toFixed(1)} s`,
			fmt(r.rowsSet),
			fmt(r.rowsPerS),
			base ? `${(r.rowsPerS / base.rowsPerS).toFixed(2)}x` : "",
			fmt(r.missed),
			r.client
				? `${r.client.all.p50.toFixed(1)} / ${r.client.all.p99.toFixed(1)} / ${fmt(r.client.all.max)}`
				: "",
			r.client ? fmt(r.client.all.count) : "",
		]
			.join(" | ")
			.replace(/^/, "| ")
			.replace(/$/, " |"),
	),
	"",
	...results.map(
		(r) =>
			`- ${r.contender}: ${r.note}${r.client ? `; updates p99 ${r.client.writes.p99.toFixed(1)} ms, reads p99 ${r.client.reads.p99.toFixed(1)} ms` : ""}`,
	),
];
process.stdout.write(`${lines.join("\n")}\n`);
for (const name of copies)
	await query(adminUrl, `drop database if exists "${name}" with (force)`).catch(
		() => {},
	);
await bench.stop();
