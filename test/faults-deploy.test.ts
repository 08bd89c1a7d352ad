// Fault injection for the two runbooks that take backups: backup.ts (create) and
// deploy-production.ts. At every step that writes files or changes data, the run is killed
// (SIGKILL to its process group, as `kill -9` or an OOM killer), interrupted (SIGINT, as Ctrl-C)
// or has its database sessions terminated (pg_terminate_backend). After each fault: nothing is
// half-written (the database is wholly before or wholly after, no partial archive or manifest
// counts as a backup), the audit log says where the run stopped, and a rerun (following the
// runbook's own advice) ends where an uninterrupted reference run ends.

import { createHash, randomUUID } from "node:crypto";
import { cpSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
	type BackupManifest,
	listBackups,
	verifyBackup,
} from "../lib/backup/archive.ts";
import {
	faultCases,
	killAndInterrupt,
	runInterrupted,
} from "./support/deploy-faults.ts";
import {
	confirmedDeploy,
	copiedDatabase,
	queryRows,
	runbookEnv,
	snapshotWithout,
} from "./support/deploy-suite.ts";
import { type Fault, settle } from "./support/faults.ts";
import { admin, createSeededDatabase, runRunbook } from "./support/harness.ts";
import { migrationsWith } from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

const template = copiedDatabase(() =>
	createSeededDatabase("faults_deploy_tpl", 150),
);

type Snapshot = Record<string, string>;
const same = (a: Snapshot, b: Snapshot) =>
	JSON.stringify(a) === JSON.stringify(b);

// ---------------------------------------------------------------------------------------------
// backup.ts create --keep 1: steps 2 (dump), 3 (verify: records verified_at) and 5 (prune).

describe("backup.ts create, interrupted", () => {
	let url: string;
	/** A BACKUP_DIR holding one earlier backup of the database (copied for each case). */
	let seededDir: string;
	let seededId: string;
	let dbBefore: Snapshot;
	/** The manifests an uninterrupted `create --keep 1` leaves, ids and times normalised. */
	let reference: unknown[];

	interface Backups {
		manifests: Array<Record<string, unknown>>;
		files: string[];
	}
	const readBackups = (dir: string): Backups => {
		const files = existsSync(dir) ? readdirSync(dir).sort() : [];
		return {
			files,
			manifests: files
				.filter((f) => f.endsWith(".json") && !f.startsWith("."))
				.map((f) => JSON.parse(readFileSync(join(dir, f), "utf8"))),
		};
	};
	// Ids, times, durations and archive sizes and sums differ from run to run (the archive holds its
	// creation time); what a backup is (kind, format, target, latest migration, row counts, verified)
	// does not.
	const normalise = (b: Backups) =>
		b.manifests
			.map((m) => ({
				kind: m.kind,
				format: m.format,
				target: m.target,
				latest_migration: m.latest_migration,
				row_counts: m.row_counts,
				verified: Boolean(m.verified_at),
				verify_error: m.verify_error ?? null,
			}))
			.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

	function caseEnv() {
		const env = runbookEnv(url);
		cpSync(seededDir, env.BACKUP_DIR, { recursive: true });
		return env;
	}

	beforeAll(async () => {
		url = await template.clone("faults_backup");
		const seeding = runbookEnv(url);
		seededDir = seeding.BACKUP_DIR;
		const first = await runRunbook("backup", ["create", "--json"], {
			env: seeding,
		});
		expect(first.code, first.stderr).toBe(0);
		seededId = JSON.parse(first.stdout).backup.id;
		dbBefore = await snapshotDatabase(url);

		const env = caseEnv();
		const ref = await runRunbook("backup", ["create", "--keep", "1"], { env });
		expect(ref.code, ref.stdout + ref.stderr).toBe(0);
		const after = readBackups(env.BACKUP_DIR);
		// One backup left (the new, verified one): the seeded one was pruned.
		expect(after.manifests).toHaveLength(1);
		expect(after.manifests[0].id).not.toBe(seededId);
		reference = normalise(after);
	});

	const faults: Fault[] = [
		...killAndInterrupt(2, 150),
		...killAndInterrupt(3, 100),
		...killAndInterrupt(5, 100),
		// pg_dump's and the snapshot's sessions, mid-dump.
		{ kind: "terminate", step: 2, offsetMs: 150, database: "" },
	];

	it.each(faultCases(faults))(
		"%s: no half-written backup counts, the audit log says where, a rerun ends as an uninterrupted run",
		async (_, f) => {
			const env = caseEnv();
			const before = readBackups(env.BACKUP_DIR);
			const { out } = await runInterrupted(
				"backup",
				["create", "--keep", "1"],
				f,
				url,
				5,
				{ env },
			);
			await settle(url, { all: true });

			// 1. The database is untouched; every manifest left names a complete archive (its sha256
			// and pg_restore --list pass), and only .partial-* leftovers are not backups.
			expect(await snapshotDatabase(url)).toEqual(dbBefore);
			const left = readBackups(env.BACKUP_DIR);
			const known = new Set(
				left.manifests.flatMap((m) => [
					m.archive as string,
					`${m.id as string}.json`,
				]),
			);
			expect(
				left.files.filter((f) => !known.has(f) && !f.startsWith(".partial-")),
				out,
			).toEqual([]);
			// Either nothing new (killed before the dump was moved into place), or a new complete backup;
			// the seeded one is there unless the prune ran.
			expect(left.manifests.length).toBeLessThanOrEqual(
				before.manifests.length + 1,
			);
			// Checked in-process with the runbook's own functions (record: false leaves the manifests as they are).
			for (const m of left.manifests) {
				const v = await verifyBackup(
					{ manifest: m as unknown as BackupManifest, archivePresent: true },
					env,
					undefined,
					{ record: false },
				);
				expect(v.problems, `${m.id}\n${out}`).toEqual([]);
			}
			expect(
				listBackups(env)
					.map((b) => b.manifest.id)
					.sort(),
			).toEqual(left.manifests.map((m) => m.id as string).sort());

			// 3. A rerun finishes, and BACKUP_DIR ends as after an uninterrupted run: one verified
			// backup, no leftovers.
			const rerun = await runRunbook("backup", ["create", "--keep", "1"], {
				env,
			});
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
			const final = readBackups(env.BACKUP_DIR);
			expect(
				final.files.filter((f) => f.startsWith(".")),
				out,
			).toEqual([]);
			expect(normalise(final)).toEqual(reference);
			expect(await snapshotDatabase(url)).toEqual(dbBefore);
		},
	);
});

// ---------------------------------------------------------------------------------------------
// deploy-production.ts: steps 2 (pre-deploy backup) and 4 (prisma migrate deploy), with one pending
// migration that changes schema and data in one transaction and takes a moment (pg_sleep), so a
// fault can land inside it.

const MIGRATION = "20250301000000_add_video_rating";
const MIGRATION_SQL = [
	'ALTER TABLE "generated_videos" ADD COLUMN "rating" INTEGER;',
	'UPDATE "generated_videos" SET "rating" = "progress" % 5 + 1;',
	"SELECT pg_sleep(1.5);",
	'CREATE INDEX "generated_videos_rating_idx" ON "generated_videos"("rating");',
	"",
].join("\n");

describe("deploy-production.ts, interrupted", () => {
	// Faults in the pre-deploy backup (step 2) and in the migration (step 4).
	const faults: Fault[] = [
		...killAndInterrupt(2, 150),
		// Step 4 is mostly Prisma starting up (a second or two here): 2.5 s lands the fault while the
		// migration runs (it sleeps 1.5 s inside its transaction), or just after it committed.
		...killAndInterrupt(4, 2500),
		{ kind: "terminate", step: 4, offsetMs: 2500, database: "" },
	];

	let migrations: string;
	/** The database before and after an uninterrupted deploy, without _prisma_migrations. */
	let before: Snapshot;
	let after: Snapshot;
	/** Finished migrations after the reference deploy (names and checksums). */
	let referenceHistory: string[];

	// _prisma_migrations rows carry random ids and timestamps (and a rolled-back row stays after a
	// resolved interruption): compared separately, as the finished migrations' names and checksums.
	const withoutHistory = (url: string) =>
		snapshotWithout(url, "rows public._prisma_migrations");
	const history = async (url: string) =>
		(
			await queryRows<{ m: string }>(
				url,
				"select migration_name || ' ' || checksum as m from _prisma_migrations where finished_at is not null and rolled_back_at is null order by 1",
			)
		).map((r) => r.m);
	const openRows = async (url: string) =>
		(
			await queryRows<{ migration_name: string }>(
				url,
				"select migration_name from _prisma_migrations where finished_at is null and rolled_back_at is null",
			)
		).map((r) => r.migration_name);

	/** Whether the database is as before or as after the migration, or "MIXED" (partly applied). */
	async function migrationState(url: string) {
		const now = await withoutHistory(url);
		if (same(now, before)) return "before";
		return same(now, after) ? "after" : "MIXED";
	}

	const caseEnv = (url: string) =>
		runbookEnv(url, { PRISMA_MIGRATIONS_DIR: migrations });
	const deployArgs = (url: string) => confirmedDeploy(url, "0");

	beforeAll(async () => {
		migrations = migrationsWith({ [MIGRATION]: MIGRATION_SQL });
		const url = await template.clone("faults_deploy_ref");
		before = await withoutHistory(url);
		const ref = await runRunbook("deploy-production", deployArgs(url), {
			env: caseEnv(url),
		});
		expect(ref.code, ref.stdout + ref.stderr).toBe(0);
		after = await withoutHistory(url);
		expect(after).not.toEqual(before);
		referenceHistory = await history(url);
		expect(referenceHistory.some((m) => m.startsWith(MIGRATION))).toBe(true);
	});

	it.each(faultCases(faults))(
		"%s: wholly before or wholly after, the audit log says where, a rerun ends as an uninterrupted deploy",
		async (_, f) => {
			const url = await template.clone("faults_deploy");
			const env = caseEnv(url);
			const { out } = await runInterrupted(
				"deploy-production",
				deployArgs(url),
				f,
				url,
				8,
				{ env },
			);
			await settle(url, { all: true });

			// 1. The migration is in wholly or not at all, and its history row says which.
			const state = await migrationState(url);
			expect(state, out).not.toBe("MIXED");
			const finished = (await history(url)).some((m) =>
				m.startsWith(MIGRATION),
			);
			const open = await openRows(url);
			// Finished in the history only if its changes are in; the reverse can lag: a kill after
			// the migration's transaction committed and before Prisma recorded its end.
			if (finished) expect(state, out).toBe("after");
			if (state === "after" && !finished)
				expect(open, out).toEqual([MIGRATION]);
			expect(open.filter((m) => m !== MIGRATION)).toEqual([]);
			// No archive without its manifest, no manifest without its archive: only .partial-* leftovers.
			if (existsSync(env.BACKUP_DIR)) {
				const files = readdirSync(env.BACKUP_DIR);
				for (const f of files.filter((x) => !x.startsWith("."))) {
					const id = f.replace(/\.(json|dump)$/, "");
					expect(files, out).toContain(`${id}.json`);
					expect(files, out).toContain(`${id}.dump`);
				}
			}

			// 3. Rerun. A migration left unfinished in _prisma_migrations (its process was killed) makes
			// the deploy refuse (exit 3), saying from the database whether its changes are in: none
			// (state "before": mark it rolled back, with the SQL shown) or all (state "after": mark it
			// applied with troubleshoot). Follow the advice, as the operator would.
			let rerun = await runRunbook("deploy-production", deployArgs(url), {
				env,
			});
			if (open.length) {
				expect(rerun.code, rerun.stdout + rerun.stderr).toBe(3);
				expect(rerun.stderr).toContain(
					`failed or unfinished migration(s): ${MIGRATION}`,
				);
				if (state === "before") {
					expect(rerun.stderr).toContain(
						"None of its changes are in the database",
					);
					const sql =
						/UPDATE "_prisma_migrations" SET rolled_back_at = now\(\)[^\n]*;/.exec(
							rerun.stderr,
						)?.[0];
					expect(sql, rerun.stderr).toBeDefined();
					await admin((c) => c.query(sql as string), url);
				} else {
					expect(rerun.stderr).toContain("Its changes are all in the database");
					const resolved = await runRunbook(
						"troubleshoot",
						["--skip-drift", "--resolve-applied", MIGRATION, "--yes"],
						{ env },
					);
					expect(resolved.code, resolved.stdout + resolved.stderr).toBe(0);
				}
				rerun = await runRunbook("deploy-production", deployArgs(url), {
					env,
				});
			}
			expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
			expect(await withoutHistory(url)).toEqual(after);
			expect(await history(url)).toEqual(referenceHistory);
			expect(await openRows(url)).toEqual([]);
			// A verified pre-deploy backup exists, taken before the migration.
			const manifests = readdirSync(env.BACKUP_DIR)
				.filter((x) => x.endsWith(".json") && !x.startsWith("."))
				.map((x) => JSON.parse(readFileSync(join(env.BACKUP_DIR, x), "utf8")));
			expect(
				manifests.some(
					(m) =>
						m.verified_at &&
						m.kind === "pre-deploy" &&
						m.latest_migration === "20241230000000_comprehensive_schema",
				),
				JSON.stringify(manifests),
			).toBe(true);
		},
	);
	it("a migration that committed but was never recorded (killed in between): the next deploy says its changes are in and how to mark it applied", async () => {
		// The state a kill between the migration's COMMIT and Prisma's finished_at update leaves.
		const url = await template.clone("faults_deploy_unrecorded");
		const env = caseEnv(url);
		const sql = readFileSync(
			join(migrations, MIGRATION, "migration.sql"),
			"utf8",
		);
		await admin(async (c) => {
			await c.query(sql);
			await c.query(
				"insert into _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) values ($1, $2, $3, now(), 0)",
				[
					randomUUID(),
					createHash("sha256").update(sql).digest("hex"),
					MIGRATION,
				],
			);
		}, url);
		const refused = await runRunbook("deploy-production", deployArgs(url), {
			env,
		});
		expect(refused.code, refused.stdout + refused.stderr).toBe(3);
		expect(refused.stderr).toContain("Its changes are all in the database");
		expect(refused.stderr).toContain(
			`npx tsx runbooks/troubleshoot.ts --resolve-applied ${MIGRATION}`,
		);
		expect(refused.stderr).not.toContain("SET rolled_back_at");
		const resolved = await runRunbook(
			"troubleshoot",
			["--skip-drift", "--resolve-applied", MIGRATION, "--yes"],
			{ env },
		);
		expect(resolved.code, resolved.stdout + resolved.stderr).toBe(0);
		const rerun = await runRunbook("deploy-production", deployArgs(url), {
			env,
		});
		expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
		expect(rerun.stdout).toContain("nothing to deploy");
		expect(await withoutHistory(url)).toEqual(after);
		expect(await history(url)).toEqual(referenceHistory);
	});
});
