// What the deploy, backup and health test files share: a database their tests take copies of, the
// environment a runbook run gets (its own audit log and backup folder), deploy-production's
// arguments for a run without a terminal, and small helpers for sessions and queries.

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { admin, dbName, dropDatabase, scratchDir } from "./harness.ts";
import { scratchDatabases } from "./migration-fixtures.ts";
import { snapshotDatabase } from "./snapshot.ts";

/**
 * A database made by `make` before the file's tests, which its tests copy (`clone`): the copies
 * and then the database are dropped after the file.
 */
export function copiedDatabase(make: () => Promise<string>) {
	const dbs = scratchDatabases();
	const base = {
		url: "",
		/** A copy of the database (dropped after the file). */
		clone: (prefix: string) => dbs.clone(base.url, prefix),
	};
	beforeAll(async () => {
		base.url = await make();
	});
	afterAll(async () => {
		await dbs.dropAll();
		if (base.url) await dropDatabase(base.url);
	});
	return base;
}

/** A run's environment: the database, a scratch audit log and a scratch BACKUP_DIR, and `extra`. */
export function runbookEnv(url: string, extra: Record<string, string> = {}) {
	const dir = scratchDir();
	return {
		DATABASE_URL: url,
		RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"),
		BACKUP_DIR: join(dir, "backups"),
		...extra,
	};
}

/** snapshotDatabase without the given entries (what differs between two runs ending alike). */
export async function snapshotWithout(
	url: string,
	...keys: string[]
): Promise<Record<string, string>> {
	const s = await snapshotDatabase(url);
	for (const k of keys) delete s[k];
	return s;
}

/** deploy-production's arguments without a terminal: --yes, confirmed by the database's name. */
export const confirmedDeploy = (
	url: string,
	monitorSeconds: string,
	...extra: string[]
) => [
	"--yes",
	"--confirm",
	dbName(url),
	"--monitor-seconds",
	monitorSeconds,
	...extra,
];

/** The rows of one query, run as the admin on `url`. */
export const queryRows = <T extends pg.QueryResultRow = pg.QueryResultRow>(
	url: string,
	text: string,
	values: unknown[] = [],
) => admin(async (db) => (await db.query<T>(text, values)).rows, url);

/** Columns of the session `pid`'s row in pg_stat_activity (undefined once it is gone). */
export const activityOf = async (url: string, pid: number, columns: string) =>
	(
		await queryRows(
			url,
			`select ${columns} from pg_stat_activity where pid = $1`,
			[pid],
		)
	)[0];

/** The files in a BACKUP_DIR, none when the runbook never made it. */
export const backupFiles = (dir: string) =>
	existsSync(dir) ? readdirSync(dir) : [];

/** An application's own session, named in pg_stat_activity; errors after it was ended are ignored. */
export async function session(
	url: string,
	application?: string,
): Promise<pg.Client> {
	const c = new pg.Client({
		connectionString: url,
		application_name: application,
	});
	c.on("error", () => {});
	await c.connect();
	return c;
}

/** The pid of a session's server process. */
export const backendPid = async (c: pg.Client): Promise<number> =>
	(await c.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]
		.pid;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
