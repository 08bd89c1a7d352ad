// Ending the other client sessions on the target before a restore: each one named, a superuser's
// session (on Supabase, the platform's own) left alone.

import { EXIT, RunbookError } from "../kit/errors.ts";
import type { Db } from "../pg/db.ts";
import { readSessions } from "../pg/sessions.ts";
import { signalSession } from "../pg/signal.ts";
import { NAME, type RollbackCtx } from "./settings.ts";

/** The client sessions on the target other than this runbook's own. */
export async function otherSessions(db: Db) {
	return (await readSessions(db)).filter(
		(x) =>
			x.here &&
			x.backendType === "client backend" &&
			x.application !== `runbook:${NAME}`,
	);
}

/** The terminate step's plan: who is connected now, and the SQL that ends them. */
export async function terminatePlan(ctx: RollbackCtx): Promise<string[]> {
	const others = await otherSessions(await ctx.db());
	return [
		`-- ${others.length} other session(s) on ${ctx.target.direct.database} now${others.length ? `: ${others.map((x) => `pid ${x.pid} (${x.application || x.user})`).join(", ")}` : ""}`,
		"select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid();  -- except this runbook's own",
	];
}

/** Terminates the client sessions on the target other than this runbook's own. */
export async function terminateOthers(
	ctx: RollbackCtx,
	db: Db,
): Promise<number[]> {
	const done: number[] = [];
	for (const x of await otherSessions(db)) {
		ctx.log(
			`pid ${x.pid}: ${x.user ?? "?"} ${x.application || "(no application_name)"} ${x.client ?? "local"}, ${x.state ?? "?"}: ${x.query.replace(/\s+/g, " ").slice(0, 100)}`,
		);
		try {
			await signalSession(db, x.pid, "terminate");
			done.push(x.pid);
		} catch (err) {
			// A superuser's session (on Supabase: the platform's own, supabase_admin): not ours to end.
			if ((err as { code?: string }).code === "42501") {
				ctx.log(
					`  left alone: ${x.user} is a superuser, which ${ctx.target.direct.user} may not terminate`,
				);
				continue;
			}
			// It ended by itself between the listing and the signal.
			if (!(err instanceof RunbookError && err.exitCode === EXIT.usage))
				throw err;
		}
	}
	return done;
}
