// Cancelling a session's statement or terminating the session, after the checks that keep a
// runbook's hands off what it must not touch: its own session, another database's, a server process.

import { RunbookError, refusal, usageError } from "../kit/errors.ts";
import type { Db } from "./db.ts";
import {
	ownPid,
	readSessions,
	type SessionDetail,
	serverVersionNum,
} from "./sessions.ts";

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
		// False when the session ended between the check and the signal (a client that had just
		// disconnected: its backend exits a moment later): gone is what the signal was for.
		const still = (await readSessions(db)).find((x) => x.pid === pid);
		if (!still) return { before: s, after: null };
		const why =
			kind === "terminate"
				? "it was still there after 5 s, or this user may not signal it"
				: "this user may not signal it";
		throw new RunbookError(
			`PostgreSQL did not ${kind} pid ${pid}: ${why}.`,
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
