// Who is doing what on the server, read from pg_stat_activity, pg_locks and pg_blocking_pids():
// sessions with their queries, durations and wait events, the lock each waiting session wants,
// who blocks whom as a tree, sessions holding locks on given tables, long transactions,
// connection use, and cancelling or terminating a session. The caller's own session is always
// left out, and is never cancelled or terminated.
// Used by the monitor, db-health and troubleshoot runbooks and by deploy-production's checks and
// monitor step.

import { RunbookError, refusal, usageError } from "../kit/errors.ts";
import { formatDuration } from "../kit/output.ts";
import type { Db } from "./db.ts";

// ---------------------------------------------------------------------------------------------
// Compact session views for the deploy runbook's pre-flight and monitor step

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

/** One line for a session: pid, application, user, state and age, statement. */
export function describeSession(s: Session): string {
	const app = s.application ? `"${s.application}"` : "(no application_name)";
	const age =
		s.xactAgeS === null ? "" : `, transaction open ${Math.round(s.xactAgeS)}s`;
	return `pid ${s.pid}, application ${app}, user ${s.user}, ${s.state ?? "unknown state"}${age}: ${s.query || "(no statement)"}`;
}

// ---------------------------------------------------------------------------------------------
// The full picture: every session in detail, the lock each waits for, the blocking tree

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

export interface BlockNode {
	pid: number;
	database: string | null;
	user: string | null;
	application: string;
	state: string | null;
	query: string;
	xactAgeMs: number | null;
	stateAgeMs: number | null;
	/** What it waits for (null for the session at the root of a chain). */
	waitingFor: string | null;
	waitingMs: number | null;
	blockedBy: number[];
	/** Locks it holds on the relations the sessions below it wait for. */
	holds: string[];
	/** Sessions waiting behind this one. */
	blocks: BlockNode[];
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

export interface ActivitySnapshot {
	at: string;
	database: string;
	/** The caller's own session: never listed, never signalled. */
	ownPid: number;
	/** Every session the caller can see, on every database, except its own. */
	sessions: SessionDetail[];
	/** Blocking chains: the sessions at the roots hold locks others wait for. */
	tree: BlockNode[];
	connections: ConnectionUse;
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

async function serverVersionNum(db: Db): Promise<number> {
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

function nodeOf(s: SessionDetail | undefined, pid: number): BlockNode {
	if (!s) {
		return {
			pid,
			database: null,
			user: null,
			application: "",
			state: pid === 0 ? "prepared transaction" : "not visible",
			query:
				pid === 0
					? "a prepared transaction (see pg_prepared_xacts; COMMIT PREPARED or ROLLBACK PREPARED ends it)"
					: "",
			xactAgeMs: null,
			stateAgeMs: null,
			waitingFor: null,
			waitingMs: null,
			blockedBy: [],
			holds: [],
			blocks: [],
		};
	}
	return {
		pid: s.pid,
		database: s.database,
		user: s.user,
		application: s.application,
		state: s.state,
		query: s.query,
		xactAgeMs: s.xactAgeMs,
		stateAgeMs: s.stateAgeMs,
		waitingFor: s.waitingFor?.description ?? null,
		waitingMs: s.waitingFor?.waitingMs ?? null,
		blockedBy: s.blockedBy,
		holds: [],
		blocks: [],
	};
}

/**
 * Who blocks whom, as a forest. A session waiting for several others hangs under the one that
 * itself waits (so a lock queue A → B → C nests), else under its first blocker.
 */
export function buildTree(sessions: SessionDetail[]): BlockNode[] {
	const byPid = new Map(sessions.map((s) => [s.pid, s]));
	const blocked = sessions.filter((s) => s.blockedBy.length > 0);
	if (blocked.length === 0) return [];
	const parentOf = new Map<number, number>();
	for (const s of blocked) {
		const waiting = s.blockedBy.find(
			(b) => b !== s.pid && (byPid.get(b)?.blockedBy.length ?? 0) > 0,
		);
		parentOf.set(s.pid, waiting ?? s.blockedBy[0]);
	}
	const children = new Map<number, number[]>();
	for (const [child, parent] of parentOf)
		children.set(parent, [...(children.get(parent) ?? []), child]);
	const placed = new Set<number>();
	const attach = (pid: number): BlockNode => {
		placed.add(pid);
		const n = nodeOf(byPid.get(pid), pid);
		for (const c of (children.get(pid) ?? []).sort((a, b) => a - b)) {
			if (!placed.has(c)) n.blocks.push(attach(c));
		}
		return n;
	};
	const roots: BlockNode[] = [];
	for (const p of [...children.keys()]
		.filter((x) => !parentOf.has(x))
		.sort((a, b) => a - b))
		roots.push(attach(p));
	// A cycle (a deadlock, until the server breaks it) has no root: start it at its lowest pid.
	for (const p of [...parentOf.keys()].sort((a, b) => a - b))
		if (!placed.has(p)) roots.push(attach(p));
	return roots;
}

/** Every node of a forest, depth first, with its depth and its root. */
export function flattenTree(
	tree: BlockNode[],
): Array<{ node: BlockNode; depth: number; root: BlockNode }> {
	const out: Array<{ node: BlockNode; depth: number; root: BlockNode }> = [];
	const walk = (n: BlockNode, depth: number, root: BlockNode) => {
		out.push({ node: n, depth, root });
		for (const c of n.blocks) walk(c, depth + 1, root);
	};
	for (const r of tree) walk(r, 0, r);
	return out;
}

/** Fills in what each blocker holds on the relations its waiters want. */
async function annotateHolds(db: Db, tree: BlockNode[]): Promise<void> {
	const pairs: Array<[BlockNode, BlockNode, string]> = [];
	for (const { node } of flattenTree(tree)) {
		for (const c of node.blocks) {
			const m = /^\w+Lock on (?:table|index|sequence|view|relation) (.+)$/.exec(
				c.waitingFor ?? "",
			);
			if (m) pairs.push([node, c, m[1]]);
		}
	}
	if (pairs.length === 0) return;
	const { rows } = await db.query<{ pid: number; mode: string; rel: string }>(
		`select l.pid, l.mode, l.relation::regclass::text as rel
       from pg_locks l
      where l.granted and l.locktype = 'relation' and l.pid = any($1::int[])
        and l.database = (select oid from pg_database where datname = current_database())
        and l.relation::regclass::text = any($2::text[])
      order by l.pid, l.mode`,
		[
			[...new Set(pairs.map(([p]) => p.pid))],
			[...new Set(pairs.map(([, , rel]) => rel))],
		],
	);
	for (const [p, , rel] of pairs) {
		for (const r of rows) {
			const h = `${r.mode} on ${r.rel}`;
			if (r.pid === p.pid && r.rel === rel && !p.holds.includes(h))
				p.holds.push(h);
		}
	}
}

/** The blocking chains alone (what a deploy's monitor step polls while it migrates). */
export async function blockingTree(db: Db): Promise<BlockNode[]> {
	const tree = buildTree(await readSessions(db));
	await annotateHolds(db, tree);
	return tree;
}

/** Sessions, blocking tree and connection use at one moment. */
export async function readActivity(db: Db): Promise<ActivitySnapshot> {
	const { rows } = await db.query<{ at: Date; database: string; pid: number }>(
		"select now() as at, current_database() as database, pg_backend_pid() as pid",
	);
	const sessions = await readSessions(db);
	const connections = await readConnections(db);
	const tree = buildTree(sessions);
	await annotateHolds(db, tree);
	return {
		at: rows[0].at.toISOString(),
		database: rows[0].database,
		ownPid: rows[0].pid,
		sessions,
		tree,
		connections,
	};
}

/** Sessions waiting longer than the threshold for a lock. */
export function blockedLongerThan(
	tree: BlockNode[],
	thresholdMs: number,
): BlockNode[] {
	return flattenTree(tree)
		.map((x) => x.node)
		.filter((n) => n.waitingMs !== null && n.waitingMs >= thresholdMs);
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

// ---------------------------------------------------------------------------------------------
// Cancelling and terminating sessions

export type SignalKind = "cancel" | "terminate";

const SIGNAL_FN: Record<SignalKind, string> = {
	cancel: "pg_cancel_backend",
	terminate: "pg_terminate_backend",
};

/** The exact SQL that cancels or terminates a session (for plans and for running). */
export function signalSql(kind: SignalKind, pid: number): string {
	return `select ${SIGNAL_FN[kind]}(${Math.trunc(pid)});`;
}

const SIGNALLABLE = new Set(["client backend", "autovacuum worker"]);

/**
 * The session a cancel or terminate would hit, after the safety checks: not the caller's own
 * session, connected to the caller's database, a client session (or autovacuum). Throws exit 2
 * for a pid that does not exist, exit 3 for one it must not touch.
 */
export async function checkSignalTarget(
	db: Db,
	pid: number,
	kind: SignalKind,
): Promise<SessionDetail> {
	if (!Number.isInteger(pid) || pid <= 0)
		throw usageError(`"${pid}" is not a process id (a positive whole number).`);
	if (pid === (await ownPid(db))) {
		throw refusal(
			`pid ${pid} is this runbook's own session: refusing to ${kind} it. Nothing was changed.`,
			"Pick a pid from the session list (the runbook's own session is never listed).",
		);
	}
	const s = (await readSessions(db)).find((x) => x.pid === pid);
	if (!s) {
		throw usageError(
			`No session with pid ${pid} is visible (it may have ended already). Nothing was changed.`,
			"Run `npx tsx runbooks/monitor.ts` for the current sessions.",
		);
	}
	if (!s.here) {
		throw refusal(
			`pid ${pid} is connected to database "${s.database ?? "(none)"}", not to this runbook's target. Nothing was changed.`,
			"Point DATABASE_URL at that database to act on its sessions.",
		);
	}
	if (!SIGNALLABLE.has(s.backendType)) {
		throw refusal(
			`pid ${pid} is a ${s.backendType}, not a client session: refusing to ${kind} it. Nothing was changed.`,
		);
	}
	return s;
}

/** What cancelling does to a session in this state (a cancel stops a statement, never an idle transaction). */
export function cancelEffect(s: { state: string | null }): {
	releasesLocks: boolean;
	note: string;
} {
	switch (s.state) {
		case "idle in transaction":
		case "idle in transaction (aborted)":
			return {
				releasesLocks: false,
				note: "it is idle in a transaction: cancelling stops nothing and releases no lock; only terminating the session ends the transaction",
			};
		case "idle":
			return {
				releasesLocks: false,
				note: "it is idle: there is no statement to cancel (a session-level advisory lock stays until the session ends)",
			};
		default:
			return {
				releasesLocks: true,
				note: "cancelling stops its current statement; inside a longer transaction its locks go when the client rolls back",
			};
	}
}

export interface SignalResult {
	/** The session as it was just before the signal. */
	before: SessionDetail;
	/** As it is after: null when it is gone (terminated, or it ended). */
	after: SessionDetail | null;
}

/**
 * Cancels the current statement of, or terminates, a session, after checkSignalTarget. A
 * terminate waits (PostgreSQL 14+) up to 5 s for the session to be gone; a cancel waits up to
 * 2 s for the statement to stop, then reports the session as it is.
 */
export async function signalSession(
	db: Db,
	pid: number,
	kind: SignalKind,
): Promise<SignalResult> {
	const s = await checkSignalTarget(db, pid, kind);
	const sql =
		kind === "terminate" && (await serverVersionNum(db)) >= 140000
			? `select pg_terminate_backend(${Math.trunc(pid)}, 5000) as ok`
			: `${signalSql(kind, pid).replace(/;$/, "")} as ok`;
	const { rows } = await db.query<{ ok: boolean }>(sql);
	if (!rows[0].ok) {
		throw new RunbookError(
			`PostgreSQL did not ${kind} pid ${pid}: it ended meanwhile, or this user may not signal it.`,
			1,
			"Signalling another role's session needs membership in that role or in pg_signal_backend.",
		);
	}
	const stopped = (x: SessionDetail | undefined) =>
		!x ||
		(kind === "cancel" &&
			(x.state !== "active" || x.queryStart !== s.queryStart));
	let after = (await readSessions(db)).find((x) => x.pid === pid);
	for (let i = 0; i < 20 && !stopped(after); i++) {
		await new Promise((r) => setTimeout(r, 100));
		after = (await readSessions(db)).find((x) => x.pid === pid);
	}
	return { before: s, after: after ?? null };
}

// ---------------------------------------------------------------------------------------------
// Rendering

export function oneLine(text: string, max = 100): string {
	const t = text.replace(/\s+/g, " ").trim();
	return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

const age = (v: number | null) => (v === null ? "" : formatDuration(v));

/** One line for a detailed session or tree node: who, how long, doing what. */
export function sessionLine(s: SessionDetail | BlockNode, width = 160): string {
	const parts = [`pid ${s.pid}`];
	if (s.user) parts.push(`user ${s.user}`);
	if (s.application) parts.push(`application ${s.application}`);
	parts.push(
		`${s.state ?? "no state"}${s.stateAgeMs !== null ? ` for ${age(s.stateAgeMs)}` : ""}`,
	);
	if (s.xactAgeMs !== null) parts.push(`transaction open ${age(s.xactAgeMs)}`);
	return `${parts.join(", ")}${s.query ? `: ${oneLine(s.query, width)}` : ""}`;
}

/**
 * The blocking chains as an indented tree, one session per line plus what it holds and runs.
 * Sessions waiting at least thresholdMs are marked, and painted by highlight().
 */
export function renderTree(
	tree: BlockNode[],
	opts: {
		thresholdMs?: number;
		highlight?: (s: string) => string;
		width?: number;
	} = {},
): string[] {
	const threshold = opts.thresholdMs ?? Number.POSITIVE_INFINITY;
	const hl = opts.highlight ?? ((s: string) => s);
	const width = opts.width ?? 100;
	const lines: string[] = [];
	const walk = (n: BlockNode, prefix: string, last: boolean, depth: number) => {
		const branch = depth === 0 ? "" : `${prefix}${last ? "└─ " : "├─ "}`;
		const who = `pid ${n.pid}${n.user ? ` ${n.user}` : ""}${n.application ? ` (${n.application})` : ""}`;
		let line: string;
		if (depth === 0) {
			const since =
				n.state?.startsWith("idle") && n.stateAgeMs !== null
					? ` for ${age(n.stateAgeMs)}`
					: "";
			line = `${who}  ${n.state ?? ""}${since}${n.xactAgeMs !== null ? `, transaction open ${age(n.xactAgeMs)}` : ""}`;
		} else {
			line = `${branch}${who}  waits ${age(n.waitingMs)} for ${n.waitingFor ?? "a lock"}`;
			if (n.blockedBy.length > 1)
				line += ` (blocked by ${n.blockedBy.join(", ")})`;
		}
		const over = n.waitingMs !== null && n.waitingMs >= threshold;
		lines.push(
			over ? hl(`${line}  ◀ blocked over ${formatDuration(threshold)}`) : line,
		);
		const pad = depth === 0 ? "" : `${prefix}${last ? "   " : "│  "}`;
		const detail = `${pad}${n.blocks.length ? "│  " : "   "}`;
		if (n.holds.length) lines.push(`${detail}holds ${n.holds.join(", ")}`);
		if (n.query) lines.push(`${detail}${oneLine(n.query, width)}`);
		n.blocks.forEach((c, i) => {
			walk(c, pad, i === n.blocks.length - 1, depth + 1);
		});
	};
	for (const r of tree) walk(r, "", true, 0);
	return lines;
}

/** Rows for a session table (see output.table). */
export function sessionRows(
	sessions: SessionDetail[],
	width = 60,
): Array<Record<string, unknown>> {
	return sessions.map((s) => ({
		pid: s.pid,
		user: s.user ?? "",
		application: oneLine(s.application, 24),
		state: s.state ?? s.backendType,
		"in state": age(s.stateAgeMs),
		transaction: age(s.xactAgeMs),
		wait: s.waitEventType ? `${s.waitEventType}:${s.waitEvent}` : "",
		"blocked by": s.blockedBy.join(","),
		query: oneLine(s.query, width),
	}));
}
