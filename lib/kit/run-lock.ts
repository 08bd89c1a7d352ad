// One data-changing runbook at a time per database: a session-level advisory lock, held on its
// own connection for the whole run. A second runbook refuses and names the first.

import type pg from "pg";
import { connect } from "../pg/db.ts";
import type { Connection } from "../pg/target.ts";
import { sleep } from "./duration.ts";
import { refusal } from "./errors.ts";

// pg_advisory_lock(int4, int4): "RUNB" and 1, unlikely to collide with the app's own locks.
const KEY = [0x52554e42, 1] as const;

export interface RunLock {
	release(): Promise<void>;
}

/**
 * Takes the run lock on conn's database, or refuses (exit 3) naming the runbook that holds it.
 * optional: for a runbook that changes no database itself (switch-db-env) but must not act while
 * another one changes it: a target behind a pooler or not answering yields null instead of an
 * error (the runbook's own steps report an unreachable target); a held lock still refuses.
 */
export async function acquireRunLock(
	conn: Connection,
	runbook: string,
): Promise<RunLock>;
export async function acquireRunLock(
	conn: Connection,
	runbook: string,
	opts: { optional?: boolean },
): Promise<RunLock | null>;
export async function acquireRunLock(
	conn: Connection,
	runbook: string,
	opts: { optional?: boolean } = {},
): Promise<RunLock | null> {
	// Through a transaction pooler the session lock would stay on a pooled server connection after
	// this run ends, and every later runbook would find the database "busy".
	if (conn.pooled && opts.optional) return null;
	if (conn.pooled) {
		throw refusal(
			`${conn.display} goes through a transaction pooler (pgbouncer=true or port 6543); ${runbook} changes data and needs a direct connection. Nothing was changed.`,
			"Set DIRECT_URL to the direct (non-pooled) connection string, e.g. port 5432 on Supabase.",
		);
	}
	let db: pg.Client;
	try {
		db = await connect(conn, `runbook:${runbook}`);
	} catch (err) {
		if (opts.optional) return null;
		throw err;
	}
	let ok = await tryLock(db);
	// A run of this same runbook killed a moment ago (SIGKILL, a closed terminal) holds the lock until
	// PostgreSQL notices its connection closed, a moment later on a busy server: a rerun started at
	// once waits that moment out instead of refusing and naming a run that is already gone.
	let h = ok ? undefined : await lockHolder(db);
	const until = Date.now() + RERUN_GRACE_MS;
	while (!ok && (!h || h.app === `runbook:${runbook}`) && Date.now() < until) {
		await sleep(100);
		ok = await tryLock(db);
		if (!ok) h = await lockHolder(db);
	}
	if (!ok) {
		await db.end().catch(() => {});
		const who = h
			? `${h.app.replace(/^runbook:/, "") || "another session"} (pid ${h.pid}, user ${h.usename}, since ${h.since?.toISOString()})`
			: "another runbook";
		throw refusal(
			`Another runbook is already changing ${conn.display}: ${who}. Nothing was changed.`,
			"Wait for it to finish (or stop it), then rerun. Two changes at once could interleave.",
		);
	}
	return {
		async release() {
			await db
				.query("select pg_advisory_unlock($1, $2)", [...KEY])
				.catch(() => {});
			await db.end().catch(() => {});
		},
	};
}

/** How long a rerun waits for the lock of a same-named run that is going away. */
export const RERUN_GRACE_MS = 2000;

async function tryLock(db: pg.Client): Promise<boolean> {
	const { rows } = await db.query<{ ok: boolean }>(
		"select pg_try_advisory_lock($1, $2) as ok",
		[...KEY],
	);
	return rows[0].ok;
}

/** The session holding the run lock on this database, if any (it may end meanwhile). */
async function lockHolder(db: pg.Client) {
	const { rows } = await db.query<{
		pid: number;
		app: string;
		since: Date | null;
		usename: string;
	}>(
		`select a.pid, a.application_name as app, a.backend_start as since, a.usename
       from pg_locks l join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.classid = $1 and l.objid = $2 and l.granted and l.database = (select oid from pg_database where datname = current_database())`,
		[...KEY],
	);
	return rows[0];
}
