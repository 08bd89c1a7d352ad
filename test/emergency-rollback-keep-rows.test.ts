// emergency-rollback.ts keeps the writes made since the backup: after deploy-production applied two
// migrations and users signed up and paid, restore mode names what the restore takes away, and
// --keep-new-rows (or the printed --put-back command, later) puts the new rows back in one
// transaction, on real PostgreSQL with 20,000 users and 5,000 purchases.

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GIT_ENV, migrationsRepo } from "./support/git-fixtures.ts";
import {
	admin,
	createSeededDatabase,
	dbName,
	runbookPid,
	runPrismaCli,
	runRunbook,
} from "./support/harness.ts";
import {
	ADD_PREFERENCES_SQL,
	ADD_RATING_SQL,
	scratchDatabases,
} from "./support/migration-fixtures.ts";
import {
	countRows as count,
	deployArgs,
	downArgs,
	type MigrationsRepo,
	PREFERENCES,
	RATING,
	runEnv,
	TWO_MIGRATIONS,
} from "./support/rollback-suite.ts";

let seeded: string;
let repo: MigrationsRepo;
const scratch = scratchDatabases();

interface Case {
	url: string;
	db: string;
	env: Record<string, string>;
	changedUser: string;
	oldName: string;
}

/** A copy of the seeded database, deployed with two migrations, then a day of traffic. */
async function deployedWithTraffic(prefix: string): Promise<Case> {
	const url = await scratch.clone(seeded, prefix);
	const db = dbName(url);
	const env = runEnv({ DATABASE_URL: url }, repo.dir);
	const deploy = await runRunbook(
		"deploy-production",
		[...deployArgs(db), "--json"],
		{ env },
	);
	expect(deploy.code, deploy.stderr).toBe(0);
	expect(JSON.parse(deploy.stdout).applied).toEqual([RATING, PREFERENCES]);
	const { changedUser, oldName } = await admin(async (c) => {
		await c.query(
			`insert into users (id, name, email, rating_opt_in, updated_at)
       select 'new-user-' || i, 'New ' || i, 'new' || i || '@example.com', true, now()
         from generate_series(1, 37) i`,
		);
		await c.query(
			`insert into purchases (id, user_id, amount_cents, currency, status, provider, created_at, updated_at)
       select 'new-purchase-' || i, (select id from users order by id offset i limit 1), 999, 'usd', 'SUCCEEDED', 'stripe', now(), now()
         from generate_series(1, 12) i`,
		);
		const old = await c.query<{ id: string; name: string }>(
			"select id, name from users where id not like 'new-%' order by id limit 1",
		);
		await c.query("update users set name = 'Renamed Since' where id = $1", [
			old.rows[0].id,
		]);
		return { changedUser: old.rows[0].id, oldName: old.rows[0].name };
	}, url);
	return { url, db, env, changedUser, oldName };
}

/** Runs a printed `npx tsx runbooks/emergency-rollback.ts ...` command as printed. */
const runAsPrinted = (command: string | undefined, c: Case) =>
	runRunbook("emergency-rollback", command?.split(" ").slice(3) ?? [], {
		env: c.env,
	});

beforeAll(async () => {
	seeded = scratch.track(await createSeededDatabase("keep_rows", 20_000));
	await admin(
		(c) =>
			c.query(
				"delete from purchases where id not in (select id from purchases order by id limit 5000)",
			),
		seeded,
	);
	// The deploy adds users.rating_opt_in (a column the restore takes away) and user_preferences.
	repo = migrationsRepo({
		[RATING]: `${ADD_RATING_SQL}\nALTER TABLE "users" ADD COLUMN "rating_opt_in" BOOLEAN;\n`,
		[PREFERENCES]: ADD_PREFERENCES_SQL,
	});
});

afterAll(async () => {
	await scratch.dropAll();
});

// 20,000 users: a deploy, a rollback and a second run each; minutes on a busy 2-core machine.
describe("emergency-rollback.ts keeps the rows written since the backup", {
	timeout: 900_000,
}, () => {
	it("--keep-new-rows: the schema as before the deploy, the 37 users and 12 purchases back in, the changed row as in the backup (exit 0)", async () => {
		const c = await deployedWithTraffic("keep_rows_flag");
		const run = await runRunbook(
			"emergency-rollback",
			["--yes", "--confirm", c.db, "--keep-new-rows", "--json"],
			{ env: c.env },
		);
		expect(run.code, run.stderr).toBe(0);
		expect(await count(c.url, "users")).toBe(20_037);
		expect(await count(c.url, "purchases")).toBe(5_012);
		const schema = await admin(
			(x) =>
				x.query(
					"select to_regclass('user_preferences') as prefs, (select count(*) from information_schema.columns where table_name = 'users' and column_name = 'rating_opt_in') as col",
				),
			c.url,
		);
		expect(schema.rows[0]).toEqual({ prefs: null, col: "0" });
		const name = await admin(
			(x) => x.query("select name from users where id = $1", [c.changedUser]),
			c.url,
		);
		expect(name.rows[0].name).toBe(c.oldName);

		// Before it asked: per table, money and accounts first, the changed row named.
		const out = run.stderr;
		expect(out).toMatch(
			/purchases: 12 inserted, 0 changed, 0 deleted[\s\S]*users: 37 inserted, 1 changed, 0 deleted/,
		);
		expect(out).toContain(`changed: ${c.changedUser}`);
		// The rollback that keeps data, offered with what it drops.
		expect(out).toContain(
			`--mode down --to 20241230000000_comprehensive_schema would undo ${RATING}, ${PREFERENCES} and keep every row`,
		);
		expect(out).toMatch(
			/drops table public\.user_preferences|user_preferences/,
		);
		const report = JSON.parse(run.stdout);
		const step = report.steps.find((s: { title: string }) =>
			s.title.startsWith("Put back the rows"),
		);
		expect(step.status).toBe("ok");
		expect(step.summary).toContain("put back 49 of 49 row(s)");
		expect(report.verification.problems).toEqual([]);
	});

	it("without the flag: 20,000 users and 5,000 purchases, the new rows named with the command that brings them back; that command gives 20,037 and 5,012", async () => {
		const c = await deployedWithTraffic("keep_rows_later");
		const run = await runRunbook(
			"emergency-rollback",
			["--yes", "--confirm", c.db, "--json"],
			{ env: c.env },
		);
		expect(run.code, run.stderr).toBe(0);
		expect(await count(c.url, "users")).toBe(20_000);
		expect(await count(c.url, "purchases")).toBe(5_000);
		const report = JSON.parse(run.stdout);
		const summary = report.steps.find((s: { title: string }) =>
			s.title.startsWith("Put back the rows"),
		).summary as string;
		expect(summary).toMatch(/49 row\(s\) inserted since the backup left out/);
		expect(summary).toMatch(/purchases \+12/);
		expect(summary).toMatch(/users \+37/);
		const command = new RegExp(
			`npx tsx runbooks/emergency-rollback\\.ts --put-back (\\S+) --backup (\\S+) --yes --confirm ${c.db}`,
		).exec(run.stderr);
		expect(command, run.stderr).not.toBeNull();
		expect(command?.[1]).toBe(report.safety_backup_id);
		expect(command?.[2]).toBe(report.backup_id);

		const later = await runAsPrinted(command?.[0], c);
		expect(later.code, later.stderr).toBe(0);
		expect(await count(c.url, "users")).toBe(20_037);
		expect(await count(c.url, "purchases")).toBe(5_012);
		// Run again, nothing doubles: every key exists now, each named as left out.
		const again = await runAsPrinted(command?.[0], c);
		expect(again.code, again.stderr).toBe(0);
		expect(again.stdout + again.stderr).toContain(
			"users: 37 row(s) left out, their key",
		);
		expect(await count(c.url, "users")).toBe(20_037);
	});

	it("SIGKILL in the middle of putting rows back: the restore with none of them; the printed command completes it", async () => {
		const c = await deployedWithTraffic("keep_rows_kill");
		// The runbook is paused (SIGSTOP) as it sends the restore's COMMIT; once the restore has
		// committed, a session locks purchases and the runbook goes on. Users go back first
		// (parents first); its INSERT into purchases waits on that lock, mid-transaction, and the
		// runbook is killed there.
		let holder: Promise<unknown> = Promise.resolve();
		let killedWhile = "";
		const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
		const run = await runRunbook(
			"emergency-rollback",
			["--yes", "--confirm", c.db, "--keep-new-rows", "--lock-timeout", "60s"],
			{
				env: c.env,
				onMatch: {
					pattern: /COMMIT: committing the restore/,
					run: (launcher) => {
						const pid = runbookPid(launcher) as number;
						process.kill(pid, "SIGSTOP");
						holder = admin(async (x) => {
							try {
								for (let i = 0; i < 600; i++) {
									const r = await x.query(
										"select to_regclass('user_preferences') is null as restored",
									);
									if (r.rows[0].restored) break;
									await sleep(50);
								}
								await x.query("begin");
								await x.query("lock table purchases in exclusive mode");
							} finally {
								process.kill(pid, "SIGCONT");
							}
							for (let i = 0; i < 1200 && !killedWhile; i++) {
								// pg_stat_activity is read once per transaction unless cleared.
								await x.query("select pg_stat_clear_snapshot()");
								const waiting = await x.query<{ query: string }>(
									"select query from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock' and query ilike 'insert into%purchases%'",
								);
								if (waiting.rows.length) {
									killedWhile = waiting.rows[0].query.slice(0, 40);
									process.kill(-launcher, "SIGKILL");
								} else await sleep(100);
							}
							await x.query("rollback");
						}, c.url);
					},
				},
			},
		);
		await holder;
		expect(killedWhile, run.stdout + run.stderr).toMatch(
			/^INSERT INTO "public"."purchases"/,
		);
		expect(run.code).not.toBe(0);
		// Restored, none of the new rows in.
		expect(await count(c.url, "users"), run.stdout + run.stderr).toBe(20_000);
		expect(await count(c.url, "purchases")).toBe(5_000);
		const command =
			/npx tsx runbooks\/emergency-rollback\.ts --put-back \S+ --backup \S+ --yes --confirm \S+/.exec(
				run.stdout + run.stderr,
			);
		expect(command, run.stdout + run.stderr).not.toBeNull();
		const later = await runAsPrinted(command?.[0], c);
		expect(later.code, later.stderr).toBe(0);
		expect(await count(c.url, "users")).toBe(20_037);
		expect(await count(c.url, "purchases")).toBe(5_012);
	});
});

describe("emergency-rollback.ts, the migration files of a commit that brought more", () => {
	it("a commit added three migrations and one is rolled back: it says so and prints the removal of that one folder only", async () => {
		const NICKNAME = "20250103000000_add_user_nickname";
		const url = scratch.track(await createSeededDatabase("git_step", 200));
		const r = migrationsRepo(
			{
				...TWO_MIGRATIONS,
				[NICKNAME]: 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n',
			},
			"Add ratings, preferences and nicknames",
		);
		const env = runEnv({ DATABASE_URL: url }, r.dir);
		const deployed = await runPrismaCli(["migrate", "deploy"], url, {
			PRISMA_MIGRATIONS_DIR: r.dir,
		});
		expect(deployed.code, deployed.stderr).toBe(0);
		const run = await runRunbook(
			"emergency-rollback",
			[...downArgs(dbName(url), PREFERENCES), "--json"],
			{ env },
		);
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.rolled_back_migrations).toEqual([NICKNAME]);
		const remove = `git -C ${r.repo} rm -r -q migrations/${NICKNAME} && git -C ${r.repo} commit -m "Roll back ${NICKNAME}"`;
		expect(report.git_revert).toBe(remove);
		expect(run.stderr).toContain(
			`${r.commit.slice(0, 12)} also added or changed 2 file(s) that stay: migrations/${RATING}/migration.sql, migrations/${PREFERENCES}/migration.sql; a git revert would remove them too`,
		);
		expect(run.stderr).not.toContain("revert --no-edit");
		// The printed command, run as printed, removes exactly that folder.
		const { execSync } = await import("node:child_process");
		execSync(remove, { env: { ...process.env, ...GIT_ENV }, stdio: "pipe" });
		const left = execSync(`git -C ${r.repo} ls-files migrations`, {
			encoding: "utf8",
		});
		expect(left).not.toContain(NICKNAME);
		expect(left).toContain(`${RATING}/migration.sql`);
		expect(left).toContain(`${PREFERENCES}/migration.sql`);
	});
});
