// Benchmark and acceptance run of runbooks/change-column-type.ts and remove-enum-value.ts against the
// plain statements they replace, on generated_videos (5 rows per user), each contender on its own
// copy of the same seeded database, under a writer doing a single-row update or insert every 20 ms:
// wall time, the writer's worst wait (a plain ALTER holds ACCESS EXCLUSIVE for its whole rewrite)
// and its errors. Each runbook's result is checked as issue #16 asks (values kept, the type, schema.prisma,
// validate healthy); a failed check stops the script (exit 1).
//
//   npx tsx test/bench/column-type-bench.ts
//
// BENCH_USERS (default 200000: 1,000,000 rows; 40000 for the issue's 200,000), BENCH_CASES (default
// bigint,enum,shrink), BENCH_DATABASE_URL (an existing seeded database). Prints a Markdown table, the
// checks and the load average.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
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
const checks: string[] = [];
function check(what: string, ok: boolean, detail = ""): void {
	checks.push(`${ok ? "ok  " : "FAIL"} ${what}${detail ? `: ${detail}` : ""}`);
	if (!ok) {
		console.log(checks.join("\n"));
		throw new Error(`check failed: ${what}`);
	}
}
const one = async (url: string, text: string) => (await sql(url, text))[0];

/**
 * A runbook of a checkout copy, as the operator runs it; its exit code and output. Asynchronous:
 * the writer runs in this process, and a spawnSync would stop it for the whole run.
 */
function runbook(repo: string, url: string, name: string, args: string[]) {
	return new Promise<{ code: number | null; out: string }>(
		(resolve, reject) => {
			const child = spawn("npx", ["tsx", `runbooks/${name}.ts`, ...args], {
				cwd: repo,
				env: {
					...process.env,
					DATABASE_URL: url,
					RUNBOOK_AUDIT_LOG: join(repo, "audit.jsonl"),
				},
			});
			let out = "";
			child.stdout.on("data", (d) => {
				out += d;
			});
			child.stderr.on("data", (d) => {
				out += d;
			});
			child.on("error", reject);
			child.on("close", (code) => resolve({ code, out }));
		},
	);
}
const confirm = (url: string) => [
	"--yes",
	"--confirm",
	new URL(url).pathname.slice(1),
];
const row = (
	label: string,
	r: { wall: number; worst: number; errors: number },
) =>
	rows.push(`| ${label} | ${secs(r.wall)} | ${secs(r.worst)} | ${r.errors} |`);
const schemaOf = (repo: string) =>
	readFileSync(join(repo, "prisma", "schema.prisma"), "utf8");
const copies: string[] = [];
const cases = (process.env.BENCH_CASES ?? "bigint,enum,shrink").split(",");
async function contender(label: string) {
	const url = await copyOf(label);
	copies.push(url);
	return { url, repo: copyCheckout(`coltype-bench-${label}-`) };
}

const checkWriter = (r: { worst: number; errors: number }) =>
	check(
		"writer: worst wait under 1 s, no error",
		r.worst < 1000 && r.errors === 0,
		`${secs(r.worst)}, ${r.errors} error(s)`,
	);
async function checkValidate(repo: string, url: string) {
	const v = await runbook(repo, url, "validate", []);
	check("validate healthy", v.code === 0, `exit ${v.code}`);
}
/** A runbook under the writer: its exit code, and the writer's figures (a row of the table). */
async function runbookUnderWriter(
	title: string,
	repo: string,
	url: string,
	name: string,
	args: string[],
) {
	let code: number | null = null;
	let out = "";
	const r = await underWriter(url, async () => {
		({ code, out } = await runbook(repo, url, name, args));
	});
	// The road the runbook took: online on a large table, one direct ALTER under --small-table-mb.
	row(`${title} (${/direct ALTER/.test(out) ? "direct" : "online"})`, r);
	return { code: code as number | null, r };
}
/** The plain statement a runbook replaces, on its own copy, under the writer. */
async function plain(label: string, title: string, statement: string) {
	const { url } = await contender(label);
	row(title, await underWriter(url, () => sql(url, statement).then(() => {})));
}

// 1. processing_ms int -> bigint.
const SUM =
	"select sum(processing_ms) filter (where id not like 'bw%')::text as s from generated_videos";
if (cases.includes("bigint")) {
	const { url, repo } = await contender("bigint");
	const before = (await one(url, SUM)).s;
	const { code, r } = await runbookUnderWriter(
		"change-column-type.ts processing_ms int -> bigint",
		repo,
		url,
		"change-column-type",
		[
			...columnFlags("generated_videos", "processing_ms", "bigint"),
			...confirm(url),
		],
	);
	check("change-column-type: exit 0", code === 0, String(code));
	const t = await one(
		url,
		"select format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = 'generated_videos'::regclass and attname = 'processing_ms'",
	);
	check("processing_ms is bigint", t.t === "bigint", t.t);
	check(
		"every value kept (sum unchanged)",
		(await one(url, SUM)).s === before,
		before,
	);
	checkWriter(r);
	check(
		"schema.prisma says BigInt",
		/processingMs\s+BigInt\?/.test(schemaOf(repo)),
	);
	await checkValidate(repo, url);
}
if (cases.includes("bigint"))
	await plain(
		"plain_bigint",
		"plain ALTER TABLE ... TYPE bigint",
		"ALTER TABLE generated_videos ALTER COLUMN processing_ms TYPE bigint",
	);

// 2. VideoStatus without PROCESSING, its rows PENDING.
if (cases.includes("enum")) {
	const { url, repo } = await contender("enum");
	const REMOVE = ["--enum", "VideoStatus", "--value", "PROCESSING"];
	const before = await one(
		url,
		"select count(*) filter (where status = 'PROCESSING') as p, count(*) filter (where status in ('PROCESSING', 'PENDING')) as n from generated_videos",
	);
	const refused = await runbook(repo, url, "remove-enum-value", [
		...REMOVE,
		...confirm(url),
	]);
	check(
		"without --replace-with: exit 3",
		refused.code === 3,
		`exit ${refused.code}`,
	);
	const still = await one(
		url,
		"select count(*) as p from generated_videos where status = 'PROCESSING'",
	);
	check(
		"... and nothing changed",
		still.p === before.p,
		`${still.p} rows still PROCESSING`,
	);
	const { code, r } = await runbookUnderWriter(
		"remove-enum-value.ts VideoStatus without PROCESSING",
		repo,
		url,
		"remove-enum-value",
		[...REMOVE, "--replace-with", "PENDING", ...confirm(url)],
	);
	check("remove-enum-value: exit 0", code === 0, String(code));
	const labels = await one(
		url,
		`select array_to_string(enum_range(null::"VideoStatus"), ',') as l`,
	);
	check(
		"PROCESSING gone from the type",
		!labels.l.split(",").includes("PROCESSING"),
		labels.l,
	);
	const after = await one(
		url,
		"select count(*) filter (where status = 'PENDING' and id not like 'bw%') as n from generated_videos",
	);
	check("its rows PENDING", after.n === before.n, `${after.n} of ${before.n}`);
	checkWriter(r);
	check(
		"schema.prisma's enum without it",
		!/enum VideoStatus \{[^}]*PROCESSING/.test(schemaOf(repo)),
	);
	await checkValidate(repo, url);
}
if (cases.includes("enum"))
	await plain(
		"plain_enum",
		"plain UPDATE + ALTER ... TYPE new enum, one transaction",
		`BEGIN;
			UPDATE generated_videos SET status = 'PENDING' WHERE status = 'PROCESSING';
			CREATE TYPE "VideoStatus_new" AS ENUM ('PENDING', 'COMPLETED', 'FAILED');
			ALTER TABLE generated_videos ALTER COLUMN status DROP DEFAULT,
			  ALTER COLUMN status TYPE "VideoStatus_new" USING status::text::"VideoStatus_new",
			  ALTER COLUMN status SET DEFAULT 'PENDING';
			DROP TYPE "VideoStatus"; ALTER TYPE "VideoStatus_new" RENAME TO "VideoStatus";
			COMMIT`,
	);

// 3. quality varchar(16) -> varchar(8): refused while one value is longer, done once it fits.
if (cases.includes("shrink")) {
	const { url, repo } = await contender("shrink");
	const args = [
		...columnFlags("generated_videos", "quality", "varchar(8)"),
		...confirm(url),
	];
	const [bad] = await sql(
		url,
		"update generated_videos set quality = 'ultra-hd-4k-hdr' where id = (select min(id) from generated_videos) returning id",
	);
	const refused = await runbook(repo, url, "change-column-type", args);
	check(
		"shrink with a longer value: exit 3 naming the row",
		refused.code === 3 && refused.out.includes(bad.id),
		`exit ${refused.code}`,
	);
	await sql(
		url,
		"update generated_videos set quality = '4k' where quality = 'ultra-hd-4k-hdr'",
	);
	const { code } = await runbookUnderWriter(
		"change-column-type.ts quality varchar(16) -> varchar(8)",
		repo,
		url,
		"change-column-type",
		args,
	);
	check("shrink once every value fits: exit 0", code === 0, String(code));
}

for (const u of copies)
	await sql(
		named("postgres"),
		`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`,
	);
await bench.stop();

console.log(
	`generated_videos: ~${Number(process.env.BENCH_USERS ?? 200_000) * 5} rows, writer every 20 ms`,
);
console.log(
	"| contender | wall time | writer's worst wait | writer errors |\n| --- | --- | --- | --- |",
);
for (const r of rows) console.log(r);
console.log(checks.join("\n"));
console.log(
	`load average (1, 5, 15 min): ${loadavg()
		.map((l) => l.toFixed(1))
		.join(", ")}`,
);
