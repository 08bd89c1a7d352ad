// Benchmark: migrate-to-supabase against its anchors, on a Face Swap database of about 1 GB
// (`npx tsx test/bench/supabase-bench.ts [--users N] [--rounds N] [--skip-pgcopydb]`; default
// 245,000 users, 2 rounds). Two throw-away clusters on this machine: the local source, and the
// Supabase-shaped target (platform roles and schemas, pgbouncer in front). In each round every
// method copies the app's schema into the target's empty public schema, then the rows are compared
// with server-side checksums and the target is emptied again:
//   1. bare pipe:  pg_dump -Fc | pg_restore --no-owner --no-privileges
//   2. pgcopydb clone --table-jobs 2 --index-jobs 2 (Debian's pgcopydb), public only
//   3. the runbook (--yes --no-switch, no VERIFY_CMD) with --jobs 1 and with its default (parallel
//      streams above 512 MB): its copy step and its whole wall time, the verification step
//      (checksums of every row on both sides, Prisma validation) included.
// Methods are interleaved and repeated because this 2-core machine is shared: the table shows the
// best of each and every value, with the load average before each run.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { listTables, tableChecksums } from "../../lib/backup/row-checksums.ts";
import { dropObjects, schemaObjects } from "../../lib/data/schema-copy.ts";
import { formatBytes } from "../../lib/kit/format.ts";
import { parseConnection } from "../../lib/pg/target.ts";
import {
	ROOT,
	tsxCli,
	withClient as withDb,
} from "../support/field-checkout.ts";
import { seedFaceSwap } from "../support/fixtures.ts";
import { findPgBin, startLocalCluster } from "../support/postgres.ts";
import { startSupabase } from "../support/supabase.ts";
import { prismaMigrateDeploy } from "./face-swap-db.ts";

const argv = process.argv.slice(2);
const arg = (name: string) => {
	const i = argv.indexOf(name);
	return i === -1 ? undefined : argv[i + 1];
};
const users = Number(arg("--users") ?? 245_000);
const skipPgcopydb = argv.includes("--skip-pgcopydb");
const rounds = Number(arg("--rounds") ?? 2);

interface Result {
	method: string;
	round: number;
	load: string;
	copyMs: number;
	totalMs: number;
	verifyMs?: number;
	ok: boolean;
	detail?: string;
	rows: string;
}

function sh(
	cmd: string,
	env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; out: string; ms: number }> {
	const started = performance.now();
	return new Promise((resolve) => {
		const child = spawn("bash", ["-o", "pipefail", "-c", cmd], {
			env: { ...process.env, ...env },
			stdio: ["ignore", "pipe", "pipe"],
		});
		let out = "";
		child.stdout.on("data", (d) => {
			out += d;
		});
		child.stderr.on("data", (d) => {
			out += d;
		});
		child.on("close", (code) =>
			resolve({ code, out, ms: performance.now() - started }),
		);
	});
}

const pgEnv = (url: string, prefix = "PG") => {
	const u = new URL(url);
	return {
		[`${prefix}HOST`]: u.hostname,
		[`${prefix}PORT`]: u.port,
		[`${prefix}USER`]: decodeURIComponent(u.username),
		[`${prefix}PASSWORD`]: decodeURIComponent(u.password),
		[`${prefix}DATABASE`]: u.pathname.slice(1),
	};
};

async function emptyTarget(directUrl: string): Promise<void> {
	await withDb(directUrl, async (db) => {
		await dropObjects(db, await schemaObjects(db, "public"));
		await db.query("drop schema if exists migrate_to_supabase cascade");
		await db.query("checkpoint").catch(() => {});
	});
}

async function compare(srcUrl: string, tgtUrl: string): Promise<string> {
	const src = parseConnection(srcUrl);
	const tgt = parseConnection(tgtUrl);
	const tables = await withDb(srcUrl, (db) => listTables(db));
	const [a, b] = await Promise.all([
		tableChecksums(src, tables),
		tableChecksums(tgt, tables),
	]);
	const bad = tables.filter(
		(t) => !b[t] || a[t].checksum !== b[t].checksum || a[t].rows !== b[t].rows,
	);
	return bad.length
		? `DIFFERENT: ${bad.join(", ")}`
		: `equal (${tables.length} tables)`;
}

const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

async function main() {
	console.log(`Face Swap users: ${users}`);
	const [source, sb] = await Promise.all([
		startLocalCluster({ fsync: false }),
		startSupabase(),
	]);
	const load = () => loadavg()[0].toFixed(1);
	try {
		const srcUrl = source.adminUrl.replace(/\/postgres$/, "/faceswap");
		await withDb(source.adminUrl, (db) => db.query("create database faceswap"));
		prismaMigrateDeploy(srcUrl, { CHECKPOINT_DISABLE: "1" });
		const t = performance.now();
		const counts = await seedFaceSwap(srcUrl, { users });
		const size = await withDb(srcUrl, async (db) => {
			await db.query("vacuum analyze");
			await db.query("checkpoint");
			return Number(
				(await db.query("select pg_database_size(current_database()) as b"))
					.rows[0].b,
			);
		});
		const rows = Object.values(counts).reduce((x, y) => x + y, 0);
		console.log(
			`Seeded ${rows.toLocaleString("en-US")} rows, ${formatBytes(size)} in ${s(performance.now() - t)}`,
		);
		const tools = join(findPgBin("pg_dump"), "..");

		const env = { ...pgEnv(srcUrl, "SRC_"), ...pgEnv(sb.directUrl, "TGT_") };
		const methods: Array<{
			name: string;
			run: () => Promise<Omit<Result, "method" | "load" | "round" | "rows">>;
		}> = [
			{
				name: "pg_dump -Fc | pg_restore (bare pipe)",
				async run() {
					const r = await sh(
						`PGHOST=$SRC_HOST PGPORT=$SRC_PORT PGUSER=$SRC_USER PGPASSWORD=$SRC_PASSWORD ${tools}/pg_dump -Fc -d "$SRC_DATABASE" | PGHOST=$TGT_HOST PGPORT=$TGT_PORT PGUSER=$TGT_USER PGPASSWORD=$TGT_PASSWORD ${tools}/pg_restore --no-owner --no-privileges -d "$TGT_DATABASE"`,
						env,
					);
					if (r.code !== 0)
						console.log(`bare pipe exit ${r.code}: ${r.out.slice(-500)}`);
					return { copyMs: r.ms, totalMs: r.ms, ok: r.code === 0 };
				},
			},
			...(skipPgcopydb
				? []
				: [
						{
							name: "pgcopydb clone --table-jobs 2 --index-jobs 2",
							async run() {
								const work = mkdtempSync(join(tmpdir(), "pgcopydb-"));
								const filters = join(work, "filters.ini");
								writeFileSync(filters, "[include-only-schema]\npublic\n");
								const r = await sh(
									`pgcopydb clone --table-jobs 2 --index-jobs 2 --no-owner --no-acl --skip-extensions --filters ${filters} --dir ${work}/run`,
									{
										PGCOPYDB_SOURCE_PGURI: srcUrl,
										PGCOPYDB_TARGET_PGURI: sb.directUrl,
										PATH: `${tools}:${process.env.PATH}`,
									},
								);
								if (r.code !== 0)
									console.log(`pgcopydb exit ${r.code}: ${r.out.slice(-1500)}`);
								rmSync(work, { recursive: true, force: true });
								return { copyMs: r.ms, totalMs: r.ms, ok: r.code === 0 };
							},
						},
					]),
			...[["--jobs", "1"], []].map((flags) => ({
				name: `migrate-to-supabase ${flags.length ? flags.join(" ") : "(default: --jobs auto)"}`,
				async run() {
					const dir = mkdtempSync(join(tmpdir(), "bench-env-"));
					writeFileSync(
						join(dir, ".env"),
						`LOCAL_DATABASE_URL="${srcUrl}"\nREMOTE_DATABASE_URL="${sb.poolerUrl}"\nREMOTE_DIRECT_URL="${sb.directUrl}"\n`,
					);
					const r = await sh(
						`${process.execPath} ${tsxCli} ${join(ROOT, "runbooks", "migrate-to-supabase.ts")} --env-file ${join(dir, ".env")} --yes --no-switch --json ${flags.join(" ")} 2>${join(dir, "stderr")}`,
						{ RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"), NO_COLOR: "1" },
					);
					let copyMs = Number.NaN;
					let verifyMs = Number.NaN;
					let detail = "";
					try {
						const doc = JSON.parse(r.out);
						const step = (re: RegExp) =>
							doc.steps.find((x: { title: string }) => re.test(x.title));
						copyMs = step(/^Copy/).duration_ms;
						verifyMs = step(/^Verify/).duration_ms;
						detail = step(/^Copy/).summary;
					} catch {
						console.log(`runbook exit ${r.code}: ${r.out.slice(-800)}`);
					}
					rmSync(dir, { recursive: true, force: true });
					return { copyMs, totalMs: r.ms, verifyMs, ok: r.code === 0, detail };
				},
			})),
		];
		const all: Result[] = [];
		for (let round = 1; round <= rounds; round++) {
			for (const m of methods) {
				await emptyTarget(sb.directUrl);
				const before = load();
				const r = await m.run();
				const rowsAfter = r.ok ? await compare(srcUrl, sb.directUrl) : "failed";
				all.push({
					...r,
					method: m.name,
					load: before,
					round,
					rows: rowsAfter,
				});
				console.log(
					`round ${round}: ${m.name}: copy ${s(r.copyMs)}, whole ${s(r.totalMs)}${r.verifyMs !== undefined ? ` (verification step ${s(r.verifyMs)})` : ""}, rows ${rowsAfter}, load ${before}${r.detail ? `; ${r.detail}` : ""}`,
				);
			}
		}
		console.log(
			`\n${rows.toLocaleString("en-US")} rows, ${formatBytes(size)} (pg_database_size), ${users} users, ${rounds} round(s), best of each\n`,
		);
		console.log(
			"| method | copy | whole run | verification step | rows after | 1-min load before |",
		);
		console.log("| --- | --- | --- | --- | --- | --- |");
		for (const m of methods) {
			const mine = all.filter((r) => r.method === m.name);
			const best = mine.reduce((a, b) => (b.totalMs < a.totalMs ? b : a));
			const fmt = (k: "copyMs" | "totalMs") =>
				mine.map((r) => s(r[k])).join(" / ");
			console.log(
				`| ${m.name.replace(/\|/g, "\\|")} | ${s(Math.min(...mine.map((r) => r.copyMs)))} (${fmt("copyMs")}) | ${s(best.totalMs)} (${fmt("totalMs")}) | ${best.verifyMs !== undefined ? s(best.verifyMs) : ""} | ${mine.every((r) => r.rows.startsWith("equal")) ? "equal" : mine.map((r) => r.rows).join(", ")} | ${mine.map((r) => r.load).join(" / ")} |`,
			);
		}
	} finally {
		await sb.stop();
		await source.stop();
	}
}

await main();
