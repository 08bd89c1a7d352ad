// The words of monitor: the headline of a snapshot, the blocking chains with the command that ends
// each, the session table, the lines a --watch log gets, and the steps' summaries.

import { formatDuration } from "../kit/format.ts";
import type { LiveResult } from "../kit/live-view.ts";
import { style, table } from "../kit/output.ts";
import {
	type ActivitySnapshot,
	type BlockNode,
	blockedHere,
	chainsHere,
	flattenTree,
	listedSessions,
} from "../pg/blocking-tree.ts";
import type { SessionDetail } from "../pg/sessions.ts";
import {
	cancelEffect,
	type SignalKind,
	type SignalResult,
} from "../pg/signal.ts";
import { renderTree, sessionLine, sessionRows } from "./sessions.ts";

export interface View {
	all: boolean;
	thresholdMs: number;
}

export function headline(s: ActivitySnapshot): string {
	const here = Object.entries(s.connections.here)
		.map(([state, n]) => `${n} ${state}`)
		.join(", ");
	const usable = s.connections.max - s.connections.reserved;
	const waiting = flattenTree(s.tree).filter((x) => x.depth > 0).length;
	return `${s.database}: ${here || "no other sessions"}; ${waiting} waiting for a lock; connections ${s.connections.used} of ${usable} usable (max_connections ${s.connections.max})`;
}

/** How to end a chain: the command for its root, and whether a cancel would do. */
export function adviceFor(root: BlockNode): string {
	if (root.pid === 0)
		return "The root is a prepared transaction: COMMIT PREPARED or ROLLBACK PREPARED ends it (see pg_prepared_xacts).";
	const effect = cancelEffect(root);
	return effect.releasesLocks
		? `To end this chain: npx tsx runbooks/monitor.ts --cancel ${root.pid}   (${effect.note})`
		: `To end this chain: npx tsx runbooks/monitor.ts --terminate ${root.pid}   (${effect.note})`;
}

/** The full view: headline, blocking chains with advice, the session table. */
export function screenOf(s: ActivitySnapshot, v: View): string[] {
	const lines = [headline(s), ""];
	const tree = v.all ? s.tree : chainsHere(s);
	if (tree.length) {
		lines.push("Blocking chains (who blocks whom):");
		lines.push(
			...renderTree(tree, {
				thresholdMs: v.thresholdMs,
				highlight: style.red,
			}).map((l) => `  ${l}`),
		);
		for (const root of tree) lines.push(`  ${adviceFor(root)}`);
	} else {
		lines.push("No session waits for a lock.");
	}
	lines.push("");
	lines.push(
		v.all
			? "Sessions (all):"
			: "Sessions of this database that are not idle (--all lists every session):",
	);
	lines.push(table(sessionRows(listedSessions(s, v.all))));
	return lines;
}

/** One refresh as log lines: the headline, then each waiting session and its chain. */
export function logLines(s: ActivitySnapshot, v: View): string[] {
	const nodes = flattenTree(v.all ? s.tree : chainsHere(s));
	const lines = [headline(s)];
	for (const { node, depth, root } of nodes) {
		if (depth === 0) continue;
		const chain = nodes
			.filter((x) => x.root === root && x.depth < depth)
			.map((x) => x.node.pid);
		const over =
			node.waitingMs !== null && node.waitingMs >= v.thresholdMs
				? "  BLOCKED OVER THRESHOLD"
				: "";
		lines.push(
			`  pid ${node.pid} waits ${formatDuration(node.waitingMs ?? 0)} for ${node.waitingFor ?? "a lock"}, behind ${chain.reverse().join(" ← ")} (root: ${root.state ?? "?"})${over}`,
		);
	}
	return lines;
}

export function watchSummary(
	r: LiveResult,
	over: number,
	thresholdMs: number,
): string {
	return `${r.refreshes} refreshes over ${formatDuration(r.elapsedMs)}${r.interrupted ? " (stopped by Ctrl-C)" : ""}${
		over
			? `; ${over} of them showed a session blocked over ${formatDuration(thresholdMs)}`
			: ""
	}`;
}

/** One snapshot's status and summary; while the operator acts on a session, it is context, not the verdict. */
export function snapshotResult(
	s: ActivitySnapshot,
	v: View,
	acting: boolean,
): { status: "ok" | "warning" | "problem"; summary: string } {
	const over = blockedHere(s, v.thresholdMs);
	const waiting = flattenTree(chainsHere(s)).filter((x) => x.depth > 0).length;
	return {
		status:
			over.length && !acting
				? "problem"
				: over.length || waiting
					? "warning"
					: "ok",
		summary: over.length
			? `${over.length} session(s) blocked over ${formatDuration(v.thresholdMs)}: pid ${over.map((n) => n.pid).join(", ")}`
			: `${listedSessions(s, v.all).length} session(s) listed, ${waiting} waiting for a lock`,
	};
}

/** The plan of a cancel or terminate: who, and the exact SQL. */
export function signalPlan(
	target: SessionDetail | undefined,
	pid: number,
	kind: SignalKind,
	sql: string,
): string[] {
	return [
		`-- ${target ? sessionLine(target) : `pid ${pid}`}`,
		...(kind === "terminate"
			? [
					"-- its open transaction is rolled back and its client gets a connection error",
				]
			: []),
		sql,
	];
}

/** After a cancel or terminate: how the session is now, and whether its transaction still holds. */
export function signalled(kind: SignalKind, r: SignalResult) {
	const after = r.after
		? `now ${r.after.state ?? r.after.backendType}`
		: "gone";
	const stillHolding = Boolean(
		kind === "cancel" &&
			r.after &&
			!cancelEffect(r.after).releasesLocks &&
			r.after.xactAgeMs !== null,
	);
	return {
		after,
		warning: Boolean((kind === "terminate" && r.after) || stillHolding),
		summary: `${kind === "cancel" ? "cancelled" : "terminated"} pid ${r.before.pid} (${after})${
			stillHolding
				? `; its transaction is still open: npx tsx runbooks/monitor.ts --terminate ${r.before.pid}`
				: ""
		}`,
	};
}

/** The --json summary's activity: the snapshot, with this database's sessions only unless all. */
export function activityJson(s: ActivitySnapshot | undefined, all: boolean) {
	return s
		? {
				at: s.at,
				database: s.database,
				own_pid: s.ownPid,
				connections: s.connections,
				tree: s.tree,
				sessions: all ? s.sessions : s.sessions.filter((x) => x.here),
			}
		: null;
}
