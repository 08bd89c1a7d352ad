// The words migrate-to-supabase, switch-db-env, backup and dev-migrate print, from typed results: pure functions,
// snapshot-tested (no database).

import { describe, expect, it } from "vitest";
import type { BackupManifest } from "../lib/backup/archive.ts";
import * as bk from "../lib/messages/backup.ts";
import * as dm from "../lib/messages/dev-migrate.ts";
import * as say from "../lib/messages/supabase.ts";
import * as sw from "../lib/messages/switch.ts";
import type { PlatformShape, RunRecord } from "../lib/pg/supabase.ts";

const run = (over: Partial<RunRecord> = {}): RunRecord => ({
	run_id: "7f3c",
	source: "app@localhost:5432/faceswap",
	phase: "copying",
	started_at: new Date("2026-01-02T03:04:05Z"),
	updated_at: new Date("2026-01-02T03:14:05Z"),
	tables: null,
	...over,
});

const shape = (over: Partial<PlatformShape> = {}): PlatformShape => ({
	roles: ["anon"],
	schemas: [],
	hasExtensionsSchema: false,
	looksLikeSupabase: false,
	user: "postgres",
	superuser: false,
	canCreateInPublic: true,
	canCreateSchema: false,
	...over,
});

describe("migrate-to-supabase messages", () => {
	it("says why a rerun copies afresh, clears or only verifies", () => {
		expect([
			say.modeReason("fresh", null, 0),
			say.modeReason("restart", run(), 12),
			say.modeReason("restart", run({ phase: "verified" }), 12),
			say.modeReason("resume", run({ phase: "verified" }), 12),
			say.checkedSummary(
				{ display: "app@localhost:5432/faceswap", major: 15 },
				{ display: "postgres@db.x.supabase.co:5432/postgres", major: 17 },
				"resume",
			),
		]).toMatchInlineSnapshot(`
			[
			  "the target's public schema is empty: fresh copy",
			  "run 7f3c stopped while copying: its partial copy (12 objects) will be cleared and the copy made again",
			  "--restart: the copy of run 7f3c (verified 2026-01-02T03:14:05.000Z) will be cleared and made again",
			  "run 7f3c already copied and verified public at 2026-01-02T03:14:05.000Z: the copy is checked again, nothing is copied twice (--restart copies again)",
			  "app@localhost:5432/faceswap (PostgreSQL 15) -> postgres@db.x.supabase.co:5432/postgres (PostgreSQL 17); already copied: verify again",
			]
		`);
	});

	it("refuses with one sentence and what to do", () => {
		expect([
			say.publicNotEmpty(
				Array.from({ length: 6 }, (_, i) => ({ kind: "table", name: `t${i}` })),
			),
			say.copyOfAnother(run(), "me@localhost:5432/other"),
			say.cannotCreate(shape()),
			say.notSupabase(shape()),
			say.sourceHistoryDirty([
				{ kind: "failed", migration: "20260101_x", detail: "failed" },
			]),
			say.extensionsMoved([
				{
					name: "citext",
					schema: "public",
					where: "extensions",
					dependents: ["a", "b", "c", "d", "e"],
				},
			]),
		]).toMatchInlineSnapshot(`
			[
			  {
			    "hint": "Migrate into an empty project, or empty public yourself if those objects are expendable (this runbook never drops what it did not create).",
			    "message": "The target's public schema is not empty: it holds 6 object(s) (table t0, table t1, table t2, table t3, table t4, ...) that this runbook did not put there. Nothing was changed.",
			  },
			  {
			    "hint": "Check LOCAL_DATABASE_URL: it is me@localhost:5432/other now.",
			    "message": "The target's public schema holds a copy of another database (app@localhost:5432/faceswap, run 7f3c, copying). Nothing was changed.",
			  },
			  {
			    "hint": "Use the project's postgres user in REMOTE_DIRECT_URL.",
			    "message": "postgres on the target may not create schemas (for this runbook's record). Nothing was changed.",
			  },
			  "the target does not look like a Supabase project (missing: authenticated, service_role, schema extensions)",
			  {
			    "hint": "Fix the local database first (npx tsx runbooks/validate.ts names each problem; apply pending migrations with prisma migrate deploy), then rerun.",
			    "message": "The source's migration history is not clean: 20260101_x: failed. A copy would carry that to Supabase. Nothing was changed.",
			  },
			  {
			    "hint": "Move the extension locally first, e.g. create schema if not exists extensions; alter extension "<name>" set schema extensions; (Supabase keeps extensions there), then rerun.",
			    "message": "Restored objects would point at extension objects that do not exist on the target: citext is in schema public locally but will be in extensions on the target, and a, b, c and 2 more name its objects as public.<name>. Nothing was changed.",
			  },
			]
		`);
	});

	it("names what differs after a copy, and what a stopped step left", () => {
		const found = { bad: ["users"], extra: ["x"], migrationsSame: false };
		expect([
			say.copyDiffers(found, false),
			say.copyDiffers({ bad: [], extra: [], migrationsSame: false }, true),
			say.copyOutcome(
				{ tablesCopied: 9, bytes: 3 * 1024 * 1024, durationMs: 1 },
				2,
			),
			say.copyStopped(2, undefined, "postgres"),
			say.copyStopped(1, "7f3c", "postgres"),
			say.exposedToAnon(["a", "b", "c", "d", "e"]),
			say.verifiedSummary(9, 12345),
			say.verifyStopped(false),
		]).toMatchInlineSnapshot(`
			[
			  {
			    "hint": "Make sure nothing else writes to the target's public schema, then rerun (the runbook clears its own copy first).",
			    "message": "The copy does not match the source: rows differ in users; the target has extra tables x; _prisma_migrations differs.",
			  },
			  {
			    "hint": "Stop the app's writes to the local database, then rerun with --restart to copy again.",
			    "message": "The copy does not match the source: _prisma_migrations differs. The local database has probably changed since that copy was made.",
			  },
			  "9 tables, 3.0 MB streamed, 2 streams and index builds at a time",
			  "The target's public may hold a partial copy, recorded as run (none) in migrate_to_supabase.runs; a rerun clears it first (type the database name, or --yes --confirm postgres), then copies again. Nothing in .env changed.",
			  "pg_restore ran in one transaction, so the target's public is as it was before this step. Nothing in .env changed.",
			  "5 table(s) in public have row level security off while the API role anon may read them (a, b, c, d, ...): Supabase's Data API would serve them to anyone holding the anon key. Enable RLS (alter table ... enable row level security) or revoke anon's grants before publishing the API keys.",
			  "9 tables equal, 12,345 rows; migrations identical; no drift",
			  "The data on Supabase is verified; a rerun does not copy again. If the app is broken, go back first with ./runbooks/switch-db-env.ts local and fix it.",
			]
		`);
	});
});

describe("backup, switch-db-env and dev-migrate messages", () => {
	const manifest = {
		id: "faceswap-20260102T030405Z",
		archive: "faceswap-20260102T030405Z.dump",
		format: "custom",
		size_bytes: 5 * 1024 * 1024,
		sha256: "ab".repeat(32),
		duration_ms: 1500,
		row_counts: { users: 3, videos: 4 },
		latest_migration: "20260101_init",
		created_at: "2026-01-02T03:04:05.123Z",
		verified_at: null,
		verify_error: "sha256 differs",
		kind: "manual",
		target: "app@localhost:5432/faceswap",
	} as unknown as BackupManifest;

	it("backup: what was made, verified, listed and left", () => {
		expect([
			bk.createdLines("backups", manifest),
			bk.createdSummary(manifest),
			bk.verifyPlan("backups", null),
			bk.verifyFailed(manifest.id, "sha256 differs"),
			bk.verifyStopped(true, manifest),
			bk.verifyStopped(false, manifest),
			bk.entryRow({ manifest, archivePresent: false }),
			bk.pruneSummary(2, 1024, 3),
			bk.pruneSummary(0, 0, 3),
		]).toMatchInlineSnapshot(`
			[
			  [
			    "backups/faceswap-20260102T030405Z.dump and faceswap-20260102T030405Z.json (mode 0600)",
			    "2 tables, 7 rows; latest migration 20260101_init",
			  ],
			  "faceswap-20260102T030405Z, 5.0 MB in 1.5s",
			  [
			    "sha256 of <the new archive>, compared with the manifest",
			    "pg_restore --list <the new archive>",
			    "record verified_at in its manifest",
			  ],
			  {
			    "hint": "Do not restore from it. Take a new backup (npx tsx runbooks/backup.ts) and keep this one for inspection.",
			    "message": "Backup faceswap-20260102T030405Z failed verification: sha256 differs.",
			  },
			  "Interrupted before the check ended: nothing was recorded; faceswap-20260102T030405Z is complete but not verified, so it does not count as a backup yet (npx tsx runbooks/backup.ts verify faceswap-20260102T030405Z verifies it alone).",
			  "The manifest now records the failure (verified_at cleared). Nothing else was changed. The new archive faceswap-20260102T030405Z.dump is kept for inspection but does not count as a backup.",
			  {
			    "created": "2026-01-02 03:04:05Z",
			    "format": "custom",
			    "id": "faceswap-20260102T030405Z",
			    "kind": "manual",
			    "latest migration": "20260101_init",
			    "size": "MISSING",
			    "target": "app@localhost:5432/faceswap",
			    "verified": "FAILED",
			  },
			  "deleted 2, freed 1.0 kB; kept 3",
			  "nothing to delete (3 kept)",
			]
		`);
	});

	it("switch-db-env and dev-migrate: refusals and where things stand", () => {
		expect([
			sw.unrecorded("DATABASE_URL"),
			sw.profileDown("remote", "REMOTE_DATABASE_URL"),
			sw.nowLine(null, true),
			sw.statusSummary(null, false),
			sw.shellOverride("DATABASE_URL", true),
			sw.switchBack("remote"),
			dm.failedMigration({
				kind: "failed",
				migration: "20260101_init",
				detail: "failed",
			}),
			dm.STOPPED.apply("prisma/migrations/20260102_x"),
			dm.lintSummary(2),
			dm.wouldWrite("create table t ();\n", 1),
		]).toMatchInlineSnapshot(`
			[
			  {
			    "hint": "Record it as a profile first (e.g. LOCAL_DATABASE_URL=<the current DATABASE_URL> in .env), or rerun with --force (the old file is kept as a backup).",
			    "message": ".env holds DATABASE_URL, which no profile records: switching would drop it from .env and switching back could not restore it. Nothing was changed.",
			  },
			  {
			    "hint": "Check that the server (and the pooler) is up and that host, port and password in REMOTE_DATABASE_URL are right; the reasons are above. Rerun with --force to switch anyway.",
			    "message": "The remote profile does not answer (REMOTE_DATABASE_URL): .env was not changed.",
			  },
			  "Now: DATABASE_URL matches no profile",
			  "DATABASE_URL is not set in .env",
			  "DATABASE_URL is also set in this shell's environment: it overrides .env for everything started from this shell (unset it).",
			  "To switch back: ./runbooks/switch-db-env.ts local",
			  {
			    "hint": "See \`npx tsx runbooks/validate.ts\`; on a local database a reset is often simplest: npx prisma migrate reset --config prisma/prisma.config.ts",
			    "message": "Migration 20260101_init failed on this database; fix that first.",
			  },
			  "The migration's transaction was rolled back and prisma/migrations/20260102_x is kept; Prisma recorded it as failed.
			Fix prisma/schema.prisma, then: rm -r prisma/migrations/20260102_x && npx prisma migrate reset --config prisma/prisma.config.ts (local data is lost), before resuming.",
			  "2 unsafe change(s): fine on your laptop, but deploy-production refuses them unless allowed (--allow <rule>)",
			  "-- SQL it would write:
			create table t ();",
			]
		`);
	});
});
