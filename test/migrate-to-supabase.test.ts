// migrate-to-supabase.ts against a Supabase-shaped server (platform roles and schemas, pgcrypto in
// `extensions`, a real pgbouncer in transaction mode as the pooler): the Face Swap database with
// realistic data is copied, verified and the app's .env (in a temporary directory) switched.

import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "dotenv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, dropDatabase, runRunbook } from "./support/harness.ts";
import { snapshotDatabase, snapshotFiles } from "./support/snapshot.ts";
import {
	envBackupsIn,
	envDir,
	expectNoSecrets,
	newAuditLog,
	prepareMoveSource,
	profilesEnv,
	query,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabaseWithLocal,
} from "./support/supabase-suite.ts";

let sb: SupabaseFixture;
let src: string;
let dir: string;
let envFile: string;
let original: string;
let platformBefore: Record<string, string>;
const audit = newAuditLog();

beforeAll(async () => {
	[sb, src] = await startSupabaseWithLocal("sb_source");
	// With an extension the app's database has and the project lacks: created in `extensions`.
	await prepareMoveSource(src, 1000);
	platformBefore = await snapshotPlatform(sb.adminUrl);
	original = profilesEnv(src, sb, "# Database profiles");
	({ dir, file: envFile } = envDir("migrate-sb-", original));
});

afterAll(async () => {
	await sb?.stop();
	await dropDatabase(src);
});

function migrate(
	args: string[],
	opts: { env?: Record<string, string>; file?: string; watch?: boolean } = {},
) {
	return runRunbook(
		"migrate-to-supabase",
		[...args, "--env-file", opts.file ?? envFile],
		{
			env: { RUNBOOK_AUDIT_LOG: audit, ...(opts.env ?? {}) },
			watchChildren: opts.watch,
		},
	);
}

/** Every table of public: its row count and an md5 of its rows in order, computed independently. */
async function publicRows(url: string): Promise<Record<string, string>> {
	const all = await snapshotDatabase(url);
	return Object.fromEntries(
		Object.entries(all).filter(([k]) => k.startsWith("rows public.")),
	);
}

const migrationsOf = (url: string) =>
	admin(async (db) => {
		await db.query("set timezone = 'UTC'");
		return (await db.query("select * from _prisma_migrations order by id"))
			.rows;
	}, url);

const targetPublic = () =>
	query(
		sb.adminUrl,
		"select count(*)::int as n from pg_class where relnamespace = 'public'::regnamespace",
	).then((r) => r.rows[0].n as number);

describe("migrate-to-supabase.ts", () => {
	it("refuses the pooler as REMOTE_DIRECT_URL (exit 3), naming DIRECT_URL, and changes nothing", async () => {
		const file = join(dir, "pooler.env");
		writeFileSync(
			file,
			original.replace(
				`REMOTE_DIRECT_URL="${sb.directUrl}"`,
				`REMOTE_DIRECT_URL="${sb.poolerUrl}"`,
			),
		);
		for (const extra of [[], ["--dry-run"]]) {
			const r = await migrate(["--yes", ...extra], { file });
			expect(r.code, r.stdout + r.stderr).toBe(3);
			expect(r.stderr).toContain("REMOTE_DIRECT_URL");
			expect(r.stderr).toContain("DIRECT_URL");
			expect(r.stderr).toContain("goes through a transaction pooler");
			expectNoSecrets(r, sb, { childArgv: true });
		}
		expect(await targetPublic()).toBe(0);
	});

	it("changes nothing on either server nor in .env under --dry-run, and prints the exact commands masked", async () => {
		const srcBefore = await snapshotDatabase(src);
		const tgtBefore = await snapshotDatabase(sb.adminUrl);
		const filesBefore = snapshotFiles([dir]);
		const r = await migrate(["--dry-run"], { watch: true });
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expect(r.stdout).toContain("dry run");
		expect(r.stdout).toMatch(
			/PGPASSWORD=\*\*\*\* pg_dump --format=custom --schema=public --no-owner --no-privileges/,
		);
		expect(r.stdout).toMatch(
			/\| PGOPTIONS='-c synchronous_commit=off -c maintenance_work_mem=256MB' PGHOST=127\.0\.0\.1 PGPORT=\d+ PGUSER=postgres PGDATABASE=postgres PGPASSWORD=\*\*\*\* pg_restore --dbname=postgres --schema=public/,
		);
		expect(r.stdout).toContain(
			'create extension if not exists "pg_trgm" with schema "extensions";',
		);
		expect(r.stdout).toContain("DATABASE_URL: set to REMOTE_DATABASE_URL");
		expectNoSecrets(r, sb, { childArgv: true });
		expect(await snapshotDatabase(src)).toEqual(srcBefore);
		expect(await snapshotDatabase(sb.adminUrl)).toEqual(tgtBefore);
		expect(snapshotFiles([dir])).toEqual(filesBefore);
	});

	it("migrates: exit 0, every table equal, _prisma_migrations identical, platform untouched, .env switched", async () => {
		const verifyOut = join(dir, "verify.out");
		const r = await migrate(["--yes"], {
			watch: true,
			env: { VERIFY_CMD: `printf '%s' "$DATABASE_URL" > ${verifyOut}` },
		});
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expectNoSecrets(r, sb, { childArgv: true });
		expect(r.stdout).toContain("9 tables equal");

		// The rows, checked independently of the runbook.
		const local = await publicRows(src);
		expect(Object.keys(local)).toHaveLength(9);
		expect(await publicRows(sb.adminUrl)).toEqual(local);
		expect(local["rows public.generated_videos"]).toMatch(/^5000 /);
		expect(await migrationsOf(sb.adminUrl)).toEqual(await migrationsOf(src));

		// The platform: roles, schemas, their tables and rows, as before; the extension in `extensions`.
		expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
		const ext = await query(
			sb.adminUrl,
			"select extnamespace::regnamespace::text as s from pg_extension where extname = 'pg_trgm'",
		);
		expect(ext.rows).toEqual([{ s: "extensions" }]);
		// Owned by the project's postgres role (no owners copied), with the platform's default grants.
		const owners = await query(
			sb.adminUrl,
			"select distinct pg_get_userbyid(relowner) as o from pg_class where relnamespace = 'public'::regnamespace",
		);
		expect(owners.rows).toEqual([{ o: "postgres" }]);

		// .env: the pooler for the app, the direct URL for migrations, every other line as it was.
		const text = readFileSync(envFile, "utf8");
		const values = parse(text);
		expect(values.DATABASE_URL).toBe(sb.poolerUrl);
		expect(values.DIRECT_URL).toBe(sb.directUrl);
		const others = (t: string) =>
			t.split("\n").filter((l) => !/^(DATABASE_URL|DIRECT_URL)=/.test(l));
		expect(others(text)).toEqual(others(original));
		expect(statSync(envFile).mode & 0o777).toBe(0o640);
		const backups = envBackupsIn(dir);
		expect(backups).toHaveLength(1);
		expect(readFileSync(join(dir, backups[0]), "utf8")).toBe(original);
		expect(statSync(join(dir, backups[0])).mode & 0o777).toBe(0o600);
		// VERIFY_CMD ran against Supabase through the pooler.
		expect(readFileSync(verifyOut, "utf8")).toBe(sb.poolerUrl);
	});

	it("a second run continues without copying again and never duplicates rows", async () => {
		const before = await publicRows(sb.adminUrl);
		const r = await migrate(["--yes"]);
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expect(r.stdout).toContain("already copied and verified");
		expect(r.stdout).toContain("9 tables equal");
		expect(await publicRows(sb.adminUrl)).toEqual(before);
	});

	it("clears its own partial copy after a failed run (with the typed-name confirmation) and copies again, in parallel streams", async () => {
		// What a restore with --jobs that died half-way leaves: the record says copying, rows are missing.
		await admin(async (db) => {
			await db.query("update migrate_to_supabase.runs set phase = 'copying'");
			await db.query("delete from public.purchases where amount_cents = 999");
		}, sb.adminUrl);
		const unconfirmed = await migrate(["--yes", "--no-switch"]);
		expect(unconfirmed.code).toBe(3);
		expect(unconfirmed.stderr).toContain("--yes --confirm postgres");
		// This time with parallel streams (--jobs 2): pre-data, COPY pipes, each table's indexes, foreign keys.
		const r = await migrate(
			["--yes", "--confirm", "postgres", "--no-switch", "--jobs", "2"],
			{ watch: true },
		);
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expectNoSecrets(r, sb, { childArgv: true });
		expect(
			r.childArgv.some((a) =>
				a.includes('copy "public"."generated_videos" to stdout'),
			),
		).toBe(true);
		expect(r.stdout).toContain("2 streams and index builds at a time");
		expect(r.stdout).toMatch(
			/built \d+ index\(es\) and constraint\(s\) of "public\.generated_videos"/,
		);
		expect(r.stdout).toMatch(
			/stopped while copying: its partial copy \(\d+ objects\) will be cleared/,
		);
		expect(await publicRows(sb.adminUrl)).toEqual(await publicRows(src));
		expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
	});

	it("refuses (exit 3) a public schema holding objects it did not create, and changes nothing", async () => {
		await admin(
			(db) => db.query("drop schema migrate_to_supabase cascade"),
			sb.adminUrl,
		);
		const before = await snapshotDatabase(sb.adminUrl);
		const r = await migrate(["--yes", "--confirm", "postgres", "--no-switch"]);
		expect(r.code, r.stdout + r.stderr).toBe(3);
		expect(r.stderr).toContain("that this runbook did not put there");
		expect(await snapshotDatabase(sb.adminUrl)).toEqual(before);
		expect(existsSync(audit)).toBe(true);
	});
});
