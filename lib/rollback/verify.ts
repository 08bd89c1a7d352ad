// The rolled-back database (or the rehearsal's scratch copy) checked as validate would: row counts
// against the manifest (or, after the down SQL, against before), the history, drift, the smoke
// queries and, for a real rollback, SMOKE_TEST_CMD and VERIFY_CMD.

import { type HookRun, runHook, runHookOrAsk } from "../app/hooks.ts";
import { smokeQueries } from "../app/smoke.ts";
import { dropDatabase } from "../backup/restore.ts";
import { listTables } from "../backup/row-checksums.ts";
import { fmt, verifySummary } from "../messages/rollback.ts";
import { databaseDriftAgainst, explainDrift } from "../migrations/drift.ts";
import { readHistory } from "../migrations/history.ts";
import { migrationsDir } from "../migrations/prisma-cli.ts";
import { countTables } from "../pg/catalog.ts";
import { connect, type Db } from "../pg/db.ts";
import { makeTarget, type Target, withDatabase } from "../pg/target.ts";
import { hookOptions } from "./app-hooks.ts";
import { finishedNames } from "./choose-backup.ts";
import { targetDb } from "./restore-run.ts";
import { type Results, results, type Verification } from "./results.ts";
import { NAME, type RollbackCtx } from "./settings.ts";

type Counts = Verification["counts"];

/** --mode down: every table as many rows as before the down SQL (those it dropped aside). */
async function downCounts(db: Db, r: Results, tables: string[]) {
	const before = r.applied?.countsBefore ?? {};
	const now = await countTables(db, tables);
	const counts: Counts = Object.keys(before).map((t) => ({
		table: t,
		expected:
			t === "_prisma_migrations"
				? before[t] - (r.applied?.deletedRows ?? 0)
				: before[t],
		actual: now[t] ?? null,
	}));
	const dropped = new Set(
		(r.down?.losses ?? [])
			.filter((l) => l.kind === "table")
			.map((l) => l.table.replace(/^public\./, "")),
	);
	const problems = counts
		.filter((c) => !dropped.has(c.table) && c.actual !== c.expected)
		.map(
			(c) =>
				`table ${c.table}: ${fmt(c.actual)} rows, ${fmt(c.expected)} before the down SQL`,
		);
	return { counts, problems };
}

/** A restore: every table as many rows as the manifest says, plus the rows put back. */
async function restoreCounts(db: Db, r: Results, tables: string[]) {
	const expected = { ...(r.backup?.row_counts ?? {}) };
	const putBack = r.putBack?.putBack;
	for (const p of putBack ?? [])
		expected[p.table] = (expected[p.table] ?? 0) + p.inserted;
	const now = await countTables(db, [
		...new Set([...Object.keys(expected), ...tables]),
	]);
	const counts: Counts = Object.keys(now)
		.sort()
		.map((t) => ({ table: t, expected: expected[t] ?? null, actual: now[t] }));
	const problems = counts
		.filter((c) => c.actual !== c.expected)
		.map(
			(c) =>
				`table ${c.table}: ${fmt(c.actual)} rows, the manifest${putBack?.length ? " and the rows put back say" : " says"} ${fmt(c.expected)}`,
		);
	return { counts, problems };
}

/** SMOKE_TEST_CMD (or the operator) and VERIFY_CMD, after a real rollback. */
async function appHooks(ctx: RollbackCtx): Promise<HookRun[]> {
	const opts = hookOptions(ctx);
	const byHand = "check the app's main pages and its API by hand";
	const hooks = [await runHookOrAsk("SMOKE_TEST_CMD", byHand, opts)];
	const verifyHook = await runHook("VERIFY_CMD", opts);
	if (verifyHook) hooks.push(verifyHook);
	return hooks;
}

async function verifyDatabase(
	ctx: RollbackCtx,
	r: Results,
	db: Db,
	target: Target,
): Promise<Verification> {
	const mode = ctx.settings.mode;
	const m = r.backup;
	const tables = await listTables(db);
	const { counts, problems } =
		mode === "down"
			? await downCounts(db, r, tables)
			: await restoreCounts(db, r, tables);
	ctx.log(
		`row counts: ${counts.length} tables, ${problems.length ? `${problems.length} differ` : "all as expected"}`,
	);

	const h = await readHistory(db, migrationsDir(ctx.env));
	const applied = finishedNames(h);
	if (mode !== "down" && m && h.latestApplied !== m.latest_migration)
		problems.push(
			`latest applied migration is ${h.latestApplied ?? "none"}, the backup's was ${m.latest_migration ?? "none"}`,
		);
	const still = applied.filter((n) => r.later.includes(n));
	if (mode === "down" && still.length)
		problems.push(`_prisma_migrations still records ${still.join(", ")}`);
	const pending = h.issues
		.filter((i) => i.kind === "pending")
		.map((i) => i.migration);
	for (const i of h.issues.filter((x) => x.kind !== "pending"))
		problems.push(`migration ${i.migration}: ${i.detail}`);
	if (pending.length)
		ctx.log(
			`still in the migrations folder, not applied (expected until the files are reverted): ${pending.join(", ")}`,
		);
	const drift = await databaseDriftAgainst(
		target,
		ctx.env,
		applied,
		ctx.signal,
	);
	const explained = explainDrift(drift);
	for (const [i, sql] of drift.entries())
		problems.push(`drift: ${explained[i] ?? "differs"} (${sql})`);
	ctx.log(
		drift.length
			? `drift against the ${applied.length} applied migrations: ${drift.length} statement(s)`
			: `no drift: the schema is what the ${applied.length} applied migrations build`,
	);

	const smoke = await smokeQueries(db);
	for (const q of smoke.filter((x) => x.error))
		problems.push(`smoke query failed: ${q.sql}: ${q.error}`);
	ctx.log(
		`${smoke.length} smoke queries over ${new Set(smoke.map((q) => q.table)).size} tables`,
	);
	const hooks = mode === "rehearse" ? [] : await appHooks(ctx);
	for (const hk of hooks)
		if (hk.outcome === "failed")
			problems.push(
				`${hk.name} failed${hk.exitCode !== undefined ? ` (exit ${hk.exitCode})` : ""}: ${hk.output.split("\n").slice(-2).join(" ")}`,
			);
	return { problems, counts, drift, smokeQueries: smoke.length, hooks };
}

/** The verify step: the target (or the rehearsal's scratch copy, dropped afterwards) checked. */
export async function verifyRollback(ctx: RollbackCtx) {
	const r = results(ctx);
	const scratch = r.restore?.scratch;
	const target = scratch
		? makeTarget(
				withDatabase(ctx.target.direct, scratch).url,
				undefined,
				ctx.env,
			)
		: ctx.target;
	const db = scratch
		? await connect(target.direct, `runbook:${NAME}`)
		: await targetDb(ctx);
	try {
		const v = await verifyDatabase(ctx, r, db, target);
		for (const p of v.problems) ctx.warn(p);
		return {
			status: v.problems.length ? ("problem" as const) : ("ok" as const),
			summary: verifySummary(v, ctx.settings.mode === "down"),
			data: v,
			value: v,
		};
	} finally {
		if (scratch) {
			await db.end().catch(() => {});
			await dropDatabase(await ctx.db(), scratch);
			ctx.log(`dropped ${scratch}`);
		}
	}
}
