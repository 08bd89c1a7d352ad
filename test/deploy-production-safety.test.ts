// deploy-production.ts's safety checks: an unsafe migration refused (and accepted by name), and
// live traffic next to a deploy: a session holding a lock on the table a pending migration alters.
// Each attempt gives up within the lock timeout while other sessions' queries on that table keep
// being answered; the deploy names the blocker, and succeeds once it ends. A second deploy
// meanwhile refuses (exit 3); a holder older than --max-holder-age is refused up front.

import { existsSync, readdirSync, readFileSync } from "node:fs";
import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import {
	backendPid,
	backupFiles,
	confirmedDeploy,
	copiedDatabase,
	queryRows,
	runbookEnv,
	session,
	sleep,
} from "./support/deploy-suite.ts";
import { createSeededDatabase, dbName, runRunbook } from "./support/harness.ts";
import { migrationsWith } from "./support/migration-fixtures.ts";
import { snapshotDatabase } from "./support/snapshot.ts";

const MIGRATION = "20250105000000_add_user_nickname";
const LOCK_TIMEOUT_MS = 1000;

const base = copiedDatabase(() => createSeededDatabase("deploy_safety", 1000));
let url: string;
let migrations: string;

const env = () => runbookEnv(url, { PRISMA_MIGRATIONS_DIR: migrations });

const client = (app: string): Promise<pg.Client> => session(url, app);

async function until(
	what: string,
	check: () => Promise<boolean>,
	timeoutMs = 90_000,
): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (!(await check())) {
		if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
		await sleep(100);
	}
}

const rolledBackRows = async () =>
	Number(
		(
			await queryRows<{ n: string }>(
				url,
				"select count(*) as n from _prisma_migrations where migration_name = $1 and rolled_back_at is not null",
				[MIGRATION],
			)
		)[0].n,
	);

/** MIGRATION's rows in _prisma_migrations of the database `on` (one per attempt). */
const migrationRows = (on: string) =>
	queryRows(
		on,
		"select finished_at, rolled_back_at from _prisma_migrations where migration_name = $1",
		[MIGRATION],
	);

beforeAll(async () => {
	url = await base.clone("deploy_locks");
	migrations = migrationsWith({
		[MIGRATION]: 'ALTER TABLE "users" ADD COLUMN "nickname" TEXT;\n',
	});
});

describe("deploy-production.ts lint", () => {
	it("refuses dropping a column of a table with rows (exit 3), naming the rows, with squawk's finding explained, nothing changed and no backup; --allow proceeds", async () => {
		const url = await base.clone("deploy_unsafe");
		const name = "20250101000000_drop_session_expires";
		const dir = migrationsWith({
			[name]: 'ALTER TABLE "sessions" DROP COLUMN "expires";\n',
		});
		const env = runbookEnv(url, { PRISMA_MIGRATIONS_DIR: dir });
		const { BACKUP_DIR: backups, RUNBOOK_AUDIT_LOG: audit } = env;
		const snapshot = async () => {
			const s = await snapshotDatabase(url);
			delete s.databases_count;
			return s;
		};
		const deploy = (extra: string[] = []) =>
			runRunbook("deploy-production", confirmedDeploy(url, "1", ...extra), {
				env,
			});
		const before = await snapshot();

		const refused = await deploy();
		expect(refused.code, refused.stdout + refused.stderr).toBe(3);
		expect(refused.stdout).toContain(
			"✗ unsafe: removing a column [ban-drop-column]",
		);
		expect(refused.stdout).toMatch(
			/On: public\.sessions has \d+ row\(s\) \(counted\)/,
		);
		expect(refused.stdout).toContain("Why: Data in the column is lost");
		expect(refused.stderr).toContain("--allow ban-drop-column");
		expect(await snapshot()).toEqual(before);
		expect(backupFiles(backups)).toEqual([]);
		const ends = readFileSync(audit, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l))
			.filter((l) => l.event === "run_end");
		expect(ends.at(-1)).toMatchObject({ exit_code: 3 });

		const allowed = await deploy(["--allow", "ban-drop-column"]);
		expect(allowed.code, allowed.stdout + allowed.stderr).toBe(0);
		expect(allowed.stdout).toContain(
			"~ allowed: removing a column [ban-drop-column]",
		);
		const cols = await queryRows(
			url,
			"select 1 from information_schema.columns where table_name = 'sessions' and column_name = 'expires'",
		);
		expect(cols).toHaveLength(0);
		expect(
			backupFiles(backups).filter((f) => f.endsWith(".json")),
		).toHaveLength(1);
	});
});

describe("deploy-production.ts with a held lock", () => {
	it("refuses (exit 3) when a session has held a lock on a touched table longer than --max-holder-age", async () => {
		const holder = await client("report-job");
		try {
			await holder.query("begin");
			await holder.query("select count(*) from users");
			await sleep(1500);
			const e = env();
			const run = await runRunbook(
				"deploy-production",
				["--yes", "--confirm", dbName(url), "--max-holder-age", "1s"],
				{ env: e },
			);
			expect(run.code, run.stdout + run.stderr).toBe(3);
			expect(run.stdout).toContain('application "report-job"');
			expect(run.stderr).toContain(
				"held a lock on a table the migrations alter for longer than 1s",
			);
			expect(existsSync(e.BACKUP_DIR)).toBe(false);
		} finally {
			await holder.query("rollback").catch(() => {});
			await holder.end();
		}
	});

	it("gives up within the lock timeout while reads go on, names the blocker, refuses a second deploy, and succeeds once the holder ends", async () => {
		const ids = (
			await queryRows<{ id: string }>(
				url,
				"select id from users order by id limit 50",
			)
		).map((r) => r.id);
		const holder = await client("nightly-report");
		const holderPid = await backendPid(holder);
		await holder.query("begin");
		await holder.query("select count(*) from users");

		// A stream of single-row reads on the locked table, each timed.
		const reader = await client("app-reader");
		const waits: number[] = [];
		let reading = true;
		const reads = (async () => {
			for (let i = 0; reading; i++) {
				const started = performance.now();
				await reader.query("select * from users where id = $1", [
					ids[i % ids.length],
				]);
				waits.push(performance.now() - started);
				await sleep(20);
			}
		})();

		const e = env();
		const first = runRunbook(
			"deploy-production",
			[
				"--yes",
				"--confirm",
				dbName(url),
				"--lock-timeout",
				`${LOCK_TIMEOUT_MS}ms`,
				"--retries",
				"10",
				"--monitor-seconds",
				"1",
				"--json",
			],
			{ env: e },
		);
		let second: Awaited<ReturnType<typeof runRunbook>> | undefined;
		try {
			// Once an attempt has given up (its row marked rolled back), a second deploy must refuse.
			await until("a lock timeout", async () => (await rolledBackRows()) >= 1);
			second = await runRunbook(
				"deploy-production",
				confirmedDeploy(url, "0"),
				{ env: env() },
			);
			await until(
				"a second lock timeout",
				async () => (await rolledBackRows()) >= 2,
			);
		} finally {
			await holder.query("commit");
			await holder.end();
		}
		const run = await first;
		reading = false;
		await reads;
		await reader.end();

		expect(second?.code, second?.stderr).toBe(3);
		expect(second?.stderr).toContain("Another runbook is already changing");
		expect(second?.stderr).toContain("deploy-production");

		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.applied).toEqual([MIGRATION]);
		const attempts = report.attempts as Array<{
			outcome: string;
			blockers: Array<{ pid: number; application: string; query: string }>;
		}>;
		expect(attempts.length).toBeGreaterThanOrEqual(3);
		expect(attempts.at(-1)?.outcome).toBe("applied");
		const blocked = attempts.filter((a) => a.outcome === "lock-timeout");
		expect(blocked.length).toBeGreaterThanOrEqual(2);
		expect(blocked[0].blockers).toEqual(
			expect.arrayContaining([
				expect.objectContaining({
					pid: holderPid,
					application: "nightly-report",
					query: "select count(*) from users",
				}),
			]),
		);
		expect(run.stderr).toContain(
			`blocked by pid ${holderPid}, application "nightly-report"`,
		);

		// Readers were held up at most for the lock timeout (+1 s of slack), never for the holder's whole transaction.
		expect(waits.length).toBeGreaterThan(20);
		expect(Math.max(...waits)).toBeLessThan(LOCK_TIMEOUT_MS + 1000);
		// Each timed-out attempt was marked rolled back; the migration is applied exactly once.
		const rows = await migrationRows(url);
		expect(rows.filter((r) => r.finished_at && !r.rolled_back_at)).toHaveLength(
			1,
		);
		expect(
			rows.filter((r) => !r.finished_at && !r.rolled_back_at),
		).toHaveLength(0);
		expect(
			readdirSync(e.BACKUP_DIR).filter((f) => f.endsWith(".json")),
		).toHaveLength(1);
	});

	it("Ctrl-C while the migration waits for its lock: exit 130, its session cancelled at once, the migration marked rolled back", async () => {
		const u = await base.clone("deploy_ctrlc");
		const holder = await session(u, "long-report");
		await holder.query("begin");
		await holder.query("select count(*) from users");
		let run: Awaited<ReturnType<typeof runRunbook>>;
		try {
			run = await runRunbook(
				"deploy-production",
				[
					"--yes",
					"--confirm",
					new URL(u).pathname.slice(1),
					"--lock-timeout",
					"45s",
				],
				{
					env: runbookEnv(u, { PRISMA_MIGRATIONS_DIR: migrations }),
					signalOn: {
						pattern:
							/waiting up to 45s for a lock on users held by pid \d+ \("long-report"\)/,
						signal: "SIGINT",
					},
				},
			);
			// The holder is still open, yet nothing waits on users any more: the ALTER was cancelled.
			const started = performance.now();
			await queryRows(u, "select * from users limit 1");
			expect(performance.now() - started).toBeLessThan(1000);
		} finally {
			await holder.query("rollback");
			await holder.end();
		}
		expect(run.code, run.stdout + run.stderr).toBe(130);
		expect(run.stderr).toContain(
			`${MIGRATION} was running: its session was cancelled, PostgreSQL rolled it back, and it is marked rolled back`,
		);
		expect(run.stderr).toContain(
			"npx tsx runbooks/emergency-rollback.ts --backup ",
		);
		const rows = await migrationRows(u);
		expect(rows).toEqual([
			{ finished_at: null, rolled_back_at: expect.any(Date) },
		]);
		const engine = await queryRows(
			u,
			"select pid from pg_stat_activity where application_name = 'runbook:deploy-production:prisma'",
		);
		expect(engine).toEqual([]);
	});
});
