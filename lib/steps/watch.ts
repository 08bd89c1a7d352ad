// Watching the database for a while after a change: sessions waiting on locks (a line each time),
// a plain line every 10s otherwise, then pg_stat_database's counts. Value: the WatchReport.

import type { Step } from "../kit/runner.ts";
import { describeSession } from "../messages/sessions.ts";
import { type WatchReport, watchLocks } from "../pg/lock-watch.ts";
import { type Placement, placeStep } from "./placement.ts";

export function watchLocksStep<P>(
	o: Placement<P> & { id: string; seconds: (settings: P) => number },
): Step<unknown, P> {
	return placeStep(o, "Monitor: blocked sessions, lock waits, errors", {
		async run(ctx) {
			const seconds = o.seconds(ctx.settings);
			let lastPrint = 0;
			const w: WatchReport = await watchLocks(await ctx.db(), {
				seconds,
				signal: ctx.signal,
				onSample(elapsed, waiting) {
					for (const x of waiting)
						ctx.warn(
							`waiting ${x.waitS}s on ${x.table ?? "a lock"}: ${describeSession(x)} (blocked by ${x.blockedBy.join(", ")})`,
						);
					if (!waiting.length && elapsed - lastPrint >= 10) {
						lastPrint = elapsed;
						ctx.log(
							`${Math.round(elapsed)}s of ${seconds}s: no session waiting on a lock`,
						);
					}
				},
			});
			const worrying = w.blocked.filter((x) => x.waitS >= 1);
			ctx.log(
				`${w.seconds}s: ${w.blocked.length ? `${w.blocked.length} session(s) waited on locks, longest ${w.maxWaitS}s` : "no session waited on a lock"}; ` +
					`${w.delta.commits} commits, ${w.delta.rollbacks} rollbacks, ${w.delta.deadlocks} deadlocks`,
			);
			return {
				status: worrying.length || w.delta.deadlocks ? "warning" : "ok",
				summary: `${w.blocked.length} blocked session(s) (longest ${w.maxWaitS}s), ${w.delta.rollbacks} rollbacks, ${w.delta.deadlocks} deadlocks`,
				data: w,
				value: w,
			};
		},
	});
}
