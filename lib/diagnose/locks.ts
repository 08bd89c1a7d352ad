// A migration hanging on a lock: which migration sessions wait, the chains they wait in (from the
// blocking tree), and which migration sessions are busy without waiting.

import {
	type ActivitySnapshot,
	type BlockNode,
	flattenTree,
} from "../pg/blocking-tree.ts";
import { migrationSessions, type SessionDetail } from "../pg/sessions.ts";

export interface StuckChain {
	/** The session at the root: it holds the lock. */
	root: BlockNode;
	/** The migration sessions waiting in this chain. */
	stuck: SessionDetail[];
	longestMs: number;
}

export interface LockFindings {
	/** Migration sessions waiting for a lock. */
	waiting: SessionDetail[];
	chains: StuckChain[];
	/** The roots of those chains: the blockers a cancel or terminate would hit. */
	roots: BlockNode[];
	/** Migration sessions running DDL and waiting for no lock. */
	running: SessionDetail[];
}

export function findStuckMigrations(
	s: ActivitySnapshot,
	prismaHolders: number[],
): LockFindings {
	const migrations = migrationSessions(s.sessions, prismaHolders);
	const waiting = migrations.filter((m) => m.blockedBy.length > 0);
	const nodes = flattenTree(s.tree);
	const roots: BlockNode[] = [];
	for (const w of waiting) {
		const at = nodes.find((x) => x.node.pid === w.pid);
		if (at && !roots.includes(at.root)) roots.push(at.root);
	}
	const chains = roots.map((root) => {
		const stuck = waiting.filter((w) =>
			flattenTree([root]).some((x) => x.node.pid === w.pid),
		);
		const longestMs = Math.max(
			...stuck.map((w) => w.waitingFor?.waitingMs ?? 0),
		);
		return { root, stuck, longestMs };
	});
	const running = migrations.filter(
		(x) => !x.blockedBy.length && x.state === "active",
	);
	return { waiting, chains, roots, running };
}

/** Sessions of this database waiting for a lock (any, not only migrations). */
export const lockWaitsHere = (s: ActivitySnapshot) =>
	flattenTree(s.tree).filter(
		(x) => x.depth > 0 && x.node.database === s.database,
	).length;

/** Any migration session (running DDL, holding or awaiting Prisma's lock) in this database. */
export const migrationBusy = (s: ActivitySnapshot, prismaHolders: number[]) =>
	migrationSessions(s.sessions, prismaHolders).length > 0;
