// A Face Swap database of a given size for benchmarks: BENCH_DATABASE_URL when set (an existing
// database, migrated and seeded if empty), else a throw-away local cluster with a new database.
// Seeding uses test/support/fixtures.ts; about 230,000 users make 1 GB.

import { execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { parseConnection } from "../../lib/pg/target.ts";
import { prismaCli, ROOT } from "../support/field-checkout.ts";
import { seedFaceSwap } from "../support/fixtures.ts";
import { startLocalCluster } from "../support/postgres.ts";

export interface BenchDb {
	url: string;
	bytes: number;
	stop(): Promise<void>;
}

async function size(
	url: string,
): Promise<{ bytes: number; users: number | null }> {
	const db = new pg.Client({ connectionString: url });
	await db.connect();
	try {
		const bytes = Number(
			(await db.query("select pg_database_size(current_database()) as b"))
				.rows[0].b,
		);
		const has = (
			await db.query("select to_regclass('public.users') is not null as ok")
		).rows[0].ok;
		const users = has
			? Number((await db.query("select count(*) as n from users")).rows[0].n)
			: null;
		return { bytes, users };
	} finally {
		await db.end();
	}
}

/** `prisma migrate deploy` (the real CLI, the project's config) on `url`, its output discarded. */
export function prismaMigrateDeploy(
	url: string,
	extraEnv: Record<string, string> = {},
): void {
	const config = join(ROOT, "prisma", "prisma.config.ts");
	execFileSync(
		process.execPath,
		[prismaCli, "migrate", "deploy", "--config", config],
		{
			env: {
				...process.env,
				DATABASE_URL: url,
				DIRECT_URL: url,
				PRISMA_HIDE_UPDATE_MESSAGE: "1",
				...extraEnv,
			},
			stdio: "ignore",
		},
	);
}

/** Migrates (real Prisma CLI) and seeds the database unless it already holds users. */
export async function faceSwapDatabase(
	users = Number(process.env.BENCH_USERS ?? 230_000),
): Promise<BenchDb> {
	let url = process.env.BENCH_DATABASE_URL;
	let stop = async () => {};
	if (!url) {
		const server = await startLocalCluster();
		const admin = new pg.Client({ connectionString: server.adminUrl });
		await admin.connect();
		await admin.query("create database faceswap_bench");
		await admin.end();
		const u = new URL(server.adminUrl);
		u.pathname = "/faceswap_bench";
		url = u.toString();
		stop = () => server.stop();
	}
	const before = await size(url);
	if (!before.users) {
		process.stderr.write(
			`migrating and seeding ${users} users (about ${Math.round(users / 230)} MB)...\n`,
		);
		prismaMigrateDeploy(url);
		const t = performance.now();
		await seedFaceSwap(url, { users });
		process.stderr.write(
			`seeded in ${((performance.now() - t) / 1000).toFixed(0)}s\n`,
		);
		const db = new pg.Client({ connectionString: url });
		await db.connect();
		await db.query("vacuum analyze");
		await db.end();
	}
	const after = await size(url);
	return { url, bytes: after.bytes, stop };
}

/**
 * What the backup benchmarks start from: the Face Swap database (db), its connection (conn), and
 * a BACKUP_DIR in a new temporary directory named `prefix…` (dir), in the env they pass.
 */
export async function backupBenchSetup(prefix: string) {
	const db = await faceSwapDatabase();
	const conn = parseConnection(db.url);
	const dir = mkdtempSync(join(tmpdir(), prefix));
	const env = { BACKUP_DIR: join(dir, "backups"), BACKUP_MIN_FREE_MB: "0" };
	return { db, conn, dir, env };
}

export function median(xs: number[]): number {
	const s = [...xs].sort((a, b) => a - b);
	return s.length % 2
		? s[(s.length - 1) / 2]
		: (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export const secs = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
