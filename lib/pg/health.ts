// The database's health as it matters before a migration: how big it is and where, how much of
// each table is dead rows, when it was last vacuumed and analyzed, transactions left open, idle
// sessions holding locks, replication slots retaining WAL, standbys lagging, and connection use.
// Each check returns its data and the findings (what would slow or endanger a migration) its
// thresholds produce.

import { formatBytes, formatDuration } from "../kit/format.ts";
import type { Db } from "./db.ts";
import {
	type ConnectionUse,
	readConnections,
	readSessions,
	type SessionDetail,
} from "./sessions.ts";

export interface Thresholds {
	/** A table at least this big (bytes, with indexes and TOAST) makes rewrites and scans slow. */
	tableBytes: number;
	/** A transaction open at least this long (ms) blocks the ALTER TABLE of a migration. */
	transactionMs: number;
	/** A session idle in a transaction at least this long (ms). */
	idleInTransactionMs: number;
	/** Dead rows as a share of all rows (0..1), counted on tables with at least deadMinRows dead rows. */
	deadShare: number;
	deadMinRows: number;
	/** A replication slot retaining at least this much WAL (bytes). */
	slotRetainedBytes: number;
	/** A standby replaying at least this far behind (ms). */
	replicationLagMs: number;
	/** Client connections as a share of the usable max_connections (0..1). */
	connectionShare: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = {
	tableBytes: 1024 ** 3,
	transactionMs: 5 * 60_000,
	idleInTransactionMs: 60_000,
	deadShare: 0.2,
	deadMinRows: 10_000,
	slotRetainedBytes: 1024 ** 3,
	replicationLagMs: 60_000,
	connectionShare: 0.8,
};

export type FindingCheck =
	| "table_size"
	| "dead_tuples"
	| "long_transaction"
	| "idle_in_transaction"
	| "prepared_transaction"
	| "replication_slot"
	| "replication_lag"
	| "connections";

export interface Finding {
	check: FindingCheck;
	/** "slow": the migration takes long; "danger": it can block the app, fail or fill the disk. */
	severity: "slow" | "danger";
	/** What it is about: a table, a pid, a slot. */
	subject: string;
	message: string;
	hint: string;
}

export interface DatabaseSize {
	name: string;
	bytes: number;
	tables: number;
	version: string;
	inRecovery: boolean;
}

export interface TableStats {
	schema: string;
	name: string;
	estimatedRows: number;
	tableBytes: number;
	indexBytes: number;
	toastBytes: number;
	totalBytes: number;
	liveRows: number;
	deadRows: number;
	/** Dead rows over live + dead (0..1), null when the table has no statistics yet. */
	deadShare: number | null;
	lastVacuum: string | null;
	lastAutovacuum: string | null;
	lastAnalyze: string | null;
	lastAutoanalyze: string | null;
	modifiedSinceAnalyze: number;
}

export interface PreparedTransaction {
	gid: string;
	owner: string;
	ageMs: number;
}

export interface OpenTransactions {
	/** Client sessions of this database with a transaction open (idle in transaction included). */
	sessions: SessionDetail[];
	prepared: PreparedTransaction[];
}

export interface ReplicationSlot {
	name: string;
	type: string;
	database: string | null;
	active: boolean;
	activePid: number | null;
	walStatus: string | null;
	/** WAL kept on disk for this slot. */
	retainedBytes: number | null;
	/** For logical slots: how far the consumer's confirmed position is behind. */
	lagBytes: number | null;
}

export interface Standby {
	application: string;
	client: string | null;
	state: string | null;
	syncState: string | null;
	replayLagMs: number | null;
	replayLagBytes: number | null;
}

export interface Replication {
	inRecovery: boolean;
	slots: ReplicationSlot[];
	standbys: Standby[];
}

export interface HealthReport {
	database: DatabaseSize;
	tables: TableStats[];
	transactions: OpenTransactions;
	replication: Replication;
	connections: ConnectionUse;
	findings: Finding[];
}

const n = (v: unknown) => (v === null || v === undefined ? 0 : Number(v));
const iso = (d: Date | null) => (d ? d.toISOString() : null);

export async function readDatabaseSize(db: Db): Promise<DatabaseSize> {
	const { rows } = await db.query<{
		name: string;
		bytes: string;
		tables: string;
		version: string;
		rec: boolean;
	}>(
		`select current_database() as name, pg_database_size(current_database()) as bytes,
            (select count(*) from pg_class c join pg_namespace s on s.oid = c.relnamespace
              where c.relkind in ('r', 'p') and s.nspname not in ('pg_catalog', 'information_schema')
                and s.nspname not like 'pg_toast%' and s.nspname not like 'pg_temp%') as tables,
            current_setting('server_version') as version, pg_is_in_recovery() as rec`,
	);
	const r = rows[0];
	return {
		name: r.name,
		bytes: n(r.bytes),
		tables: n(r.tables),
		version: r.version,
		inRecovery: r.rec,
	};
}

/** Tables by total size, largest first (limit: how many; 0 for all). */
export async function readTableStats(db: Db, limit = 0): Promise<TableStats[]> {
	const { rows } = await db.query(
		`select s.nspname as schema, c.relname as name,
            case when c.reltuples < 0 then coalesce(t.n_live_tup, 0) else c.reltuples end::bigint as est_rows,
            pg_table_size(c.oid) - coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) as table_bytes,
            pg_indexes_size(c.oid) as index_bytes,
            coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0) as toast_bytes,
            pg_total_relation_size(c.oid) as total_bytes,
            coalesce(t.n_live_tup, 0) as live, coalesce(t.n_dead_tup, 0) as dead,
            t.last_vacuum, t.last_autovacuum, t.last_analyze, t.last_autoanalyze,
            coalesce(t.n_mod_since_analyze, 0) as mod_since_analyze,
            t.relid is not null as has_stats
       from pg_class c
       join pg_namespace s on s.oid = c.relnamespace
       left join pg_stat_user_tables t on t.relid = c.oid
      where c.relkind in ('r', 'p', 'm') and s.nspname not in ('pg_catalog', 'information_schema')
        and s.nspname not like 'pg_toast%' and s.nspname not like 'pg_temp%'
      order by pg_total_relation_size(c.oid) desc, s.nspname, c.relname
      ${limit > 0 ? `limit ${Math.trunc(limit)}` : ""}`,
	);
	return rows.map((r) => {
		const live = n(r.live);
		const dead = n(r.dead);
		return {
			schema: r.schema,
			name: r.name,
			estimatedRows: n(r.est_rows),
			tableBytes: n(r.table_bytes),
			indexBytes: n(r.index_bytes),
			toastBytes: n(r.toast_bytes),
			totalBytes: n(r.total_bytes),
			liveRows: live,
			deadRows: dead,
			deadShare:
				r.has_stats && live + dead > 0
					? dead / (live + dead)
					: r.has_stats
						? 0
						: null,
			lastVacuum: iso(r.last_vacuum),
			lastAutovacuum: iso(r.last_autovacuum),
			lastAnalyze: iso(r.last_analyze),
			lastAutoanalyze: iso(r.last_autoanalyze),
			modifiedSinceAnalyze: n(r.mod_since_analyze),
		};
	});
}

export async function readOpenTransactions(db: Db): Promise<OpenTransactions> {
	const sessions = (await readSessions(db)).filter(
		(s) => s.here && s.backendType === "client backend" && s.xactStart !== null,
	);
	const { rows } = await db.query<{
		gid: string;
		owner: string;
		age_ms: number;
	}>(
		`select gid, owner, (extract(epoch from now() - prepared) * 1000)::float8 as age_ms
       from pg_prepared_xacts where database = current_database() order by prepared`,
	);
	return {
		sessions: sessions.sort((a, b) => (b.xactAgeMs ?? 0) - (a.xactAgeMs ?? 0)),
		prepared: rows.map((r) => ({
			gid: r.gid,
			owner: r.owner,
			ageMs: Math.round(r.age_ms),
		})),
	};
}

/** Whole numbers from pg's float8, NULL kept (no slot or standby measured). */
const rounded = (x: number | null) => (x === null ? null : Math.round(x));
export async function readReplication(db: Db): Promise<Replication> {
	const { rows: rec } = await db.query<{ r: boolean }>(
		"select pg_is_in_recovery() as r",
	);
	const inRecovery = rec[0].r;
	const lsn = inRecovery ? "pg_last_wal_replay_lsn()" : "pg_current_wal_lsn()";
	const slots = await db.query(
		`select slot_name as name, slot_type as type, database, active, active_pid, wal_status,
            pg_wal_lsn_diff(${lsn}, restart_lsn)::float8 as retained,
            case when slot_type = 'logical' then pg_wal_lsn_diff(${lsn}, confirmed_flush_lsn)::float8 end as lag
       from pg_replication_slots
      where database is null or database = current_database()
      order by slot_name`,
	);
	const standbys = inRecovery
		? { rows: [] }
		: await db.query(
				`select application_name as application, host(client_addr) as client, state, sync_state,
                (extract(epoch from replay_lag) * 1000)::float8 as lag_ms,
                pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 as lag_bytes
           from pg_stat_replication order by application_name`,
			);
	return {
		inRecovery,
		slots: slots.rows.map((r) => ({
			name: r.name,
			type: r.type,
			database: r.database,
			active: r.active,
			activePid: r.active_pid,
			walStatus: r.wal_status,
			retainedBytes: rounded(r.retained),
			lagBytes: rounded(r.lag),
		})),
		standbys: standbys.rows.map((r) => ({
			application: r.application,
			client: r.client,
			state: r.state,
			syncState: r.sync_state,
			replayLagMs: rounded(r.lag_ms),
			replayLagBytes: rounded(r.lag_bytes),
		})),
	};
}

const pct = (x: number) => `${Math.round(x * 100)}%`;
const tableName = (t: TableStats) =>
	t.schema === "public" ? t.name : `${t.schema}.${t.name}`;

export function tableFindings(tables: TableStats[], t: Thresholds): Finding[] {
	const out: Finding[] = [];
	for (const x of tables) {
		if (x.totalBytes >= t.tableBytes) {
			out.push({
				check: "table_size",
				severity: "slow",
				subject: tableName(x),
				message: `table ${tableName(x)} is ${formatBytes(x.totalBytes)} (~${x.estimatedRows.toLocaleString("en-US")} rows), over ${formatBytes(t.tableBytes)}: a migration that rewrites or scans it (type change, SET NOT NULL, a constraint validated in place, CREATE INDEX without CONCURRENTLY) holds its lock for a long time`,
				hint: "Use the online patterns: add-required-field for NOT NULL, batched backfills, CREATE INDEX CONCURRENTLY, constraints NOT VALID then VALIDATE.",
			});
		}
		if (
			x.deadShare !== null &&
			x.deadShare >= t.deadShare &&
			x.deadRows >= t.deadMinRows
		) {
			out.push({
				check: "dead_tuples",
				severity: "slow",
				subject: tableName(x),
				message: `table ${tableName(x)} is ${pct(x.deadShare)} dead rows (${x.deadRows.toLocaleString("en-US")}): scans and rewrites read them too`,
				hint: `Vacuum it first: VACUUM (ANALYZE) ${x.schema === "public" ? "" : `${x.schema}.`}"${x.name}";`,
			});
		}
	}
	return out;
}

export function transactionFindings(
	tx: OpenTransactions,
	t: Thresholds,
): Finding[] {
	const out: Finding[] = [];
	for (const s of tx.sessions) {
		const idle = s.state?.startsWith("idle in transaction");
		const who = `pid ${s.pid}${s.user ? ` (${s.user}${s.application ? `, ${s.application}` : ""})` : ""}`;
		if (idle && (s.stateAgeMs ?? 0) >= t.idleInTransactionMs) {
			out.push({
				check: "idle_in_transaction",
				severity: "danger",
				subject: `pid ${s.pid}`,
				message: `${who} has been idle in a transaction for ${formatDuration(s.stateAgeMs ?? 0)} (transaction open ${formatDuration(s.xactAgeMs ?? 0)}): it keeps every lock it took, so a migration's ALTER TABLE waits for it and every query on that table then waits behind the ALTER`,
				hint: `Find its owner and end it, or terminate it: npx tsx runbooks/monitor.ts --terminate ${s.pid}`,
			});
		} else if (!idle && (s.xactAgeMs ?? 0) >= t.transactionMs) {
			out.push({
				check: "long_transaction",
				severity: "danger",
				subject: `pid ${s.pid}`,
				message: `${who} has had a transaction open for ${formatDuration(s.xactAgeMs ?? 0)} (${s.state ?? "unknown state"}): a migration's ALTER TABLE on any table it touched waits for it, and vacuum cannot clean rows it may still see`,
				hint: `Let it finish before migrating, or cancel it: npx tsx runbooks/monitor.ts --cancel ${s.pid}`,
			});
		}
	}
	for (const p of tx.prepared) {
		if (p.ageMs >= t.transactionMs) {
			out.push({
				check: "prepared_transaction",
				severity: "danger",
				subject: p.gid,
				message: `prepared transaction "${p.gid}" (owner ${p.owner}) has been waiting ${formatDuration(p.ageMs)} for COMMIT PREPARED or ROLLBACK PREPARED: it holds its locks until then, across restarts`,
				hint: `Ask its owner; to discard it: ROLLBACK PREPARED '${p.gid.replace(/'/g, "''")}';`,
			});
		}
	}
	return out;
}

export function replicationFindings(r: Replication, t: Thresholds): Finding[] {
	const out: Finding[] = [];
	for (const s of r.slots) {
		const retained = s.retainedBytes ?? 0;
		if (s.walStatus === "lost") {
			out.push({
				check: "replication_slot",
				severity: "danger",
				subject: s.name,
				message: `replication slot ${s.name} is lost (the WAL it needed is gone): its consumer can no longer catch up`,
				hint: `Re-sync the consumer, then drop the slot: select pg_drop_replication_slot('${s.name}');`,
			});
		} else if (
			!s.active ||
			retained >= t.slotRetainedBytes ||
			s.walStatus === "unreserved"
		) {
			const why = !s.active
				? "inactive (no consumer connected)"
				: `retaining ${formatBytes(retained)} of WAL`;
			out.push({
				check: "replication_slot",
				severity: "danger",
				subject: s.name,
				message: `replication slot ${s.name} (${s.type}) is ${why}${s.active ? "" : `, retaining ${formatBytes(retained)} of WAL`}: a large migration writes a lot of WAL, and a stale slot keeps all of it on disk until the disk fills`,
				hint: `Reconnect its consumer, or if nothing uses it any more: select pg_drop_replication_slot('${s.name}');`,
			});
		}
	}
	for (const s of r.standbys) {
		if (s.replayLagMs !== null && s.replayLagMs >= t.replicationLagMs) {
			out.push({
				check: "replication_lag",
				severity: "danger",
				subject: s.application || s.client || "standby",
				message: `standby ${s.application || s.client} replays ${formatDuration(s.replayLagMs)} behind${s.replayLagBytes !== null ? ` (${formatBytes(s.replayLagBytes)})` : ""}: a migration adds to the lag, and reads from it see the old schema`,
				hint: "Wait for it to catch up before migrating.",
			});
		}
	}
	return out;
}

export function connectionFindings(c: ConnectionUse, t: Thresholds): Finding[] {
	const usable = Math.max(1, c.max - c.reserved);
	const share = c.used / usable;
	if (share < t.connectionShare) return [];
	return [
		{
			check: "connections",
			severity: "danger",
			subject: "max_connections",
			message: `${c.used} of ${usable} usable connections are in use (${pct(share)}; max_connections ${c.max}, ${c.reserved} reserved for superusers): the migration and the runbooks need a few more, and app sessions waiting on a migration's lock pile up`,
			hint: "Find idle or leaked sessions (npx tsx runbooks/monitor.ts --all), or put the app behind a pooler.",
		},
	];
}

/** Every check at once (for a pre-flight). */
export async function checkHealth(
	db: Db,
	t: Thresholds = DEFAULT_THRESHOLDS,
	top = 0,
): Promise<HealthReport> {
	const database = await readDatabaseSize(db);
	const tables = await readTableStats(db, top);
	const transactions = await readOpenTransactions(db);
	const replication = await readReplication(db);
	const connections = await readConnections(db);
	return {
		database,
		tables,
		transactions,
		replication,
		connections,
		findings: [
			...tableFindings(tables, t),
			...transactionFindings(transactions, t),
			...replicationFindings(replication, t),
			...connectionFindings(connections, t),
		],
	};
}
