// --mode down: the migrations after --to (checked against the history before anything changes),
// the down SQL Prisma computes for them, linted, with the data it drops; and, for restore mode,
// what down mode would do instead.

import { refusal, usageError } from "../kit/errors.ts";
import { rerunCommand } from "../kit/rerun.ts";
import * as say from "../messages/rollback.ts";
import {
	computeDownSql,
	dataLosses,
	describeDownDiff,
	describeLoss,
	measureLosses,
} from "../migrations/down.ts";
import { describeFindings, lintSql } from "../migrations/lint.ts";
import { displayPath, migrationsDir } from "../migrations/prisma-cli.ts";
import type { Start } from "./choose-backup.ts";
import { checkGitRevert } from "./git-step.ts";
import type { Chosen, DownPlan } from "./results.ts";
import { type RollbackCtx, SCRIPT } from "./settings.ts";

/** --mode down, step 1: the migration to go back to, and the later ones. */
export async function chooseDown(ctx: RollbackCtx, start: Start) {
	const { history: h, applied } = start;
	const to = ctx.settings.to;
	if (!h.local.some((x) => x.name === to))
		throw usageError(
			`--to ${to}: there is no such migration in ${displayPath(migrationsDir(ctx.env))}.`,
			`Pass a folder name from it, e.g. ${h.local.at(-2)?.name ?? "20241230000000_comprehensive_schema"}.`,
		);
	const failed = h.issues.filter((i) => i.kind === "failed");
	if (failed.length)
		throw refusal(
			say.downAfterFailed(failed.map((i) => i.migration)),
			"See npx tsx runbooks/validate.ts; resolve it first.",
		);
	if (!applied.includes(to))
		throw refusal(
			`--to ${to} is not applied to ${ctx.target.direct.display}: there is nothing after it to roll back. Nothing was changed.`,
		);
	const later = applied.filter((n) => n > to);
	const changed = h.issues.filter(
		(i) => i.kind === "checksum_mismatch" && applied.includes(i.migration),
	);
	if (changed.length)
		throw refusal(
			say.downOfEdited(changed.map((i) => i.migration)),
			"Check out the files as they were applied, or restore the pre-deploy backup instead (without --mode down).",
		);
	ctx.log(
		`latest applied: ${h.latestApplied ?? "(none)"}; roll back to: ${to}`,
	);
	const none = { repository: null, files: [], reverted: [] };
	if (!later.length) {
		const nothing = `nothing to roll back: ${to} is the latest applied migration`;
		return {
			summary: nothing,
			value: { ...start, nothing, later, git: none } as Chosen,
		};
	}
	for (const name of later) ctx.log(say.toRollBack(h, name));
	const local = new Set(h.local.map((x) => x.name));
	const git = await checkGitRevert(
		ctx,
		later.filter((n) => local.has(n)),
	);
	return {
		summary: `roll back ${later.length} migration(s) after ${to}: ${later.join(", ")}`,
		data: { later },
		value: { ...start, later, git } as Chosen,
	};
}

/** Prisma's down SQL from the migrations applied now back to `to`. */
const downSqlTo = (ctx: RollbackCtx, chosen: Chosen, to: string) =>
	computeDownSql(ctx.target, ctx.env, chosen.applied, to, ctx.signal);

/** Step 3: the down SQL, shown and linted, and the data it drops. */
export async function planDown(ctx: RollbackCtx) {
	const chosen = ctx.result<Chosen>("choose");
	const to = ctx.settings.to;
	ctx.log(describeDownDiff(to));
	const down = await downSqlTo(ctx, chosen, to);
	if (down.statements.length === 0) {
		ctx.warn(
			`the migrations after ${to} change nothing Prisma can see in the schema: the down SQL is empty; only _prisma_migrations changes.`,
		);
	} else {
		ctx.log("down SQL:");
		for (const line of down.statements)
			ctx.log(`  ${line.split("\n").join("\n  ")}`);
	}
	const lint = await lintSql(
		down.statements.join("\n\n"),
		"down SQL",
		[],
		String(chosen.serverMajor ?? 15),
	);
	if (lint.findings.length)
		ctx.log(
			"squawk: dropped tables and columns are what a rollback is for; read the other findings as locks or rewrites to expect",
		);
	for (const line of describeFindings(lint)) ctx.log(line);
	const losses = await measureLosses(
		await ctx.db(),
		dataLosses(down.statements),
	);
	for (const l of losses) ctx.warn(`it ${describeLoss(l)}`);
	for (const name of chosen.later) {
		const sql = chosen.history.local.find((x) => x.name === name)?.sql ?? "";
		if (/\b(INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM)\b/i.test(sql))
			ctx.warn(
				`${name} also changed data (INSERT/UPDATE/DELETE): the down SQL undoes schema changes only, not those.`,
			);
	}
	const value: DownPlan = { down, losses };
	return {
		status:
			losses.length || lint.findings.length
				? ("warning" as const)
				: ("ok" as const),
		summary: `${down.statements.length} statement(s); ${losses.length ? losses.map(describeLoss).join("; ") : "drops no data"}`,
		data: { sql: down.statements, losses, findings: lint.findings },
		value,
	};
}

/** What --mode down would do instead of the restore: the migrations since the backup undone, rows kept. */
export async function downInstead(
	ctx: RollbackCtx,
	chosen: Chosen,
): Promise<string[]> {
	const to = chosen.backup?.manifest.latest_migration;
	if (!chosen.later.length || !to || !chosen.applied.includes(to)) return [];
	try {
		const down = await downSqlTo(ctx, chosen, to);
		const losses = await measureLosses(
			await ctx.db(),
			dataLosses(down.statements),
		);
		return say.downInstead(
			to,
			chosen.later,
			losses.map(describeLoss),
			rerunCommand(SCRIPT, { argv: [], add: ["--mode", "down", "--to", to] }),
		);
	} catch (err) {
		return [
			`--mode down cannot be offered (${(err as Error).message.split("\n")[0]}): the restore is the way back.`,
		];
	}
}
