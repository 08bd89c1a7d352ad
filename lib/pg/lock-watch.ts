// Watching a database for a while after a change: sessions waiting on locks (and who blocks
// them), the longest wait seen, and what pg_stat_database counted meanwhile (rollbacks, deadlocks).

import { sleep } from "../kit/duration.ts";
import type { Db } from "./db.ts";
import {
	type BlockedSession,
	blockedSessions,
	type DatabaseCounters,
	databaseCounters,
} from "./session-checks.ts";

export interface WatchReport {
	seconds: number;
	samples: number;
	/** Each session seen waiting on a lock, with the longest wait observed for it. */
	blocked: BlockedSession[];
	maxWaitS: number;
	/** Counter increases over the watch (commits, rollbacks, deadlocks, recovery conflicts). */
	delta: DatabaseCounters;
}

export interface WatchOptions {
	seconds: number;
	everyMs?: number;
	signal?: AbortSignal;
	/** Called after each sample with the seconds elapsed and the sessions waiting now. */
	onSample?: (elapsedS: number, waiting: BlockedSession[]) => void;
}

export async function watchLocks(
	db: Db,
	opts: WatchOptions,
): Promise<WatchReport> {
	const everyMs = opts.everyMs ?? 1000;
	const before = await databaseCounters(db);
	const started = performance.now();
	const seen = new Map<number, BlockedSession>();
	let samples = 0;
	const end = started + opts.seconds * 1000;
	while (performance.now() < end) {
		const waiting = await blockedSessions(db);
		samples++;
		for (const s of waiting) {
			const prev = seen.get(s.pid);
			if (!prev || prev.waitS < s.waitS) seen.set(s.pid, s);
		}
		opts.onSample?.((performance.now() - started) / 1000, waiting);
		const left = end - performance.now();
		if (left <= 0) break;
		await sleep(Math.min(everyMs, left), opts.signal);
	}
	const after = await databaseCounters(db);
	const blocked = [...seen.values()].sort((a, b) => b.waitS - a.waitS);
	return {
		seconds: Math.round((performance.now() - started) / 100) / 10,
		samples,
		blocked,
		maxWaitS: blocked[0]?.waitS ?? 0,
		delta: {
			commits: after.commits - before.commits,
			rollbacks: after.rollbacks - before.rollbacks,
			deadlocks: after.deadlocks - before.deadlocks,
			conflicts: after.conflicts - before.conflicts,
		},
	};
}
