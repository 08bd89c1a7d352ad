#!/usr/bin/env -S node --import tsx --

// The seed's "Production Migration Workflow" (backup, prisma migrate deploy, migrate status, test,
// monitor) as one command an engineer or a CI job can trust with the production database: checks
// first, a verified backup, one confirmation naming the database, migrations applied with a lock
// timeout (retried, naming what blocked them), then verified, smoke-tested and watched.

import { type BackupManifest, rollbackCommand } from "../lib/backup/archive.ts";
import { renamedDuration } from "../lib/kit/cli.ts";
import { EXIT, RunbookError, refusal } from "../lib/kit/errors.ts";
import {
	ALLOW_FLAG,
	atLeast100ms,
	lockFlags,
	parseAllow,
	parseLockFlags,
	SMALL_TABLE_FLAG,
	smallTableBytes,
} from "../lib/kit/flags.ts";
import { formatDuration, formatNames } from "../lib/kit/format.ts";
import { table } from "../lib/kit/output.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import { backupEnvHelp } from "../lib/messages/backup.ts";
import {
	appliedSummary,
	applyPlan,
	deployConfirmation,
	deployEventLines,
	deployFailure,
	deploySummary,
	type Interrupted,
	preflightSummary,
	stateAfterFailure,
} from "../lib/messages/deploy.ts";
import {
	type DeployOutcome,
	deployWithRetries,
} from "../lib/migrations/deploy.ts";
import { driftCommandsFor } from "../lib/migrations/drift.ts";
import { type Preflight, preflight } from "../lib/migrations/preflight.ts";
import { concurrentIndexBuilds } from "../lib/migrations/sql.ts";
import type { WatchReport } from "../lib/pg/lock-watch.ts";
import { refusePooler } from "../lib/pg/target.ts";
import { verifiedBackupStep } from "../lib/steps/backup.ts";
import { confirmTargetStep } from "../lib/steps/confirm.ts";
import { smokeTestStep } from "../lib/steps/smoke.ts";
import { verifyHistoryStep } from "../lib/steps/verify.ts";
import { watchLocksStep } from "../lib/steps/watch.ts";

type Settings = ReturnType<typeof parseSettings>;
type Ctx = Context<unknown, Settings>;

function parseSettings({ flags: f }: { flags: Context["flags"] }) {
	return {
		...parseLockFlags(f),
		concurrentTimeoutMs: atLeast100ms(
			f["concurrent-timeout"] as number,
			"--concurrent-timeout",
		),
		maxHolderAgeMs: f["max-holder-age"] as number,
		smallTableBytes: smallTableBytes(f),
		monitorSeconds: Number(f["monitor-for"]) / 1000,
		allow: parseAllow(f),
		/** --lint-since: migrations up to this one are a baseline, their findings notes. */
		lintSince: (f["lint-since"] as string | undefined) || null,
	};
}

const lock = lockFlags({
	lockTimeout: "5s",
	lockTimeoutHelp: "Longest wait for a lock per statement.",
	statementTimeout: "5min",
	statementTimeoutHelp:
		"Longest run of one statement (raise it for an allowed table rewrite).",
	retries: 5,
	retriesHelp: "Retries after a lock timeout (backoff 1s, 2s, 4s ... 30s).",
});

const pending = (ctx: Ctx) => ctx.result<Preflight>("preflight").pending;
const nothingPending = (ctx: Ctx) =>
	pending(ctx).length === 0 ? "nothing to deploy" : false;
const notInDryRun = (ctx: Ctx) =>
	ctx.dryRun ? "dry run: nothing was applied" : nothingPending(ctx);
const rollback = (ctx: Ctx) =>
	ctx.has("backup")
		? rollbackCommand(ctx.result<BackupManifest>("backup").id)
		: null;

// What the apply step knows while it runs: it may stop (Ctrl-C, a failure) before it returns.
const apply: {
	running: boolean;
	outcome?: DeployOutcome;
	interrupted?: Interrupted;
} = { running: false };

const AFTER_APPLY = new Set(["apply", "verify", "smoke", "monitor"]);

await runRunbook({
	name: "deploy-production",
	summary:
		"Deploy pending migrations to production: checks, verified backup, confirmation, apply with a lock timeout, verify, smoke test, monitor.",
	description:
		"Connects through DIRECT_URL when set (never through a transaction pooler). Refuses (exit 3), changing\n" +
		"nothing, when _prisma_migrations holds a failed or unfinished migration, when squawk finds an unsafe\n" +
		"statement in a pending migration.sql that is not allowed by name (--allow <rule>), or when a session has\n" +
		"held a lock on a table the migrations touch for longer than --max-holder-age. Each finding is judged by\n" +
		"its table as it will be when the statement runs: created earlier in this deploy or existing with no rows\n" +
		"(counted), it is accepted whatever the rule; under --small-table-mb, accepted when the only risk is a short\n" +
		"lock; with rows, refused, naming them. A fresh install (no _prisma_migrations, no tables) shows findings as\n" +
		"notes; --lint-since <migration> makes the history up to it a baseline.\n" +
		"Then takes a pre-deploy backup and verifies it (no verified backup, no deploy), asks (or --yes --confirm\n" +
		"<database>), and runs prisma migrate deploy with lock_timeout and statement_timeout on every session, so\n" +
		"a migration that cannot get its lock gives up instead of queueing every query on the table behind it;\n" +
		"it is then marked rolled back (PostgreSQL rolled it back) and retried with backoff, naming the blocker.\n" +
		"With nothing pending it says so and exits 0 without a backup.",
	flags: {
		...ALLOW_FLAG,
		"lock-timeout": lock["lock-timeout"],
		"concurrent-timeout": {
			type: "duration",
			default: "10min",
			description:
				"Longest wait of a CREATE INDEX CONCURRENTLY migration for older transactions (its waits block no reads or writes); an INVALID index a timed-out build leaves is dropped before the retry.",
		},
		"statement-timeout": lock["statement-timeout"],
		retries: lock.retries,
		"max-holder-age": {
			type: "duration",
			default: "2min",
			description:
				"Refuse when a session has held a lock on a touched table in a transaction this old.",
		},
		"lint-since": {
			type: "string",
			value: "<migration>",
			description:
				"Lint baseline: migrations up to and including this one are applied without refusal, their findings printed as notes.",
		},
		...SMALL_TABLE_FLAG,
		...renamedDuration("monitor-for", "monitor-seconds", "s", {
			default: "30s",
			description:
				"How long to watch for blocked sessions after the deploy (0: skip).",
		}),
	},
	env: {
		...backupEnvHelp(
			"Where the pre-deploy backup goes (default backups/).",
			"the dump",
		),
		SMOKE_TEST_CMD:
			"Shell command run after the built-in smoke queries, e.g. curl -fsS https://app/api/health.",
		PRISMA_MIGRATIONS_DIR: "Migrations folder (default prisma/migrations).",
		PRISMA_SCHEMA:
			"The schema the verify step compares the migrations with (default prisma/schema.prisma).",
		PRISMA_ENGINE:
			"Prisma schema engine: wasm (default; the only one the timeouts are tested with) or native.",
		PG_BIN_DIR:
			"Directory of pg_dump/pg_restore when not the newest under /usr/lib/postgresql or on PATH.",
	},
	examples: [
		"npx tsx runbooks/deploy-production.ts --dry-run",
		"npx tsx runbooks/deploy-production.ts",
		"npx tsx runbooks/deploy-production.ts --yes --confirm faceswap --monitor-for 1min",
		"npx tsx runbooks/deploy-production.ts --yes --confirm faceswap --allow adding-required-field --lock-timeout 3s",
	],
	exclusive: true,
	settings: parseSettings,
	steps: [
		{
			id: "preflight",
			title: "Preflight: connection, migration history, lint, size, locks",
			async run(ctx) {
				refusePooler(ctx.target.direct, {
					name: ctx.env.DIRECT_URL ? "DIRECT_URL" : "DATABASE_URL",
					rest: "; migrations and dumps need a direct connection.",
					hint: "Set DIRECT_URL to the direct, non-pooled connection string (on Supabase: port 5432, db.<project>.supabase.co).",
				});
				const r = { log: ctx.log, warn: ctx.warn };
				const p = await preflight(
					await ctx.db(),
					ctx.target,
					ctx.env,
					ctx.settings,
					r,
					ctx.signal,
				);
				const { findings, touched, holders, long } = p;
				return {
					status: holders.length || long.length ? "warning" : "ok",
					summary: preflightSummary(p),
					data: p.pending.length
						? {
								pending: p.pending.map((m) => m.name),
								findings,
								touched,
								holders,
								long_transactions: long,
							}
						: undefined,
					value: p,
				};
			},
		},
		verifiedBackupStep({
			id: "backup",
			kind: "pre-deploy",
			skip: nothingPending,
			unverified: (id, problem) =>
				refusal(
					`The pre-deploy backup ${id} failed verification (${problem}). No verified backup, no deploy: nothing was applied.`,
					"Check BACKUP_DIR's disk and pg_restore, then rerun.",
				),
			onFailure: () =>
				"No migration was applied. An unverified archive, if any, does not count as a backup.",
		}),
		confirmTargetStep<Settings>({
			title: "Confirm the deploy",
			skip: (ctx) =>
				ctx.dryRun ? "dry run: nothing to confirm" : nothingPending(ctx),
			describe: (ctx) =>
				deployConfirmation({
					target: ctx.target.direct.display,
					production: ctx.target.isProduction,
					pending: pending(ctx).map((m) => m.name),
					backupId: ctx.result<BackupManifest>("backup").id,
					s: ctx.settings,
				}),
		}),
		{
			id: "apply",
			title: "Apply: prisma migrate deploy (lock timeout, retries)",
			kind: "change",
			skip: nothingPending,
			plan: (ctx) => applyPlan(ctx.settings, pending(ctx), ctx.dryRun),
			async run(ctx) {
				const s = ctx.settings;
				const concurrent = (name: string | null) => {
					const sql = pending(ctx).find((m) => m.name === name)?.sql;
					return sql !== undefined && concurrentIndexBuilds(sql) !== null;
				};
				let lastPhase = "";
				apply.running = true;
				const outcome = await deployWithRetries({
					target: ctx.target,
					env: ctx.env,
					db: await ctx.db(),
					settings: s,
					signal: ctx.signal,
					onEvent(e) {
						if (e.type === "interrupted") apply.interrupted = e;
						for (const l of deployEventLines(e, s, concurrent, lastPhase))
							(l.warn ? ctx.warn : ctx.log)(l.text);
						if (e.type === "index-progress") lastPhase = e.phase;
					},
				});
				apply.outcome = outcome;
				apply.running = false;
				for (const a of outcome.attempts)
					if (a.applied.length)
						ctx.log(`attempt ${a.no} applied: ${formatNames(a.applied)}`);
				if (!outcome.ok) {
					const f = deployFailure(outcome, s);
					throw new RunbookError(f.message, EXIT.failed, f.hint);
				}
				return {
					status: outcome.attempts.length > 1 ? "warning" : "ok",
					summary: appliedSummary(outcome),
					data: outcome,
					value: outcome,
				};
			},
		},
		verifyHistoryStep({
			id: "verify",
			skip: notInDryRun,
			healthy: (ctx, v) =>
				`up to date at ${v.history.latestApplied}, history healthy, no drift${v.schema.length ? `; ${driftCommandsFor(ctx.env).schemaFile} differs from the migrations` : ""}`,
			// The migrations are applied: a rerun finds nothing to deploy and would not check again.
			resume: () =>
				rerunCommand("runbooks/validate.ts", { keep: ["dotenv", "env-file"] }),
		}),
		smokeTestStep({ id: "smoke", skip: notInDryRun }),
		watchLocksStep<Settings>({
			id: "monitor",
			seconds: (s) => s.monitorSeconds,
			skip: (ctx) =>
				notInDryRun(ctx) ||
				(Number(ctx.flags["monitor-for"]) === 0 ? "--monitor-for 0" : false),
		}),
		{
			title: "Summary",
			async run(ctx) {
				ctx.log(
					table(
						ctx.reports
							.filter((r) => r.title !== "Summary")
							.map((r) => ({
								step: `${r.no}. ${r.title}`,
								status: r.status,
								time:
									r.duration_ms === undefined
										? ""
										: formatDuration(r.duration_ms),
							})),
					),
				);
				const s = deploySummary({
					pending: pending(ctx).map((m) => m.name),
					dryRun: ctx.dryRun,
					applied: apply.outcome?.applied ?? [],
					backup: ctx.has("backup") ? ctx.result("backup") : undefined,
					rollback: rollback(ctx),
				});
				for (const line of s.lines) ctx.log(line);
				return { summary: s.summary };
			},
		},
	],
	onFailure: (ctx, step) =>
		AFTER_APPLY.has(step.id ?? "")
			? stateAfterFailure({
					pending: pending(ctx).map((m) => m.name),
					deploy: apply.outcome,
					interrupted: apply.interrupted,
					applying: apply.running,
					rollback: rollback(ctx),
				})
			: undefined,
	summarize: (ctx) => {
		const p = ctx.has("preflight") ? ctx.result<Preflight>("preflight") : null;
		const d = apply.outcome;
		return {
			pending: p?.pending.map((m) => m.name) ?? [],
			findings: (p?.lint ?? []).flatMap((l) =>
				l.findings.map((f) => ({ file: l.file, ...f })),
			),
			backup_id: ctx.has("backup")
				? ctx.result<BackupManifest>("backup").id
				: null,
			rollback_command: rollback(ctx),
			applied: d?.applied ?? [],
			attempts: d?.attempts ?? [],
			failure: d?.failure ?? null,
			monitor: ctx.has("monitor") ? ctx.result<WatchReport>("monitor") : null,
		};
	},
});
