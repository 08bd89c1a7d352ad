// Who blocks whom (pg_blocking_pids) as a forest: the session at a root holds locks, those below
// it wait, each for the one above; with what each blocker holds on the relations its waiters want.
// And one snapshot of the server's activity: sessions, the tree and connection use.

import type { Db } from "./db.ts";
import {
	type ConnectionUse,
	readConnections,
	readSessions,
	type SessionDetail,
} from "./sessions.ts";

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

/** The chains that involve a session of the caller's database. */
export const chainsHere = (s: ActivitySnapshot) =>
	s.tree.filter((r) =>
		flattenTree([r]).some(({ node }) => node.database === s.database),
	);

/** Sessions of the caller's database waiting for a lock at least thresholdMs. */
export const blockedHere = (s: ActivitySnapshot, thresholdMs: number) =>
	blockedLongerThan(chainsHere(s), thresholdMs).filter(
		(n) => n.database === s.database,
	);

/** Sessions worth listing: this database's non-idle client sessions (everything with all). */
export function listedSessions(
	s: ActivitySnapshot,
	all: boolean,
): SessionDetail[] {
	if (all) return s.sessions;
	return s.sessions.filter(
		(x) =>
			x.here &&
			(x.backendType === "client backend" ||
				x.backendType === "autovacuum worker") &&
			x.state !== "idle",
	);
}
