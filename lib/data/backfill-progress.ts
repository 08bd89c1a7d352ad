// Shows a running backfill: a progress bar (plain lines off a terminal) over the rows, and notes
// for retries, back-offs, reconnects and catch-up; keeps the rows updated so far for a stop.

import { type Progress, startProgress } from "../kit/progress.ts";
import { batchDetail, eventNote } from "../messages/backfill.ts";
import { type BackfillEvent, describeCheckpoint } from "./backfill.ts";

/** How often a note of one kind may show: back-offs repeat every batch while a replica lags. */
const EVERY_MS: Partial<Record<BackfillEvent["kind"], number>> = {
	backoff: 10_000,
};

export class BackfillProgress {
	/** Rows updated so far in all, as of the last committed batch. */
	updated = 0;
	private bar: Progress | undefined;
	private lastNote = new Map<string, number>();

	/** Shows one engine event under the step (log: the step's indented output). */
	show(
		e: BackfillEvent,
		log: (text: string) => void,
		maxCatchUpRounds: number,
	) {
		if (e.kind === "start") {
			if (e.resumedFrom) log(`resuming: ${describeCheckpoint(e.resumedFrom)}`);
			this.bar = startProgress({
				unit: "rows",
				total: Math.max(e.estimatedRows, 1),
				estimated: true,
				initial: e.resumedFrom?.rows_scanned ?? 0,
			});
			return;
		}
		if (e.kind === "batch") {
			this.updated = e.totalUpdated;
			this.bar?.update(
				e.phase === "walk" ? e.totalScanned : e.estimatedRows,
				batchDetail(e),
			);
			return;
		}
		const text = eventNote(e, maxCatchUpRounds);
		const now = Date.now();
		const every = EVERY_MS[e.kind] ?? 0;
		if (!text || (every && now - (this.lastNote.get(e.kind) ?? 0) < every))
			return;
		this.lastNote.set(e.kind, now);
		if (this.bar) this.bar.note(text);
		else log(text);
	}

	stop() {
		this.bar?.stop();
		this.bar = undefined;
	}
}
