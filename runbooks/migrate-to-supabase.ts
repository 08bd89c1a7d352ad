#!/usr/bin/env -S node --import tsx --
// The seed's "Local to Cloud Migration" (pg_dump > file; sed; psql < file; switch-db-env remote;
// npm run build), done properly: copy the app's schema and data (public, _prisma_migrations) from
// the local PostgreSQL into a Supabase project through its direct connection, without owners or
// grants and without touching the platform's schemas or roles; prove the copy equal row for row;
// validate it with Prisma; then point .env at the remote profile and run VERIFY_CMD.

import { PROFILE_ENV, type SwitchPlan } from "../lib/config/db-profiles.ts";
import {
	createExtensionSql,
	describeCopy,
	dropObjects,
} from "../lib/data/schema-copy.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/supabase.ts";
import { switchPlanLines } from "../lib/messages/switch.ts";
import { EXTENSIONS_SCHEMA, RECORD_DDL } from "../lib/pg/supabase.ts";
import { parseConnection } from "../lib/pg/target.ts";
import { askEveryStep } from "../lib/supabase-move/ask-every-step.ts";
import { type Checked, checkBothEnds } from "../lib/supabase-move/preflight.ts";
import {
	copyPlan,
	type MoveSettings,
	moveSettings,
	parseMemory,
	remoteTarget,
	sourceOf,
} from "../lib/supabase-move/settings.ts";
import { switchWhenAnswering } from "../lib/supabase-move/switch-env.ts";
import { tablesJson, verifyCopy } from "../lib/supabase-move/verify.ts";
import { verifyAgainst } from "../lib/supabase-move/verify-cmd.ts";

type Ctx = Context<unknown, MoveSettings>;

const checked = (ctx: Ctx) => ctx.result<Checked>("check");
const planOf = (ctx: Ctx) =>
	copyPlan(
		ctx.settings,
		checked(ctx).source.bytes,
		checked(ctx).run.snapshot ??
			(ctx.dryRun ? "<exported at run time>" : undefined),
	);
const skipWhenCopied = (ctx: Ctx) => {
	const { mode, previous } = checked(ctx).start;
	return mode === "resume" && previous ? say.alreadyCopied(previous) : false;
};

const steps: Step<unknown, MoveSettings>[] = [
	{
		id: "check",
		title:
			"Check both ends: versions, client tools, the target's public schema",
		async run(ctx) {
			const dotenv = ctx.flags.dotenv as string | undefined;
			const log = (l: string) => ctx.log(l);
			const db = await ctx.db();
			const c = await checkBothEnds(
				ctx.settings,
				ctx.target,
				db,
				ctx.env,
				dotenv,
				log,
			);
			for (const w of c.warnings) ctx.warn(w);
			const { mode, previous } = c.start;
			const source = {
				display: ctx.settings.source.display,
				major: c.source.major,
			};
			const target = {
				display: ctx.target.direct.display,
				major: c.targetMajor,
			};
			return {
				status: c.warnings.length ? "warning" : "ok",
				summary: say.checkedSummary(source, target, mode),
				data: {
					mode,
					tables: c.source.tables,
					source_bytes: c.source.bytes,
					previous_run: previous?.run_id ?? null,
				},
				value: c,
			};
		},
	},
	{
		title: "Clear this runbook's previous copy from the target's public schema",
		kind: "destroy",
		skip: (ctx) =>
			checked(ctx).start.mode === "restart" ? false : say.SKIPPED.noLeftovers,
		plan: (ctx) => [
			"begin;",
			...checked(ctx).start.leftovers.map((o) => o.drop),
			"commit;",
		],
		async run(ctx) {
			const { leftovers } = checked(ctx).start;
			await dropObjects(await ctx.db(), leftovers);
			return { summary: `dropped ${leftovers.length} objects from public` };
		},
		onFailure: (ctx) => say.STOPPED.clear(ctx.target.direct.database),
	},
	{
		title:
			"Create the extensions the app uses in the target's extensions schema",
		kind: "change",
		skip: (ctx) =>
			skipWhenCopied(ctx) ||
			(checked(ctx).toCreate.length ? false : say.SKIPPED.extensionsInstalled),
		plan: (ctx) =>
			checked(ctx).toCreate.map((e) =>
				createExtensionSql(e, EXTENSIONS_SCHEMA),
			),
		async run(ctx) {
			const db = await ctx.db();
			const { toCreate } = checked(ctx);
			for (const e of toCreate)
				await db.query(createExtensionSql(e, EXTENSIONS_SCHEMA));
			return { summary: toCreate.join(", ") };
		},
		onFailure: () => say.STOPPED.extensions,
	},
	{
		title:
			"Copy public and _prisma_migrations (pg_dump | pg_restore, no owners or grants)",
		kind: "change",
		skip: skipWhenCopied,
		plan: (ctx) => [
			...RECORD_DDL,
			"insert into migrate_to_supabase.runs (run_id, source, phase) values (<new id>, '<source>', 'copying');",
			`begin isolation level repeatable read read only; select pg_export_snapshot();   -- on the source, held until verified`,
			...describeCopy(planOf(ctx), ctx.settings.source, ctx.target.direct),
			"update migrate_to_supabase.runs set phase = 'copied' where run_id = <new id>;",
		],
		async run(ctx) {
			const { run, tools } = checked(ctx);
			const copy = await run.copy(
				() => planOf(ctx),
				ctx.target.direct,
				tools,
				await ctx.db(),
				{
					signal: ctx.signal,
					verbose: ctx.verbose,
					log: (l) => ctx.log(l),
					defer: (fn) => ctx.defer(fn),
				},
			);
			return {
				summary: say.copyOutcome(copy, planOf(ctx).jobs),
				data: {
					duration_ms: copy.durationMs,
					bytes: copy.bytes,
					run_id: run.runId,
				},
			};
		},
		onFailure: (ctx) =>
			say.copyStopped(
				planOf(ctx).jobs,
				checked(ctx).run.runId,
				ctx.target.direct.database,
			),
	},
	{
		title: "Reset sequences past the copied values",
		kind: "change",
		skip: skipWhenCopied,
		plan: () => [
			"select setval('public.<sequence>', greatest(max(<owning column>), <the source's last_value>), true);   -- for each sequence in public",
		],
		async run(ctx) {
			const n = await checked(ctx).run.resetSequences(await ctx.db(), (l) =>
				ctx.log(l),
			);
			return {
				summary: n
					? `${n} sequence(s)`
					: "no sequences in public (the app's ids are cuid() text)",
			};
		},
		onFailure: () => say.STOPPED.sequences,
	},
	{
		title:
			"Verify: every table's row count and row checksum, _prisma_migrations identical, Prisma validation",
		skip: (ctx) => (ctx.dryRun ? say.SKIPPED.dryRun : false),
		async run(ctx) {
			const { run, start } = checked(ctx);
			return verifyCopy(run, start, ctx.target, await ctx.db(), {
				jobs: Math.max(2, planOf(ctx).jobs),
				env: ctx.env,
				signal: ctx.signal,
				log: (l) => ctx.log(l),
				warn: (l) => ctx.warn(l),
			});
		},
		onFailure: () => say.STOPPED.verify,
		resume: (ctx) =>
			rerunCommand("runbooks/migrate-to-supabase.ts", {
				add: checked(ctx).start.mode === "resume" ? ["--restart"] : [],
			}),
	},
	{
		id: "switch",
		title:
			"Switch .env to the remote profile (DATABASE_URL = pooler, DIRECT_URL = direct)",
		kind: "write",
		skip: (ctx) =>
			ctx.settings.noSwitch
				? say.SKIPPED.noSwitch
				: checked(ctx).switchPlan?.unchanged
					? say.SKIPPED.switched
					: false,
		plan: (ctx) => {
			const plan = checked(ctx).switchPlan;
			return plan ? switchPlanLines(plan) : [];
		},
		async run(ctx) {
			const plan = checked(ctx).switchPlan as SwitchPlan;
			const backup = await switchWhenAnswering(plan, (l) => ctx.log(l));
			return {
				summary:
					"the app now uses Supabase (back: ./runbooks/switch-db-env.ts local)",
				data: { backup },
				value: backup,
			};
		},
		onFailure: () => say.STOPPED.switch,
	},
	{
		title: "Run VERIFY_CMD against Supabase",
		kind: "write",
		skip: (ctx) =>
			ctx.env.VERIFY_CMD?.trim() ? false : say.SKIPPED.noVerifyCmd,
		plan: (ctx) => [
			`${ctx.env.VERIFY_CMD}   (with DATABASE_URL/DIRECT_URL of the remote profile)`,
		],
		async run(ctx) {
			const log = (l: string) => ctx.log(l);
			return {
				summary: await verifyAgainst(ctx.target, ctx.env, ctx.signal, log),
			};
		},
		onFailure: (ctx) => say.verifyStopped(!ctx.settings.noSwitch),
	},
];

await runRunbook({
	name: "migrate-to-supabase",
	summary:
		"Copy the local Face Swap database (public and _prisma_migrations) into a Supabase project, verify it row for row, and switch .env to it.",
	description:
		"Source: LOCAL_DATABASE_URL (or DATABASE_URL when unset). Target: REMOTE_DIRECT_URL, the project's direct\n" +
		"connection (never the pooler). Only the app's schema is copied, without owners or grants; the platform's\n" +
		"schemas (auth, storage, extensions, graphql, realtime, ...) and roles are never touched; extensions the app\n" +
		"uses are created in the extensions schema. The copy is verified (row counts and checksums of every table,\n" +
		"_prisma_migrations identical, Prisma validation) before .env is switched to the remote profile.\n" +
		"A rerun never doubles data: it continues after a verified copy, clears its own partial copy and starts\n" +
		"over after a failed one (recorded in the target's migrate_to_supabase.runs), and refuses a public schema\n" +
		"holding anything else (exit 3). Stop the app's writes to the local database first.",
	flags: {
		interactive: {
			type: "boolean",
			description:
				"Ask before every step (change steps always ask unless --yes).",
		},
		jobs: {
			type: "number",
			value: "<n>",
			description:
				"1: one pg_dump | pg_restore stream in a single transaction (all or nothing; the default below 512 MB). n > 1 (default for bigger databases: 2 to 4, by cores): the rows of n tables streamed at a time (psql COPY pipes in one snapshot), each table's indexes built as soon as its rows are in (faster on big databases; a failure leaves a partial copy that a rerun clears).",
		},
		"maintenance-work-mem": {
			type: "string",
			value: "<size>",
			default: "256MB",
			description:
				"Memory for each index build on the target (with --jobs n, n builds at once): lower it on the smallest Supabase instances, raise it on big ones.",
		},
		"work-dir": {
			type: "string",
			value: "<dir>",
			description:
				"Where the small schema-only archive goes with --jobs > 1 (default: the OS temp dir).",
		},
		restart: {
			type: "boolean",
			description:
				"Clear a verified copy made by an earlier run and copy again (e.g. the local data changed).",
		},
		"no-switch": {
			type: "boolean",
			description: "Copy and verify only; leave .env as it is.",
		},
	},
	env: {
		...PROFILE_ENV,
		VERIFY_CMD:
			'Shell command run at the end against Supabase, e.g. "npm run build" (optional).',
		PG_BIN_DIR:
			"Directory of pg_dump/pg_restore when not the newest installed.",
	},
	examples: [
		"npx tsx runbooks/migrate-to-supabase.ts --dry-run",
		"npx tsx runbooks/migrate-to-supabase.ts --interactive",
		"npx tsx runbooks/migrate-to-supabase.ts --yes",
		"npx tsx runbooks/migrate-to-supabase.ts --jobs 4 --work-dir /var/tmp --yes",
	],
	// The run lock is held on the target (REMOTE_DIRECT_URL) and on the source: the copy is verified
	// row for row against the source, so no runbook may change the source while it runs (a deploy or
	// backfill there would make the copy differ or the verification fail), and a second
	// migrate-to-supabase, or switch-db-env of the same .env (which locks the profile it switches to),
	// refuses instead of racing this run's final switch of .env.
	exclusive: true,
	alsoLock: ({ env, flags }) => {
		const source = sourceOf(env, flags);
		const conn = parseConnection(source.url, source.key);
		// A pooled source is refused by step 1 with its own advice.
		return conn.pooled ? [] : [conn];
	},
	resolveTarget: ({ env, flags }) => {
		sourceOf(env, flags);
		parseMemory(flags);
		return remoteTarget(env);
	},
	settings: ({ env, flags }) => moveSettings(env, flags),
	steps: askEveryStep(steps),
	summarize: (ctx) => {
		const c = ctx.has("check") ? checked(ctx) : undefined;
		return {
			mode: c?.start.mode ?? null,
			source: ctx.settings.source.display,
			run_id: c?.run.runId ?? c?.start.previous?.run_id ?? null,
			copy_ms: c?.run.result?.durationMs ?? null,
			tables: c ? tablesJson(c.run) : null,
			env_backup: ctx.has("switch")
				? ctx.result<string | null>("switch")
				: null,
		};
	},
});
