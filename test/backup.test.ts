// backup.ts as an operator runs it, with the real pg_dump/pg_restore: archives with a manifest
// (row counts consistent with the dump, even under writes), verification that catches
// corruption, list, prune, the refusals before dumping, and what a killed dump leaves.

import {
	chmodSync,
	existsSync,
	readdirSync,
	readFileSync,
	statSync,
	writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findTool } from "../lib/pg/client-tools.ts";
import {
	backupFiles,
	runbookEnv,
	session,
	sleep,
} from "./support/deploy-suite.ts";
import {
	admin,
	createDatabase,
	createSeededDatabase,
	dropDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";

let url: string;
const extraDbs: string[] = [];

const setup = (extra: Record<string, string> = {}) => runbookEnv(url, extra);

const backup = (
	args: string[],
	env: Record<string, string>,
	opts: Parameters<typeof runRunbook>[2] = {},
) => runRunbook("backup", args, { env, ...opts });

const manifests = (dir: string) =>
	backupFiles(dir)
		.filter((f) => f.endsWith(".json"))
		.map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));

/** Restores an archive into a new database and counts its rows per table. */
async function restoredCounts(
	archive: string,
	counts: Record<string, number>,
): Promise<Record<string, number>> {
	const target = await createDatabase("backup_restore");
	extraDbs.push(target);
	const pgRestore = await findTool("pg_restore");
	const u = new URL(target);
	const { execFileSync } = await import("node:child_process");
	execFileSync(
		pgRestore.path,
		["--no-owner", "--dbname", u.pathname.slice(1), archive],
		{
			env: {
				...process.env,
				PGHOST: u.hostname,
				PGPORT: u.port,
				PGUSER: u.username,
				PGPASSWORD: decodeURIComponent(u.password),
			},
		},
	);
	return admin(async (db) => {
		const out: Record<string, number> = {};
		for (const t of Object.keys(counts))
			out[t] = Number(
				(await db.query(`select count(*) as n from "${t}"`)).rows[0].n,
			);
		return out;
	}, target);
}

beforeAll(async () => {
	url = await createSeededDatabase("backup", 1000);
});

afterAll(async () => {
	for (const d of extraDbs) await dropDatabase(d);
	await dropDatabase(url);
});

describe("backup.ts", () => {
	it("creates a verified custom-format backup with a manifest (0600) whose row counts match the dump, even while rows are inserted", async () => {
		const env = setup();
		const password = new URL(url).password;
		// A writer inserting sessions throughout the dump.
		const writer = await session(url);
		let writing = true;
		let inserted = 0;
		const writes = (async () => {
			while (writing) {
				await writer.query(
					"insert into sessions (id, session_token, user_id, expires) select 'w' || md5(random()::text), md5(random()::text), id, now() from users order by random() limit 5",
				);
				inserted += 5;
				await sleep(5);
			}
		})();
		const run = await backup(["create", "--json"], env, {
			watchChildren: true,
		});
		writing = false;
		await writes;
		await writer.end();
		expect(run.code, run.stderr).toBe(0);
		expect(inserted).toBeGreaterThan(0);

		const report = JSON.parse(run.stdout);
		const m = report.backup;
		expect(report.verified).toBe(true);
		expect(m.id).toMatch(/^backup_[0-9a-f]{8}-\d{8}T\d{6}Z$/);
		expect(m).toMatchObject({
			kind: "manual",
			format: "custom",
			archive: `${m.id}.dump`,
			target: expect.stringMatching(/^postgres@127\.0\.0\.1:\d+\/backup_/),
			server_version: expect.stringMatching(/^\d+\.\d+/),
			pg_dump_version: expect.stringMatching(/^\d+\.\d+/),
			latest_migration: "20241230000000_comprehensive_schema",
			verified_at: expect.any(String),
			sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
		});
		expect(m.row_counts).toMatchObject({
			users: 1000,
			generated_videos: 5000,
			_prisma_migrations: 7,
		});
		expect(m.duration_ms).toBeGreaterThan(0);
		const archive = join(env.BACKUP_DIR, m.archive);
		expect(statSync(archive).size).toBe(m.size_bytes);
		for (const f of [archive, join(env.BACKUP_DIR, `${m.id}.json`)])
			expect(statSync(f).mode & 0o777).toBe(0o600);
		expect(statSync(env.BACKUP_DIR).mode & 0o777).toBe(0o700);
		expect(manifests(env.BACKUP_DIR)[0]).toEqual(m);

		// The counts are those of the dump's snapshot: restoring it gives exactly them.
		const live = await admin(
			async (db) =>
				Number(
					(await db.query("select count(*) as n from sessions")).rows[0].n,
				),
			url,
		);
		expect(await restoredCounts(archive, m.row_counts)).toEqual(m.row_counts);
		expect(live).toBeGreaterThanOrEqual(m.row_counts.sessions);

		for (const argv of run.childArgv) expect(argv).not.toContain(password);
		expect(
			run.childArgv.some(
				(a) => a.includes("pg_dump") && a.includes("--snapshot="),
			),
		).toBe(true);
	});

	it("makes a parallel directory-format backup (--format directory --jobs 2) with a checksum per file", async () => {
		const env = setup();
		const run = await backup(
			["--format", "directory", "--jobs", "2", "--json"],
			env,
		);
		expect(run.code, run.stderr).toBe(0);
		const m = JSON.parse(run.stdout).backup;
		expect(m).toMatchObject({
			format: "directory",
			jobs: 2,
			archive: `${m.id}.dir`,
			verified_at: expect.any(String),
		});
		const dir = join(env.BACKUP_DIR, m.archive);
		expect(m.files.map((f: { name: string }) => f.name)).toEqual(
			readdirSync(dir).sort(),
		);
		expect(m.files.some((f: { name: string }) => f.name === "toc.dat")).toBe(
			true,
		);
		expect(statSync(dir).mode & 0o777).toBe(0o700);
		for (const f of readdirSync(dir))
			expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);

		// A corrupted data file fails verification, naming the file (exit 1).
		const victim = m.files.find((f: { name: string }) =>
			f.name.endsWith(".dat.gz"),
		).name;
		const p = join(dir, victim);
		const bytes = readFileSync(p);
		bytes[Math.floor(bytes.length / 2)] ^= 0xff;
		writeFileSync(p, bytes);
		const verify = await backup(["verify", m.id], env);
		expect(verify.code).toBe(1);
		expect(verify.stderr).toContain(
			`Backup ${m.id} failed verification: sha256 mismatch`,
		);
		expect(verify.stdout).toContain(victim);
	});

	it("verify: passes an intact backup, fails a corrupted one with exit 1 and records it, list and prune keep the newest verified", async () => {
		const env = setup();
		const ids: string[] = [];
		for (let i = 0; i < 3; i++) {
			const run = await backup(["--json"], env);
			expect(run.code, run.stderr).toBe(0);
			ids.push(JSON.parse(run.stdout).backup.id);
		}
		expect(new Set(ids).size).toBe(3);
		const ok = await backup(["verify", "latest"], env);
		expect(ok.code, ok.stderr).toBe(0);
		expect(ok.stdout).toContain(`${ids[2]} verified`);

		// Corrupt the newest: verify fails (exit 1), the manifest loses verified_at.
		const newest = join(env.BACKUP_DIR, `${ids[2]}.dump`);
		const bytes = readFileSync(newest);
		bytes[bytes.length - 100] ^= 0xff;
		writeFileSync(newest, bytes);
		const bad = await backup(["verify", ids[2]], env);
		expect(bad.code).toBe(1);
		expect(bad.stderr).toContain("sha256 mismatch");
		expect(bad.stderr).toContain("Do not restore from it");
		const m = JSON.parse(
			readFileSync(join(env.BACKUP_DIR, `${ids[2]}.json`), "utf8"),
		);
		expect(m.verified_at).toBeNull();
		expect(m.verify_error).toContain("sha256 mismatch");

		// A truncated archive: also caught (sha256 and pg_restore --list).
		writeFileSync(
			join(env.BACKUP_DIR, `${ids[1]}.dump`),
			readFileSync(join(env.BACKUP_DIR, `${ids[1]}.dump`)).subarray(0, 1000),
		);
		const truncated = await backup(["verify", ids[1], "--json"], env);
		expect(truncated.code).toBe(1);
		expect(JSON.parse(truncated.stdout).problems.join(" ")).toContain(
			"pg_restore --list cannot read the archive",
		);

		const list = await backup(["list", "--json"], env);
		expect(list.code).toBe(0);
		const listed = JSON.parse(list.stdout).backups as Array<{
			id: string;
			verified_at: string | null;
		}>;
		expect(listed.map((b) => b.id)).toEqual([...ids].reverse());
		expect(list.stdout).not.toContain(new URL(url).password);

		// --keep 1: keeps the newest (unverified now) and the newest verified one (the oldest), deletes the middle one.
		const dry = await backup(["prune", "--keep", "1", "--dry-run"], env);
		expect(dry.code).toBe(0);
		expect(dry.stdout).toContain(`${ids[1]}.dump`);
		expect(
			readdirSync(env.BACKUP_DIR).filter((f) => f.endsWith(".json")),
		).toHaveLength(3);
		const prune = await backup(["prune", "--keep", "1"], env);
		expect(prune.code, prune.stderr).toBe(0);
		expect(prune.stdout).toContain(
			`keeping ${ids[0]} as well: it is the newest verified backup`,
		);
		expect(readdirSync(env.BACKUP_DIR).sort()).toEqual([
			`${ids[0]}.dump`,
			`${ids[0]}.json`,
			`${ids[2]}.dump`,
			`${ids[2]}.json`,
		]);
	});

	it("refuses before dumping when pg_dump is older than the server, when BACKUP_DIR lacks room, or through a pooler (exit 3)", async () => {
		const fake = scratchDir();
		const real = await findTool("pg_dump");
		writeFileSync(
			join(fake, "pg_dump"),
			`#!/bin/sh\necho "pg_dump (PostgreSQL) ${real.major - 1}.9"\n`,
		);
		chmodSync(join(fake, "pg_dump"), 0o755);
		const oldEnv = setup({ PG_BIN_DIR: fake });
		const old = await backup([], oldEnv);
		expect(old.code).toBe(3);
		expect(old.stderr).toContain(`pg_dump ${real.major - 1}.9`);
		expect(old.stderr).toContain(
			`is older than the server (PostgreSQL ${real.major})`,
		);
		expect(existsSync(oldEnv.BACKUP_DIR)).toBe(false);

		const fullEnv = setup({ BACKUP_MIN_FREE_MB: String(100 * 1024 * 1024) });
		const full = await backup([], fullEnv);
		expect(full.code).toBe(3);
		expect(full.stderr).toMatch(
			/Not enough room for the backup in .*: .* free, and the dump needs an estimated/,
		);
		expect(existsSync(fullEnv.BACKUP_DIR)).toBe(false);

		const pooled = new URL(url);
		pooled.searchParams.set("pgbouncer", "true");
		const poolEnv = setup({ DATABASE_URL: pooled.toString() });
		const viaPooler = await backup([], poolEnv);
		expect(viaPooler.code).toBe(3);
		expect(viaPooler.stderr).toContain("transaction pooler");
		expect(viaPooler.stderr).toContain("DIRECT_URL");
		expect(existsSync(poolEnv.BACKUP_DIR)).toBe(false);
	});

	it("leaves nothing that looks like a backup when the dump is killed, and cleans up on the next run", async () => {
		const env = setup();
		// Hold a lock so pg_dump waits (on --lock-wait-timeout) mid-way, then kill the whole run.
		const holder = await session(url);
		await holder.query("begin");
		await holder.query("lock table purchases in access exclusive mode");
		let killed: Awaited<ReturnType<typeof runRunbook>>;
		try {
			killed = await backup([], env, {
				signalOn: {
					pattern: /pg_dump \d+.*→/,
					signal: "SIGKILL",
					delayMs: 500,
				},
			});
		} finally {
			await holder.query("rollback");
			await holder.end();
		}
		expect(killed.code).toBeNull();
		const left = readdirSync(env.BACKUP_DIR);
		expect(left.filter((f) => !f.startsWith(".partial-"))).toEqual([]);
		expect(left).toHaveLength(1);
		const list = await backup(["list", "--json"], env);
		expect(JSON.parse(list.stdout).backups).toEqual([]);

		const next = await backup([], env);
		expect(next.code, next.stderr).toBe(0);
		expect(next.stdout).toContain(
			`removed ${left[0]}, left by an interrupted backup`,
		);
		expect(
			readdirSync(env.BACKUP_DIR).filter((f) => f.startsWith(".partial-")),
		).toEqual([]);
	});

	it("rejects bad usage with exit 2", async () => {
		const env = setup();
		for (const args of [
			["--jobs", "2"],
			["--format", "tar"],
			["list", "--keep", "2"],
			["prune"],
			["verify", "nope"],
			["restore"],
		]) {
			const run = await backup(args, env);
			expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(2);
		}
	});
});
