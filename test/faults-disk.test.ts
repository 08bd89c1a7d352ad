// A full backup disk: BACKUP_DIR on a small tmpfs, sized so that the pre-check passes (its estimate,
// half of pg_database_size, fits) but the real dump does not (the database holds incompressible
// thumbnails, so the archive is bigger than the estimate). backup.ts, deploy-production.ts (its
// pre-deploy backup) and emergency-rollback.ts (its safety backup) must fail with a plain message
// naming the disk, leave nothing that looks like a finished backup, leave the database as it was,
// audit the failure, and succeed once there is room. And the pre-check's refusal (exit 3).

import { execFileSync } from "node:child_process";
import {
	copyFileSync,
	existsSync,
	mkdtempSync,
	readdirSync,
	rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { estimateDumpBytes } from "../lib/backup/archive.ts";
import { stoppedAt } from "./support/faults.ts";

import {
	admin,
	createSeededDatabase,
	dbName,
	type RunResult,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { rewind, scratchDatabases } from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

const KB = 1024;
let base: string;
let disk: string;
let mounted = false;
/** A verified backup of base made on a roomy disk: its files, id and size. */
let roomy: string;
let backupId: string;
let dumpBytes: number;
let estimate: number;
const dbs = scratchDatabases();
const outcomes: string[] = [];

/** Resizes the tmpfs to `kb` kilobytes (tmpfs may be resized while mounted). */
function resize(kb: number): void {
	execFileSync("mount", ["-o", `remount,size=${kb}k`, disk]);
}

function emptyDisk(): void {
	for (const f of readdirSync(disk))
		rmSync(join(disk, f), { recursive: true, force: true });
}

/** Files in BACKUP_DIR that look like a finished backup (an archive or a manifest). */
const finished = () =>
	readdirSync(disk).filter((f) => /\.(dump|dir|json)$/.test(f));

const clone = (prefix: string) => dbs.clone(base, prefix);

function setup(url: string, extra: Record<string, string> = {}) {
	const audit = join(scratchDir(), "audit.jsonl");
	return {
		audit,
		env: {
			DATABASE_URL: url,
			BACKUP_DIR: disk,
			BACKUP_MIN_FREE_MB: "0",
			RUNBOOK_AUDIT_LOG: audit,
			...extra,
		},
	};
}

/** The disk is named in plain words, and no stack trace is shown. */
function expectDiskFull(run: RunResult): void {
	const out = `${run.stdout}\n${run.stderr}`;
	expect(run.code, out).toBe(1);
	expect(run.stderr, out).toContain(disk);
	expect(run.stderr, out).toMatch(/No space left on device|ran out of space/);
	expect(run.stderr, out).not.toMatch(/\n\s+at /);
}

beforeAll(async () => {
	base = dbs.track(await createSeededDatabase("fdk_base", 150));
	// Video thumbnails kept in the database: ~12 MB of random bytes, which neither TOAST nor
	// pg_dump's zlib can compress. In their own schema, outside Prisma's (public).
	await admin(async (db) => {
		await db.query("create schema media");
		await db.query(
			"create table media.thumbnails (id int primary key, data bytea not null)",
		);
		await db.query(
			"alter table media.thumbnails alter column data set storage external",
		);
		await db.query(
			"insert into media.thumbnails select i, (select string_agg(uuid_send(gen_random_uuid()), ''::bytea) from generate_series(1, 4096) g where g > i - i) from generate_series(1, 192) i",
		);
		await db.query("vacuum analyze media.thumbnails");
	}, base);
	const size = await admin(
		async (db) =>
			Number(
				(await db.query("select pg_database_size(current_database()) as n"))
					.rows[0].n,
			),
		base,
	);
	estimate = estimateDumpBytes(size);
	roomy = join(scratchDir(), "backups");
	const b = await runRunbook("backup", ["create", "--json"], {
		env: {
			DATABASE_URL: base,
			BACKUP_DIR: roomy,
			RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
		},
	});
	expect(b.code, b.stderr).toBe(0);
	const m = JSON.parse(b.stdout).backup;
	backupId = m.id;
	dumpBytes = m.size_bytes;
	// The premise: the estimate fits in a disk the dump does not fit in, with a margin either side.
	expect(
		dumpBytes - estimate,
		`estimate ${estimate}, dump ${dumpBytes}`,
	).toBeGreaterThan(2 * 1024 * KB);

	disk = mkdtempSync(join(tmpdir(), "faults-disk-"));
	// tmpfs: a real filesystem with a hard size limit (pg_dump gets ENOSPC), no loop device needed.
	execFileSync("mount", [
		"-t",
		"tmpfs",
		"-o",
		"size=200m,mode=0700",
		"tmpfs",
		disk,
	]);
	mounted = true;
}, 240_000);

afterAll(async () => {
	if (mounted) execFileSync("umount", [disk]);
	await dbs.dropAll();
	if (outcomes.length)
		process.stderr.write(`\nfaults-disk outcomes:\n${outcomes.join("\n")}\n`);
});

/** Room for `used` bytes already on the disk plus halfway between the estimate and the dump. */
function sizeBetween(used = 0): number {
	return Math.ceil((used + (estimate + dumpBytes) / 2) / KB);
}

describe("a full backup disk", () => {
	it("backup.ts: the pre-check passes, the dump runs out of space: exit 1 naming the disk, no backup left; with room it succeeds", async () => {
		emptyDisk();
		resize(sizeBetween());
		const { env, audit } = setup(base);
		const before = await snapshotDatabase(base);
		const run = await runRunbook("backup", [], { env });
		expectDiskFull(run);
		expect(run.stdout).toMatch(/pg_dump .* → /); // the pre-check passed: the dump started
		expect(finished()).toEqual([]);
		expect(readdirSync(disk)).toEqual([]); // not even the partial directory
		expect(await snapshotDatabase(base)).toEqual(before);
		const stop = stoppedAt(audit, "backup");
		expect(stop).toMatchObject({
			stepNo: 2,
			status: "failed",
			runEnded: true,
		});

		resize(200 * KB);
		const again = await runRunbook("backup", ["--json"], { env });
		expect(again.code, again.stderr).toBe(0);
		expect(JSON.parse(again.stdout).verified).toBe(true);
		expect(finished()).toHaveLength(2);
		outcomes.push(
			"backup | 2. Dump the database | BACKUP_DIR full mid-dump | exit 1, disk named, no archive/manifest/partial left, database unchanged; rerun with room exit 0",
		);
	});

	it("backup.ts: too little room for the estimate: refused before dumping (exit 3), nothing written", async () => {
		emptyDisk();
		resize(Math.floor(estimate / 2 / KB));
		const { env, audit } = setup(base);
		const run = await runRunbook("backup", [], { env });
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stderr).toContain(`Not enough room for the backup in ${disk}`);
		expect(run.stderr).toContain("Nothing was dumped.");
		expect(readdirSync(disk)).toEqual([]);
		expect(stoppedAt(audit, "backup")).toMatchObject({
			stepNo: 1,
			status: "failed",
		});
		outcomes.push(
			"backup | 1. Check pg_dump, the server and free space | BACKUP_DIR smaller than the estimate | exit 3, nothing written",
		);
	});

	it("deploy-production.ts: its pre-deploy backup runs out of space: exit 1, no migration applied, no backup left; with room it deploys", async () => {
		emptyDisk();
		resize(sizeBetween());
		const url = await clone("fdk_deploy");
		const behind = await rewind(url, 2);
		const { env, audit } = setup(url);
		const before = await snapshotDatabase(url);
		const args = ["--yes", "--confirm", dbName(url), "--monitor-seconds", "0"];
		const run = await runRunbook("deploy-production", args, { env });
		expectDiskFull(run);
		expect(finished()).toEqual([]);
		expect(readdirSync(disk)).toEqual([]);
		expect(await snapshotDatabase(url)).toEqual(before);
		expect(stoppedAt(audit, "deploy-production")).toMatchObject({
			stepNo: 2,
			status: "failed",
			runEnded: true,
		});

		resize(200 * KB);
		const again = await runRunbook("deploy-production", [...args, "--json"], {
			env,
		});
		expect(again.code, again.stderr).toBe(0);
		expect(JSON.parse(again.stdout).applied).toEqual(behind);
		outcomes.push(
			"deploy-production | 2. Backup: pg_dump, verified | BACKUP_DIR full mid-dump | exit 1, disk named, nothing applied, no backup left; rerun with room exit 0",
		);
	});

	it("emergency-rollback.ts: its safety backup runs out of space: exit 1, nothing restored, only the backup to restore left; with room it restores", async () => {
		emptyDisk();
		resize(200 * KB);
		// The backup to restore is on the same disk.
		for (const f of [`${backupId}.dump`, `${backupId}.json`])
			copyFileSync(join(roomy, f), join(disk, f));
		const kept = readdirSync(disk).sort();
		resize(sizeBetween(dumpBytes + 64 * KB));
		const url = await clone("fdk_rollback");
		await admin(async (db) => {
			await db.query("delete from media.thumbnails where id > 180");
			await db.query(
				"delete from purchases where id in (select id from purchases order by id limit 7)",
			);
		}, url);
		const before = await snapshotDatabase(url);
		const atBackup = await snapshotDatabase(base);
		const { env, audit } = setup(url);
		const args = ["--backup", backupId, "--yes", "--confirm", dbName(url)];
		const run = await runRunbook("emergency-rollback", args, { env });
		expectDiskFull(run);
		expect(readdirSync(disk).sort()).toEqual(kept);
		expect(await snapshotDatabase(url)).toEqual(before);
		expect(stoppedAt(audit, "emergency-rollback")).toMatchObject({
			stepNo: 6,
			status: "failed",
			runEnded: true,
		});
		expect(run.stdout).not.toContain("[8/15] Restore atomically");

		resize(200 * KB);
		const again = await runRunbook("emergency-rollback", args, { env });
		expect(again.code, again.stdout + again.stderr).toBe(0);
		expect(await snapshotDatabase(url)).toEqual(atBackup);
		expect(existsSync(join(disk, `${backupId}.dump`))).toBe(true);
		outcomes.push(
			"emergency-rollback | 6. Safety backup of the current state | BACKUP_DIR full mid-dump | exit 1, disk named, nothing restored, no safety backup left; rerun with room exit 0",
		);
	});
});
