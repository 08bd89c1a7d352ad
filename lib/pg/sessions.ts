// Every session on the server in detail, from pg_stat_activity and pg_locks: its query,
// durations, wait event and the lock it waits for (in plain words); connection use against
// max_connections; and which sessions look like a migration. The caller's own session is left out.

import type { Db } from "./db.ts";

/** The key of the session-level advisory lock Prisma Migrate holds while it migrates. */
export const PRISMA_MIGRATE_LOCK = 72707369;
/** lib/kit/run-lock.ts's key (pg_advisory_lock(int4, int4)): "RUNB", 1. */
const RUN_LOCK = { classid: 0x52554e42, objid: 1 } as const;

export interface LockWait {
	locktype: string;
	mode: string;
	/** Relation name (schema-qualified outside the search path) when the lock is on a table or index. */
	relation: string | null;
	/** Plain words: "AccessExclusiveLock on table users", "Prisma Migrate's advisory lock ...". */
	description: string;
	/** How long the session has waited for it, from pg_locks.waitstart (PostgreSQL 14+). */
	waitingMs: number | null;
	/** The lock is Prisma Migrate's advisory lock: this session waits to start a migration. */
	prismaMigrateLock: boolean;
}

export interface SessionDetail {
	pid: number;
	database: string | null;
	user: string | null;
	application: string;
	client: string | null;
	backendType: string;
	/** active, idle, idle in transaction, idle in transaction (aborted), ... (null for background workers) */
	state: string | null;
	waitEventType: string | null;
	waitEvent: string | null;
	xactStart: string | null;
	queryStart: string | null;
	xactAgeMs: number | null;
	queryAgeMs: number | null;
	/** Time in the current state (for an idle-in-transaction session: how long it has sat idle). */
	stateAgeMs: number | null;
	/** The current (or, when idle, the last) statement, as pg_stat_activity shows it. */
	query: string;
	/** Sessions this one waits for (pg_blocking_pids); 0 stands for a prepared transaction. */
	blockedBy: number[];
	waitingFor: LockWait | null;
	/** Connected to the database the caller is connected to. */
	here: boolean;
}

export interface ConnectionUse {
	/** Client connections to the whole server (what max_connections limits). */
	used: number;
	max: number;
	/** Slots kept for superusers (superuser_reserved_connections). */
	reserved: number;
	/** Client connections to this database, by state (the caller's own not counted). */
	here: Record<string, number>;
}

interface DetailRow {
	pid: number;
	database: string | null;
	user: string | null;
	application: string | null;
	client: string | null;
	backend_type: string;
	state: string | null;
	wait_event_type: string | null;
	wait_event: string | null;
	xact_start: Date | null;
	query_start: Date | null;
	xact_age_ms: number | null;
	query_age_ms: number | null;
	state_age_ms: number | null;
	query: string | null;
	blocked_by: number[] | null;
	here: boolean;
	w_locktype: string | null;
	w_mode: string | null;
	w_relation: string | null;
	w_relkind: string | null;
	w_transactionid: string | null;
	w_virtualxid: string | null;
	w_classid: string | null;
	w_objid: string | null;
	w_objsubid: number | null;
	w_waiting_ms: number | null;
}

// pg_blocking_pids() needs the lock manager's shared state: call it only for sessions that wait
// for a heavyweight lock. waitstart is PostgreSQL 14+; older servers fall back to state_change.
const DETAIL_SQL = (hasWaitstart: boolean) => `
  select a.pid, a.datname as database, a.usename as user, a.application_name as application,
         host(a.client_addr) as client, a.backend_type, a.state, a.wait_event_type, a.wait_event,
         a.xact_start, a.query_start,
         (extract(epoch from now() - a.xact_start) * 1000)::float8 as xact_age_ms,
         (extract(epoch from now() - a.query_start) * 1000)::float8 as query_age_ms,
         (extract(epoch from now() - a.state_change) * 1000)::float8 as state_age_ms,
         left(a.query, 2000) as query,
         case when a.wait_event_type = 'Lock' then pg_blocking_pids(a.pid) end as blocked_by,
         a.datname is not distinct from current_database() as here,
         w.locktype as w_locktype, w.mode as w_mode,
         case when w.relation is not null and w.database = (select oid from pg_database where datname = current_database())
              then w.relation::regclass::text else w.relation::text end as w_relation,
         (select c.relkind::text from pg_class c where c.oid = w.relation) as w_relkind,
         w.transactionid::text as w_transactionid, w.virtualxid as w_virtualxid,
         w.classid::text as w_classid, w.objid::text as w_objid, w.objsubid::int as w_objsubid,
         (extract(epoch from now() - ${hasWaitstart ? "coalesce(w.waitstart, a.state_change)" : "a.state_change"}) * 1000)::float8 as w_waiting_ms
    from pg_stat_activity a
    left join lateral (
      select * from pg_locks l where l.pid = a.pid and not l.granted limit 1
    ) w on a.wait_event_type = 'Lock'
   where a.pid <> pg_backend_pid()
   order by a.pid`;

const RELKIND: Record<string, string> = {
	r: "table",
	p: "table",
	i: "index",
	I: "index",
	S: "sequence",
	m: "view",
	v: "view",
};

const ms = (v: number | string | null) =>
	v === null || v === undefined ? null : Math.max(0, Math.round(Number(v)));

function describeWait(r: DetailRow): LockWait | null {
	if (!r.w_locktype || !r.w_mode) return null;
	const relation = r.w_relation;
	const kind = (r.w_relkind && RELKIND[r.w_relkind]) || "relation";
	const classid = Number(r.w_classid);
	const objid = Number(r.w_objid);
	const isPrisma =
		r.w_locktype === "advisory" &&
		classid === 0 &&
		objid === PRISMA_MIGRATE_LOCK &&
		r.w_objsubid === 1;
	let description: string;
	switch (r.w_locktype) {
		case "relation":
			description = `${r.w_mode} on ${kind} ${relation}`;
			break;
		case "tuple":
			description = `${r.w_mode} on a row of ${relation}`;
			break;
		case "transactionid":
			description = `a row lock: transaction ${r.w_transactionid} changed or locked the same rows`;
			break;
		case "virtualxid":
			description = `the end of transaction ${r.w_virtualxid} (e.g. CREATE INDEX CONCURRENTLY waits for older transactions)`;
			break;
		case "advisory":
			if (isPrisma)
				description = `Prisma Migrate's advisory lock (${PRISMA_MIGRATE_LOCK}): another migration holds it`;
			else if (
				classid === RUN_LOCK.classid &&
				objid === RUN_LOCK.objid &&
				r.w_objsubid === 2
			) {
				description =
					"the runbooks' run lock (another data-changing runbook is running)";
			} else
				description = `advisory lock ${r.w_objsubid === 1 ? classid * 2 ** 32 + objid : `(${classid}, ${objid})`}`;
			break;
		default:
			description = `${r.w_mode} on ${r.w_locktype}${relation ? ` of ${relation}` : ""}`;
	}
	return {
		locktype: r.w_locktype,
		mode: r.w_mode,
		relation,
		description,
		waitingMs: ms(r.w_waiting_ms),
		prismaMigrateLock: isPrisma,
	};
}

function toDetail(r: DetailRow): SessionDetail {
	return {
		pid: r.pid,
		database: r.database,
		user: r.user,
		application: r.application ?? "",
		client: r.client,
		backendType: r.backend_type,
		state: r.state,
		waitEventType: r.wait_event_type,
		waitEvent: r.wait_event,
		xactStart: r.xact_start ? r.xact_start.toISOString() : null,
		queryStart: r.query_start ? r.query_start.toISOString() : null,
		xactAgeMs: ms(r.xact_age_ms),
		queryAgeMs: ms(r.query_age_ms),
		stateAgeMs: ms(r.state_age_ms),
		query: (r.query ?? "").trim(),
		blockedBy: (r.blocked_by ?? []).map(Number),
		waitingFor: describeWait(r),
		here: r.here,
	};
}

const versionCache = new WeakMap<Db, number>();

export async function serverVersionNum(db: Db): Promise<number> {
	let v = versionCache.get(db);
	if (v === undefined) {
		const { rows } = await db.query<{ n: string }>(
			"select current_setting('server_version_num') as n",
		);
		v = Number(rows[0].n);
		versionCache.set(db, v);
	}
	return v;
}

export async function ownPid(db: Db): Promise<number> {
	const { rows } = await db.query<{ pid: number }>(
		"select pg_backend_pid() as pid",
	);
	return rows[0].pid;
}

/** Every session the caller can see (all databases), except its own, in detail. */
export async function readSessions(db: Db): Promise<SessionDetail[]> {
	const { rows } = await db.query<DetailRow>(
		DETAIL_SQL((await serverVersionNum(db)) >= 140000),
	);
	return rows.map(toDetail);
}

export async function readConnections(db: Db): Promise<ConnectionUse> {
	const { rows } = await db.query<{
		max: number;
		reserved: number;
		used: string;
	}>(
		`select current_setting('max_connections')::int as max,
            current_setting('superuser_reserved_connections')::int as reserved,
            (select count(*) from pg_stat_activity where backend_type = 'client backend') as used`,
	);
	const states = await db.query<{ state: string; n: string }>(
		`select coalesce(state, 'unknown') as state, count(*) as n from pg_stat_activity
      where backend_type = 'client backend' and datname = current_database() and pid <> pg_backend_pid()
      group by 1 order by 1`,
	);
	return {
		used: Number(rows[0].used),
		max: rows[0].max,
		reserved: rows[0].reserved,
		here: Object.fromEntries(states.rows.map((r) => [r.state, Number(r.n)])),
	};
}

/** Pids holding Prisma Migrate's advisory lock in this database. */
export async function prismaLockHolders(db: Db): Promise<number[]> {
	const { rows } = await db.query<{ pid: number }>(
		`select pid from pg_locks
      where locktype = 'advisory' and granted and classid = 0 and objid = $1 and objsubid = 1
        and database = (select oid from pg_database where datname = current_database())`,
		[PRISMA_MIGRATE_LOCK],
	);
	return rows.map((r) => r.pid);
}

const DDL =
	/^\s*(alter|create|drop|comment\s+on|reindex|vacuum\s+full|cluster|truncate|lock\s+table)\b/i;
const stripComments = (sql: string) =>
	sql.replace(/^(\s*--[^\n]*\n|\s*\/\*[\s\S]*?\*\/)+/g, "");

/** Sessions of this database that look like a migration: running DDL, or holding or awaiting Prisma's lock. */
export function migrationSessions(
	sessions: SessionDetail[],
	prismaHolders: number[] = [],
): SessionDetail[] {
	return sessions.filter(
		(s) =>
			s.here &&
			s.backendType === "client backend" &&
			(s.waitingFor?.prismaMigrateLock ||
				prismaHolders.includes(s.pid) ||
				(s.state !== "idle" && DDL.test(stripComments(s.query)))),
	);
}
