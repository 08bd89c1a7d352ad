#!/usr/bin/env -S node --import tsx --

// The seed's "Migration Troubleshooting": diagnoses failed, unfinished and hanging migrations,
// drift and NOT NULL columns without a default, each with the commands that resolve it; acts on request.

import {
	actionFromFlags,
	chooseAction,
	refuseReset,
} from "../lib/diagnose/actions.ts";
import { readMigrationState } from "../lib/diagnose/diagnosis.ts";
import { checkDrift } from "../lib/diagnose/drift.ts";
import {
	resetStep,
	resolveStep,
	signalStep,
} from "../lib/diagnose/fix-steps.ts";
import { findStuckMigrations, lockWaitsHere } from "../lib/diagnose/locks.ts";
import { checkAgain } from "../lib/diagnose/recheck.ts";
import { findRequiredFields } from "../lib/diagnose/required-fields.ts";
import * as found from "../lib/diagnose/results.ts";
import { style } from "../lib/kit/output.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/diagnose.ts";
import { migrationsDir } from "../lib/migrations/prisma-cli.ts";
import { readActivity } from "../lib/pg/blocking-tree.ts";

const { report, where } = found;

await runRunbook<unknown, found.Settings>({
	name: "troubleshoot",
	summary:
		"Diagnose failed or hanging migrations, drift and NOT NULL columns without default; offer the fixes.",
	description:
		"Reads _prisma_migrations, pg_stat_activity/pg_locks and Prisma's migrate diff, and reports each problem\n" +
		"with the exact commands that resolve it. Changes something only when asked: interactively by choosing\n" +
		"(then confirming), or with one of --resolve-rolled-back, --resolve-applied, --cancel-blocker (y/n or\n" +
		"--yes), --terminate-blocker, --reset (type the database name, or --yes --confirm <database>).\n" +
		"Marking a migration rolled back or applied does what `prisma migrate resolve` does, directly on\n" +
		"_prisma_migrations (Prisma's resolve needs the native engine); --engine-native or PRISMA_ENGINE=native\n" +
		"runs Prisma's own instead. Reset (`prisma migrate reset`) refuses any target that is not local or that\n" +
		"is marked production (exit 3). Exit 0 when nothing is wrong (or everything found was resolved), 1 otherwise.",
	flags: {
		"resolve-rolled-back": {
			type: "string",
			value: "<migration>",
			description:
				"Mark a failed migration rolled back (as prisma migrate resolve --rolled-back).",
		},
		"resolve-applied": {
			type: "string",
			value: "<migration>",
			description:
				"Mark a migration applied, its changes made by hand (as prisma migrate resolve --applied).",
		},
		"cancel-blocker": {
			type: "boolean",
			description:
				"Cancel the statement that holds the lock a migration waits for.",
		},
		"terminate-blocker": {
			type: "boolean",
			description:
				"Terminate the session that holds the lock a migration waits for (rolls back its transaction).",
		},
		reset: {
			type: "boolean",
			description:
				"Local databases only: drop everything and reapply all migrations (prisma migrate reset).",
		},
		"skip-drift": {
			type: "boolean",
			description:
				"Skip the drift check (it runs Prisma three times, several seconds).",
		},
		"engine-native": {
			type: "boolean",
			description:
				"Resolve through Prisma's CLI with its native engine (downloaded by Prisma).",
		},
	},
	env: {
		PRISMA_ENGINE:
			"Prisma schema engine: wasm (default, offline) or native (also makes resolve use Prisma's CLI).",
	},
	examples: [
		"npx tsx runbooks/troubleshoot.ts",
		"npx tsx runbooks/troubleshoot.ts --skip-drift --json | jq '.diagnoses'",
		"npx tsx runbooks/troubleshoot.ts --resolve-rolled-back 20241230000000_comprehensive_schema --yes",
		"npx tsx runbooks/troubleshoot.ts --terminate-blocker --yes --confirm faceswap",
		"npx tsx runbooks/troubleshoot.ts --reset            # local databases only",
	],
	settings: ({ env, flags }) => ({
		action: actionFromFlags(flags, migrationsDir(env)),
		native: Boolean(flags["engine-native"]) || env.PRISMA_ENGINE === "native",
		skipDrift: Boolean(flags["skip-drift"]),
	}),
	steps: [
		{
			id: "action",
			title: "Check the requested action",
			async run(ctx) {
				const action = ctx.settings.action;
				if (action?.kind === "reset") refuseReset(ctx.target);
				return { summary: say.requested(action) };
			},
		},
		{
			id: "history",
			title: "Read the migration history (_prisma_migrations)",
			async run(ctx) {
				const read = await readMigrationState(
					await ctx.db(),
					migrationsDir(ctx.env),
				);
				const { h, unfinished, holders } = read;
				for (const l of say.historyLine(h, where(ctx).migrationsDir))
					ctx.log(l);
				const diagnoses = say.historyDiagnoses(
					where(ctx),
					h,
					unfinished,
					holders,
				);
				const data = {
					latest_applied: h.latestApplied,
					issues: h.issues,
					unfinished,
				};
				return report(
					ctx,
					diagnoses,
					"every migration applied, none failed",
					data,
					read,
				);
			},
		},
		{
			id: "locks",
			title:
				"Look for a migration hanging on a lock (pg_locks, pg_blocking_pids)",
			async run(ctx) {
				const s = await readActivity(await ctx.db());
				const locks = findStuckMigrations(s, found.history(ctx).holders);
				const ok = say.noMigrationWaits(lockWaitsHere(s));
				const data = {
					waiting_migrations: locks.waiting.map((w) => w.pid),
					tree: s.tree,
				};
				return report(ctx, say.lockDiagnoses(locks, where(ctx)), ok, data, {
					s,
					locks,
				});
			},
		},
		{
			id: "drift",
			title: "Check drift against the applied migrations (prisma migrate diff)",
			skip: (ctx) =>
				say.driftSkip({
					skipDrift: ctx.settings.skipDrift,
					tableMissing: found.history(ctx).h.tableMissing,
					busy: found.busy(ctx),
				}),
			async run(ctx) {
				for (const c of say.driftCheckCommands(where(ctx).migrationsDir))
					ctx.log(c);
				const { h, unfinished } = found.history(ctx);
				const drift = await checkDrift(ctx.target, ctx.env, h, ctx.signal);
				const failed = unfinished.map((r) => r.migration_name);
				const diagnoses = [
					...say.driftDiagnoses(drift, failed, where(ctx)),
					...say.schemaDriftDiagnoses(drift.migrationsVsSchema),
				];
				const ok =
					"no drift: the database is what its applied migrations build";
				return report(ctx, diagnoses, ok, drift, { drift });
			},
		},
		{
			id: "required",
			title: "Look for NOT NULL columns added without a default",
			async run(ctx) {
				const { h, unfinished } = found.history(ctx);
				const schema = found.drift(ctx).migrationsVsSchema;
				const r = await findRequiredFields(
					await ctx.db(),
					h,
					unfinished,
					schema,
				);
				ctx.log(say.checkedSources(r.sources));
				return report(
					ctx,
					r.found.map(say.requiredFieldDiagnosis),
					"none found",
					r.found,
				);
			},
		},
		{ id: "choose", title: "Choose what to do", run: chooseAction },
		resolveStep(
			"rolled-back",
			"Mark the failed migration rolled back (_prisma_migrations)",
			"Check the state with:",
		),
		resolveStep(
			"applied",
			"Mark the migration applied (_prisma_migrations)",
			"Check with:",
		),
		signalStep(
			"cancel",
			"Cancel the statement blocking the migration",
			"change",
		),
		signalStep(
			"terminate",
			"Terminate the session blocking the migration (rolls back its transaction)",
			"destroy",
		),
		resetStep(
			"Reset the local database (prisma migrate reset: drops all data, reapplies every migration)",
		),
		{
			id: "conclude",
			title: "Check again and conclude",
			async run(ctx) {
				const done = found.doneSoFar(ctx);
				const again =
					done.length && !ctx.dryRun ? await checkAgain(ctx) : undefined;
				const remaining = (again?.diagnoses ?? found.diagnoses(ctx)).filter(
					(d) => d.problem,
				);
				if (done.length) ctx.log(`Done: ${done.join("; ")}.`);
				for (const d of remaining)
					ctx.log(style.red(`still to resolve: ${d.title}`));
				return {
					status: remaining.length ? "problem" : "ok",
					summary: say.conclusion(remaining.length, done.length),
					value: { remaining, drift: again?.measured },
				};
			},
		},
	],
	summarize: found.summary,
});
