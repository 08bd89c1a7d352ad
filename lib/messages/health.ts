// The words of db-health: each finding as a warning with its hint, the tables of sizes, slots and
// standbys, and each check's one-line summary.

import { formatBytes, formatDuration } from "../kit/format.ts";
import { table } from "../kit/output.ts";
import type {
	DatabaseSize,
	Finding,
	OpenTransactions,
	Replication,
	TableStats,
	Thresholds,
} from "../pg/health.ts";
import type { ConnectionUse } from "../pg/sessions.ts";
import { sessionLine } from "./sessions.ts";

export const findingText = (f: Finding) =>
	`${f.severity === "danger" ? "DANGER" : "SLOW"}: ${f.message}.\n${f.hint}`;

/** A check's summary when it found something. */
export const findingsLine = (found: Finding[]) =>
	`${found.length} finding(s): ${[...new Set(found.map((f) => f.check))].join(", ")}`;

const ago = (iso: string | null, now: number) =>
	iso ? `${formatDuration(Math.max(0, now - Date.parse(iso)))} ago` : "never";
const latest = (...xs: Array<string | null>) =>
	xs
		.filter((x): x is string => x !== null)
		.sort()
		.pop() ?? null;
const pct = (x: number | null) =>
	x === null ? "" : `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;
const plural = (n: number) => `${n} table${n === 1 ? "" : "s"}`;

/** The database's size and its largest tables. */
export function sizeLines(
	d: DatabaseSize,
	top: TableStats[],
	all: number,
	now: number,
): string[] {
	return [
		`${d.name}: ${formatBytes(d.bytes)} in ${plural(d.tables)} (PostgreSQL ${d.version}${d.inRecovery ? ", a standby in recovery" : ""})`,
		`Largest tables${top.length < all ? ` (${top.length} of ${all}; --top 0 lists all)` : ""}:`,
		table(
			top.map((t) => ({
				table: t.schema === "public" ? t.name : `${t.schema}.${t.name}`,
				"rows (est.)": t.estimatedRows.toLocaleString("en-US"),
				table_: formatBytes(t.tableBytes),
				indexes: formatBytes(t.indexBytes),
				toast: formatBytes(t.toastBytes),
				total: formatBytes(t.totalBytes),
				dead: pct(t.deadShare),
				vacuumed: ago(latest(t.lastVacuum, t.lastAutovacuum), now),
				analyzed: ago(latest(t.lastAnalyze, t.lastAutoanalyze), now),
			})),
		).replace("table_", "table "),
	];
}

export const sizeOk = (d: DatabaseSize, t: Thresholds) =>
	`${formatBytes(d.bytes)}, ${plural(d.tables)}, none over ${formatBytes(t.tableBytes)}`;

/** The open transactions, twenty at most, and the prepared ones. */
export function transactionLines(tx: OpenTransactions): string[] {
	const lines: string[] = [];
	if (tx.sessions.length === 0 && tx.prepared.length === 0)
		lines.push("No other session of this database has a transaction open.");
	for (const s of tx.sessions.slice(0, 20)) lines.push(sessionLine(s, 100));
	if (tx.sessions.length > 20)
		lines.push(
			`... and ${tx.sessions.length - 20} more (npx tsx runbooks/monitor.ts --all)`,
		);
	for (const p of tx.prepared)
		lines.push(
			`prepared transaction "${p.gid}" (owner ${p.owner}), waiting ${formatDuration(p.ageMs)}`,
		);
	return lines;
}

export const transactionsOk = (tx: OpenTransactions, t: Thresholds) =>
	`${tx.sessions.length} open, none over ${formatDuration(t.transactionMs)} or idle over ${formatDuration(t.idleInTransactionMs)}`;

/** Replication slots and standbys, as tables. */
export function replicationLines(r: Replication): string[] {
	const lines: string[] = [];
	if (r.slots.length) {
		lines.push(
			table(
				r.slots.map((s) => ({
					slot: s.name,
					type: s.type,
					active: s.active ? "yes" : "NO",
					wal_status: s.walStatus ?? "",
					"WAL retained":
						s.retainedBytes === null ? "" : formatBytes(s.retainedBytes),
					"consumer behind": s.lagBytes === null ? "" : formatBytes(s.lagBytes),
				})),
			),
		);
	} else lines.push("No replication slots.");
	if (r.standbys.length) {
		lines.push(
			table(
				r.standbys.map((s) => ({
					standby: s.application || s.client,
					state: s.state,
					sync: s.syncState,
					"replay lag":
						s.replayLagMs === null ? "" : formatDuration(s.replayLagMs),
					behind:
						s.replayLagBytes === null ? "" : formatBytes(s.replayLagBytes),
				})),
			),
		);
	} else if (!r.inRecovery) lines.push("No standbys connected.");
	return lines;
}

export const replicationOk = (r: Replication) =>
	`${r.slots.length} slot(s), ${r.standbys.length} standby(s), none stale or lagging`;

export function connectionLine(c: ConnectionUse): string {
	const here = Object.entries(c.here)
		.map(([state, n]) => `${n} ${state}`)
		.join(", ");
	return `${c.used} client connections of ${c.max - c.reserved} usable (max_connections ${c.max}, ${c.reserved} reserved for superusers); this database, besides this check: ${here || "none"}`;
}

export const connectionsOk = (c: ConnectionUse) =>
	`${c.used} of ${c.max - c.reserved} in use`;
