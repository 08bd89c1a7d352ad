#!/usr/bin/env -S npx tsx --

// The seed's "Migration Performance" check before a large migration, done right: database size,
// the largest tables with row estimates and table/index/TOAST sizes, dead rows and the last
// vacuum/analyze, transactions left open, replication slots and lag, connection use. Flags what
// would slow or endanger a migration and exits 1 when it finds any. Read-only.

import { formatDuration, table } from "../lib/kit/output.ts";
import {
	type Context,
	runRunbook,
	type StepResult,
} from "../lib/kit/runner.ts";
import { sessionLine } from "../lib/messages/sessions.ts";
import { formatBytes } from "../lib/pg/catalog.ts";
import {
	connectionFindings,
	type DatabaseSize,
	DEFAULT_THRESHOLDS,
	type Finding,
	type OpenTransactions,
	type Replication,
	readDatabaseSize,
	readOpenTransactions,
	readReplication,
	readTableStats,
	replicationFindings,
	type TableStats,
	type Thresholds,
	tableFindings,
	transactionFindings,
} from "../lib/pg/health.ts";
import { type ConnectionUse, readConnections } from "../lib/pg/sessions.ts";

interface State {
	database?: DatabaseSize;
	tables: TableStats[];
	transactions?: OpenTransactions;
	replication?: Replication;
	connections?: ConnectionUse;
	findings: Finding[];
}

type Ctx = Context<State>;

const MB = 1024 * 1024;

function thresholds(ctx: Ctx): Thresholds {
	const f = ctx.flags;
	return {
		...DEFAULT_THRESHOLDS,
		tableBytes: Number(f["table-size"]) * MB,
		transactionMs: Number(f["transaction-age"]),
		idleInTransactionMs: Number(f["idle-age"]),
		deadShare: Number(f["dead-share"]) / 100,
		slotRetainedBytes: Number(f["slot-retained"]) * MB,
		replicationLagMs: Number(f["replication-lag"]),
		connectionShare: Number(f["connection-share"]) / 100,
	};
}

/** Logs the findings of a step and turns them into its result. */
function conclude(ctx: Ctx, found: Finding[], ok: string): StepResult {
	ctx.state.findings.push(...found);
	for (const f of found)
		ctx.warn(
			`${f.severity === "danger" ? "DANGER" : "SLOW"}: ${f.message}.\n${f.hint}`,
		);
	return found.length
		? {
				status: "problem",
				summary: `${found.length} finding(s): ${[...new Set(found.map((f) => f.check))].join(", ")}`,
				data: found,
			}
		: { summary: ok };
}

const ago = (iso: string | null, now: number) =>
	iso ? `${formatDuration(Math.max(0, now - Date.parse(iso)))} ago` : "never";
const latest = (...xs: Array<string | null>) =>
	xs
		.filter((x): x is string => x !== null)
		.sort()
		.pop() ?? null;
const pct = (x: number | null) =>
	x === null ? "" : `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)}%`;

await runRunbook<State>({
	name: "db-health",
	summary:
		"Check size, bloat, open transactions, replication and connections before a migration; exit 1 on findings.",
	description:
		"Read-only. Reports the database size and its largest tables (rows, table/index/TOAST size, dead rows,\n" +
		"last vacuum and analyze), transactions left open, replication slots and standby lag, and connection\n" +
		"use against max_connections. Flags what would slow or endanger a migration (a table over --table-size,\n" +
		"a transaction older than --transaction-age or idle in a transaction longer than --idle-age, a stale\n" +
		"replication slot, a lagging standby, connections near the limit) and exits 1 when it finds any.",
	flags: {
		top: {
			type: "number",
			value: "<n>",
			default: 10,
			description: "How many of the largest tables to list (0: all).",
		},
		"table-size": {
			type: "number",
			value: "<MB>",
			default: 1024,
			description: "Flag tables at least this big (with indexes and TOAST).",
		},
		"transaction-age": {
			type: "duration",
			default: 300,
			description: "Flag transactions open at least this long.",
		},
		"idle-age": {
			type: "duration",
			default: 60,
			description: "Flag sessions idle in a transaction at least this long.",
		},
		"dead-share": {
			type: "number",
			value: "<percent>",
			default: 20,
			description:
				"Flag tables with at least this share of dead rows (and 10,000 of them).",
		},
		"slot-retained": {
			type: "number",
			value: "<MB>",
			default: 1024,
			description: "Flag replication slots retaining at least this much WAL.",
		},
		"replication-lag": {
			type: "duration",
			default: 60,
			description: "Flag standbys replaying at least this far behind.",
		},
		"connection-share": {
			type: "number",
			value: "<percent>",
			default: 80,
			description: "Flag client connections at this share of max_connections.",
		},
	},
	examples: [
		"npx tsx runbooks/db-health.ts",
		"npx tsx runbooks/db-health.ts --top 0 --table-size 200",
		"npx tsx runbooks/db-health.ts --json | jq '.findings'",
	],
	state: () => ({ tables: [], findings: [] }),
	steps: [
		{
			title:
				"Database size and largest tables (rows, table/index/TOAST size, dead rows, vacuum/analyze)",
			async run(ctx) {
				const db = await ctx.db();
				const d = await readDatabaseSize(db);
				const tables = await readTableStats(db);
				ctx.state.database = d;
				ctx.state.tables = tables;
				const top =
					Number(ctx.flags.top) > 0
						? tables.slice(0, Number(ctx.flags.top))
						: tables;
				const now = Date.now();
				ctx.log(
					`${d.name}: ${formatBytes(d.bytes)} in ${d.tables} table${d.tables === 1 ? "" : "s"} (PostgreSQL ${d.version}${d.inRecovery ? ", a standby in recovery" : ""})`,
				);
				ctx.log(
					`Largest tables${top.length < tables.length ? ` (${top.length} of ${tables.length}; --top 0 lists all)` : ""}:`,
				);
				ctx.log(
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
				);
				const found = tableFindings(tables, thresholds(ctx));
				return {
					...conclude(
						ctx,
						found,
						`${formatBytes(d.bytes)}, ${d.tables} table${d.tables === 1 ? "" : "s"}, none over ${formatBytes(thresholds(ctx).tableBytes)}`,
					),
					data: { database: d, tables: top, findings: found },
				};
			},
		},
		{
			title: "Open transactions (long-running, idle in transaction, prepared)",
			async run(ctx) {
				const tx = await readOpenTransactions(await ctx.db());
				ctx.state.transactions = tx;
				if (tx.sessions.length === 0 && tx.prepared.length === 0)
					ctx.log("No other session of this database has a transaction open.");
				for (const s of tx.sessions.slice(0, 20)) ctx.log(sessionLine(s, 100));
				if (tx.sessions.length > 20)
					ctx.log(
						`... and ${tx.sessions.length - 20} more (npx tsx runbooks/monitor.ts --all)`,
					);
				for (const p of tx.prepared)
					ctx.log(
						`prepared transaction "${p.gid}" (owner ${p.owner}), waiting ${formatDuration(p.ageMs)}`,
					);
				const found = transactionFindings(tx, thresholds(ctx));
				return {
					...conclude(
						ctx,
						found,
						`${tx.sessions.length} open, none over ${formatDuration(thresholds(ctx).transactionMs)} or idle over ${formatDuration(thresholds(ctx).idleInTransactionMs)}`,
					),
					data: { ...tx, findings: found },
				};
			},
		},
		{
			title: "Replication slots and standby lag",
			async run(ctx) {
				const r = await readReplication(await ctx.db());
				ctx.state.replication = r;
				if (r.slots.length) {
					ctx.log(
						table(
							r.slots.map((s) => ({
								slot: s.name,
								type: s.type,
								active: s.active ? "yes" : "NO",
								wal_status: s.walStatus ?? "",
								"WAL retained":
									s.retainedBytes === null ? "" : formatBytes(s.retainedBytes),
								"consumer behind":
									s.lagBytes === null ? "" : formatBytes(s.lagBytes),
							})),
						),
					);
				} else ctx.log("No replication slots.");
				if (r.standbys.length) {
					ctx.log(
						table(
							r.standbys.map((s) => ({
								standby: s.application || s.client,
								state: s.state,
								sync: s.syncState,
								"replay lag":
									s.replayLagMs === null ? "" : formatDuration(s.replayLagMs),
								behind:
									s.replayLagBytes === null
										? ""
										: formatBytes(s.replayLagBytes),
							})),
						),
					);
				} else if (!r.inRecovery) ctx.log("No standbys connected.");
				const found = replicationFindings(r, thresholds(ctx));
				return {
					...conclude(
						ctx,
						found,
						`${r.slots.length} slot(s), ${r.standbys.length} standby(s), none stale or lagging`,
					),
					data: { ...r, findings: found },
				};
			},
		},
		{
			title: "Connections against max_connections",
			async run(ctx) {
				const c = await readConnections(await ctx.db());
				ctx.state.connections = c;
				const usable = c.max - c.reserved;
				const here = Object.entries(c.here)
					.map(([state, n]) => `${n} ${state}`)
					.join(", ");
				ctx.log(
					`${c.used} client connections of ${usable} usable (max_connections ${c.max}, ${c.reserved} reserved for superusers); this database, besides this check: ${here || "none"}`,
				);
				const found = connectionFindings(c, thresholds(ctx));
				return {
					...conclude(ctx, found, `${c.used} of ${usable} in use`),
					data: { ...c, findings: found },
				};
			},
		},
	],
	summarize: (ctx, ok) => ({
		healthy: ok && ctx.state.findings.length === 0,
		findings: ctx.state.findings,
		thresholds: thresholds(ctx),
		database: ctx.state.database ?? null,
	}),
});
