// Benchmark: the worst wait of a stream of single-row reads on a table while a deploy's
// ALTER TABLE waits for a lock held by another session (an open transaction that read the table
// and stays open BENCH_HOLD_S seconds), with plain `prisma migrate deploy` (no lock timeout) and
// with deploy-production's apply (lib/migrations/deploy.ts: lock_timeout, retries with backoff).
//
//   npx tsx test/bench/deploy-lock-bench.ts            # throw-away cluster, seeds ~1 GB (about 4 min)
//   BENCH_DATABASE_URL=postgresql://... npx tsx test/bench/deploy-lock-bench.ts
//   BENCH_HOLD_S=20 BENCH_LOCK_TIMEOUTS=5000,2000,1000

import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { deployWithRetries } from "../../lib/migrations/deploy.ts";
import { MIGRATIONS_DIR, runPrisma } from "../../lib/migrations/prisma-cli.ts";
import { makeTarget } from "../../lib/pg/target.ts";
import { faceSwapDatabase, secs } from "./face-swap-db.ts";

const HOLD_MS = Number(process.env.BENCH_HOLD_S ?? 20) * 1000;
const TIMEOUTS = (process.env.BENCH_LOCK_TIMEOUTS ?? "5000,2000,1000")
	.split(",")
	.map(Number);
const NAME = "20250105000000_add_user_nickname";

const db = await faceSwapDatabase();
const target = makeTarget(db.url);
const migrations = join(
	mkdtempSync(join(tmpdir(), "lock-bench-")),
	"migrations",
);
cpSync(MIGRATIONS_DIR, migrations, { recursive: true });
mkdirSync(join(migrations, NAME));
writeFileSync(
	join(migrations, NAME, "migration.sql"),
	'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n',
);
const env = { PRISMA_MIGRATIONS_DIR: migrations };

const connect = async (app: string) => {
	const c = new pg.Client({ connectionString: db.url, application_name: app });
	await c.connect();
	return c;
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How long `fn` took, in ms. */
const timed = async (fn: () => Promise<unknown>) => {
	const t = performance.now();
	await fn();
	return performance.now() - t;
};

async function reset(): Promise<void> {
	const c = await connect("bench-reset");
	await c.query('alter table users drop column if exists "nickname"');
	await c.query("delete from _prisma_migrations where migration_name = $1", [
		NAME,
	]);
	await c.end();
}

interface Outcome {
	worstMs: number;
	over1s: number;
	reads: number;
	deployMs: number;
	attempts: number;
}

/** Single-row reads of users on their own connection, one every 20 ms and each timed, until stop(). */
async function startReads(ids: string[]) {
	const reader = await connect("bench-reader");
	const waits: number[] = [];
	let reading = true;
	const loop = (async () => {
		for (let i = 0; reading; i++) {
			const id = ids[i % ids.length];
			waits.push(
				await timed(() =>
					reader.query("select * from users where id = $1", [id]),
				),
			);
			await sleep(20);
		}
	})();
	return {
		waits,
		/** Ends the stream of reads; the connection stays open until close(). */
		async stop() {
			reading = false;
			await loop;
		},
		close: () => reader.end(),
	};
}

/** Holder reads users and stays open HOLD_MS; readers run meanwhile; `deploy` starts 0.5 s in. */
async function scenario(deploy: () => Promise<number>): Promise<Outcome> {
	await reset();
	const picker = await connect("bench-ids");
	const ids = (
		await picker.query<{ id: string }>(
			"select id from users order by random() limit 200",
		)
	).rows.map((r) => r.id);
	await picker.end();
	const holder = await connect("bench-holder");
	await holder.query("begin");
	await holder.query("select count(*) from users");
	const reads = await startReads(ids);
	const release = sleep(HOLD_MS).then(() => holder.query("commit"));
	await sleep(500);
	const t = performance.now();
	const attempts = await deploy();
	const deployMs = performance.now() - t;
	await release;
	await sleep(500);
	await reads.stop();
	await holder.end();
	await reads.close();
	const { waits } = reads;
	return {
		worstMs: Math.max(...waits),
		over1s: waits.filter((w) => w > 1000).length,
		reads: waits.length,
		deployMs,
		attempts,
	};
}

const line = (label: string, o: Outcome) =>
	`${label.padEnd(44)} worst read ${secs(o.worstMs).padStart(8)}, ${String(o.over1s).padStart(3)} of ${o.reads} reads over 1 s, deploy ${secs(o.deployMs)} (${o.attempts} attempt(s))`;

console.log(
	`database ${(db.bytes / 1e9).toFixed(2)} GB; lock held ${HOLD_MS / 1000} s by an open transaction that read users; reads every 20 ms`,
);
const plain = await scenario(async () => {
	const run = await runPrisma(["migrate", "deploy"], target, env);
	if (run.exitCode !== 0) throw new Error(run.stderr);
	return 1;
});
console.log(line("prisma migrate deploy (no lock timeout)", plain));
for (const lockTimeoutMs of TIMEOUTS) {
	const admin = await connect("bench-deploy");
	const o = await scenario(async () => {
		const r = await deployWithRetries({
			target,
			env,
			db: admin,
			settings: { lockTimeoutMs, statementTimeoutMs: 300_000, retries: 20 },
		});
		if (!r.ok) throw new Error(JSON.stringify(r.failure));
		return r.attempts.length;
	});
	await admin.end();
	console.log(
		line(`deploy-production apply, lock_timeout ${lockTimeoutMs / 1000} s`, o),
	);
}
await reset();
await db.stop();
