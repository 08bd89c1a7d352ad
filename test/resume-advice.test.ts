// One resume advice from every kind of step. A step that reads, one that changes data, one that
// destroys data and one that writes files are each stopped midway twice: by Ctrl-C (SIGINT) and by
// the loss of their connection (pg_terminate_backend). Both stops must end with the same advice:
// what the database holds, then "To resume, run: <the exact command>". Each stop lands where it
// says: the step is held on a lock this test holds, and the fault comes once PostgreSQL shows the
// runbook's session waiting for that lock, whatever the machine's load.

import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { stoppedAt } from "./support/faults.ts";
import { SHARE_SLUG_FIELD } from "./support/field-flags.ts";
import { GIT_ENV } from "./support/git-fixtures.ts";
import {
	copyRepository,
	createSeededDatabase,
	dbName,
	type RunResult,
	runbookPid,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { scratchDatabases } from "./support/migration-fixtures.ts";
import {
	addedRepo,
	deployRatingsAndUse,
	KEEP,
} from "./support/rollback-suite.ts";

const dbs = scratchDatabases();
let seeded: string;
let deployed: string;
let migrations: string;

beforeAll(async () => {
	seeded = dbs.track(await createSeededDatabase("resume_advice", 20));
	migrations = addedRepo().dir;
	deployed = await dbs.clone(seeded, "resume_advice_dep");
	await deployRatingsAndUse(deployed, migrations);
}, 120_000);

afterAll(async () => {
	await dbs.dropAll();
});

interface Case {
	kind: string;
	runbook: string;
	step: number;
	/** The runbook's arguments for the database `url`. */
	args: (url: string) => string[];
	/** The statement, in an open transaction of the test, that holds the step on a lock. */
	hold: string;
	/** The database the case starts from. */
	from: () => string;
	env?: () => Record<string, string>;
	root?: () => string;
}

const BACKFILL = [
	"--table",
	"generated_videos",
	"--set",
	"output_path = 'videos/' || id || '.mp4'",
	"--where",
	"output_path IS NULL",
	"--lock-timeout-ms",
	"60000",
	"--yes",
];

const CASES: Case[] = [
	{
		kind: "read",
		runbook: "backfill",
		step: 1, // EXPLAIN UPDATE waits for the table's lock
		args: () => BACKFILL,
		hold: "lock table generated_videos in access exclusive mode",
		from: () => seeded,
	},
	{
		// (backfill's batches reconnect after a lost connection, by design: nothing to resume.)
		kind: "change",
		runbook: "add-required-field",
		step: 2, // migration 1's ALTER TABLE waits for a reader's transaction to end
		args: () => [...SHARE_SLUG_FIELD, "--lock-timeout-ms", "60000", "--yes"],
		hold: "select count(*) from generated_videos",
		from: () => seeded,
		// It writes migration folders and schema.prisma: a checkout of its own.
		root: copyRepository,
	},
	{
		kind: "destroy",
		runbook: "emergency-rollback",
		step: 10, // the down SQL's transaction waits to drop user_preferences
		args: (url) => [
			"--mode",
			"down",
			"--to",
			KEEP,
			"--lock-timeout",
			"60s",
			"--yes",
			"--confirm",
			dbName(url),
		],
		hold: "select count(*) from user_preferences",
		from: () => deployed,
		env: () => ({ PRISMA_MIGRATIONS_DIR: migrations, ...GIT_ENV }),
	},
	{
		kind: "write files",
		runbook: "backup",
		step: 2, // pg_dump waits for the table's lock
		args: () => ["create"],
		hold: "lock table users in access exclusive mode",
		from: () => seeded,
	},
];

/**
 * Runs the case with its step held on the lock, and stops it once one of its sessions waits:
 * SIGINT to the runbook's process (tsx's launcher, which would turn a Ctrl-C the runbook is slow
 * to acknowledge into SIGKILL, is left out), or pg_terminate_backend of every session but the
 * holder's.
 */
async function stopWhileWaiting(
	c: Case,
	fault: "SIGINT" | "terminate",
): Promise<{ run: RunResult; audit: string; url: string }> {
	const url = await dbs.clone(c.from(), `resume_${c.runbook}_${c.step}`);
	const dir = scratchDir();
	const audit = join(dir, "audit.jsonl");
	const env = {
		DATABASE_URL: url,
		BACKUP_DIR: join(dir, "backups"),
		RUNBOOK_AUDIT_LOG: audit,
		...c.env?.(),
	};
	const holder = new pg.Client({ connectionString: url });
	holder.on("error", () => {});
	const watcher = new pg.Client({ connectionString: url });
	watcher.on("error", () => {});
	await Promise.all([holder.connect(), watcher.connect()]);
	await holder.query("begin");
	await holder.query(c.hold);
	const holderPid = (await holder.query("select pg_backend_pid() as pid"))
		.rows[0].pid as number;
	let stopped = false;
	let poll: NodeJS.Timeout | undefined;
	try {
		const run = await runRunbook(c.runbook, c.args(url), {
			env,
			root: c.root?.(),
			onSpawn: (child) => {
				poll = setInterval(async () => {
					if (stopped) return;
					const waiting = await watcher.query(
						"select 1 from pg_stat_activity where datname = $1 and wait_event_type = 'Lock' and pid not in (pg_backend_pid(), $2)",
						[dbName(url), holderPid],
					);
					if (stopped || !waiting.rowCount) return;
					stopped = true;
					if (fault === "terminate") {
						await watcher.query(
							"select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid not in (pg_backend_pid(), $2)",
							[dbName(url), holderPid],
						);
					} else {
						const pid = child.pid && runbookPid(child.pid);
						if (pid) process.kill(pid, "SIGINT");
					}
				}, 20);
			},
		});
		expect(stopped, run.stdout + run.stderr).toBe(true);
		return { run, audit, url };
	} finally {
		clearInterval(poll);
		await holder.query("rollback").catch(() => {});
		await Promise.all([holder.end(), watcher.end()]);
	}
}

/**
 * What follows the failed step's line: after a Ctrl-C, the state and the resume line; a lost
 * connection's error may come with a hint first. What differs from one case's database to the
 * other's (its name, a safety backup's time) is made alike.
 */
function adviceOf(stderr: string, step: number, database: string): string[] {
	const lines = stderr.trimEnd().split("\n");
	const at = lines
		.map((l) => l.startsWith(`✗ Step ${step} (`))
		.lastIndexOf(true);
	return lines
		.slice(at + 1)
		.map((l) =>
			l.replaceAll(database, "<database>").replace(/-\d{8}T\d{6}Z/g, "-<time>"),
		);
}

describe("one resume advice from every kind of step", () => {
	it.each(CASES.map((c) => [`${c.kind} (${c.runbook} step ${c.step})`, c]))(
		"%s: Ctrl-C and a lost connection print the same advice, with the exact command",
		async (_, c) => {
			const advice: string[][] = [];
			for (const fault of ["SIGINT", "terminate"] as const) {
				const { run, audit, url } = await stopWhileWaiting(c, fault);
				const what = `${fault}: exit ${run.code}\n${run.stdout}\n${run.stderr}`;
				expect(run.code, what).toBe(fault === "SIGINT" ? 130 : 1);
				expect(stoppedAt(audit, c.runbook), what).toMatchObject({
					stepNo: c.step,
					ended: true,
					status: fault === "SIGINT" ? "interrupted" : "failed",
					runEnded: true,
				});
				expect(run.stderr, what).toMatch(new RegExp(`✗ Step ${c.step} \\(`));
				const args = c.args(url);
				const command = rerunCommand(`runbooks/${c.runbook}.ts`, {
					argv: args,
				});
				expect(run.stderr, what).toContain(`\n  To resume, run: ${command}\n`);
				advice.push(adviceOf(run.stderr, c.step, dbName(url)));
			}
			// The same state and resume line, after the lost connection's hint if it has one.
			const [interrupted, lost] = advice;
			expect(lost.slice(-interrupted.length)).toEqual(interrupted);
			expect(lost.length - interrupted.length).toBeLessThanOrEqual(1);
			expect(interrupted.length).toBeGreaterThanOrEqual(2);
			expect(interrupted.at(-1)).toMatch(
				/^ {2}To resume, run: npx tsx runbooks\/\S+\.ts /,
			);
		},
		// Four runbook runs and two database copies, on a machine that may be busy.
		400_000,
	);
});
