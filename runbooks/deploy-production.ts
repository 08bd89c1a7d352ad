#!/usr/bin/env -S npx tsx --

// The seed's "Production Migration Workflow" (backup, prisma migrate deploy, migrate status, test,
// monitor) as one command an engineer or a CI job can trust with the production database: checks
// first, a verified backup, one confirmation naming the database, migrations applied with a lock
// timeout (retried, naming what blocked them), then verified, smoke-tested and watched.

import { type HookRun, runHookOrAsk } from "../lib/app/hooks.ts";
import { type SmokeQuery, smokeQueries } from "../lib/app/smoke.ts";
import {
	type BackupCheck,
	type BackupManifest,
	checkBackup,
	createVerifiedBackup,
	describeBackup,
	rollbackCommand,
} from "../lib/backup/archive.ts";
import { renamedDuration } from "../lib/kit/cli.ts";
import { formatMs, parseDuration } from "../lib/kit/duration.ts";
import { EXIT, RunbookError, refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration, table } from "../lib/kit/output.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import {
	backoffMs,
	DEPLOY_APPLICATION,
	DEPLOY_ARGS,
	type DeployOutcome,
	type DeploySettings,
	deployCommand,
	deployWithRetries,
	type InvalidIndex,
} from "../lib/migrations/deploy.ts";
import {
	databaseDrift,
	explainDriftStatement,
	schemaDrift,
	unfinishedMigrationState,
} from "../lib/migrations/drift.ts";
import {
	type History,
	type LocalMigration,
	readHistory,
} from "../lib/migrations/history.ts";
import {
	describeFindings,
	type LintResult,
	lintSql,
} from "../lib/migrations/lint.ts";
import { DeployWalk, describeRows } from "../lib/migrations/lint-judgement.ts";
import {
	displayPath,
	migrationsDir,
	prismaErrorText,
	runPrisma,
} from "../lib/migrations/prisma-cli.ts";
import {
	concurrentIndexBuilds,
	qualifiedName,
	tablesTouched,
} from "../lib/migrations/sql.ts";
import {
	describeSession,
	type LockHolder,
	lockHolders,
	longTransactions,
} from "../lib/pg/activity.ts";
import { describeTables, formatBytes } from "../lib/pg/catalog.ts";
import { type Db, quoteLiteral, serverVersion } from "../lib/pg/db.ts";
import { type WatchReport, watchLocks } from "../lib/pg/lock-watch.ts";

interface State {
	server?: string;
	history?: History;
	pending: LocalMigration[];
	lint: LintResult[];
	touched: string[];
	holders: LockHolder[];
	backupCheck?: BackupCheck;
	backup?: BackupManifest;
	deploy?: DeployOutcome;
	interrupted?: {
		migration: string | null;
		applied: string[];
		markedRolledBack: boolean;
		leftSessions: number;
		invalidIndexes: InvalidIndex[];
	};
	applying: boolean;
	smoke?: { queries: SmokeQuery[]; hook: HookRun };
	watch?: WatchReport;
	schemaDrift: string[];
}

type Ctx = Context<State>;

interface Settings extends DeploySettings {
	maxHolderAgeMs: number;
	smallTableBytes: number;
	monitorSeconds: number;
	allow: string[];
	/** --lint-since: migrations up to this one are a baseline, their findings notes. */
	lintSince: string | null;
}

function settings(ctx: Ctx): Settings {
	const f = ctx.flags;
	const lockTimeoutMs = parseDuration(
		f["lock-timeout"] as string,
		"--lock-timeout",
	);
	if (lockTimeoutMs < 100)
		throw usageError(
			"--lock-timeout must be at least 100ms (0 would wait forever, which is what it prevents).",
		);
	const statementTimeoutMs = parseDuration(
		f["statement-timeout"] as string,
		"--statement-timeout",
	);
	const concurrentTimeoutMs = parseDuration(
		f["concurrent-timeout"] as string,
		"--concurrent-timeout",
	);
	if (concurrentTimeoutMs < 100)
		throw usageError(
			"--concurrent-timeout must be at least 100ms (0 would wait forever, which is what it prevents).",
		);
	const retries = Number(f.retries);
	if (!Number.isInteger(retries))
		throw usageError(`--retries needs a whole number, not "${f.retries}".`);
	const allow = String(f.allow ?? "")
		.split(",")
		.map((r) => r.trim())
		.filter(Boolean);
	for (const r of allow)
		if (!/^[a-z][a-z0-9-]*$/.test(r))
			throw usageError(
				`--allow takes squawk rule names such as adding-required-field, not "${r}".`,
			);
	return {
		lockTimeoutMs,
		statementTimeoutMs,
		concurrentTimeoutMs,
		retries,
		maxHolderAgeMs: parseDuration(
			f["max-holder-age"] as string,
			"--max-holder-age",
		),
		smallTableBytes: Number(f["small-table-mb"]) * 1024 * 1024,
		monitorSeconds: Number(f["monitor-for"]) / 1000,
		allow,
		lintSince: (f["lint-since"] as string | undefined) || null,
	};
}

const nothingPending = (ctx: Ctx) =>
	ctx.state.history && ctx.state.pending.length === 0
		? "nothing to deploy"
		: false;
const notInDryRun = (ctx: Ctx) =>
	ctx.dryRun ? "dry run: nothing was applied" : nothingPending(ctx);
const rollback = (ctx: Ctx) =>
	ctx.state.backup ? rollbackCommand(ctx.state.backup.id) : null;

const markRolledBackSql = (name: string) =>
	`UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = ${quoteLiteral(name)} AND finished_at IS NULL AND rolled_back_at IS NULL;`;

/**
 * How to resolve an unfinished migration, from what the database holds: its changes absent (rolled
 * back), all present (it committed but was never recorded: a process killed at that moment), or
 * neither.
 */
async function resolveAdvice(
	ctx: Ctx,
	h: History,
	migration: string,
): Promise<string> {
	const finished = h.applied
		.filter((r) => r.finished_at && !r.rolled_back_at)
		.map((r) => r.migration_name);
	// A concurrent index build runs outside a transaction: what it left is read from the catalog.
	const sql = h.local.find((m) => m.name === migration)?.sql;
	const builds = sql === undefined ? null : concurrentIndexBuilds(sql);
	if (builds) {
		const state = await concurrentBuildState(await ctx.db(), builds);
		if (state.running)
			return `Its CREATE INDEX CONCURRENTLY is still running in pid ${state.running}: wait for it to end (npx tsx runbooks/monitor.ts), then rerun the deploy.`;
		if (state.invalid.length)
			return `Its CREATE INDEX CONCURRENTLY was interrupted and left ${state.invalid.join(", ")} INVALID in the database (the rest of it is not there). Drop it, mark the migration rolled back, then rerun the deploy:\n${state.invalid.map((i) => `  DROP INDEX CONCURRENTLY IF EXISTS ${i};`).join("\n")}\n  ${markRolledBackSql(migration)}`;
		if (state.valid.length === builds.length)
			return `Its index build completed (${state.valid.join(", ")} valid) but was never recorded. Mark it applied, then rerun the deploy:\n  npx tsx runbooks/troubleshoot.ts --resolve-applied ${migration}`;
		return `None of it is in the database (no index it builds exists). Mark it rolled back, then rerun the deploy:\n  ${markRolledBackSql(migration)}`;
	}
	ctx.log(
		`comparing the database with the migrations, with and without ${migration} ...`,
	);
	const state = await unfinishedMigrationState(
		ctx.target,
		ctx.env,
		finished,
		migration,
		ctx.signal,
	).catch(() => "unknown" as const);
	if (state === "applied")
		return `Its changes are all in the database: it committed, but its process ended before Prisma recorded it. Mark it applied, then rerun the deploy:\n  npx tsx runbooks/troubleshoot.ts --resolve-applied ${migration}`;
	if (state === "rolled-back")
		return `None of its changes are in the database (PostgreSQL rolled its transaction back). Fix it if it failed, mark it rolled back, then rerun the deploy:\n  ${markRolledBackSql(migration)}\n  (or: npx tsx runbooks/troubleshoot.ts --resolve-rolled-back ${migration})`;
	return "The database matches neither the migrations with it nor without it: see what it left with npx tsx runbooks/troubleshoot.ts, and resolve it by hand.";
}

/** Which indexes of a concurrent build exist, valid or INVALID, and whether a deploy session still runs one. */
async function concurrentBuildState(
	db: Db,
	builds: NonNullable<ReturnType<typeof concurrentIndexBuilds>>,
): Promise<{ running: number | null; valid: string[]; invalid: string[] }> {
	const running = await db.query<{ pid: number }>(
		"select pid from pg_stat_progress_create_index where pid in (select pid from pg_stat_activity where application_name = $1) limit 1",
		[DEPLOY_APPLICATION],
	);
	const valid: string[] = [];
	const invalid: string[] = [];
	for (const b of builds) {
		if (!b.index) continue;
		const name = qualifiedName({ schema: b.table.schema, name: b.index });
		const r = await db.query<{ valid: boolean }>(
			"select indisvalid as valid from pg_index where indexrelid = to_regclass($1)",
			[name],
		);
		if (r.rows[0]) (r.rows[0].valid ? valid : invalid).push(name);
	}
	return { running: running.rows[0]?.pid ?? null, valid, invalid };
}

/** What a failed migration left in the database, truthfully for each way it runs. */
function whatStayed(f: NonNullable<DeployOutcome["failure"]>): string {
	if (f.partial)
		return "It commits in parts (BEGIN/COMMIT of its own), so the statements before its failing part may be in the database: check with npx tsx runbooks/validate.ts";
	if (f.invalidIndexes.length) {
		const left = f.invalidIndexes.filter((i) => !i.dropped);
		return left.length
			? `CREATE INDEX CONCURRENTLY runs outside a transaction: it left ${left.map((i) => i.index).join(", ")} INVALID in the database (dropping it failed: ${left[0].error}); drop it with DROP INDEX CONCURRENTLY IF EXISTS ${left[0].index} before a retry`
			: `CREATE INDEX CONCURRENTLY runs outside a transaction: the INVALID index it left (${f.invalidIndexes.map((i) => i.index).join(", ")}) was dropped, so none of it is in the database`;
	}
	return "PostgreSQL rolled its transaction back, so none of it is in the database";
}

/** What the database holds after a failure at or after the apply step, and the way back. */
function stateAfterFailure(ctx: Ctx): string {
	const lines: string[] = [];
	const d = ctx.state.deploy;
	const pending = ctx.state.pending.map((m) => m.name);
	if (d) {
		lines.push(
			`Applied by this deploy: ${d.applied.length ? d.applied.join(", ") : "none"}.`,
		);
		const f = d.failure;
		if (f?.migration) {
			lines.push(
				`Failed: ${f.migration}. ${whatStayed(f)}; ${
					f.markedRolledBack
						? "it is marked rolled back in _prisma_migrations, so the next deploy applies it again."
						: `_prisma_migrations records it as failed, and deploys refuse until it is resolved: fix the migration, then mark it rolled back:\n  ${markRolledBackSql(f.migration as string)}`
				}`,
			);
		}
		const rest = pending.filter(
			(n) => !d.applied.includes(n) && n !== d.failure?.migration,
		);
		if (rest.length) lines.push(`Not applied: ${rest.join(", ")}.`);
	} else if (ctx.state.interrupted) {
		const i = ctx.state.interrupted;
		lines.push(
			`Applied by this deploy before the interrupt: ${i.applied.length ? i.applied.join(", ") : "none"}.`,
		);
		if (i.migration && i.markedRolledBack) {
			lines.push(
				i.invalidIndexes.length
					? `${i.migration} was running: its concurrent index build was cancelled, the INVALID index it left (${i.invalidIndexes.map((x) => x.index).join(", ")}) was dropped, so none of it is in the database, and it is marked rolled back in _prisma_migrations (the next deploy applies it again).`
					: `${i.migration} was running: its session was cancelled, PostgreSQL rolled it back, and it is marked rolled back in _prisma_migrations (the next deploy applies it again).`,
			);
		} else if (i.migration && i.invalidIndexes.some((x) => !x.dropped)) {
			const x = i.invalidIndexes.find((y) => !y.dropped) as InvalidIndex;
			lines.push(
				`${i.migration} was running: its concurrent index build was cancelled and left ${x.index} INVALID in the database (dropping it failed: ${x.error}). Drop it, then mark the migration rolled back:\n  DROP INDEX CONCURRENTLY IF EXISTS ${x.index};\n  ${markRolledBackSql(i.migration)}`,
			);
		} else if (i.migration) {
			lines.push(
				`${i.migration} was running and is recorded as unfinished in _prisma_migrations${
					i.leftSessions
						? ` (its session was still there; it ends at the lock or statement timeout)`
						: ""
				}. Once npx tsx runbooks/monitor.ts shows no "runbook:deploy-production:prisma" session, it was rolled back: mark it so:\n  ${markRolledBackSql(i.migration)}`,
			);
		}
	} else if (ctx.state.applying) {
		lines.push(
			"The deploy was stopped while prisma migrate deploy ran: a migration in progress was rolled back by PostgreSQL when its session ended.",
			"Check with: npx tsx runbooks/validate.ts (a migration shown as failed/unfinished was not applied; mark it rolled back before resuming:",
			`  ${markRolledBackSql("<migration>")})`,
		);
	} else {
		lines.push(
			`All ${pending.length} pending migration(s) are applied: ${pending.join(", ")}.`,
		);
	}
	const cmd = rollback(ctx);
	if (cmd)
		lines.push(
			`To restore the database as it was before this deploy (pre-deploy backup): ${cmd}`,
		);
	return lines.join("\n");
}

await runRunbook<State>({
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
		allow: {
			type: "string",
			value: "<rule>",
			repeatable: true,
			description:
				"Accept one squawk rule by name (repeat, or comma-separate), e.g. --allow adding-required-field.",
		},
		"lock-timeout": {
			type: "string",
			value: "<duration>",
			default: "5s",
			description: "Longest wait for a lock per statement.",
		},
		"concurrent-timeout": {
			type: "string",
			value: "<duration>",
			default: "10min",
			description:
				"Longest wait of a CREATE INDEX CONCURRENTLY migration for older transactions (its waits block no reads or writes); an INVALID index a timed-out build leaves is dropped before the retry.",
		},
		"statement-timeout": {
			type: "string",
			value: "<duration>",
			default: "5min",
			description:
				"Longest run of one statement (raise it for an allowed table rewrite).",
		},
		retries: {
			type: "number",
			value: "<n>",
			default: 5,
			description: "Retries after a lock timeout (backoff 1s, 2s, 4s ... 30s).",
		},
		"max-holder-age": {
			type: "string",
			value: "<duration>",
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
		"small-table-mb": {
			type: "number",
			value: "<MB>",
			default: 10,
			description:
				"Accept findings whose only risk is a short lock (index builds, constraint checks) on tables smaller than this.",
		},
		...renamedDuration("monitor-for", "monitor-seconds", "s", {
			default: "30s",
			description:
				"How long to watch for blocked sessions after the deploy (0: skip).",
		}),
	},
	env: {
		BACKUP_DIR: "Where the pre-deploy backup goes (default backups/).",
		BACKUP_SCOPE:
			"What a backup holds: auto (default: the app's objects only on a Supabase database, else the whole database), app or database.",
		APP_SCHEMAS:
			"With scope app: the app's schemas, comma-separated (default public).",
		BACKUP_MIN_FREE_MB:
			"Space to leave free on BACKUP_DIR's disk after the dump (default 256).",
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
	state: () => ({
		pending: [],
		lint: [],
		touched: [],
		holders: [],
		applying: false,
		schemaDrift: [],
	}),
	steps: [
		{
			title: "Preflight: connection, migration history, lint, size, locks",
			async run(ctx) {
				const s = settings(ctx);
				const t = ctx.target;
				const via = ctx.env.DIRECT_URL ? "DIRECT_URL" : "DATABASE_URL";
				if (t.direct.pooled) {
					throw refusal(
						`${via} (${t.direct.display}) goes through a transaction pooler (pgbouncer=true or port 6543); migrations and dumps need a direct connection.`,
						"Set DIRECT_URL to the direct, non-pooled connection string (on Supabase: port 5432, db.<project>.supabase.co).",
					);
				}
				const db = await ctx.db();
				const v = await serverVersion(db);
				ctx.state.server = v.text;
				ctx.log(
					`connected through ${via}: ${t.direct.display}, PostgreSQL ${v.text}${t.isProduction ? " [production]" : ""}`,
				);
				if ((ctx.env.PRISMA_ENGINE ?? "wasm") !== "wasm") {
					ctx.warn(
						"PRISMA_ENGINE is not wasm: the lock and statement timeouts are set through the wasm engine's driver and may not apply.",
					);
				}

				const dir = migrationsDir(ctx.env);
				const h = await readHistory(db, dir);
				ctx.state.history = h;
				const failed = h.issues.filter((i) => i.kind === "failed");
				if (failed.length) {
					for (const i of failed) ctx.warn(`${i.migration}: ${i.detail}`);
					throw refusal(
						`_prisma_migrations has ${failed.length} failed or unfinished migration(s): ${failed.map((i) => i.migration).join(", ")}.`,
						await resolveAdvice(ctx, h, failed[0].migration),
					);
				}
				let appTables = 0;
				if (h.tableMissing) {
					const tables = await db.query<{ n: string }>(
						"select count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = current_schema() and c.relkind in ('r','p')",
					);
					appTables = Number(tables.rows[0].n);
					if (appTables > 0) {
						throw refusal(
							"The database has tables but no _prisma_migrations: it was never deployed with Prisma Migrate, so deploying would try to create what exists.",
							"Baseline it first: mark the migrations it already contains as applied (prisma migrate resolve --applied <name>).",
						);
					}
				}
				// Rows marked rolled back belong to migrations that are pending again: not a problem for a deploy.
				for (const i of h.issues.filter(
					(x) => !["failed", "pending", "rolled_back"].includes(x.kind),
				))
					ctx.warn(`${i.migration}: ${i.detail}`);
				ctx.state.pending = h.pending;
				ctx.log(
					`${h.local.length} migrations in ${displayPath(dir)}; latest applied: ${h.latestApplied ?? "none"}`,
				);
				if (h.pending.length === 0) {
					return {
						summary: `nothing to deploy: all ${h.local.length} migrations are applied (latest ${h.latestApplied ?? "none"})`,
					};
				}
				ctx.log(`pending (${h.pending.length}):`);
				for (const m of h.pending) ctx.log(`  ${m.name}`);

				// Lint every pending migration.sql, and judge each finding by its table as it will be when
				// the statement runs (created earlier in this deploy, empty, small, or holding rows).
				if (s.lintSince && !h.local.some((m) => m.name === s.lintSince))
					throw usageError(
						`--lint-since ${s.lintSince}: no such migration in ${displayPath(dir)}.`,
						"Give the folder name of the last migration to treat as a baseline, e.g. --lint-since 20240101000000_init.",
					);
				const freshInstall = h.tableMissing && appTables === 0;
				if (freshInstall)
					ctx.log(
						"fresh install: no _prisma_migrations and no tables; findings are shown as notes",
					);
				const walk = new DeployWalk(db, {
					smallTableBytes: s.smallTableBytes,
					freshInstall,
				});
				for (const m of h.pending) {
					const raw = await lintSql(
						m.sql,
						`${m.name}/migration.sql`,
						s.allow,
						String(v.major),
					);
					const baseline =
						s.lintSince && m.name <= s.lintSince ? s.lintSince : undefined;
					const judged = await walk.judge(m.name, m.sql, raw, baseline);
					ctx.state.lint.push(judged);
					for (const line of describeFindings(judged)) ctx.log(line);
				}
				const findings = ctx.state.lint.flatMap((l) =>
					l.findings.map((f) => ({ ...f, file: l.file })),
				);
				const unused = s.allow.filter(
					(r) => !findings.some((f) => f.rule === r),
				);
				if (unused.length)
					ctx.warn(
						`--allow ${unused.join(", ")}: no pending migration has such a finding.`,
					);
				const unsafe = findings.filter((f) => !f.allowed);
				if (unsafe.length) {
					const rules = [...new Set(unsafe.map((f) => f.rule))];
					throw refusal(
						`${unsafe.length} unsafe statement(s) in the pending migrations (${rules.join(", ")}), explained above. No backup was taken.`,
						`Rewrite the migration as suggested, or accept the risk by name: ${rules.map((r) => `--allow ${r}`).join(" ")}`,
					);
				}

				// Size, largest tables, and the tables the migrations touch.
				const tables = await describeTables(db);
				const size = (
					await db.query<{ b: string }>(
						"select pg_database_size(current_database()) as b",
					)
				).rows[0].b;
				const largest = [...tables]
					.sort((a, b) => b.totalBytes - a.totalBytes)
					.slice(0, 5);
				ctx.log(
					`database ${formatBytes(Number(size))}; largest tables: ${largest.map((x) => `${x.name} ${formatBytes(x.totalBytes)}`).join(", ")}`,
				);
				// Existing tables only: one a pending migration creates cannot be locked by anyone yet.
				const touched = [
					...new Set(h.pending.flatMap((m) => tablesTouched(m.sql))),
				].filter((t) => !walk.created.has(t));
				ctx.state.touched = touched;
				if (touched.length) {
					const sizes: string[] = [];
					for (const t of touched) {
						const r = await walk.rowsOf(t);
						sizes.push(
							r
								? `${t} (${formatBytes(r.bytes)}; ${describeRows(t, r).replace(`${t} has `, "")})`
								: `${t} (not found)`,
						);
					}
					ctx.log(`tables the migrations lock: ${sizes.join(", ")}`);
				}

				// Sessions that would make the migration wait (and everyone behind it).
				const holders = await lockHolders(db, touched);
				ctx.state.holders = holders;
				for (const x of holders)
					ctx.warn(
						`holds ${x.modes.join("/")} on ${x.table}: ${describeSession(x)}`,
					);
				const long = (await longTransactions(db, 60)).filter(
					(x) => !holders.some((y) => y.pid === x.pid),
				);
				for (const x of long)
					ctx.warn(
						`long transaction (not on the touched tables): ${describeSession(x)}`,
					);
				const old = holders.filter(
					(x) => (x.xactAgeS ?? 0) * 1000 >= s.maxHolderAgeMs,
				);
				if (old.length) {
					throw refusal(
						`${old.length} session(s) have held a lock on a table the migrations alter for longer than ${formatMs(s.maxHolderAgeMs)} (pid ${old.map((x) => x.pid).join(", ")}): the migration would keep timing out on its lock.`,
						`Find out what they are (npx tsx runbooks/monitor.ts), let them finish or end them (npx tsx runbooks/monitor.ts --terminate <pid>), then rerun. --max-holder-age raises the limit.`,
					);
				}

				const check = await checkBackup(db, ctx.env);
				ctx.state.backupCheck = check;
				ctx.log(
					`backup: pg_dump ${check.pgDump.version}, estimated ${formatBytes(check.estimateBytes)}, ${formatBytes(check.freeBytes)} free in ${check.dir}`,
				);
				const accepted = findings.length;
				return {
					status: holders.length || long.length ? "warning" : "ok",
					summary: `${h.pending.length} pending migration(s), ${accepted ? `${accepted} finding(s), all allowed` : "no unsafe statements"}${
						holders.length ? `, ${holders.length} session(s) holding locks` : ""
					}`,
					data: {
						pending: h.pending.map((m) => m.name),
						findings,
						touched,
						holders,
						long_transactions: long,
					},
				};
			},
		},
		{
			title: "Backup: pg_dump, verified",
			kind: "write",
			skip: nothingPending,
			plan: (ctx) => describeBackup(ctx.target.direct, { env: ctx.env }),
			async run(ctx) {
				const r = await createVerifiedBackup(ctx.target.direct, {
					kind: "pre-deploy",
					env: ctx.env,
					signal: ctx.signal,
					log: ctx.log,
				});
				const m = r.manifest;
				for (const p of r.problems) ctx.warn(p);
				if (!r.ok) {
					throw refusal(
						`The pre-deploy backup ${m.id} failed verification (${r.problems[0]}). No verified backup, no deploy: nothing was applied.`,
						"Check BACKUP_DIR's disk and pg_restore, then rerun.",
					);
				}
				ctx.state.backup = r.manifest;
				const rows = Object.values(m.row_counts).reduce((a, b) => a + b, 0);
				ctx.log(
					`${r.manifest.id}: ${formatBytes(m.size_bytes)}, ${Object.keys(m.row_counts).length} tables, ${rows} rows, sha256 and pg_restore --list checked`,
				);
				return {
					summary: `${m.id} (${formatBytes(m.size_bytes)}), verified`,
					data: r.manifest,
				};
			},
			onFailure: () =>
				"No migration was applied. An unverified archive, if any, does not count as a backup.",
		},
		{
			title: "Confirm the deploy",
			skip: (ctx) =>
				ctx.dryRun ? "dry run: nothing to confirm" : nothingPending(ctx),
			async run(ctx) {
				const s = settings(ctx);
				ctx.log(
					`target:  ${ctx.target.direct.display}${ctx.target.isProduction ? " [production]" : ""}`,
				);
				ctx.log(`migrations to apply (${ctx.state.pending.length}):`);
				for (const m of ctx.state.pending) ctx.log(`  ${m.name}`);
				ctx.log(`backup:  ${ctx.state.backup?.id} (verified)`);
				ctx.log(
					`each statement: lock_timeout ${formatMs(s.lockTimeoutMs)}, statement_timeout ${formatMs(s.statementTimeoutMs)}; up to ${s.retries} retries`,
				);
				await ctx.confirmRun(
					`Deploy ${ctx.state.pending.length} migration(s) to ${ctx.target.direct.display}?`,
				);
				return {
					summary: ctx.flags.yes
						? `confirmed with --yes --confirm ${ctx.target.direct.database}`
						: "confirmed by the operator",
				};
			},
		},
		{
			title: "Apply: prisma migrate deploy (lock timeout, retries)",
			kind: "change",
			skip: nothingPending,
			plan(ctx) {
				const s = settings(ctx);
				const lines = [
					deployCommand(s),
					`-- every engine session: SET lock_timeout = ${formatMs(s.lockTimeoutMs)}, statement_timeout = ${formatMs(s.statementTimeoutMs)}`,
					`-- after a lock timeout: mark the migration rolled back in _prisma_migrations, retry (up to ${s.retries}, waiting ${[1, 2, 3].map((n) => formatMs(backoffMs(n, s))).join(", ")} ...)`,
				];
				if (ctx.dryRun) {
					for (const m of ctx.state.pending)
						lines.push(`-- ${m.name}/migration.sql:`, m.sql.trim());
				}
				return lines;
			},
			async run(ctx) {
				const s = settings(ctx);
				ctx.state.applying = true;
				let lastPhase = "";
				const concurrent = (name: string | null) => {
					const sql = ctx.state.pending.find((m) => m.name === name)?.sql;
					return sql !== undefined && concurrentIndexBuilds(sql) !== null;
				};
				const outcome = await deployWithRetries({
					target: ctx.target,
					env: ctx.env,
					db: await ctx.db(),
					settings: s,
					signal: ctx.signal,
					onEvent(e) {
						if (e.type === "interrupted") ctx.state.interrupted = e;
						if (e.type === "waiting") {
							for (const b of e.blockers) {
								ctx.log(
									b.table
										? `waiting up to ${formatMs(s.lockTimeoutMs)} for a lock on ${b.table} held by pid ${b.pid} ("${b.application}")`
										: `waiting for pid ${b.pid} ("${b.application}"): ${describeSession(b)} (a concurrent index build waits up to ${formatMs(s.concurrentTimeoutMs ?? 0)} for older transactions)`,
								);
							}
						}
						if (e.type === "attempt")
							ctx.log(`attempt ${e.no}/${e.of}: ${DEPLOY_ARGS.join(" ")}`);
						if (e.type === "blocked") {
							ctx.warn(
								concurrent(e.migration)
									? `${e.migration} waited ${formatMs(s.concurrentTimeoutMs ?? 0)} (--concurrent-timeout) for older transactions to end and gave up; its waits held up no other query.`
									: `${e.migration ?? "the deploy"} could not get its lock within ${formatMs(s.lockTimeoutMs)} and gave up; other queries were not held up longer.`,
							);
							if (e.blockers.length === 0)
								ctx.warn("the blocker ended before it could be identified");
							for (const b of e.blockers)
								ctx.warn(
									`blocked by ${describeSession(b)}${b.table ? ` (on ${b.table})` : ""}`,
								);
						}
						// Plain lines, one per phase of the build.
						if (e.type === "index-progress" && e.phase !== lastPhase) {
							lastPhase = e.phase;
							ctx.log(
								`CREATE INDEX CONCURRENTLY: ${e.phase}${e.total ? ` (${e.done} of ${e.total})` : ""}`,
							);
						}
						if (e.type === "invalid-index")
							ctx.warn(
								e.index.dropped
									? `the interrupted CREATE INDEX CONCURRENTLY left ${e.index.index} INVALID; dropped it (DROP INDEX CONCURRENTLY IF EXISTS ${e.index.index})`
									: `the interrupted CREATE INDEX CONCURRENTLY left ${e.index.index} INVALID, and dropping it failed: ${e.index.error}`,
							);
						if (e.type === "rolled-back")
							ctx.log(
								`marked ${e.migration} rolled back in _prisma_migrations (${concurrent(e.migration) ? "its build ran outside a transaction; nothing of it is left once its INVALID index is gone" : "PostgreSQL rolled its transaction back"})`,
							);
						if (e.type === "retry")
							ctx.log(`retrying in ${formatMs(e.delayMs)}`);
					},
				});
				ctx.state.deploy = outcome;
				ctx.state.applying = false;
				for (const a of outcome.attempts)
					if (a.applied.length)
						ctx.log(`attempt ${a.no} applied: ${a.applied.join(", ")}`);
				if (!outcome.ok) {
					const f = outcome.failure;
					const why = f?.lockTimeout
						? `${f.migration ?? "a migration"} could not get its lock in ${outcome.attempts.length} attempt(s) (lock_timeout ${formatMs(s.lockTimeoutMs)})`
						: f?.statementTimeout
							? `${f.migration} ran longer than the statement timeout (${formatMs(s.statementTimeoutMs)}): ${f.error}`
							: `${f?.migration ?? "prisma migrate deploy"} failed: ${f?.error}`;
					const blockers = outcome.attempts.flatMap((a) => a.blockers);
					throw new RunbookError(
						`${why}.`,
						EXIT.failed,
						f?.lockTimeout && blockers.length
							? `Last blocker: ${describeSession(blockers[blockers.length - 1])}. Rerun when it is gone (npx tsx runbooks/monitor.ts).`
							: f?.statementTimeout
								? "If the migration is expected to take longer, rerun with a larger --statement-timeout."
								: undefined,
					);
				}
				const retried = outcome.attempts.length - 1;
				return {
					status: retried ? "warning" : "ok",
					summary: `applied ${outcome.applied.length} migration(s)${retried ? ` after ${retried} lock timeout(s)` : ""}`,
					data: outcome,
				};
			},
			onFailure: stateAfterFailure,
		},
		{
			title: "Verify: migrate status, history, drift",
			skip: notInDryRun,
			async run(ctx) {
				// Three Prisma CLI runs of a few seconds each, side by side.
				const [status, drift, schema] = await Promise.all([
					runPrisma(["migrate", "status"], ctx.target, ctx.env, ctx.signal),
					databaseDrift(ctx.target, ctx.env, ctx.signal),
					schemaDrift(ctx.target, ctx.env, ctx.signal),
				]);
				const statusText = prismaErrorText(status);
				const problems: string[] = [];
				if (status.exitCode !== 0)
					problems.push(
						`prisma migrate status: ${statusText.split("\n").slice(-3).join(" ")}`,
					);
				else
					ctx.log(
						`prisma migrate status: ${statusText.split("\n").filter(Boolean).pop()}`,
					);
				const h = await readHistory(await ctx.db(), migrationsDir(ctx.env));
				for (const i of h.issues.filter((x) => x.kind !== "rolled_back"))
					problems.push(`${i.migration}: ${i.detail}`);
				for (const sql of drift)
					problems.push(`drift: ${explainDriftStatement(sql)} (${sql})`);
				if (!drift.length)
					ctx.log("no drift: the database matches what the migrations build");
				ctx.state.schemaDrift = schema;
				for (const sql of schema) {
					ctx.warn(
						`prisma/schema.prisma differs from what the migrations build (the app's Prisma client is generated from it); to match it: ${sql}`,
					);
				}
				if (problems.length) {
					for (const p of problems) ctx.warn(p);
					throw new RunbookError(
						`The database is not in the state the migrations describe: ${problems[0]}`,
					);
				}
				return {
					status: schema.length ? "warning" : "ok",
					summary: `up to date at ${h.latestApplied}, history healthy, no drift${schema.length ? "; prisma/schema.prisma differs from the migrations" : ""}`,
				};
			},
			onFailure: stateAfterFailure,
		},
		{
			title: "Smoke test: read queries, SMOKE_TEST_CMD",
			skip: notInDryRun,
			async run(ctx) {
				const queries = await smokeQueries(await ctx.db());
				const failed = queries.filter((q) => q.error);
				const tables = new Set(queries.map((q) => q.table)).size;
				ctx.log(
					`${queries.length} read queries over ${tables} tables, slowest ${Math.max(0, ...queries.map((q) => q.ms))}ms`,
				);
				for (const q of failed) ctx.warn(`${q.sql}: ${q.error}`);
				const hook = await runHookOrAsk(
					"SMOKE_TEST_CMD",
					"check the app's main pages and its API by hand",
					{
						env: ctx.env,
						signal: ctx.signal,
						yes: Boolean(ctx.flags.yes),
						ask: ctx.confirm,
						say: ctx.log,
						log: (line) => ctx.log(`  | ${line}`),
					},
				);
				ctx.state.smoke = { queries, hook };
				if (hook.command)
					ctx.log(
						`SMOKE_TEST_CMD (${hook.command}): ${hook.outcome} in ${formatDuration(hook.durationMs)}`,
					);
				if (failed.length || hook.outcome === "failed") {
					throw new RunbookError(
						failed.length
							? `${failed.length} smoke query(ies) failed, first: ${failed[0].sql}: ${failed[0].error}`
							: `The smoke test failed (SMOKE_TEST_CMD${hook.exitCode !== undefined ? ` exit ${hook.exitCode}` : ""}): ${hook.output.split("\n").slice(-2).join(" ")}`,
					);
				}
				return {
					summary: `${queries.length} queries ok; SMOKE_TEST_CMD ${hook.command ? hook.outcome : hook.outcome === "manual" ? "checked by hand" : "not set"}`,
					data: { queries, hook },
				};
			},
			onFailure: stateAfterFailure,
		},
		{
			title: "Monitor: blocked sessions, lock waits, errors",
			skip: (ctx) =>
				notInDryRun(ctx) ||
				(Number(ctx.flags["monitor-for"]) === 0 ? "--monitor-for 0" : false),
			async run(ctx) {
				const s = settings(ctx);
				let lastPrint = 0;
				const w = await watchLocks(await ctx.db(), {
					seconds: s.monitorSeconds,
					signal: ctx.signal,
					onSample(elapsed, waiting) {
						if (waiting.length) {
							for (const x of waiting)
								ctx.warn(
									`waiting ${x.waitS}s on ${x.table ?? "a lock"}: ${describeSession(x)} (blocked by ${x.blockedBy.join(", ")})`,
								);
						} else if (elapsed - lastPrint >= 10) {
							lastPrint = elapsed;
							ctx.log(
								`${Math.round(elapsed)}s of ${s.monitorSeconds}s: no session waiting on a lock`,
							);
						}
					},
				});
				ctx.state.watch = w;
				const worrying = w.blocked.filter((x) => x.waitS >= 1);
				ctx.log(
					`${w.seconds}s: ${w.blocked.length ? `${w.blocked.length} session(s) waited on locks, longest ${w.maxWaitS}s` : "no session waited on a lock"}; ` +
						`${w.delta.commits} commits, ${w.delta.rollbacks} rollbacks, ${w.delta.deadlocks} deadlocks`,
				);
				return {
					status: worrying.length || w.delta.deadlocks ? "warning" : "ok",
					summary: `${w.blocked.length} blocked session(s) (longest ${w.maxWaitS}s), ${w.delta.rollbacks} rollbacks, ${w.delta.deadlocks} deadlocks`,
					data: w,
				};
			},
			onFailure: stateAfterFailure,
		},
		{
			title: "Summary",
			async run(ctx) {
				const rows = ctx.reports
					.filter((r) => r.title !== "Summary")
					.map((r) => ({
						step: `${r.no}. ${r.title}`,
						status: r.status,
						time:
							r.duration_ms === undefined ? "" : formatDuration(r.duration_ms),
					}));
				ctx.log(table(rows));
				if (nothingPending(ctx))
					return { summary: "nothing to deploy: the database is up to date" };
				if (ctx.dryRun) {
					return {
						summary: `dry run: would back up, then apply ${ctx.state.pending.length} migration(s): ${ctx.state.pending.map((m) => m.name).join(", ")}`,
					};
				}
				const cmd = rollback(ctx) as string;
				ctx.log(`applied: ${ctx.state.deploy?.applied.join(", ")}`);
				ctx.log(`backup:  ${ctx.state.backup?.id}`);
				ctx.log(
					`if the app misbehaves, restore the pre-deploy backup with:\n  ${cmd}`,
				);
				return {
					summary: `deployed ${ctx.state.deploy?.applied.length} migration(s); rollback: ${cmd}`,
				};
			},
		},
	],
	summarize: (ctx) => ({
		pending: ctx.state.pending.map((m) => m.name),
		findings: ctx.state.lint.flatMap((l) =>
			l.findings.map((f) => ({ file: l.file, ...f })),
		),
		backup_id: ctx.state.backup?.id ?? null,
		rollback_command: rollback(ctx),
		applied: ctx.state.deploy?.applied ?? [],
		attempts: ctx.state.deploy?.attempts ?? [],
		failure: ctx.state.deploy?.failure ?? null,
		monitor: ctx.state.watch ?? null,
	}),
});
