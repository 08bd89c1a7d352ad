// Sessions and blocking chains as an operator reads them: one line a session, the tree of who
// blocks whom, rows for a session table.

import { formatDuration } from "../kit/format.ts";
import type { BlockNode } from "../pg/blocking-tree.ts";
import type { Session } from "../pg/session-checks.ts";
import type { SessionDetail } from "../pg/sessions.ts";

/** One line for a session: pid, application, user, state and age, statement. */
export function describeSession(s: Session): string {
	const app = s.application ? `"${s.application}"` : "(no application_name)";
	const age =
		s.xactAgeS === null ? "" : `, transaction open ${Math.round(s.xactAgeS)}s`;
	return `pid ${s.pid}, application ${app}, user ${s.user}, ${s.state ?? "unknown state"}${age}: ${s.query || "(no statement)"}`;
}

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
