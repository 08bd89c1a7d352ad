// --mode down: the down SQL applied with the history's rows deleted, in one transaction under
// lock_timeout, retried after a lock timeout naming who holds the lock.

import { listTables } from "../backup/row-checksums.ts";
import { formatMs } from "../kit/format.ts";
import { applyDown, historySql } from "../migrations/down.ts";
import { countTables } from "../pg/catalog.ts";
import { lockHolders } from "../pg/session-checks.ts";
import {
	type Chosen,
	type DownApplied,
	type DownPlan,
	results,
} from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

export function applyDownPlan(ctx: RollbackCtx): string[] {
	const s = ctx.settings;
	const sql = results(ctx).down?.down.statements ?? [
		"<the down SQL from the step above>",
	];
	return [
		"BEGIN;",
		`SET LOCAL lock_timeout = ${s.lockTimeoutMs}; SET LOCAL statement_timeout = ${s.statementTimeoutMs};`,
		"SELECT pg_try_advisory_xact_lock(72707369);  -- Prisma Migrate's lock: never alongside a deploy",
		...sql,
		historySql(ctx.result<Chosen>("choose").later),
		"COMMIT;",
	];
}

export async function applyDownSql(ctx: RollbackCtx) {
	const s = ctx.settings;
	const db = await ctx.db();
	const { down, losses } = ctx.result<DownPlan>("down-sql");
	const touched = [...new Set(losses.map((l) => l.table))];
	let countsBefore: Record<string, number> = {};
	const out = await applyDown(
		db,
		down.statements,
		ctx.result<Chosen>("choose").later,
		{
			lockTimeoutMs: s.lockTimeoutMs,
			statementTimeoutMs: s.statementTimeoutMs,
			retries: s.retries,
			signal: ctx.signal,
			async before(tx) {
				countsBefore = (await countTables(tx, await listTables(tx))) as Record<
					string,
					number
				>;
			},
			async onLockTimeout(attempt, delayMs) {
				ctx.warn(
					`attempt ${attempt} gave up on a lock after ${formatMs(s.lockTimeoutMs)} (rolled back, nothing changed); retrying in ${formatMs(delayMs)}`,
				);
				for (const x of await lockHolders(db, touched))
					ctx.warn(
						`lock held by pid ${x.pid} (${x.application || x.user}, ${x.state}) on ${x.table}: ${x.query.slice(0, 100)}`,
					);
			},
		},
	);
	const value: DownApplied = {
		attempts: out.attempts,
		deletedRows: out.deletedRows,
		countsBefore,
	};
	return {
		summary: `${down.statements.length} statement(s) applied and ${out.deletedRows} _prisma_migrations row(s) removed, in one transaction`,
		value,
	};
}
