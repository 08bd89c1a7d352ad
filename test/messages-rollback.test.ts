// The words emergency-rollback says (lib/messages/rollback.ts), from typed results: pure, fast.

import { describe, expect, it } from "vitest";
import type { BackupEntry, BackupManifest } from "../lib/backup/archive.ts";
import * as say from "../lib/messages/rollback.ts";

const NOW = Date.parse("2025-01-07T04:15:00Z");
const manifest = (over: Partial<BackupManifest> = {}) =>
	({
		id: "faceswap-20250107T031500Z",
		kind: "pre-deploy",
		created_at: "2025-01-07T03:15:00.000Z",
		target: "app@db.example.com:5432/faceswap",
		database: "faceswap",
		format: "custom",
		archive: "faceswap-20250107T031500Z.dump",
		size_bytes: 5 * 1024 * 1024,
		sha256: "ab".repeat(32),
		pg_dump_version: "15.8",
		duration_ms: 4200,
		latest_migration: "20241230000000_comprehensive_schema",
		row_counts: { users: 1000, purchases: 250 },
		verified_at: "2025-01-07T03:16:00.000Z",
		...over,
	}) as BackupManifest;
const entry = (over: Partial<BackupManifest>, archivePresent = true) =>
	({ manifest: manifest(over), archivePresent }) as BackupEntry;

describe("lib/messages/rollback.ts", () => {
	it("names the mode a skipped step belongs to", () => {
		expect(
			["restore", "rehearse", "down", "put-back"].map(say.notPartOf),
		).toMatchInlineSnapshot(`
			[
			  "not part of restore mode",
			  "not part of --rehearse",
			  "not part of --mode down",
			  "not part of --put-back",
			]
		`);
	});

	it("shows the backup next to the database now", () => {
		expect(
			say
				.comparison(
					manifest(),
					{
						latest: "20250102000000_add_user_preferences",
						counts: { users: 1025, purchases: 243, user_preferences: 25 },
						exact: true,
					},
					NOW,
				)
				.join("\n"),
		).toMatchInlineSnapshot(`
			"backup:   faceswap-20250107T031500Z (pre-deploy), made 2025-01-07 03:15:00 UTC (60m00s ago) of app@db.example.com:5432/faceswap
			          5.0 MB custom archive, pg_dump 15.8, verified 2025-01-07 03:16:00 UTC
			latest migration: backup 20241230000000_comprehensive_schema; now 20250102000000_add_user_preferences
			  table             in backup  now    difference
			  ----------------  ---------  -----  ----------
			  purchases         250        243    -7
			  user_preferences  -          25     only now
			  users             1,000      1,025  +25"
		`);
		expect(say.chosenSummary(manifest(), NOW)).toMatchInlineSnapshot(
			`"faceswap-20250107T031500Z (pre-deploy, 60m00s ago, latest migration 20241230000000_comprehensive_schema)"`,
		);
	});

	it("says why there is no backup to propose, and what to do", () => {
		const usable = (e: BackupEntry) => Boolean(e.manifest.verified_at);
		expect(
			say.noBackup(false, "app@db:5432/faceswap", "backups", [], usable),
		).toMatchInlineSnapshot(`
			{
			  "hint": "Check BACKUP_DIR (npx tsx runbooks/backup.ts list). To roll back migrations without a backup, see --mode down.",
			  "none": "There is no verified pre-deploy backup of app@db:5432/faceswap in backups.",
			}
		`);
		expect(
			say.noBackup(
				false,
				"app@db:5432/faceswap",
				"backups",
				[entry({ kind: "manual" }), entry({ id: "old", verified_at: null })],
				usable,
			),
		).toMatchInlineSnapshot(`
			{
			  "hint": "To restore another one, name it: npx tsx runbooks/emergency-rollback.ts --backup faceswap-20250107T031500Z (list them: npx tsx runbooks/backup.ts list).",
			  "none": "There is no verified pre-deploy backup of app@db:5432/faceswap in backups (2 other backup(s) of it: faceswap-20250107T031500Z manual; old pre-deploy, not verified).",
			}
		`);
		expect(
			say.passedOver(false, [
				entry({ id: "newer", verify_error: "sha256 mismatch" }),
				entry({ id: "gone" }, false),
			]),
		).toMatchInlineSnapshot(
			`"newer pre-deploy backup(s) passed over: newer (failed verification: sha256 mismatch); gone (archive missing)"`,
		);
	});

	it("says what the database holds after a stop", () => {
		const files = {
			files: [
				{
					migration: "20250101000000_add_video_rating",
					commit: "3f2c1ab0d9e8f7a6b5c4",
					subject: "Add ratings",
				},
			],
			reverted: [],
		};
		expect(
			say.rollbackState({
				downApplied: false,
				committing: false,
				appStopped: true,
				safetyId: "faceswap-20250107T041500Z",
				files,
			}),
		).toMatchInlineSnapshot(`
			"The database is as it was before the rollback (nothing was restored).
			The app was stopped: start it again (APP_START_CMD) once the database is as you want it.
			To return to the state before this rollback: npx tsx runbooks/emergency-rollback.ts --backup faceswap-20250107T041500Z"
		`);
		expect(
			say.rollbackState({
				downApplied: false,
				committing: true,
				appStopped: false,
				files,
			}),
		).toMatchInlineSnapshot(
			`"The restore was stopped while committing: the database is either wholly restored or wholly as it was, never a mix (a rerun makes sure it holds the backup)."`,
		);
		expect(
			say.rollbackState({
				restoredId: "faceswap-20250107T031500Z",
				downApplied: false,
				committing: false,
				appStopped: true,
				files: {
					...files,
					revert: "git -C /repo revert --no-edit 3f2c1ab0d9e8",
				},
			}),
		).toMatchInlineSnapshot(`
			"The database holds backup faceswap-20250107T031500Z (restored).
			The app was stopped: start it again (APP_START_CMD) once the database is as you want it.
			Migration files still to remove, so that the next deploy does not apply them again: git -C /repo revert --no-edit 3f2c1ab0d9e8"
		`);
		expect(
			say.filesAdvice({ ...files, reverted: ["3f2c1ab0d9e8f7a6b5c4"] }),
		).toMatchInlineSnapshot(`"Migration files: reverted (3f2c1ab0d9e8)."`);
		expect(
			say.putBackStopped("faceswap-20250107T031500Z"),
		).toMatchInlineSnapshot(
			`"The database holds backup faceswap-20250107T031500Z (restored). None of the new rows is in: they were put back in one transaction, which did not commit."`,
		);
		expect(say.rehearseStopped("faceswap_rehearse_x")).toMatchInlineSnapshot(
			`"The target was not touched. The scratch database faceswap_rehearse_x is dropped at the end of the run (or by the next rehearsal)."`,
		);
	});

	it("words each step's outcome", () => {
		const t = say.APP_HOOK.stop;
		expect(
			say.hookFailed(t, { exitCode: 2, output: "one\ntwo\nthree" }),
		).toMatchInlineSnapshot(
			`"Stopping the app failed (APP_STOP_CMD exit 2): two three. The database was not changed."`,
		);
		expect(
			["passed", "manual", "skipped"].map((outcome) =>
				say.hookDone(say.APP_HOOK.start, { outcome, durationMs: 1500 }),
			),
		).toMatchInlineSnapshot(`
			[
			  "APP_START_CMD done in 1.5s",
			  "started by the operator",
			  "APP_START_CMD not set (--yes): start the app",
			]
		`);
		expect(
			["clearing", "loading", "committing", "committed"].map((p) =>
				say.restorePhaseNote(p, undefined, "5s", "faceswap-x", 12345),
			),
		).toMatchInlineSnapshot(`
			[
			  "BEGIN; dropping every object of schema public (lock_timeout 5s)",
			  "loading faceswap-x (12,345 rows)",
			  "COMMIT: committing the restore",
			  "committed: the database now holds the backup",
			]
		`);
		expect(
			say.putBackDone(48, 49, [
				{
					schema: "public",
					table: "users",
					found: 37,
					inserted: 36,
					conflicts: ["u1"],
				},
				{
					schema: "public",
					table: "purchases",
					found: 12,
					inserted: 12,
					conflicts: [],
				},
			]),
		).toMatchInlineSnapshot(
			`"put back 48 of 49 row(s) inserted since the backup: users +36, purchases +12"`,
		);
		expect(
			say.leftOut(
				49,
				"purchases +12, users +37",
				"npx tsx runbooks/emergency-rollback.ts --put-back s --backup b --yes --confirm faceswap",
			),
		).toMatchInlineSnapshot(
			`"49 row(s) inserted since the backup left out (purchases +12, users +37); to put them back: npx tsx runbooks/emergency-rollback.ts --put-back s --backup b --yes --confirm faceswap"`,
		);
		expect(
			say.verifySummary(
				{
					problems: [],
					counts: [1, 2, 3],
					smokeQueries: 9,
					hooks: [{ name: "SMOKE_TEST_CMD", outcome: "passed" }],
				},
				false,
			),
		).toMatchInlineSnapshot(
			`"3 tables' row counts as in the manifest, history and schema consistent, 9 smoke queries ok, SMOKE_TEST_CMD passed"`,
		);
	});

	it("asks and sums up in plain words", () => {
		expect(
			say.confirmDown(
				["20250101000000_add_video_rating"],
				"app@db:5432/faceswap",
				[
					"drops column generated_videos.rating and its 3,500 non-null value(s)",
				],
			),
		).toMatchInlineSnapshot(
			`"Roll back 1 migration(s) on app@db:5432/faceswap: this drops column generated_videos.rating and its 3,500 non-null value(s)."`,
		);
		expect(
			say.downInstead(
				"20241230000000_comprehensive_schema",
				["a", "b"],
				[],
				"npx tsx runbooks/emergency-rollback.ts --mode down --to 20241230000000_comprehensive_schema",
			),
		).toMatchInlineSnapshot(`
			[
			  "--mode down --to 20241230000000_comprehensive_schema would undo a, b and keep every row written since the backup; it drops no data:",
			  "  npx tsx runbooks/emergency-rollback.ts --mode down --to 20241230000000_comprehensive_schema",
			]
		`);
		expect(
			["down", "rehearse", "restore"].map((mode) =>
				say.dryRunSummary(mode, {
					later: ["a"],
					statements: 2,
					backupId: "faceswap-x",
					display: "app@db:5432/faceswap",
					method: "transaction",
				}),
			),
		).toMatchInlineSnapshot(`
			[
			  "dry run: would roll back a with 2 statement(s) of down SQL",
			  "dry run: would restore faceswap-x into a scratch database and drop it",
			  "dry run: would restore faceswap-x over app@db:5432/faceswap (--method transaction)",
			]
		`);
		expect(
			say.rehearsalLines(
				manifest(),
				3000,
				"transaction",
				"app@db:5432/faceswap",
				"faceswap_rehearse_x",
			),
		).toMatchInlineSnapshot(`
			[
			  "restore time: 3.0s for 1,250 rows (--method transaction)",
			  "a real rollback of this backup: about 7.2s of database work (safety backup ~4.2s, as long as this backup's dump took, plus the restore), and the verification",
			  "the target app@db:5432/faceswap was not touched; faceswap_rehearse_x was dropped",
			]
		`);
	});
});
