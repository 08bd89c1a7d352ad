// monitor --watch: the server's activity read again every interval and shown as a live view,
// counting the refreshes in which a session of this database was blocked over the threshold.

import { type LiveResult, runLive } from "../kit/live-view.ts";
import { logLines, screenOf, type View } from "../messages/monitor.ts";
import {
	type ActivitySnapshot,
	blockedHere,
	readActivity,
} from "../pg/blocking-tree.ts";
import type { Db } from "../pg/db.ts";

export async function watchActivity(
	db: Db,
	o: View & { watchMs: number; durationMs?: number },
	signal: AbortSignal,
): Promise<{ live: LiveResult; last?: ActivitySnapshot; over: number }> {
	let last: ActivitySnapshot | undefined;
	let over = 0;
	const live = await runLive(
		{ intervalMs: o.watchMs, durationMs: o.durationMs, signal },
		async () => {
			const s = await readActivity(db);
			last = s;
			if (blockedHere(s, o.thresholdMs).length) over++;
			return { screen: screenOf(s, o), lines: logLines(s, o) };
		},
	);
	return { live, last, over };
}
