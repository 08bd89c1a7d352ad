// Backups, rollbacks and rehearsals on a database built the way Supabase builds its own
// (test/support/supabase.ts: supabase_admin owns the platform, postgres is not a superuser, event
// triggers fire on every DDL), behind pgbouncer in transaction mode, connected as postgres: the
// app's DATABASE_URL is the pooler, DIRECT_URL the direct connection, as on the platform.

import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admin, type RunResult, runRunbook } from "./support/harness.ts";
import { findPgBin } from "./support/postgres.ts";
import {
	addedRepo,
	deployArgs,
	downArgs,
	migrateAndSeed,
	runEnv,
} from "./support/rollback-suite.ts";
import { snapshotDatabase } from "./support/snapshot.ts";
import {
	apiPrivileges,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabase,
} from "./support/supabase.ts";

/** The environment of every run: the app behind the pooler, one backups folder and audit log. */
let env: Record<string, string>;
let backups: string;
let sb: SupabaseFixture;

/** The app's tables: rows and checksums of public, from snapshotDatabase. */
const appRows = async (url: string) =>
	Object.fromEntries(
		Object.entries(await snapshotDatabase(url)).filter(([k]) =>
			k.startsWith("rows public."),
		),
	);

const run = (name: string, args: string[]) => runRunbook(name, args, { env });

const out = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

const databases = () =>
	admin(
		async (db) =>
			(await db.query("select datname from pg_database order by 1")).rows.map(
				(r) => r.datname as string,
			),
		sb.adminUrl,
	);

/** pg_restore --list of a backup's archive. */
function listing(id: string): string {
	const m = JSON.parse(readFileSync(join(backups, `${id}.json`), "utf8"));
	return execFileSync(findPgBin("pg_restore"), [
		"--list",
		join(backups, m.archive),
	]).toString();
}

/** Entries of a table of contents outside schema public (the schema's own entry aside) or of a platform kind. */
function outsideApp(toc: string): string[] {
	return toc
		.split("\n")
		.filter((l) => /^\d+;/.test(l))
		.filter(
			(l) =>
				/ (EVENT TRIGGER|PUBLICATION|DEFAULT ACL|ACL|EXTENSION|ROLE|DATABASE) /.test(
					l,
				) ||
				!(
					/^\d+; \d+ \d+ (SCHEMA - |COMMENT - SCHEMA )public /.test(l) ||
					/^\d+; \d+ \d+ [A-Z][A-Z ]*[A-Z] public /.test(l)
				),
		);
}

/** The pooler's URL as pg takes it: without the ?pgbouncer=true that is for Prisma. */
const plainPoolerUrl = () => sb.poolerUrl.replace("?pgbouncer=true", "");

/** Reads and writes through the pooler, as the app and as the API's roles. */
async function throughPooler(): Promise<void> {
	const db = new pg.Client({ connectionString: plainPoolerUrl() });
	await db.connect();
	try {
		const { rows } = await db.query("select count(*)::int as n from users");
		expect(rows[0].n).toBeGreaterThan(0);
		await db.query(
			"insert into users (id, email, updated_at) values ('pooler-probe', 'probe@example.com', now())",
		);
		await db.query("delete from users where id = 'pooler-probe'");
		await db.query("begin");
		await db.query("set local role service_role");
		await db.query("select count(*) from purchases");
		await db.query("commit");
	} finally {
		await db.end();
	}
}

beforeAll(async () => {
	sb = await startSupabase();
	await migrateAndSeed(sb.directUrl, 200);
	// What a project tightens for its API: anon may read two columns of users, not purchases.
	await admin(async (db) => {
		await db.query("revoke all on users from anon");
		await db.query("grant select (id, email) on users to anon");
		await db.query("revoke all on purchases from anon");
		await db.query("revoke insert, delete on purchases from authenticated");
	}, sb.directUrl);
	env = runEnv(
		{ DATABASE_URL: sb.poolerUrl, DIRECT_URL: sb.directUrl },
		addedRepo().dir,
	);
	backups = env.BACKUP_DIR;
}, 180_000);

afterAll(async () => {
	await sb?.stop();
});

describe("emergency rollback on Supabase as postgres", () => {
	it("deploy, rows through the pooler, rollback: exit 0; app tables as the pre-deploy backup; platform, event triggers, publication and API privileges unchanged; the pooler reads and writes", async () => {
		const rowsBefore = await appRows(sb.adminUrl);
		const platformBefore = await snapshotPlatform(sb.adminUrl);
		const privilegesBefore = await apiPrivileges(sb.adminUrl);
		expect(privilegesBefore["anon public.users SELECT"]).toBe(false);
		expect(privilegesBefore["authenticated public.purchases SELECT"]).toBe(
			true,
		);

		const deploy = await run("deploy-production", [
			...deployArgs("postgres"),
			"--json",
		]);
		expect(deploy.code, out(deploy)).toBe(0);
		const backupId = JSON.parse(deploy.stdout).backup_id as string;
		const manifest = JSON.parse(
			readFileSync(join(backups, `${backupId}.json`), "utf8"),
		);
		expect(manifest.scope).toMatchObject({ kind: "app", schemas: ["public"] });
		expect(manifest.verified_at).toBeTruthy();
		expect(outsideApp(listing(backupId))).toEqual([]);

		// A day of traffic through the pooler, on what the migration added too.
		await admin(async (db) => {
			await db.query(
				"update generated_videos set rating = 4 where status = 'COMPLETED'",
			);
			await db.query(
				"insert into user_preferences (id, user_id) select 'p-' || id, id from users order by id limit 20",
			);
			await db.query(
				"insert into users (id, email, updated_at) select 'late' || i, 'late' || i || '@example.com', now() from generate_series(1, 15) i",
			);
		}, plainPoolerUrl());
		expect(await appRows(sb.adminUrl)).not.toEqual(rowsBefore);

		// The platform's event triggers fire on the restore's DDL: PostgREST would hear NOTIFY pgrst.
		const listener = new pg.Client({ connectionString: sb.adminUrl });
		await listener.connect();
		const heard: string[] = [];
		listener.on("notification", (n) => heard.push(n.channel));
		await listener.query("listen pgrst");
		let rollback: RunResult;
		try {
			rollback = await run("emergency-rollback", [
				"--yes",
				"--confirm",
				"postgres",
			]);
			await new Promise((r) => setTimeout(r, 200));
		} finally {
			await listener.end();
		}
		expect(rollback.code, out(rollback)).toBe(0);
		expect(rollback.stdout).toContain(`restored ${backupId}`);
		expect(heard).toContain("pgrst");

		expect(await appRows(sb.adminUrl)).toEqual(rowsBefore);
		expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
		expect(await apiPrivileges(sb.adminUrl)).toEqual(privilegesBefore);
		await throughPooler();
	}, 600_000);

	it("--rehearse: exit 0 as postgres (CREATEDB), the target untouched, no scratch database left", async () => {
		const before = await snapshotDatabase(sb.adminUrl);
		const dbs = await databases();
		const r = await run("emergency-rollback", ["--rehearse", "--yes"]);
		expect(r.code, out(r)).toBe(0);
		expect(r.stdout).toMatch(/restores in .* and verifies; target untouched/);
		expect(await databases()).toEqual(dbs);
		expect(await snapshotDatabase(sb.adminUrl)).toEqual(before);
	});

	it("--method swap with a backup of the app's objects: refused (exit 2), nothing changed", async () => {
		const before = await snapshotDatabase(sb.adminUrl);
		const r = await run("emergency-rollback", [
			"--method",
			"swap",
			"--yes",
			"--confirm",
			"postgres",
		]);
		expect(r.code, out(r)).toBe(2);
		expect(r.stderr).toContain("holds the app's objects only");
		expect(await snapshotDatabase(sb.adminUrl)).toEqual(before);
	});

	it("--mode down --to <migration>: exit 0, the migration's objects gone, every other row kept, platform and API privileges unchanged", async () => {
		const deploy = await run("deploy-production", deployArgs("postgres"));
		expect(deploy.code, out(deploy)).toBe(0);
		const rowsBefore = await appRows(sb.adminUrl);
		const platformBefore = await snapshotPlatform(sb.adminUrl);
		const privilegesBefore = await apiPrivileges(sb.adminUrl);
		const r = await run("emergency-rollback", downArgs("postgres"));
		expect(r.code, out(r)).toBe(0);
		const rows = await appRows(sb.adminUrl);
		expect(rows["rows public.user_preferences"]).toBeUndefined();
		for (const [k, v] of Object.entries(rowsBefore))
			if (!/user_preferences|generated_videos|_prisma_migrations/.test(k))
				expect(rows[k], k).toBe(v);
		expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
		const privileges = await apiPrivileges(sb.adminUrl);
		for (const [k, v] of Object.entries(privileges))
			expect(v, k).toBe(privilegesBefore[k]);
		await throughPooler();
	}, 600_000);

	it("backup create there: verifies, holds nothing outside public, records its scope and the app's privileges", async () => {
		const r = await run("backup", ["create", "--json"]);
		expect(r.code, out(r)).toBe(0);
		const id = JSON.parse(r.stdout).backup.id as string;
		const verify = await run("backup", ["verify", id]);
		expect(verify.code, out(verify)).toBe(0);
		const toc = listing(id);
		expect(toc).toMatch(/TABLE DATA public users /);
		expect(outsideApp(toc)).toEqual([]);
		const m = JSON.parse(readFileSync(join(backups, `${id}.json`), "utf8"));
		expect(m.scope.kind).toBe("app");
		expect(m.privileges).toContain(
			"GRANT SELECT (email) ON TABLE public.users TO anon",
		);
		expect(Object.keys(m.row_counts).every((t) => !t.includes("."))).toBe(true);
	});
});
