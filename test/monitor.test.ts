// monitor.ts as an operator runs it, against real sessions that really block each other.

import pg from "pg";
import { describe, expect, it } from "vitest";
import { connect } from "../lib/pg/db.ts";
import { ownPid } from "../lib/pg/sessions.ts";
import { checkSignalTarget, signalSession } from "../lib/pg/signal.ts";
import { parseConnection } from "../lib/pg/target.ts";
import {
	activityOf,
	backendPid,
	session as openSession,
	sleep,
} from "./support/deploy-suite.ts";
import {
	admin,
	createDatabase,
	dbName,
	fileDatabase,
	runRunbook,
} from "./support/harness.ts";

/** A database of its own with a table of 500 users. */
async function usersDatabase(): Promise<string> {
	const url = await createDatabase("monitor");
	await admin(async (db) => {
		for (const statement of [
			"create table users (id int primary key, name text not null)",
			"insert into users select g, 'user ' || g from generate_series(1, 500) g",
		])
			await db.query(statement);
	}, url);
	return url;
}

const database = fileDatabase(usersDatabase);
const { env } = database;

async function session(
	name: string,
): Promise<{ client: pg.Client; pid: number }> {
	const client = await openSession(database.url, name);
	return { client, pid: await backendPid(client) };
}

/** Waits until the session waits for a lock (polling pg_stat_activity, not a fixed sleep). */
async function waitingForLock(pid: number): Promise<void> {
	for (let i = 0; i < 200; i++) {
		const row = await activityOf(database.url, pid, "wait_event_type");
		if (row?.wait_event_type === "Lock") return;
		await sleep(50);
	}
	throw new Error(`pid ${pid} never waited for a lock`);
}

const alive = async (pid: number) =>
	(
		await admin(
			(db) => db.query("select 1 from pg_stat_activity where pid = $1", [pid]),
			database.url,
		)
	).rowCount === 1;

interface Node {
	pid: number;
	state: string | null;
	database: string | null;
	waitingMs: number | null;
	waitingFor: string | null;
	holds: string[];
	blocks: Node[];
}

describe("monitor.ts", () => {
	it("shows A → B → C (B waits for A's lock, C queues behind B) as a tree with pids and wait times", async () => {
		const a = await session("holder-a");
		const b = await session("migration-b");
		const c = await session("reader-c");
		await a.client.query("begin");
		await a.client.query("select * from users limit 1");
		const bDone = b.client
			.query("alter table users add column nickname text")
			.catch((e: Error) => e);
		await waitingForLock(b.pid);
		const cDone = c.client
			.query("select count(*) from users")
			.catch((e: Error) => e);
		await waitingForLock(c.pid);
		try {
			const run = await runRunbook(
				"monitor",
				["--once", "--json", "--threshold", "0"],
				{ env: env() },
			);
			expect(run.code, run.stderr).toBe(1); // sessions blocked over the threshold (0 s)
			const report = JSON.parse(run.stdout);
			expect(report.activity.own_pid).not.toBe(a.pid);
			const root: Node = report.activity.tree.find(
				(n: Node) => n.pid === a.pid,
			);
			expect(root, JSON.stringify(report.activity.tree)).toBeDefined();
			expect(root.database).toBe(dbName(database.url));
			expect(root.state).toBe("idle in transaction");
			expect(root.waitingMs).toBeNull();
			expect(root.holds).toContain("AccessShareLock on users");
			expect(root.blocks.map((n) => n.pid)).toEqual([b.pid]);
			const nodeB = root.blocks[0];
			expect(nodeB.waitingFor).toBe("AccessExclusiveLock on table users");
			expect(nodeB.waitingMs).toBeGreaterThan(0);
			expect(nodeB.blocks.map((n) => n.pid)).toEqual([c.pid]);
			const nodeC = nodeB.blocks[0];
			expect(nodeC.waitingFor).toBe("AccessShareLock on table users");
			expect(nodeC.waitingMs).toBeGreaterThan(0);
			expect(nodeC.blocks).toEqual([]);
			expect(report.blocked_over_threshold).toEqual(
				expect.arrayContaining([b.pid, c.pid]),
			);
			expect(report.blocked_over_threshold).not.toContain(a.pid);

			const human = await runRunbook("monitor", ["--threshold", "3600"], {
				env: env(),
			});
			expect(human.code, human.stderr).toBe(0);
			expect(human.stdout).toMatch(
				new RegExp(`pid ${a.pid} postgres \\(holder-a\\)  idle in transaction`),
			);
			expect(human.stdout).toMatch(
				new RegExp(
					`└─ pid ${b.pid} postgres \\(migration-b\\)  waits [\\d.]+m?s for AccessExclusiveLock`,
				),
			);
			expect(human.stdout).toMatch(
				new RegExp(`└─ pid ${c.pid} postgres \\(reader-c\\)  waits`),
			);
			// An idle-in-transaction holder: cancelling would not free the lock, so it says terminate.
			expect(human.stdout).toContain(
				`npx tsx runbooks/monitor.ts --terminate ${a.pid}`,
			);
		} finally {
			await a.client.query("rollback");
			await bDone;
			await cDone;
			for (const s of [a, b, c]) await s.client.end();
		}
	});

	it("--watch prints timestamped lines when not on a terminal, and stops at --duration", async () => {
		const run = await runRunbook(
			"monitor",
			["--watch", "0.5", "--duration", "1"],
			{ env: env() },
		);
		expect(run.code, run.stderr).toBe(0);
		const stamped = run.stdout
			.split("\n")
			.filter((l) => /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d {2}\S+: /.test(l));
		expect(stamped.length).toBeGreaterThanOrEqual(2);
		expect(run.stdout).not.toContain("\x1b[");
		const bad = await runRunbook("monitor", ["--watch", "1", "--json"], {
			env: env(),
		});
		expect(bad.code).toBe(2);
	});

	it("terminates a session only with the typed confirmation, and refuses pids it must not touch", async () => {
		const victim = await session("victim");
		await victim.client.query("begin");
		await victim.client.query("select * from users limit 1");
		try {
			const unconfirmed = await runRunbook(
				"monitor",
				["--terminate", String(victim.pid)],
				{ env: env() },
			);
			expect(unconfirmed.code).toBe(3);
			const yesOnly = await runRunbook(
				"monitor",
				["--terminate", String(victim.pid), "--yes"],
				{ env: env() },
			);
			expect(yesOnly.code).toBe(3);
			expect(yesOnly.stderr).toContain("--yes alone is not enough");
			expect(await alive(victim.pid)).toBe(true);

			const missing = await runRunbook(
				"monitor",
				["--cancel", "2147483000", "--yes"],
				{ env: env() },
			);
			expect(missing.code).toBe(2);
			expect(missing.stderr).toContain("No session with pid 2147483000");

			// A session of another database is not this target's to signal.
			const other = new pg.Client({
				connectionString: new URL("/postgres", database.url).toString(),
			});
			await other.connect();
			const otherPid = (await other.query("select pg_backend_pid() as pid"))
				.rows[0].pid;
			const foreign = await runRunbook(
				"monitor",
				["--cancel", String(otherPid), "--yes"],
				{ env: env() },
			);
			await other.end();
			expect(foreign.code).toBe(3);
			expect(foreign.stderr).toContain('connected to database "postgres"');

			const done = await runRunbook(
				"monitor",
				[
					"--terminate",
					String(victim.pid),
					"--yes",
					"--confirm",
					dbName(database.url),
					"--json",
				],
				{
					env: env(),
				},
			);
			expect(done.code, done.stderr).toBe(0);
			expect(JSON.parse(done.stdout).signalled).toEqual({
				kind: "terminate",
				pid: victim.pid,
				after: "gone",
			});
			expect(await alive(victim.pid)).toBe(false);
		} finally {
			await victim.client.end().catch(() => {});
		}
	});

	it("refuses to cancel or terminate its own session (exit 3)", async () => {
		const db = await connect(parseConnection(database.url), "runbook:monitor");
		try {
			const own = await ownPid(db);
			for (const kind of ["cancel", "terminate"] as const) {
				await expect(checkSignalTarget(db, own, kind)).rejects.toMatchObject({
					exitCode: 3,
					message: `pid ${own} is this runbook's own session: refusing to ${kind} it. Nothing was changed.`,
				});
				await expect(signalSession(db, own, kind)).rejects.toMatchObject({
					exitCode: 3,
				});
			}
			expect((await db.query("select 1 as ok")).rows[0].ok).toBe(1);
		} finally {
			await db.end();
		}
	});
});
