#!/usr/bin/env -S npx tsx --

// The seed's "Migration Monitoring", done right: what every session runs and waits for, who
// blocks whom (pg_blocking_pids) as a tree, sessions blocked too long highlighted; once, as JSON
// for scripts, or refreshed every few seconds. Cancels or terminates one session on request,
// never the runbook's own. (The seed's watch command counted nothing: "active" in double quotes
// is a column name to PostgreSQL, not a string.)

import { usageError } from "../lib/kit/errors.ts";
import { runLive } from "../lib/kit/live-view.ts";
import { formatDuration, style, table } from "../lib/kit/output.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import {
	renderTree,
	sessionLine,
	sessionRows,
} from "../lib/messages/sessions.ts";
import {
	type ActivitySnapshot,
	type BlockNode,
	blockedLongerThan,
	flattenTree,
	readActivity,
} from "../lib/pg/blocking-tree.ts";
import type { SessionDetail } from "../lib/pg/sessions.ts";
import {
	cancelEffect,
	checkSignalTarget,
	type SignalKind,
	type SignalResult,
	signalSession,
	signalSql,
} from "../lib/pg/signal.ts";

interface State {
	snapshot?: ActivitySnapshot;
	/** Refreshes in which some session of this database was blocked over the threshold. */
	overThresholdRefreshes: number;
	refreshes: number;
	signalTarget?: SessionDetail;
	signalled?: { kind: SignalKind; pid: number; after: string };
}

type Ctx = Context<State>;

const thresholdMs = (ctx: Ctx) => Number(ctx.flags.threshold);
const signalKind = (ctx: Ctx): SignalKind | null =>
	ctx.flags.terminate !== undefined
		? "terminate"
		: ctx.flags.cancel !== undefined
			? "cancel"
			: null;
const signalPid = (ctx: Ctx) => Number(ctx.flags.terminate ?? ctx.flags.cancel);

function checkFlags(ctx: Ctx): void {
	const f = ctx.flags;
	if (f.watch !== undefined && f.once)
		throw usageError("--watch and --once exclude each other.");
	if (f.watch !== undefined && ctx.json) {
		throw usageError(
			"--json prints one JSON object at the end; use --once --json for scripts, --watch for people.",
		);
	}
	if (f.watch !== undefined && Number(f.watch) < 500)
		throw usageError("--watch needs at least 0.5 seconds between refreshes.");
	if (f.duration !== undefined && f.watch === undefined)
		throw usageError("--duration limits --watch; add --watch <duration>.");
	if (f.cancel !== undefined && f.terminate !== undefined)
		throw usageError("Pass either --cancel or --terminate, not both.");
	if (signalKind(ctx) && f.watch !== undefined)
		throw usageError("--cancel/--terminate run once; leave out --watch.");
	const pid = signalPid(ctx);
	if (signalKind(ctx) && (!Number.isInteger(pid) || pid <= 0)) {
		throw usageError(
			`--${signalKind(ctx)} needs a process id (a positive whole number), not "${pid}".`,
		);
	}
}

/** Sessions worth listing: this database's non-idle client sessions (everything with --all). */
function listed(ctx: Ctx, s: ActivitySnapshot): SessionDetail[] {
	if (ctx.flags.all) return s.sessions;
	return s.sessions.filter(
		(x) =>
			x.here &&
			(x.backendType === "client backend" ||
				x.backendType === "autovacuum worker") &&
			x.state !== "idle",
	);
}

/** The chains that involve a session of this database. */
const chainsHere = (s: ActivitySnapshot) =>
	s.tree.filter((r) =>
		flattenTree([r]).some(({ node }) => node.database === s.database),
	);

function headline(s: ActivitySnapshot): string {
	const here = Object.entries(s.connections.here)
		.map(([state, n]) => `${n} ${state}`)
		.join(", ");
	const usable = s.connections.max - s.connections.reserved;
	const waiting = flattenTree(s.tree).filter((x) => x.depth > 0).length;
	return `${s.database}: ${here || "no other sessions"}; ${waiting} waiting for a lock; connections ${s.connections.used} of ${usable} usable (max_connections ${s.connections.max})`;
}

/** How to end a chain: the command for its root, and whether a cancel would do. */
function adviceFor(root: BlockNode): string {
	if (root.pid === 0)
		return "The root is a prepared transaction: COMMIT PREPARED or ROLLBACK PREPARED ends it (see pg_prepared_xacts).";
	const effect = cancelEffect(root);
	return effect.releasesLocks
		? `To end this chain: npx tsx runbooks/monitor.ts --cancel ${root.pid}   (${effect.note})`
		: `To end this chain: npx tsx runbooks/monitor.ts --terminate ${root.pid}   (${effect.note})`;
}

function screenOf(ctx: Ctx, s: ActivitySnapshot): string[] {
	const lines = [headline(s), ""];
	const tree = ctx.flags.all ? s.tree : chainsHere(s);
	if (tree.length) {
		lines.push("Blocking chains (who blocks whom):");
		lines.push(
			...renderTree(tree, {
				thresholdMs: thresholdMs(ctx),
				highlight: style.red,
			}).map((l) => `  ${l}`),
		);
		for (const root of tree) lines.push(`  ${adviceFor(root)}`);
	} else {
		lines.push("No session waits for a lock.");
	}
	lines.push("");
	const rows = listed(ctx, s);
	lines.push(
		ctx.flags.all
			? "Sessions (all):"
			: "Sessions of this database that are not idle (--all lists every session):",
	);
	lines.push(table(sessionRows(rows)));
	return lines;
}

function logLines(ctx: Ctx, s: ActivitySnapshot): string[] {
	const nodes = flattenTree(ctx.flags.all ? s.tree : chainsHere(s));
	const lines = [headline(s)];
	for (const { node, depth, root } of nodes) {
		if (depth === 0) continue;
		const chain = nodes
			.filter((x) => x.root === root && x.depth < depth)
			.map((x) => x.node.pid);
		const over =
			node.waitingMs !== null && node.waitingMs >= thresholdMs(ctx)
				? "  BLOCKED OVER THRESHOLD"
				: "";
		lines.push(
			`  pid ${node.pid} waits ${formatDuration(node.waitingMs ?? 0)} for ${node.waitingFor ?? "a lock"}, behind ${chain.reverse().join(" ← ")} (root: ${root.state ?? "?"})${over}`,
		);
	}
	return lines;
}

const blockedHere = (ctx: Ctx, s: ActivitySnapshot) =>
	blockedLongerThan(chainsHere(s), thresholdMs(ctx)).filter(
		(n) => n.database === s.database,
	);

await runRunbook<State>({
	name: "monitor",
	summary:
		"Show sessions, their queries and waits, and who blocks whom; cancel or terminate a session.",
	description:
		"Read-only unless --cancel or --terminate is given. Lists this database's sessions that are not idle\n" +
		"(query, time in state, transaction age, wait event) and the blocking chains from pg_blocking_pids() as a\n" +
		"tree: the session at the root holds the lock; those below wait, each for the one above it. Sessions\n" +
		"waiting longer than --threshold are highlighted; with --once that makes the exit code 1.\n" +
		"--watch refreshes in place on a terminal and prints timestamped lines otherwise, until Ctrl-C or\n" +
		"--duration. --cancel stops a session's current statement (y/n); --terminate ends the session and rolls\n" +
		"back its transaction (type the database name, or --yes --confirm <database>). The runbook's own\n" +
		"session is never listed and never signalled.",
	flags: {
		once: {
			type: "boolean",
			description: "Take one snapshot and exit (the default without --watch).",
		},
		watch: {
			type: "duration",
			description: "Refresh this often until Ctrl-C (or --duration).",
		},
		duration: {
			type: "duration",
			description: "With --watch: stop after this long.",
		},
		threshold: {
			type: "duration",
			default: 10,
			description:
				"Highlight sessions waiting for a lock at least this long; with --once, exit 1 when any does.",
		},
		all: {
			type: "boolean",
			description:
				"List every session (idle ones, other databases, background workers).",
		},
		cancel: {
			type: "number",
			value: "<pid>",
			description:
				"Cancel the current statement of session <pid> (asks first).",
		},
		terminate: {
			type: "number",
			value: "<pid>",
			description:
				"Terminate session <pid>, rolling back its transaction (type the database name, or --yes --confirm).",
		},
	},
	examples: [
		"npx tsx runbooks/monitor.ts",
		"npx tsx runbooks/monitor.ts --watch 2",
		"npx tsx runbooks/monitor.ts --watch 5 --duration 600 >> logs/monitor.log",
		"npx tsx runbooks/monitor.ts --once --json | jq '.activity.tree'",
		"npx tsx runbooks/monitor.ts --cancel 4711",
		"npx tsx runbooks/monitor.ts --terminate 4711 --yes --confirm faceswap",
	],
	state: () => ({ overThresholdRefreshes: 0, refreshes: 0 }),
	steps: [
		{
			title: "Read sessions, locks and blocking chains",
			async run(ctx) {
				checkFlags(ctx);
				const db = await ctx.db();
				if (ctx.flags.watch !== undefined) {
					const result = await runLive(
						{
							intervalMs: Number(ctx.flags.watch),
							durationMs:
								ctx.flags.duration === undefined
									? undefined
									: Number(ctx.flags.duration),
							signal: ctx.signal,
						},
						async () => {
							const s = await readActivity(db);
							ctx.state.snapshot = s;
							if (blockedHere(ctx, s).length)
								ctx.state.overThresholdRefreshes++;
							return { screen: screenOf(ctx, s), lines: logLines(ctx, s) };
						},
					);
					ctx.state.refreshes = result.refreshes;
					const over = ctx.state.overThresholdRefreshes;
					return {
						status: over ? "warning" : "ok",
						summary: `${result.refreshes} refreshes over ${formatDuration(result.elapsedMs)}${result.interrupted ? " (stopped by Ctrl-C)" : ""}${
							over
								? `; ${over} of them showed a session blocked over ${formatDuration(thresholdMs(ctx))}`
								: ""
						}`,
					};
				}
				const s = await readActivity(db);
				ctx.state.snapshot = s;
				ctx.state.refreshes = 1;
				for (const l of screenOf(ctx, s)) ctx.log(l);
				const over = blockedHere(ctx, s);
				const waiting = flattenTree(chainsHere(s)).filter(
					(x) => x.depth > 0,
				).length;
				return {
					// While the operator acts on a session, what the snapshot shows is context, not the verdict.
					status:
						over.length && !signalKind(ctx)
							? "problem"
							: over.length || waiting
								? "warning"
								: "ok",
					summary: over.length
						? `${over.length} session(s) blocked over ${formatDuration(thresholdMs(ctx))}: pid ${over.map((n) => n.pid).join(", ")}`
						: `${listed(ctx, s).length} session(s) listed, ${waiting} waiting for a lock`,
				};
			},
		},
		{
			title: "Check the session to cancel or terminate",
			skip: (ctx) =>
				signalKind(ctx) ? false : "no --cancel or --terminate given",
			async run(ctx) {
				const kind = signalKind(ctx) as SignalKind;
				const s = await checkSignalTarget(await ctx.db(), signalPid(ctx), kind);
				ctx.state.signalTarget = s;
				ctx.log(sessionLine(s));
				if (kind === "cancel" && !cancelEffect(s).releasesLocks) {
					ctx.warn(
						`${cancelEffect(s).note}: use --terminate ${s.pid} to release them.`,
					);
					return {
						status: "warning",
						summary: `pid ${s.pid}: a cancel will not release its locks`,
						data: s,
					};
				}
				return {
					summary: `pid ${s.pid} (${s.state ?? s.backendType}) can be ${kind === "cancel" ? "cancelled" : "terminated"}`,
					data: s,
				};
			},
		},
		{
			title: "Cancel the session's current statement",
			kind: "change",
			skip: (ctx) =>
				signalKind(ctx) === "cancel" ? false : "no --cancel given",
			plan: (ctx) => [
				`-- ${ctx.state.signalTarget ? sessionLine(ctx.state.signalTarget) : `pid ${signalPid(ctx)}`}`,
				signalSql("cancel", signalPid(ctx)),
			],
			async run(ctx) {
				return report(
					ctx,
					"cancel",
					await signalSession(await ctx.db(), signalPid(ctx), "cancel"),
				);
			},
			onFailure: (ctx) =>
				`Nothing was cancelled. \`npx tsx runbooks/monitor.ts\` shows what pid ${signalPid(ctx)} is doing now.`,
		},
		{
			title: "Terminate the session (rolls back its transaction)",
			kind: "destroy",
			skip: (ctx) =>
				signalKind(ctx) === "terminate" ? false : "no --terminate given",
			plan: (ctx) => [
				`-- ${ctx.state.signalTarget ? sessionLine(ctx.state.signalTarget) : `pid ${signalPid(ctx)}`}`,
				"-- its open transaction is rolled back and its client gets a connection error",
				signalSql("terminate", signalPid(ctx)),
			],
			async run(ctx) {
				return report(
					ctx,
					"terminate",
					await signalSession(await ctx.db(), signalPid(ctx), "terminate"),
				);
			},
			onFailure: (ctx) =>
				`Nothing was terminated. \`npx tsx runbooks/monitor.ts\` shows what pid ${signalPid(ctx)} is doing now.`,
		},
	],
	summarize: (ctx) => {
		const s = ctx.state.snapshot;
		return {
			threshold_ms: thresholdMs(ctx),
			refreshes: ctx.state.refreshes,
			blocked_over_threshold: s ? blockedHere(ctx, s).map((n) => n.pid) : [],
			signalled: ctx.state.signalled ?? null,
			activity: s
				? {
						at: s.at,
						database: s.database,
						own_pid: s.ownPid,
						connections: s.connections,
						tree: s.tree,
						sessions: ctx.flags.all
							? s.sessions
							: s.sessions.filter((x) => x.here),
					}
				: null,
		};
	},
});

function report(ctx: Ctx, kind: SignalKind, r: SignalResult) {
	const after = r.after
		? `now ${r.after.state ?? r.after.backendType}`
		: "gone";
	ctx.state.signalled = { kind, pid: r.before.pid, after };
	if (r.after) ctx.log(`after: ${sessionLine(r.after)}`);
	const stillHolding =
		kind === "cancel" &&
		r.after &&
		!cancelEffect(r.after).releasesLocks &&
		r.after.xactAgeMs !== null;
	return {
		status:
			(kind === "terminate" && r.after) || stillHolding
				? ("warning" as const)
				: ("ok" as const),
		summary: `${kind === "cancel" ? "cancelled" : "terminated"} pid ${r.before.pid} (${after})${
			stillHolding
				? `; its transaction is still open: npx tsx runbooks/monitor.ts --terminate ${r.before.pid}`
				: ""
		}`,
		data: { before: r.before, after: r.after },
	};
}
