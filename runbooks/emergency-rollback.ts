#!/usr/bin/env -S node --import tsx --
// The seed's "Emergency Rollback Procedure" as one command for on-call: restore a verified backup
// atomically, --rehearse it, or --mode down (undo migrations, keep the data); then the files.

import { describeBackup } from "../lib/backup/archive.ts";
import { runRunbook, type Step } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/rollback.ts";
import { appHook, appHookPlan } from "../lib/rollback/app-hooks.ts";
import {
	chooseBackup,
	choosePutBack,
	readStart,
	verifyChosen,
} from "../lib/rollback/choose-backup.ts";
import { confirmRollback } from "../lib/rollback/confirm.ts";
import { applyDownPlan, applyDownSql } from "../lib/rollback/down-apply.ts";
import { chooseDown, planDown } from "../lib/rollback/down-plan.ts";
import { filesPlan, migrationFiles } from "../lib/rollback/git-step.ts";
import { putBack, putBackLater, safetyId } from "../lib/rollback/new-rows.ts";
import { stoppedState, summarize, summary } from "../lib/rollback/report.ts";
import {
	rehearsePlan,
	rehearseRestore,
	restorePlan,
	restoreTarget,
	targetDb,
} from "../lib/rollback/restore-run.ts";
import { type Chosen, midway, results } from "../lib/rollback/results.ts";
import { takeSafetyBackup } from "../lib/rollback/safety-backup.ts";
import { terminateOthers, terminatePlan } from "../lib/rollback/sessions.ts";
import {
	NAME,
	parseSettings,
	type RollbackCtx,
	type Settings,
} from "../lib/rollback/settings.ts";
import { verifyRollback } from "../lib/rollback/verify.ts";

type RollbackStep = Step<unknown, Settings>;

/** In-mode steps have nothing to do once step 1 found nothing (no backup, nothing to roll back). */
const nothingToDo = (ctx: RollbackCtx) =>
	ctx.result<Chosen>("choose").nothing ?? false;

/** Step 1: the server and the history, then the mode's own choice. */
const choose = (
	pick: typeof chooseBackup | typeof chooseDown | typeof choosePutBack,
): RollbackStep => ({
	id: "choose",
	title: "Choose what to roll back to",
	run: async (ctx) => pick(ctx, await readStart(ctx)),
});

const verifyBackup: RollbackStep = {
	id: "verify-backup",
	title: "Verify the backup: sha256 and pg_restore --list",
	skip: nothingToDo,
	run: verifyChosen,
};

const downSql: RollbackStep = {
	id: "down-sql",
	title:
		"Compute the down SQL (prisma migrate diff), lint it, name the data it drops",
	skip: nothingToDo,
	run: planDown,
};

const confirm: RollbackStep = {
	id: "confirm",
	title: "Confirm the rollback",
	skip: (ctx) =>
		nothingToDo(ctx) ||
		(ctx.dryRun && ctx.settings.mode !== "restore"
			? "dry run: nothing to confirm"
			: false),
	run: confirmRollback,
};

/** Steps 5 and 13: the app stopped or started by its hook, or by the operator. */
const app = (which: keyof typeof say.APP_HOOK): RollbackStep => ({
	id: which,
	title: say.APP_HOOK[which].title,
	kind: "change",
	skip: nothingToDo,
	plan: (ctx) => appHookPlan(ctx, which),
	run: (ctx) => appHook(ctx, which),
});
const [stopApp, startApp] = [app("stop"), app("start")];

const safetyBackup: RollbackStep = {
	id: "safety",
	title: "Safety backup of the current state",
	kind: "write",
	skip: (ctx) =>
		nothingToDo(ctx) ||
		(ctx.settings.skipSafetyBackup
			? "--skip-safety-backup: this rollback cannot be undone from a backup"
			: false),
	plan: (ctx) => describeBackup(ctx.target.direct, { env: ctx.env }),
	run: takeSafetyBackup,
};

const terminate: RollbackStep = {
	title: "Terminate the other sessions on the database",
	kind: "destroy",
	skip: nothingToDo,
	plan: terminatePlan,
	async run(ctx) {
		const done = await terminateOthers(ctx, await ctx.db());
		return {
			summary: done.length
				? `terminated ${done.length} session(s)`
				: "no other session was connected",
		};
	},
};

const restore: RollbackStep = {
	id: "restore",
	title: "Restore atomically",
	kind: "destroy",
	skip: nothingToDo,
	plan: restorePlan,
	run: restoreTarget,
};

const putBackRows: RollbackStep = {
	id: "put-back",
	title: "Put back the rows inserted since the backup (one transaction)",
	kind: "change",
	skip: (ctx) =>
		nothingToDo(ctx) ||
		(ctx.settings.mode === "restore" && !ctx.has("safety") && !ctx.dryRun
			? "no safety backup (--skip-safety-backup): nothing to take the rows from"
			: false),
	plan: (ctx) =>
		say.putBackPlan(
			safetyId(ctx) ?? "the safety backup",
			results(ctx).backup?.id,
		),
	run: async (ctx) => putBack(ctx, await targetDb(ctx)),
	onFailure: (ctx) =>
		say.putBackStopped(
			ctx.settings.mode === "restore" ? results(ctx).backup?.id : undefined,
		),
	resume: putBackLater,
};

const applyDown: RollbackStep = {
	id: "apply-down",
	title: "Apply the down SQL and update _prisma_migrations (one transaction)",
	kind: "destroy",
	skip: nothingToDo,
	plan: applyDownPlan,
	run: applyDownSql,
};

const rehearse: RollbackStep = {
	id: "rehearse",
	title: "Rehearse: restore into a scratch database, timed",
	kind: "write",
	skip: nothingToDo,
	plan: rehearsePlan,
	run: rehearseRestore,
	onFailure: () => say.rehearseStopped(midway.scratch),
};

const migrationFilesStep: RollbackStep = {
	id: "files",
	title: "Migration files: what to revert in git",
	kind: "write",
	skip: nothingToDo,
	plan: (ctx) => filesPlan(ctx, results(ctx).git),
	async run(ctx) {
		const later = ctx.result<Chosen>("choose").later;
		const out = await migrationFiles(ctx, await targetDb(ctx), later);
		return { status: out.status, summary: out.summary, value: out.git };
	},
};

const verify: RollbackStep = {
	id: "verify",
	title: "Verify: row counts, validate checks, smoke test",
	skip: (ctx) =>
		nothingToDo(ctx) ||
		(ctx.dryRun ? "dry run: nothing was rolled back" : false),
	run: verifyRollback,
};

const summaryStep: RollbackStep = {
	title: "Summary",
	run: async (ctx) => summary(ctx),
};

/**
 * Every mode numbers the same 15 steps (the docs and the operators' notes name them by number):
 * a mode's list is step 1 and its own steps, in order; the others show as skipped.
 */
// biome-ignore format: the steps in number order
const ORDER = [
	verifyBackup, downSql, confirm, stopApp, safetyBackup, terminate, restore, putBackRows,
	applyDown, rehearse, migrationFilesStep, startApp, verify, summaryStep,
];
const numbered = (first: RollbackStep, ...own: RollbackStep[]) => [
	first,
	...ORDER.map((step) =>
		own.includes(step)
			? step
			: {
					...step,
					id: undefined,
					skip: (ctx: RollbackCtx) => say.notPartOf(ctx.settings.mode),
				},
	),
];

await runRunbook<unknown, Settings>({
	name: NAME,
	summary:
		"Roll the database back: restore a verified pre-deploy backup atomically (or --mode down: undo migrations keeping the data), then revert the migration files and verify.",
	description: say.DESCRIPTION,
	flags: {
		backup: {
			type: "string",
			value: "<id>",
			description:
				"Restore this backup (default: the newest verified pre-deploy backup of the target; with --rehearse, the newest verified backup of any kind).",
		},
		mode: {
			type: "string",
			value: "<restore|down>",
			default: "restore",
			description:
				"restore a backup, or roll migrations back with down SQL (keeps the data).",
		},
		to: {
			type: "string",
			value: "<migration>",
			description:
				"With --mode down: the last migration to keep (folder name).",
		},
		rehearse: {
			type: "boolean",
			description:
				"Restore into a scratch database, verify, time it, drop it; the target is not touched.",
		},
		method: {
			type: "string",
			value: "<transaction|swap>",
			default: "transaction",
			description: "How to restore atomically (see above).",
		},
		"keep-new-rows": {
			type: "boolean",
			description:
				"After the restore, put back the rows inserted since the backup (from the safety backup, one transaction); asked interactively.",
		},
		"put-back": {
			type: "string",
			value: "<safety-id>",
			description:
				"Later, after a restore: put back the rows this safety backup holds that --backup <id> (the restored one) does not.",
		},
		"skip-safety-backup": {
			type: "boolean",
			description:
				"Skip the backup of the current state (then the rollback cannot be undone).",
		},
		"git-revert": {
			type: "string",
			value: "<commit>",
			repeatable: true,
			description:
				"Run git revert of this commit (one that added a migration being rolled back).",
		},
		"lock-timeout": {
			type: "string",
			value: "<duration>",
			default: "5s",
			description:
				"Longest wait for a lock (restore: on the old tables; down: per statement).",
		},
		"statement-timeout": {
			type: "string",
			value: "<duration>",
			default: "5min",
			description: "With --mode down: longest run of one statement.",
		},
		retries: {
			type: "number",
			value: "<n>",
			default: 3,
			description:
				"Retries after a lock timeout (sessions terminated again / backoff 1s, 2s, 4s ...).",
		},
		jobs: {
			type: "number",
			value: "<n>",
			default: 2,
			description: "With --method swap: pg_restore --jobs.",
		},
		"maintenance-db": {
			type: "string",
			value: "<name>",
			default: "postgres",
			description:
				"With --method swap: the database to connect to for the rename.",
		},
	},
	env: say.ENV_HELP,
	examples: [
		"npx tsx runbooks/emergency-rollback.ts                       # propose the newest pre-deploy backup, ask, restore",
		"npx tsx runbooks/emergency-rollback.ts --dry-run",
		"npx tsx runbooks/emergency-rollback.ts --backup faceswap-20250107T031500Z --yes --confirm faceswap",
		"npx tsx runbooks/emergency-rollback.ts --rehearse --yes      # nightly: prove the newest backup restores",
		"npx tsx runbooks/emergency-rollback.ts --mode down --to 20241230000000_comprehensive_schema",
		"npx tsx runbooks/emergency-rollback.ts --yes --confirm faceswap --git-revert 3f2c1ab",
	],
	exclusive: true,
	settings: ({ flags }) => parseSettings(flags),
	mode: (s) => s.mode,
	// biome-ignore format: one procedure a mode, read left to right
	steps: {
		restore: numbered(choose(chooseBackup), verifyBackup, confirm, stopApp, safetyBackup,
			terminate, restore, putBackRows, migrationFilesStep, startApp, verify, summaryStep),
		rehearse: numbered(choose(chooseBackup), verifyBackup, rehearse, verify, summaryStep),
		down: numbered(choose(chooseDown), downSql, confirm, stopApp, safetyBackup, applyDown,
			migrationFilesStep, startApp, verify, summaryStep),
		"put-back": numbered(choose(choosePutBack), verifyBackup, confirm, putBackRows, summaryStep),
	},
	// What the database holds when a step of a real rollback stops midway (read steps: nothing changed).
	onFailure: (ctx, step) =>
		step.kind || step.id === "verify" ? stoppedState(ctx) : undefined,
	summarize,
});
