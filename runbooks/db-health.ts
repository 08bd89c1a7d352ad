#!/usr/bin/env -S node --import tsx --

// The seed's "Migration Performance" check before a large migration: size, largest tables, dead
// rows, open transactions, replication, connections. Flags what would slow or endanger a migration.

import type { FlagValues } from "../lib/kit/cli.ts";
import type { Context, Step, StepResult } from "../lib/kit/runner.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/health.ts";
import type { Db } from "../lib/pg/db.ts";
import {
	connectionFindings,
	type DatabaseSize,
	DEFAULT_THRESHOLDS,
	type Finding,
	readDatabaseSize,
	readOpenTransactions,
	readReplication,
	readTableStats,
	replicationFindings,
	type Thresholds,
	tableFindings,
	transactionFindings,
} from "../lib/pg/health.ts";
import { readConnections } from "../lib/pg/sessions.ts";

interface Settings {
	top: number;
	thresholds: Thresholds;
}

await runRunbook({
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
	settings: ({ flags }): Settings => ({
		top: Number(flags.top),
		thresholds: thresholds(flags),
	}),
	steps: [
		{
			id: "size",
			title:
				"Database size and largest tables (rows, table/index/TOAST size, dead rows, vacuum/analyze)",
			async run(ctx) {
				const db = await ctx.db();
				const d = await readDatabaseSize(db);
				const tables = await readTableStats(db);
				const top =
					ctx.settings.top > 0 ? tables.slice(0, ctx.settings.top) : tables;
				for (const l of say.sizeLines(d, top, tables.length, Date.now()))
					ctx.log(l);
				const found = tableFindings(tables, ctx.settings.thresholds);
				const ok = say.sizeOk(d, ctx.settings.thresholds);
				return conclude(
					ctx,
					found,
					ok,
					{ database: d, tables: top, findings: found },
					d,
				);
			},
		},
		checkStep(
			"transactions",
			"Open transactions (long-running, idle in transaction, prepared)",
			{
				read: readOpenTransactions,
				lines: say.transactionLines,
				findings: transactionFindings,
				ok: say.transactionsOk,
			},
		),
		checkStep("replication", "Replication slots and standby lag", {
			read: readReplication,
			lines: say.replicationLines,
			findings: replicationFindings,
			ok: say.replicationOk,
		}),
		checkStep("connections", "Connections against max_connections", {
			read: readConnections,
			lines: (c) => [say.connectionLine(c)],
			findings: connectionFindings,
			ok: say.connectionsOk,
		}),
	],
	summarize: (ctx, ok) => {
		const findings = [
			"size",
			"transactions",
			"replication",
			"connections",
		].flatMap((id) => (ctx.has(id) ? ctx.result<Found>(id).findings : []));
		return {
			healthy: ok && findings.length === 0,
			findings,
			thresholds: ctx.settings.thresholds,
			database: ctx.has("size") ? ctx.result<Found>("size").database : null,
		};
	},
});

interface Found {
	findings: Finding[];
	database?: DatabaseSize;
}

function thresholds(f: FlagValues): Thresholds {
	const MB = 1024 * 1024;
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

/** A check that reads one thing, prints it and judges it against the thresholds. */
function checkStep<T extends object>(
	id: string,
	title: string,
	c: {
		read: (db: Db) => Promise<T>;
		lines: (x: T) => string[];
		findings: (x: T, t: Thresholds) => Finding[];
		ok: (x: T, t: Thresholds) => string;
	},
): Step<unknown, Settings> {
	return {
		id,
		title,
		async run(ctx) {
			const x = await c.read(await ctx.db());
			for (const l of c.lines(x)) ctx.log(l);
			const t = ctx.settings.thresholds;
			const found = c.findings(x, t);
			return conclude(ctx, found, c.ok(x, t), { ...x, findings: found });
		},
	};
}

/** Warns of a step's findings and makes them its result (a problem: exit 1). */
function conclude(
	ctx: Context,
	found: Finding[],
	ok: string,
	data: unknown,
	database?: DatabaseSize,
): StepResult {
	for (const f of found) ctx.warn(say.findingText(f));
	const value: Found = { findings: found, database };
	return found.length
		? { status: "problem", summary: say.findingsLine(found), data, value }
		: { summary: ok, data, value };
}
