// Quick looks at sessions for a change about to run or running: who holds locks on given tables,
// transactions left open, who blocks a given application, who waits for a lock, and the
// database's commit/rollback/deadlock counters. Each session in a compact form (pid, application,
// state, transaction age, statement); the caller's own session is always left out.

import type { Db } from "./db.ts";

export interface Session {
	pid: number;
	application: string;
	user: string;
	state: string | null;
	/** Seconds since the session's transaction began (null when none is open). */
	xactAgeS: number | null;
	/** The session's current or last statement, shortened. */
	query: string;
}

export interface LockHolder extends Session {
	table: string;
	modes: string[];
}

export interface Blocker extends Session {
	/** The waiting session this one blocks. */
	blockedPid: number;
	/** The table the waiting session wants, when the wait is on a table. */
	table: string | null;
}

export interface BlockedSession extends Session {
	waitS: number;
	blockedBy: number[];
	table: string | null;
}

const SESSION_COLUMNS = `a.pid, coalesce(a.application_name, '') as application, coalesce(a.usename, '') as user,
       a.state, extract(epoch from now() - a.xact_start)::float as xact_age_s,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 300) as query`;

type Row = {
	pid: number;
	application: string;
	user: string;
	state: string | null;
	xact_age_s: number | null;
	query: string;
};

const toSession = (r: Row): Session => ({
	pid: r.pid,
	application: r.application,
	user: r.user,
	state: r.state,
	xactAgeS: r.xact_age_s === null ? null : Math.round(r.xact_age_s * 10) / 10,
	query: r.query,
});

/** Sessions (other than ours) holding granted locks on any of these tables (names as to_regclass reads them: public."Recipient", users). */
export async function lockHolders(
	db: Db,
	tables: string[],
): Promise<LockHolder[]> {
	if (tables.length === 0) return [];
	const { rows } = await db.query<Row & { table: string; modes: string[] }>(
		`select ${SESSION_COLUMNS}, c.relname as table, array_agg(distinct l.mode order by l.mode) as modes
       from pg_locks l
       join pg_class c on c.oid = l.relation
       join pg_namespace n on n.oid = c.relnamespace
       join pg_stat_activity a on a.pid = l.pid
      where l.granted and l.locktype = 'relation' and l.pid <> pg_backend_pid()
        and l.database = (select oid from pg_database where datname = current_database())
        and c.oid in (select to_regclass(t) from unnest($1::text[]) t)
      group by a.pid, a.application_name, a.usename, a.state, a.xact_start, a.query, c.relname
      order by a.xact_start nulls last, a.pid`,
		[tables],
	);
	return rows.map((r) => ({ ...toSession(r), table: r.table, modes: r.modes }));
}

/** Client sessions of this database (other than ours) whose transaction is older than minAgeS. */
export async function longTransactions(
	db: Db,
	minAgeS: number,
): Promise<Session[]> {
	const { rows } = await db.query<Row>(
		`select ${SESSION_COLUMNS}
       from pg_stat_activity a
      where a.datname = current_database() and a.pid <> pg_backend_pid() and a.backend_type = 'client backend'
        and a.xact_start < now() - make_interval(secs => $1)
      order by a.xact_start`,
		[minAgeS],
	);
	return rows.map(toSession);
}

/** The sessions blocking any waiting session whose application_name is `application`. */
export async function blockersOf(
	db: Db,
	application: string,
): Promise<Blocker[]> {
	const { rows } = await db.query<
		Row & { blocked_pid: number; table: string | null }
	>(
		`select ${SESSION_COLUMNS}, w.pid as blocked_pid,
            (select c.relname from pg_locks l join pg_class c on c.oid = l.relation
              where l.pid = w.pid and not l.granted limit 1) as table
       from pg_stat_activity w
       cross join lateral unnest(pg_blocking_pids(w.pid)) as b(pid)
       join pg_stat_activity a on a.pid = b.pid
      where w.application_name = $1`,
		[application],
	);
	return rows.map((r) => ({
		...toSession(r),
		blockedPid: r.blocked_pid,
		table: r.table,
	}));
}

/** Every session of this database waiting on a lock, with what blocks it. */
export async function blockedSessions(db: Db): Promise<BlockedSession[]> {
	const { rows } = await db.query<
		Row & { wait_s: number; blocked_by: number[]; table: string | null }
	>(
		`select ${SESSION_COLUMNS}, extract(epoch from now() - coalesce(a.query_start, a.state_change))::float as wait_s,
            pg_blocking_pids(a.pid) as blocked_by,
            (select c.relname from pg_locks l join pg_class c on c.oid = l.relation
              where l.pid = a.pid and not l.granted limit 1) as table
       from pg_stat_activity a
      where a.datname = current_database() and a.pid <> pg_backend_pid() and a.wait_event_type = 'Lock'`,
	);
	return rows.map((r) => ({
		...toSession(r),
		waitS: Math.round(r.wait_s * 10) / 10,
		blockedBy: r.blocked_by,
		table: r.table,
	}));
}

export interface DatabaseCounters {
	commits: number;
	rollbacks: number;
	deadlocks: number;
	conflicts: number;
}

export async function databaseCounters(db: Db): Promise<DatabaseCounters> {
	const { rows } = await db.query<{
		c: string;
		r: string;
		d: string;
		x: string;
	}>(
		`select xact_commit as c, xact_rollback as r, deadlocks as d, conflicts as x
       from pg_stat_database where datname = current_database()`,
	);
	const r = rows[0];
	return {
		commits: Number(r.c),
		rollbacks: Number(r.r),
		deadlocks: Number(r.d),
		conflicts: Number(r.x),
	};
}
