// --keep-new-rows with the other restore method (swap) and on a database built the way Supabase
// builds its own (postgres not a superuser, the app behind pgbouncer in transaction mode): the rows
// written since the backup come back in both, the restored schema wins.

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
	admin,
	createSeededDatabase,
	dbName,
	runRunbook,
} from "./support/harness.ts";
import { scratchDatabases } from "./support/migration-fixtures.ts";
import {
	addedRepo,
	countRows as count,
	deployArgs,
	type MigrationsRepo,
	migrateAndSeed,
	runEnv,
} from "./support/rollback-suite.ts";
import { type SupabaseFixture, startSupabase } from "./support/supabase.ts";

const scratch = scratchDatabases();
let repo: MigrationsRepo;
let sb: SupabaseFixture | undefined;

const prefsTable = async (url: string) =>
	(
		await admin(
			(c) => c.query("select to_regclass('user_preferences')::text as t"),
			url,
		)
	).rows[0].t;

/** Environment of one case: its own backups and audit log, the two-migration repository. */
const caseEnv = (urls: Record<string, string>) => runEnv(urls, repo.dir);

/** Deploys the migrations, then users sign up and pay (through `writeUrl`). */
async function deployThenTraffic(
	env: Record<string, string>,
	db: string,
	writeUrl: string,
): Promise<void> {
	const deploy = await runRunbook("deploy-production", deployArgs(db), { env });
	expect(deploy.code, deploy.stdout + deploy.stderr).toBe(0);
	await admin(async (c) => {
		await c.query(
			`insert into users (id, email, updated_at)
       select 'new-user-' || i, 'new' || i || '@example.com', now() from generate_series(1, 9) i`,
		);
		await c.query(
			`insert into purchases (id, user_id, amount_cents, currency, status, provider, created_at, updated_at)
       select 'new-purchase-' || i, 'new-user-' || i, 499, 'usd', 'SUCCEEDED', 'stripe', now(), now()
         from generate_series(1, 4) i`,
		);
		await c.query(
			"insert into user_preferences (id, user_id) select 'p-' || id, id from users order by id limit 5",
		);
	}, writeUrl);
}

beforeAll(() => {
	repo = addedRepo();
});

afterAll(async () => {
	await scratch.dropAll();
	await sb?.stop();
});

describe("--keep-new-rows with each restore method and on Supabase", {
	timeout: 900_000,
}, () => {
	it("--method swap: the restored schema (no user_preferences) with the 9 new users and 4 purchases back in (exit 0)", async () => {
		const url = scratch.track(await createSeededDatabase("keep_swap", 200));
		const db = dbName(url);
		const env = caseEnv({ DATABASE_URL: url });
		const users = await count(url, "users");
		const purchases = await count(url, "purchases");
		await deployThenTraffic(env, db, url);
		const run = await runRunbook(
			"emergency-rollback",
			["--method", "swap", "--keep-new-rows", "--yes", "--confirm", db],
			{ env },
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/put back 13 of 13 row\(s\)/);
		expect(await count(url, "users")).toBe(users + 9);
		expect(await count(url, "purchases")).toBe(purchases + 4);
		expect(await prefsTable(url)).toBeNull();
	});

	it("on Supabase as postgres, the app behind the pooler: the 9 users and 4 purchases written through the pooler are back after the restore (exit 0)", async () => {
		sb = await startSupabase();
		await migrateAndSeed(sb.directUrl, 50);
		const env = caseEnv({
			DATABASE_URL: sb.poolerUrl,
			DIRECT_URL: sb.directUrl,
		});
		const users = await count(sb.adminUrl, "users");
		const purchases = await count(sb.adminUrl, "purchases");
		await deployThenTraffic(
			env,
			"postgres",
			sb.poolerUrl.replace("?pgbouncer=true", ""),
		);
		const run = await runRunbook(
			"emergency-rollback",
			["--keep-new-rows", "--yes", "--confirm", "postgres"],
			{ env },
		);
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(run.stdout).toMatch(/put back 13 of 13 row\(s\)/);
		expect(await count(sb.adminUrl, "users")).toBe(users + 9);
		expect(await count(sb.adminUrl, "purchases")).toBe(purchases + 4);
		expect(await prefsTable(sb.adminUrl)).toBeNull();
	});
});
