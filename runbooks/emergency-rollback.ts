#!/usr/bin/env -S npx tsx --
// The seed's "Emergency Rollback Procedure" (stop the app, restore from backup, revert the migration
// files, restart) as one command for on-call: it proposes the right backup, shows what it holds
// next to the database's current state, verifies it before anything changes, keeps a safety
// backup, restores in one transaction (a killed or failed restore leaves the database as it was),
// prints the git revert, and verifies the result. --rehearse restores into a scratch database
// instead; --mode down rolls migrations back with Prisma's down SQL, keeping the data.

import { join, relative } from "node:path";
import { type HookRun, runHook, runHookOrAsk } from "../lib/app/hooks.ts";
import { smokeQueries } from "../lib/app/smoke.ts";
import {
	type BackupEntry,
	type BackupManifest,
	backupDir,
	createVerifiedBackup,
	describeBackup,
	findBackup,
	listBackups,
	rollbackCommand,
	type VerifyResult,
	verifyBackup,
} from "../lib/backup/archive.ts";
import {
	type PutBack,
	putBackCommand,
	putBackRows,
} from "../lib/backup/keep-new-rows.ts";
import {
	createScratchDatabase,
	describeSwapRestore,
	describeTransactionRestore,
	dropDatabase,
	leftoverDatabases,
	RESTORE_METHODS,
	type RestoreMethod,
	restoreBySwap,
	restoreInTransaction,
	restoreIntoDatabase,
	scopedRestore,
	scratchName,
} from "../lib/backup/restore.ts";
import {
	appTables,
	type BackupIndex,
	byImportance,
	compareWithDatabase,
	describeChanges,
	indexBackup,
	type NewRows,
	newRowsInArchive,
	newRowsInDatabase,
	type TableChanges,
} from "../lib/backup/row-changes.ts";
import { listTables } from "../lib/backup/row-checksums.ts";
import { describeScope, scopeOf } from "../lib/backup/scope.ts";
import { formatMs, parseDuration } from "../lib/kit/duration.ts";
import { EXIT, RunbookError, refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration, table } from "../lib/kit/output.ts";
import { startProgress } from "../lib/kit/progress.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { acquireRunLock } from "../lib/kit/run-lock.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import {
	applyDown,
	computeDownSql,
	type DataLoss,
	type DownSql,
	dataLosses,
	describeDownDiff,
	describeLoss,
	historySql,
	measureLosses,
} from "../lib/migrations/down.ts";
import { databaseDriftAgainst, explainDrift } from "../lib/migrations/drift.ts";
import {
	commitsAdding,
	gitRevert,
	type MigrationCommit,
	removeFoldersCommand,
	repositoryOf,
	resolveCommit,
	revertCommand,
	revertOrder,
	revertTakesMore,
} from "../lib/migrations/git.ts";
import { type History, readHistory } from "../lib/migrations/history.ts";
import {
	describeFindings,
	type LintResult,
	lintSql,
} from "../lib/migrations/lint.ts";
import { displayPath, migrationsDir } from "../lib/migrations/prisma-cli.ts";
import {
	lockHolders,
	readSessions,
	signalSession,
} from "../lib/pg/activity.ts";
import { countTables, databaseSize, formatBytes } from "../lib/pg/catalog.ts";
import { findTool, type Tool } from "../lib/pg/client-tools.ts";
import { connect, type Db, quoteIdent, serverVersion } from "../lib/pg/db.ts";
import {
	type Connection,
	makeTarget,
	type Target,
	withDatabase,
} from "../lib/pg/target.ts";

const NAME = "emergency-rollback";
const SCRIPT = `runbooks/${NAME}.ts`;
/** Above this size the current state's row counts are estimates (an exact count reads every table). */
const EXACT_COUNT_LIMIT = 1024 ** 3;

type Mode = "restore" | "rehearse" | "down" | "put-back";

interface Settings {
	mode: Mode;
	method: RestoreMethod;
	lockTimeoutMs: number;
	statementTimeoutMs: number;
	retries: number;
	jobs: number;
	maintenanceDb: string;
	gitRevert: string[];
	keepNewRows: boolean;
}

interface Current {
	latest: string | null;
	applied: string[];
	counts: Record<string, number>;
	exact: boolean;
	bytes: number;
}

interface Verification {
	problems: string[];
	counts: Array<{
		table: string;
		expected: number | null;
		actual: number | null;
	}>;
	drift: string[];
	smokeQueries: number;
	hooks: HookRun[];
}

interface State {
	server?: { text: string; major: number };
	history?: History;
	current?: Current;
	backup?: BackupEntry;
	/** Why there is nothing to do (no backup under --dry-run, nothing to roll back). */
	nothing?: string;
	verified?: VerifyResult;
	tools?: { pgRestore: Tool; psql: Tool };
	/** Migrations the rollback takes out of the database (applied now, not after). */
	later: string[];
	down?: DownSql;
	losses: DataLoss[];
	lint?: LintResult;
	countsBefore?: Record<string, number>;
	hooks: HookRun[];
	safety?: BackupManifest;
	terminated: number[];
	restore?: {
		method: RestoreMethod;
		durationMs: number;
		rows: number;
		attempts: number;
		oldDatabase?: string;
	};
	swapped: boolean;
	client?: Db;
	scratch?: string;
	scratchDropped: boolean;
	repository: string | null;
	/** Migrations in the folder that the rolled-back database does not have, with their commits. */
	files: MigrationCommit[];
	revert?: string;
	reverted: string[];
	verification?: Verification;
	/** Restore mode: what the restore takes away, per table (before it asks). */
	changes?: TableChanges[];
	/** --put-back: the safety backup whose new rows go back in. */
	safetyEntry?: BackupEntry;
	/** The backup's keys per table, read for the comparison (restore mode). */
	backupIndex?: BackupIndex;
	/** Rows inserted since the backup, read from the database just before the restore. */
	captured?: NewRows[];
	/** The rows to put back (captured, or from the safety backup) and what became of them. */
	newRows?: NewRows[];
	putBack?: PutBack[];
	downAttempts?: number;
	deletedRows?: number;
	restorePhase?: string;
}

type Ctx = Context<State>;

function settings(ctx: Ctx): Settings {
	const f = ctx.flags;
	const modeFlag = String(f.mode);
	if (modeFlag !== "restore" && modeFlag !== "down")
		throw usageError(`--mode must be restore or down, not "${modeFlag}".`);
	const mode: Mode = f.rehearse
		? "rehearse"
		: f["put-back"]
			? "put-back"
			: modeFlag;
	const method = String(f.method) as RestoreMethod;
	if (!RESTORE_METHODS.includes(method))
		throw usageError(
			`--method must be ${RESTORE_METHODS.join(" or ")}, not "${f.method}".`,
		);
	if (modeFlag === "down") {
		if (f.rehearse)
			throw usageError(
				"--rehearse goes with restore mode: it rehearses restoring a backup.",
			);
		if (!f.to)
			throw usageError(
				"--mode down needs --to <migration>: the last migration to keep.",
				"Example: --mode down --to 20241230000000_comprehensive_schema",
			);
		if (f.backup)
			throw usageError(
				"--backup goes with restore mode; --mode down restores no backup.",
			);
		if (f.method !== "transaction")
			throw usageError("--method goes with restore mode, not --mode down.");
	} else if (f.to) {
		throw usageError(
			"--to goes with --mode down (restore mode restores a backup: pick it with --backup <id>).",
		);
	}
	if (f["put-back"] && (modeFlag !== "restore" || f.rehearse || !f.backup))
		throw usageError(
			"--put-back <safety-id> puts rows back after a restore: it needs --backup <id> (the backup that was restored) and goes without --mode down and --rehearse.",
		);
	if (f["keep-new-rows"] && (mode !== "restore" || f["skip-safety-backup"]))
		throw usageError(
			"--keep-new-rows goes with restore mode and its safety backup (not --mode down, --rehearse or --skip-safety-backup).",
		);
	if (mode === "rehearse" && (f["git-revert"] || f["skip-safety-backup"]))
		throw usageError(
			"--rehearse changes nothing but a scratch database: --git-revert and --skip-safety-backup do not apply.",
		);
	const jobs = Number(f.jobs);
	if (!Number.isInteger(jobs) || jobs < 1)
		throw usageError(
			`--jobs needs a whole number of at least 1, not "${f.jobs}".`,
		);
	const retries = Number(f.retries);
	if (!Number.isInteger(retries))
		throw usageError(`--retries needs a whole number, not "${f.retries}".`);
	const lockTimeoutMs = parseDuration(
		f["lock-timeout"] as string,
		"--lock-timeout",
	);
	if (lockTimeoutMs < 100)
		throw usageError("--lock-timeout must be at least 100ms.");
	return {
		mode,
		method,
		lockTimeoutMs,
		statementTimeoutMs: parseDuration(
			f["statement-timeout"] as string,
			"--statement-timeout",
		),
		retries,
		jobs,
		maintenanceDb: String(f["maintenance-db"]),
		gitRevert: String(f["git-revert"] ?? "")
			.split(",")
			.map((s) => s.trim())
			.filter(Boolean),
		keepNewRows: Boolean(f["keep-new-rows"]),
	};
}

/** What the restore and rehearse steps work from: the settings, the chosen backup, its archive, the tools. */
function restoreInputs(ctx: Ctx) {
	const m = ctx.state.backup?.manifest as BackupManifest;
	return {
		s: settings(ctx),
		m,
		archive: `${backupDir(ctx.env)}/${m.archive}`,
		tools: ctx.state.tools as { pgRestore: Tool; psql: Tool },
	};
}

/** For a backup of the app's objects only, how to restore it into `conn`'s database (lib/backup/scope.ts). */
async function scopeFor(ctx: Ctx, conn: Connection) {
	const { m, archive, tools } = restoreInputs(ctx);
	const scope = await scopedRestore(conn, m, archive, tools.pgRestore, ctx.env);
	if (scope) ctx.defer(() => scope.dispose());
	return scope;
}

/** The app's schemas when the chosen backup holds the app's objects only. */
const appSchemas = (ctx: Ctx) => {
	const scope = scopeOf(ctx.state.backup?.manifest ?? {});
	return scope.kind === "app" ? scope.schemas : undefined;
};

/** Drops the scratch databases an interrupted swap restore or rehearsal left behind. */
async function dropLeftovers(
	ctx: Ctx,
	db: Db,
	kind: "restore" | "rehearse",
): Promise<void> {
	for (const name of await leftoverDatabases(
		db,
		ctx.target.direct.database,
		kind,
	)) {
		await dropDatabase(db, name);
		ctx.log(
			`dropped ${name}, left by an interrupted ${kind === "restore" ? "swap restore" : "rehearsal"}`,
		);
	}
}

const mode = (ctx: Ctx) => settings(ctx).mode;
const only =
	(...modes: Mode[]) =>
	(ctx: Ctx): string | false => {
		const m = mode(ctx);
		if (!modes.includes(m))
			return `not part of ${m === "down" ? "--mode down" : m === "rehearse" ? "--rehearse" : m === "put-back" ? "--put-back" : "restore mode"}`;
		return ctx.state.nothing ?? false;
	};
const again = (add: string[] = []) => rerunCommand(SCRIPT, { add });

/** The target's connection: the runner's, or after a swap (which ends every session) a new one. */
async function targetDb(ctx: Ctx): Promise<Db> {
	if (!ctx.state.swapped) return ctx.db();
	if (!ctx.state.client) {
		const client = await connect(ctx.target.direct, `runbook:${NAME}`);
		ctx.state.client = client;
		ctx.defer(() => client.end().catch(() => {}));
	}
	return ctx.state.client;
}

const sum = (counts: Record<string, number>) =>
	Object.values(counts).reduce((a, b) => a + b, 0);
const fmt = (n: number | null | undefined) =>
	n === null || n === undefined ? "-" : n.toLocaleString("en-US");
const when = (iso: string) => iso.replace("T", " ").replace(/\.\d+Z$/, " UTC");

function age(iso: string): string {
	return `${formatDuration(Date.now() - Date.parse(iso))} ago`;
}

const finishedNames = (h: History) =>
	h.applied
		.filter((r) => r.finished_at && !r.rolled_back_at)
		.map((r) => r.migration_name)
		.filter((n, i, a) => a.indexOf(n) === i)
		.sort();

/**
 * The newest verified pre-deploy backup of this target (for --rehearse, the newest verified backup
 * of any kind: every backup should prove it restores), or the reason there is none.
 */
function proposeBackup(
	ctx: Ctx,
	anyKind: boolean,
): { entry: BackupEntry; note?: string } | { none: string; hint: string } {
	const wanted = anyKind ? "" : "pre-deploy ";
	const fits = (e: BackupEntry) => anyKind || e.manifest.kind === "pre-deploy";
	const all = listBackups(ctx.env);
	const display = ctx.target.direct.display;
	const database = ctx.target.direct.database;
	let mine = all.filter((e) => e.manifest.target === display);
	let note: string | undefined;
	if (mine.length === 0) {
		mine = all.filter((e) => e.manifest.database === database);
		if (mine.length)
			note = `no backup names ${display}; these were made of a database named ${database} through another address (${[...new Set(mine.map((e) => e.manifest.target))].join(", ")}): check it is this one`;
	}
	const usable = (e: BackupEntry) =>
		e.archivePresent &&
		Boolean(e.manifest.verified_at) &&
		!e.manifest.verify_error;
	const pick = mine.find((e) => fits(e) && usable(e));
	const newer = mine.filter(
		(e) =>
			fits(e) &&
			!usable(e) &&
			(!pick || e.manifest.created_at > pick.manifest.created_at),
	);
	if (pick && newer.length)
		note = [
			note,
			`newer ${wanted}backup(s) passed over: ${newer.map((e) => `${e.manifest.id} (${!e.archivePresent ? "archive missing" : e.manifest.verify_error ? `failed verification: ${e.manifest.verify_error}` : "never verified"})`).join("; ")}`,
		]
			.filter(Boolean)
			.join("; ");
	if (pick) return { entry: pick, note };
	const others = mine.filter(usable);
	return {
		none: `There is no verified ${wanted}backup of ${display} in ${backupDir(ctx.env)}${
			mine.length
				? ` (${mine.length} other backup(s) of it: ${mine
						.slice(0, 3)
						.map(
							(e) =>
								`${e.manifest.id} ${e.manifest.kind}${usable(e) ? "" : ", not verified"}`,
						)
						.join("; ")})`
				: ""
		}.`,
		hint: others.length
			? `To restore another one, name it: ${rollbackCommand(others[0].manifest.id)} (list them: npx tsx runbooks/backup.ts list).`
			: "Check BACKUP_DIR (npx tsx runbooks/backup.ts list). To roll back migrations without a backup, see --mode down.",
	};
}

/** Migrations newer than the backup's latest one: what a restore takes out. */
function newerThan(names: string[], latest: string | null): string[] {
	return names.filter((n) => latest === null || n > latest);
}

/** Checks --git-revert against the commits that added the migrations to take out (before anything changes). */
async function checkGitRevert(ctx: Ctx, s: Settings, names: string[]) {
	const dir = migrationsDir(ctx.env);
	ctx.state.repository = await repositoryOf(dir);
	ctx.state.files = ctx.state.repository
		? await commitsAdding(dir, names)
		: names.map((migration) => ({ migration, commit: null, subject: null }));
	if (!s.gitRevert.length) return;
	if (!ctx.state.repository)
		throw usageError(
			`--git-revert: ${displayPath(dir)} is not in a git repository. Nothing was changed.`,
		);
	const known = ctx.state.files
		.map((f) => f.commit)
		.filter(Boolean) as string[];
	for (const ref of s.gitRevert) {
		const full = await resolveCommit(dir, ref);
		if (!full)
			throw usageError(
				`--git-revert ${ref}: no such commit. Nothing was changed.`,
			);
		if (!known.includes(full))
			throw usageError(
				`--git-revert ${ref} did not add any of the migrations this rollback takes out (${names.join(", ") || "none"}). Nothing was changed.`,
				known.length
					? `The commits that added them: ${[...new Set(known)].map((c) => c.slice(0, 12)).join(", ")}`
					: "None of them is committed in git.",
			);
	}
}

function printComparison(ctx: Ctx, m: BackupManifest, cur: Current): void {
	ctx.log(
		`backup:   ${m.id} (${m.kind}), made ${when(m.created_at)} (${age(m.created_at)}) of ${m.target}`,
	);
	ctx.log(
		`          ${formatBytes(m.size_bytes)} ${m.format} archive, pg_dump ${m.pg_dump_version}, verified ${m.verified_at ? when(m.verified_at) : "never"}`,
	);
	ctx.log(
		`latest migration: backup ${m.latest_migration ?? "(none)"}; now ${cur.latest ?? "(none)"}`,
	);
	const keys = [
		...new Set([...Object.keys(m.row_counts), ...Object.keys(cur.counts)]),
	].sort();
	const rows = keys.map((k) => {
		const b = m.row_counts[k];
		const n = cur.counts[k];
		const diff =
			b === undefined
				? "only now"
				: n === undefined
					? "only in backup"
					: n === b
						? ""
						: `${n - b > 0 ? "+" : ""}${fmt(n - b)}`;
		return {
			table: k,
			"in backup": fmt(b),
			[cur.exact ? "now" : "now (est.)"]: fmt(n),
			difference: diff,
		};
	});
	ctx.log(table(rows));
}

async function stopOrStart(
	ctx: Ctx,
	which: "APP_STOP_CMD" | "APP_START_CMD",
	byHand: string,
) {
	const run = await runHookOrAsk(which, byHand, {
		env: ctx.env,
		signal: ctx.signal,
		yes: Boolean(ctx.flags.yes),
		ask: ctx.confirm,
		say: ctx.log,
		log: (line) => ctx.log(`  | ${line}`),
	});
	ctx.state.hooks.push(run);
	return run;
}

const APP_HOOK = {
	stop: {
		hook: "APP_STOP_CMD",
		title: "Stop the app (APP_STOP_CMD)",
		unset: "the operator stops the app and confirms",
		byHand:
			"stop the app (every instance, and the workers and cron jobs that write to the database)",
		failed: "Stopping the app failed",
		state: " The database was not changed.",
		hint: () => `Stop the app by hand, then rerun: ${again()}`,
		manual: "stopped by the operator",
		skipped: "make sure the app is stopped",
	},
	start: {
		hook: "APP_START_CMD",
		title: "Start the app (APP_START_CMD)",
		unset: "the operator starts the app",
		byHand:
			"start the app, in the version that matches the rolled-back schema (deploy the reverted code)",
		failed: "Starting the app failed",
		state: "",
		hint: () =>
			"The database rollback is complete. Start the app by hand, then check it: npx tsx runbooks/validate.ts",
		manual: "started by the operator",
		skipped: "start the app",
	},
} as const;

/** Steps 5 and 12: the app stopped or started by its hook, or by the operator. */
function appStep(which: keyof typeof APP_HOOK): Step<State> {
	const t = APP_HOOK[which];
	return {
		title: t.title,
		kind: "change",
		skip: only("restore", "down"),
		plan: (ctx) => [
			ctx.env[t.hook]
				? `sh -c ${JSON.stringify(ctx.env[t.hook])}`
				: `${t.hook} is not set: ${t.unset}`,
		],
		async run(ctx) {
			const run = await stopOrStart(ctx, t.hook, t.byHand);
			if (run.outcome === "failed")
				throw new RunbookError(
					`${t.failed}${run.exitCode !== undefined ? ` (${t.hook} exit ${run.exitCode})` : ""}: ${run.output.split("\n").slice(-2).join(" ") || "no output"}.${t.state}`,
					EXIT.failed,
					t.hint(),
				);
			return {
				status: run.outcome === "skipped" ? "warning" : "ok",
				summary:
					run.outcome === "passed"
						? `${t.hook} done in ${formatDuration(run.durationMs)}`
						: run.outcome === "manual"
							? t.manual
							: `${t.hook} not set (--yes): ${t.skipped}`,
			};
		},
		onFailure: restoreState,
	};
}

/** Terminates the client sessions on the target other than this runbook's own. */
async function terminateOthers(ctx: Ctx, db: Db): Promise<number[]> {
	const others = (await readSessions(db)).filter(
		(x) =>
			x.here &&
			x.backendType === "client backend" &&
			x.application !== `runbook:${NAME}`,
	);
	const done: number[] = [];
	for (const x of others) {
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

/** The later migrations' fate after the rollback, for messages. */
function filesAdvice(ctx: Ctx): string {
	const s = ctx.state;
	if (!s.files.length) return "";
	if (s.reverted.length)
		return `Migration files: reverted (${s.reverted.map((c) => c.slice(0, 12)).join(", ")}).`;
	return `Migration files still to remove, so that the next deploy does not apply them again: ${s.revert ?? s.files.map((f) => f.migration).join(", ")}`;
}

function restoreState(ctx: Ctx): string {
	const s = ctx.state;
	const lines = [
		s.restore
			? `The database holds backup ${s.backup?.manifest.id} (restored).`
			: s.downAttempts
				? "The down SQL is applied."
				: s.restorePhase === "committing"
					? "The restore was stopped while committing: the database is either wholly restored or wholly as it was, never a mix (a rerun makes sure it holds the backup)."
					: "The database is as it was before the rollback (nothing was restored).",
	];
	if (
		s.hooks.some((h) => h.name === "APP_STOP_CMD") &&
		!s.hooks.some((h) => h.name === "APP_START_CMD")
	)
		lines.push(
			"The app was stopped: start it again (APP_START_CMD) once the database is as you want it.",
		);
	if (s.safety)
		lines.push(
			`To return to the state before this rollback: ${rollbackCommand(s.safety.id)}`,
		);
	const files = filesAdvice(ctx);
	if (files && (s.restore || s.downAttempts)) lines.push(files);
	return lines.join("\n");
}

await runRunbook<State>({
	name: NAME,
	summary:
		"Roll the database back: restore a verified pre-deploy backup atomically (or --mode down: undo migrations keeping the data), then revert the migration files and verify.",
	description:
		"Restore mode (default): proposes the newest verified pre-deploy backup of the target (BACKUP_DIR manifests),\n" +
		"shows what it holds next to the database's current state, and asks once (type the database name, or\n" +
		"--yes --confirm <database>). --backup <id> picks another. Then: stop the app, verify the backup (sha256 and\n" +
		"pg_restore --list; a bad backup is refused before anything changes, exit 3), take a safety backup of the\n" +
		"current state (kind safety: the rollback itself can be undone), terminate the other sessions, restore,\n" +
		"show the migrations the restored history lacks and the git revert that removes them (--git-revert runs it),\n" +
		"start the app, verify (row counts against the manifest, validate's checks against the restored history,\n" +
		"smoke test).\n" +
		"\n" +
		"Atomic restore, --method transaction (default): one psql session runs BEGIN; drop every object of schema\n" +
		"public; the backup's SQL (pg_restore); COMMIT. Killed or failed at any moment, PostgreSQL rolls it all\n" +
		"back: the database is wholly as it was or wholly restored, never a mix. Works on any server where you own\n" +
		"the app's tables (Supabase included) and keeps the database itself (its settings, grants, connections).\n" +
		"--method swap restores into a new database with pg_restore --jobs and swaps the names in one transaction\n" +
		"(ALTER DATABASE RENAME): faster on big databases with several cores, keeps the old database as\n" +
		"<db>_before_rollback_<time>, but needs CREATEDB and ownership, ends every session, and is impossible where\n" +
		"databases cannot be renamed (Supabase). 1 GB on 2 cores: transaction 35 s, swap --jobs 2 28 s, swap\n" +
		"--jobs 1 35 s (docs/benchmarks.md).\n" +
		"\n" +
		"--rehearse: restores the backup into a scratch database, verifies it, reports how long the restore takes\n" +
		"and drops it; the target is not touched. Run it on a schedule to know the backups work.\n" +
		"--mode down --to <migration>: computes the down SQL with prisma migrate diff (the applied migrations back\n" +
		"to those up to <migration>), lints it and names every table and column whose data it drops, then applies\n" +
		"it and deletes the later migrations' rows from _prisma_migrations in one transaction (lock_timeout, as\n" +
		"deploy-production). Once their files are reverted, migrate status and validate are clean.",
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
	env: {
		BACKUP_DIR:
			"Where backups and their manifests are (default backups/); the safety backup goes here too.",
		BACKUP_SCOPE:
			"What a backup holds: auto (default: the app's objects only on a Supabase database, else the whole database), app or database.",
		APP_SCHEMAS:
			"With scope app: the app's schemas, comma-separated (default public).",
		BACKUP_MIN_FREE_MB:
			"Space to leave free on BACKUP_DIR's disk after the safety backup (default 256).",
		APP_STOP_CMD:
			"Shell command that stops the app (else the runbook asks you to and waits).",
		APP_START_CMD:
			"Shell command that starts the app (else the runbook tells you to).",
		SMOKE_TEST_CMD:
			"Shell command that checks the app works, run after the built-in smoke queries.",
		VERIFY_CMD:
			"Shell command run at the verify step, e.g. npm run build (optional).",
		PRISMA_MIGRATIONS_DIR: "Migrations folder (default prisma/migrations).",
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
		PG_BIN_DIR:
			"Directory of pg_restore/psql/pg_dump when not the newest under /usr/lib/postgresql or on PATH.",
	},
	examples: [
		"npx tsx runbooks/emergency-rollback.ts                       # propose the newest pre-deploy backup, ask, restore",
		"npx tsx runbooks/emergency-rollback.ts --dry-run",
		"npx tsx runbooks/emergency-rollback.ts --backup faceswap-20250107T031500Z --yes --confirm faceswap",
		"npx tsx runbooks/emergency-rollback.ts --rehearse --yes      # nightly: prove the newest backup restores",
		"npx tsx runbooks/emergency-rollback.ts --mode down --to 20241230000000_comprehensive_schema",
		"npx tsx runbooks/emergency-rollback.ts --yes --confirm faceswap --git-revert 3f2c1ab",
	],
	exclusive: true,
	state: () => ({
		later: [],
		losses: [],
		hooks: [],
		terminated: [],
		swapped: false,
		scratchDropped: false,
		repository: null,
		files: [],
		reverted: [],
	}),
	steps: [
		{
			title: "Choose what to roll back to",
			async run(ctx) {
				const s = settings(ctx);
				const db = await ctx.db();
				const v = await serverVersion(db);
				ctx.state.server = { text: v.text, major: v.major };
				const dir = migrationsDir(ctx.env);
				const h = await readHistory(db, dir);
				ctx.state.history = h;
				const applied = finishedNames(h);
				if (s.mode === "down") return chooseDown(ctx, s, h, applied);
				if (s.mode === "put-back") return choosePutBack(ctx);

				let entry: BackupEntry;
				if (ctx.flags.backup) {
					entry = findBackup(ctx.env, String(ctx.flags.backup));
					if (entry.manifest.target !== ctx.target.direct.display)
						ctx.warn(
							`${entry.manifest.id} was made of ${entry.manifest.target}, not of ${ctx.target.direct.display}: check that this is the database you mean to overwrite.`,
						);
				} else {
					const p = proposeBackup(ctx, s.mode === "rehearse");
					if ("none" in p) {
						if (ctx.dryRun) {
							ctx.state.nothing = `no verified ${s.mode === "rehearse" ? "" : "pre-deploy "}backup`;
							ctx.warn(`${p.none} A real run would refuse (exit 3).`);
							ctx.log(p.hint);
							return {
								status: "warning",
								summary: "no backup to restore: nothing to plan",
							};
						}
						throw refusal(`${p.none} Nothing was changed.`, p.hint);
					}
					entry = p.entry;
					if (p.note) ctx.warn(p.note);
					if (s.mode === "rehearse")
						ctx.log(
							`rehearsing the newest verified backup of the target: ${entry.manifest.id}, a ${entry.manifest.kind} backup`,
						);
				}
				ctx.state.backup = entry;
				const m = entry.manifest;
				const scope = scopeOf(m);
				if (scope.kind === "app" && s.mode === "restore" && s.method === "swap")
					throw usageError(
						`${m.id} holds the app's objects only (${describeScope(scope)}): --method swap would replace the whole database with it. Nothing was changed.`,
						"Use --method transaction (the default), which replaces the app's schemas only.",
					);
				if (!entry.archivePresent)
					ctx.warn(
						`the archive ${m.archive} is missing from ${backupDir(ctx.env)}`,
					);

				const bytes = await databaseSize(db);
				const exact = bytes < EXACT_COUNT_LIMIT;
				const keys = [
					...new Set([...Object.keys(m.row_counts), ...(await listTables(db))]),
				];
				const counted = await countTables(db, keys, { estimate: !exact });
				const counts = Object.fromEntries(
					Object.entries(counted).filter(([, n]) => n !== null),
				) as Record<string, number>;
				ctx.state.current = {
					latest: h.latestApplied,
					applied,
					counts,
					exact,
					bytes,
				};
				printComparison(ctx, m, ctx.state.current);

				ctx.state.later = newerThan(applied, m.latest_migration);
				const local = new Set(h.local.map((x) => x.name));
				const toRevert = [
					...new Set([
						...ctx.state.later,
						...newerThan(
							h.local.map((x) => x.name),
							m.latest_migration,
						),
					]),
				]
					.filter((n) => local.has(n))
					.sort();
				await checkGitRevert(ctx, s, toRevert);
				if (ctx.state.later.length)
					ctx.log(
						`migrations applied since the backup, which the restore takes out: ${ctx.state.later.join(", ")}`,
					);
				return {
					summary: `${m.id} (${m.kind}, ${age(m.created_at)}, latest migration ${m.latest_migration ?? "none"})`,
					data: {
						backup: m,
						current: ctx.state.current,
						later: ctx.state.later,
					},
				};
			},
		},
		{
			title: "Verify the backup: sha256 and pg_restore --list",
			skip: only("restore", "rehearse", "put-back"),
			async run(ctx) {
				const major = ctx.state.server?.major;
				const env = { ...process.env, ...ctx.env };
				if (ctx.state.safetyEntry)
					await verifyOrRefuse(ctx, ctx.state.safetyEntry);
				const r = await verifyOrRefuse(ctx, ctx.state.backup as BackupEntry);
				ctx.state.verified = r;
				const m = r.manifest;
				ctx.state.tools = {
					pgRestore: await findTool("pg_restore", major, env),
					psql: await findTool("psql", major, env),
				};
				ctx.log(
					`pg_restore ${ctx.state.tools.pgRestore.version}, psql ${ctx.state.tools.psql.version}`,
				);
				return {
					summary: `${m.id}: sha256 matches, pg_restore reads it (${r.tocEntries} entries)`,
				};
			},
		},
		{
			title:
				"Compute the down SQL (prisma migrate diff), lint it, name the data it drops",
			skip: only("down"),
			async run(ctx) {
				const db = await ctx.db();
				const applied = finishedNames(ctx.state.history as History);
				const to = String(ctx.flags.to);
				ctx.log(describeDownDiff(to));
				const down = await computeDownSql(
					ctx.target,
					ctx.env,
					applied,
					to,
					ctx.signal,
				);
				ctx.state.down = down;
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
					String(ctx.state.server?.major ?? 15),
				);
				ctx.state.lint = lint;
				if (lint.findings.length)
					ctx.log(
						"squawk: dropped tables and columns are what a rollback is for; read the other findings as locks or rewrites to expect",
					);
				for (const line of describeFindings(lint)) ctx.log(line);
				ctx.state.losses = await measureLosses(db, dataLosses(down.statements));
				for (const l of ctx.state.losses) ctx.warn(`it ${describeLoss(l)}`);
				for (const name of ctx.state.later) {
					const sql =
						ctx.state.history?.local.find((x) => x.name === name)?.sql ?? "";
					if (/\b(INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM)\b/i.test(sql))
						ctx.warn(
							`${name} also changed data (INSERT/UPDATE/DELETE): the down SQL undoes schema changes only, not those.`,
						);
				}
				return {
					status:
						ctx.state.losses.length || lint.findings.length ? "warning" : "ok",
					summary: `${down.statements.length} statement(s); ${ctx.state.losses.length ? ctx.state.losses.map(describeLoss).join("; ") : "drops no data"}`,
					data: {
						sql: down.statements,
						losses: ctx.state.losses,
						findings: lint.findings,
					},
				};
			},
		},
		{
			title: "Confirm the rollback",
			skip: (ctx) =>
				only("restore", "down", "put-back")(ctx) ||
				(ctx.dryRun && mode(ctx) !== "restore"
					? "dry run: nothing to confirm"
					: false),
			async run(ctx) {
				const s = settings(ctx);
				const t = ctx.target.direct;
				if (s.mode === "restore") await showWhatRestoreTakes(ctx);
				if (ctx.dryRun)
					return { summary: "dry run: shown what the restore would take away" };
				ctx.log(
					`target:  ${t.display}${ctx.target.isProduction ? " [production]" : ""}`,
				);
				if (ctx.flags["skip-safety-backup"])
					ctx.warn(
						"--skip-safety-backup: no backup of the current state will be taken; this rollback cannot be undone.",
					);
				if (s.mode === "put-back") {
					await ctx.confirmRun(
						`Put the rows inserted between ${ctx.state.backup?.manifest.id} and ${ctx.state.safetyEntry?.manifest.id} back into ${t.display} (one transaction; rows whose key exists are left out).`,
					);
				} else if (s.mode === "down") {
					ctx.log(
						`roll back: ${ctx.state.later.join(", ")} (down SQL above, one transaction, lock_timeout ${formatMs(s.lockTimeoutMs)})`,
					);
					await ctx.confirmRunDestructive(
						`Roll back ${ctx.state.later.length} migration(s) on ${t.display}${ctx.state.losses.length ? `: this ${ctx.state.losses.map(describeLoss).join("; ")}` : ""}.`,
					);
				} else {
					const m = ctx.state.backup?.manifest as BackupManifest;
					ctx.log(
						`restore: ${m.id}, made ${when(m.created_at)} (${age(m.created_at)}), method ${s.method}`,
					);
					await ctx.confirmRunDestructive(
						`Replace everything in ${t.display} with backup ${m.id} (made ${age(m.created_at)}): data written since then is replaced.`,
					);
				}
				return {
					summary: ctx.flags.yes
						? `confirmed with --yes --confirm ${t.database}`
						: "confirmed by the operator",
				};
			},
		},
		appStep("stop"),
		{
			title: "Safety backup of the current state",
			kind: "write",
			skip: (ctx) =>
				only("restore", "down")(ctx) ||
				(ctx.flags["skip-safety-backup"]
					? "--skip-safety-backup: this rollback cannot be undone from a backup"
					: false),
			plan: (ctx) => describeBackup(ctx.target.direct, { env: ctx.env }),
			async run(ctx) {
				const r = await createVerifiedBackup(ctx.target.direct, {
					kind: "safety",
					env: ctx.env,
					signal: ctx.signal,
					log: ctx.log,
				});
				const m = r.manifest;
				if (!r.ok)
					throw new RunbookError(
						`The safety backup ${m.id} failed verification (${r.problems[0]}). Nothing was rolled back.`,
						EXIT.failed,
						"Check BACKUP_DIR's disk, then rerun.",
					);
				ctx.state.safety = r.manifest;
				ctx.log(`to undo the rollback later: ${rollbackCommand(m.id)}`);
				if (ctx.state.backupIndex) {
					// Read now, while the database still holds them: the keep step puts them back.
					const { psql } = ctx.state.tools as { psql: Tool };
					const db = await ctx.db();
					ctx.state.captured = await newRowsInDatabase(
						await appTables(db, ["public"]),
						ctx.state.backupIndex,
						db,
						psql,
						ctx.target.direct,
						{
							env: ctx.env,
							signal: ctx.signal,
							since: ctx.state.backup?.manifest.snapshot,
						},
					);
				}
				return {
					summary: `${m.id} (${formatBytes(m.size_bytes)}, ${fmt(sum(m.row_counts))} rows), verified`,
					data: r.manifest,
				};
			},
			onFailure: restoreState,
		},
		{
			title: "Terminate the other sessions on the database",
			kind: "destroy",
			skip: only("restore"),
			async plan(ctx) {
				const db = await ctx.db();
				const others = (await readSessions(db)).filter(
					(x) =>
						x.here &&
						x.backendType === "client backend" &&
						x.application !== `runbook:${NAME}`,
				);
				return [
					`-- ${others.length} other session(s) on ${ctx.target.direct.database} now${others.length ? `: ${others.map((x) => `pid ${x.pid} (${x.application || x.user})`).join(", ")}` : ""}`,
					"select pg_terminate_backend(pid, 5000) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid();  -- except this runbook's own",
				];
			},
			async run(ctx) {
				const done = await terminateOthers(ctx, await ctx.db());
				ctx.state.terminated = done;
				return {
					summary: done.length
						? `terminated ${done.length} session(s)`
						: "no other session was connected",
				};
			},
			onFailure: restoreState,
		},
		{
			title: "Restore atomically",
			kind: "destroy",
			skip: only("restore"),
			plan(ctx) {
				const { s, archive } = restoreInputs(ctx);
				return s.method === "swap"
					? describeSwapRestore(
							ctx.target.direct,
							archive,
							s.jobs,
							s.maintenanceDb,
						)
					: describeTransactionRestore(
							ctx.target.direct,
							archive,
							s.lockTimeoutMs,
							appSchemas(ctx),
						);
			},
			async run(ctx) {
				const { s, m, archive, tools } = restoreInputs(ctx);
				const db = await ctx.db();
				await dropLeftovers(ctx, db, "restore");
				const total = sum(m.row_counts);
				if (s.method === "swap") {
					const out = await restoreBySwap(ctx.target.direct, {
						archive,
						format: m.format,
						...tools,
						lockTimeoutMs: s.lockTimeoutMs,
						env: ctx.env,
						signal: ctx.signal,
						jobs: s.jobs,
						maintenanceDb: s.maintenanceDb,
						onPhase: (p) => {
							ctx.state.restorePhase = p;
							ctx.log(p);
						},
					});
					ctx.state.swapped = true;
					ctx.state.restore = {
						method: "swap",
						durationMs: out.durationMs,
						rows: total,
						attempts: 1,
						oldDatabase: out.oldDatabase,
					};
					ctx.log(
						`pg_restore --jobs ${s.jobs} took ${formatDuration(out.restoreMs)}, the rename ${formatDuration(out.swapMs)}`,
					);
					ctx.log(
						`the previous database is kept as ${out.oldDatabase}; drop it when satisfied: DROP DATABASE ${quoteIdent(out.oldDatabase)};`,
					);
					try {
						const lock = await acquireRunLock(ctx.target.direct, NAME);
						ctx.defer(() => lock.release());
					} catch (err) {
						ctx.warn(
							`the run lock could not be taken again on the new database: ${(err as Error).message}`,
						);
					}
					return {
						summary: `swapped in ${m.id} in ${formatDuration(out.durationMs)}; previous database kept as ${out.oldDatabase}`,
					};
				}
				const scope = await scopeFor(ctx, ctx.target.direct);
				for (let attempt = 1; ; attempt++) {
					const progress = startProgress({
						unit: "rows",
						total,
						estimated: false,
					});
					try {
						const out = await restoreInTransaction(ctx.target.direct, {
							archive,
							format: m.format,
							...tools,
							lockTimeoutMs: s.lockTimeoutMs,
							totalRows: total,
							env: ctx.env,
							signal: ctx.signal,
							scope,
							onProgress: (rows, t) =>
								progress.update(rows, t ? `loading ${t}` : undefined),
							onPhase: (p) => {
								ctx.state.restorePhase = p;
								progress.note(
									p === "clearing"
										? `BEGIN; dropping every object of schema ${scope?.schemas.join(", ") ?? "public"} (lock_timeout ${formatMs(s.lockTimeoutMs)})`
										: p === "loading"
											? `loading ${m.id} (${fmt(total)} rows)`
											: p === "committing"
												? "COMMIT: committing the restore"
												: "committed: the database now holds the backup",
								);
							},
						});
						progress.update(out.rows);
						progress.stop();
						ctx.state.restore = {
							method: "transaction",
							durationMs: out.durationMs,
							rows: out.rows,
							attempts: attempt,
						};
						return {
							summary: `restored ${m.id} in ${formatDuration(out.durationMs)} (${fmt(out.rows)} rows), in one transaction`,
						};
					} catch (err) {
						progress.stop();
						const lockTimeout =
							err instanceof RunbookError && /lock/i.test(err.hint ?? "");
						if (!lockTimeout || attempt > s.retries) throw err;
						ctx.warn(
							`attempt ${attempt}: another session held a lock (rolled back, nothing changed); terminating the sessions again`,
						);
						ctx.state.terminated.push(...(await terminateOthers(ctx, db)));
					}
				}
			},
			onFailure: restoreState,
		},
		{
			title: "Put back the rows inserted since the backup (one transaction)",
			kind: "change",
			skip: (ctx) =>
				only("restore", "put-back")(ctx) ||
				(mode(ctx) === "restore" && !ctx.state.safety && !ctx.dryRun
					? "no safety backup (--skip-safety-backup): nothing to take the rows from"
					: false),
			plan: (ctx) => [
				`-- rows of ${ctx.state.safety?.id ?? ctx.state.safetyEntry?.manifest.id ?? "the safety backup"} whose primary key ${ctx.state.backup?.manifest.id} does not hold, table by table in foreign-key order:`,
				"BEGIN; SET LOCAL lock_timeout = ...;",
				"INSERT INTO <table> (<columns the restored schema has>) VALUES ... ON CONFLICT DO NOTHING;  -- a key that exists again is left out and named",
				"SELECT setval(<serial sequence>, max(<column>));  -- where a table has one",
				"COMMIT;",
			],
			async run(ctx) {
				const s = settings(ctx);
				const safety = ctx.state.safetyEntry ?? {
					manifest: ctx.state.safety as BackupManifest,
					archivePresent: true,
				};
				const db = await targetDb(ctx);
				const newRows =
					ctx.state.captured ??
					(await newRowsFromSafety(ctx, db, safety as BackupEntry));
				ctx.state.newRows = newRows;
				const count = newRows.reduce((a, c) => a + c.rows.length, 0);
				if (!count) return { summary: "no row was inserted since the backup" };
				const perTable = newRows
					.map((c) => `${c.table} +${fmt(c.rows.length)}`)
					.join(", ");
				ctx.log(`inserted since the backup: ${perTable}`);
				const later = putBackCommand(
					SCRIPT,
					safety.manifest.id,
					ctx.state.backup?.manifest.id as string,
					ctx.target.direct.database,
				);
				if (s.mode === "put-back" || s.keepNewRows)
					ctx.log(
						`if this step is stopped, none of them goes in (one transaction); then run: ${later}`,
					);
				const choice =
					s.mode === "put-back" || s.keepNewRows
						? "keep"
						: await ctx.choose(
								`Put the ${fmt(count)} row(s) inserted since the backup back (${perTable})?`,
								[
									{
										value: "keep",
										title: "Yes, put them back now (one transaction)",
									},
									{
										value: "later",
										title:
											"No, leave them out (they stay in the safety backup)",
									},
								],
								"later",
							);
				if (choice !== "keep") {
					ctx.log(`to put them back later: ${later}`);
					return {
						status: "warning",
						summary: `${fmt(count)} row(s) inserted since the backup left out (${perTable}); to put them back: ${later}`,
					};
				}
				ctx.state.putBack = await putBackRows(db, newRows, {
					lockTimeoutMs: s.lockTimeoutMs,
					signal: ctx.signal,
				});
				for (const p of ctx.state.putBack)
					if (p.conflicts.length)
						ctx.warn(
							`${p.table}: ${p.conflicts.length} row(s) left out, their key (or another unique value) exists again: ${p.conflicts.slice(0, 5).join(", ")}`,
						);
				const put = ctx.state.putBack.reduce((a, p) => a + p.inserted, 0);
				return {
					status: put < count ? "warning" : "ok",
					summary: `put back ${fmt(put)} of ${fmt(count)} row(s) inserted since the backup: ${ctx.state.putBack.map((p) => `${p.table} +${fmt(p.inserted)}`).join(", ")}`,
					data: ctx.state.putBack,
				};
			},
			onFailure: (ctx) =>
				`${mode(ctx) === "restore" ? `The database holds backup ${ctx.state.backup?.manifest.id} (restored). ` : ""}None of the new rows is in: they were put back in one transaction, which did not commit.`,
			resume: (ctx) =>
				putBackCommand(
					SCRIPT,
					(ctx.state.safety?.id ??
						ctx.state.safetyEntry?.manifest.id) as string,
					ctx.state.backup?.manifest.id as string,
					ctx.target.direct.database,
				),
		},
		{
			title:
				"Apply the down SQL and update _prisma_migrations (one transaction)",
			kind: "destroy",
			skip: only("down"),
			plan(ctx) {
				const s = settings(ctx);
				const sql = ctx.state.down?.statements ?? [
					"<the down SQL from the step above>",
				];
				return [
					"BEGIN;",
					`SET LOCAL lock_timeout = ${s.lockTimeoutMs}; SET LOCAL statement_timeout = ${s.statementTimeoutMs};`,
					"SELECT pg_try_advisory_xact_lock(72707369);  -- Prisma Migrate's lock: never alongside a deploy",
					...sql,
					historySql(ctx.state.later),
					"COMMIT;",
				];
			},
			async run(ctx) {
				const s = settings(ctx);
				const db = await ctx.db();
				const sql = ctx.state.down?.statements ?? [];
				const touched = [...new Set(ctx.state.losses.map((l) => l.table))];
				const out = await applyDown(db, sql, ctx.state.later, {
					lockTimeoutMs: s.lockTimeoutMs,
					statementTimeoutMs: s.statementTimeoutMs,
					retries: s.retries,
					signal: ctx.signal,
					async before(tx) {
						const tables = await listTables(tx);
						ctx.state.countsBefore = (await countTables(tx, tables)) as Record<
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
				});
				ctx.state.downAttempts = out.attempts;
				ctx.state.deletedRows = out.deletedRows;
				return {
					summary: `${sql.length} statement(s) applied and ${out.deletedRows} _prisma_migrations row(s) removed, in one transaction`,
				};
			},
			onFailure: restoreState,
		},
		{
			title: "Rehearse: restore into a scratch database, timed",
			kind: "write",
			skip: only("rehearse"),
			plan(ctx) {
				const { s, archive } = restoreInputs(ctx);
				const scratch = scratchName(ctx.target.direct.database, "rehearse");
				const conn = withDatabase(ctx.target.direct, scratch);
				return [
					`CREATE DATABASE ${quoteIdent(scratch)} TEMPLATE template0;`,
					...(s.method === "swap"
						? [`pg_restore --jobs=${s.jobs} --dbname=${scratch} ${archive}`]
						: describeTransactionRestore(
								conn,
								archive,
								s.lockTimeoutMs,
								appSchemas(ctx),
							)),
					"-- verified as the real restore is, then:",
					`DROP DATABASE ${quoteIdent(scratch)} WITH (FORCE);`,
				];
			},
			async run(ctx) {
				const { s, m, archive, tools } = restoreInputs(ctx);
				const db = await ctx.db();
				await dropLeftovers(ctx, db, "rehearse");
				const scratch = scratchName(ctx.target.direct.database, "rehearse");
				await createScratchDatabase(db, scratch, ctx.target.direct.database);
				ctx.state.scratch = scratch;
				ctx.defer(async () => {
					if (!ctx.state.scratchDropped)
						await dropDatabase(await ctx.db(), scratch).catch(() => {});
				});
				ctx.log(`created ${scratch}`);
				const conn = withDatabase(ctx.target.direct, scratch);
				const scope = await scopeFor(ctx, conn);
				const total = sum(m.row_counts);
				const progress = startProgress({ unit: "rows", total });
				try {
					const out =
						s.method === "swap"
							? await restoreIntoDatabase(conn, {
									archive,
									pgRestore: tools.pgRestore,
									env: ctx.env,
									signal: ctx.signal,
									jobs: s.jobs,
									scope,
								})
							: await restoreInTransaction(conn, {
									archive,
									format: m.format,
									...tools,
									lockTimeoutMs: s.lockTimeoutMs,
									totalRows: total,
									env: ctx.env,
									signal: ctx.signal,
									scope,
									onProgress: (rows, t) =>
										progress.update(rows, t ?? undefined),
								});
					ctx.state.restore = {
						method: s.method,
						durationMs: out.durationMs,
						rows: total,
						attempts: 1,
					};
				} finally {
					progress.stop();
				}
				const ms = ctx.state.restore.durationMs;
				return {
					summary: `restored ${m.id} into ${scratch} in ${formatDuration(ms)} (--method ${s.method})`,
				};
			},
			onFailure: (ctx) =>
				`The target was not touched. ${ctx.state.scratch ? `The scratch database ${ctx.state.scratch} is dropped at the end of the run (or by the next rehearsal).` : ""}`,
		},
		{
			title: "Migration files: what to revert in git",
			kind: "write",
			skip: only("restore", "down"),
			async plan(ctx) {
				const s = settings(ctx);
				const files = ctx.state.files;
				if (!files.length)
					return [
						"-- no migration in the folder is newer than what the rollback keeps: nothing to revert",
					];
				const commits = [
					...new Set(files.map((f) => f.commit).filter(Boolean)),
				] as string[];
				return [
					`-- in ${displayPath(migrationsDir(ctx.env))} but not in the rolled-back history: ${files.map((f) => f.migration).join(", ")}`,
					...(commits.length
						? [
								s.gitRevert.length
									? revertCommand(ctx.state.repository, s.gitRevert)
									: `${(await filesRemoval(ctx, commits)).command}   -- printed; run with --git-revert <commit>`,
							]
						: []),
					...files
						.filter((f) => !f.commit)
						.map(
							(f) =>
								`rm -r ${displayPath(migrationsDir(ctx.env))}/${f.migration}   -- not committed in git`,
						),
				];
			},
			async run(ctx) {
				const s = settings(ctx);
				const dir = migrationsDir(ctx.env);
				const db = await targetDb(ctx);
				const h = await readHistory(db, dir);
				const applied = new Set(finishedNames(h));
				const missing = h.local
					.map((x) => x.name)
					.filter((n) => !applied.has(n));
				ctx.state.repository = await repositoryOf(dir);
				ctx.state.files = ctx.state.repository
					? await commitsAdding(dir, missing)
					: missing.map((migration) => ({
							migration,
							commit: null,
							subject: null,
						}));
				if (!missing.length)
					return {
						summary:
							"the folder holds no migration the database lacks: nothing to revert",
					};
				const applied_before = new Set(ctx.state.later);
				for (const f of ctx.state.files)
					ctx.log(
						`${f.migration}${applied_before.has(f.migration) ? " (rolled back now)" : " (was not applied before either)"}: ${f.commit ? `added by ${f.commit.slice(0, 12)} "${f.subject}"` : "not committed in git"}`,
					);
				const commits = await revertOrder(
					dir,
					ctx.state.files.map((f) => f.commit).filter(Boolean) as string[],
				);
				const removal = commits.length
					? await filesRemoval(ctx, commits)
					: null;
				ctx.state.revert = removal?.command;
				for (const more of removal?.more ?? [])
					ctx.warn(
						`${more.commit.slice(0, 12)} also added or changed ${more.others.length} file(s) that stay: ${more.others.slice(0, 5).join(", ")}${more.others.length > 5 ? " …" : ""}; a git revert would remove them too`,
					);
				for (const f of ctx.state.files.filter((x) => !x.commit))
					ctx.log(`remove by hand: rm -r ${displayPath(dir)}/${f.migration}`);
				if (!s.gitRevert.length) {
					if (ctx.state.revert)
						ctx.log(
							`so that the next deploy does not apply them again, run:\n  ${ctx.state.revert}`,
						);
					return {
						status: "warning",
						summary: `${missing.length} migration(s) to remove from the folder: ${ctx.state.revert ?? "see above"}`,
					};
				}
				const full = await Promise.all(
					s.gitRevert.map((r) => resolveCommit(dir, r)),
				);
				const order = await revertOrder(dir, full.filter(Boolean) as string[]);
				const r = await gitRevert(
					ctx.state.repository as string,
					order,
					ctx.signal,
				);
				if (!r.ok)
					throw new RunbookError(
						`git revert ${order.map((c) => c.slice(0, 12)).join(" ")} failed: ${r.output.split("\n").slice(-2).join(" ")}`,
						EXIT.failed,
						"The database rollback is complete; only the files remain. Resolve it in git (git status; git revert --continue, or --abort), then start the app.",
					);
				ctx.state.reverted = order;
				const still = (await readHistory(db, dir)).local
					.map((x) => x.name)
					.filter((n) => missing.includes(n));
				if (still.length)
					ctx.warn(
						`still in the folder after the revert: ${still.join(", ")} (added by another commit?)`,
					);
				ctx.log(r.output);
				return {
					status: still.length ? "warning" : "ok",
					summary: `reverted ${order.map((c) => c.slice(0, 12)).join(", ")}: ${missing.length - still.length} migration folder(s) removed`,
				};
			},
			onFailure: restoreState,
		},
		appStep("start"),
		{
			title: "Verify: row counts, validate checks, smoke test",
			skip: (ctx) =>
				only("restore", "rehearse", "down")(ctx) ||
				(ctx.dryRun ? "dry run: nothing was rolled back" : false),
			async run(ctx) {
				const s = settings(ctx);
				const rehearsing = s.mode === "rehearse";
				const target: Target = rehearsing
					? makeTarget(
							withDatabase(ctx.target.direct, ctx.state.scratch as string).url,
							undefined,
							ctx.env,
						)
					: ctx.target;
				const db = rehearsing
					? await connect(target.direct, `runbook:${NAME}`)
					: await targetDb(ctx);
				try {
					const v = await verifyDatabase(ctx, s, db, target);
					ctx.state.verification = v;
					for (const p of v.problems) ctx.warn(p);
					return {
						status: v.problems.length ? "problem" : "ok",
						summary: v.problems.length
							? `${v.problems.length} problem(s): ${v.problems[0]}`
							: `${v.counts.length} tables' row counts ${s.mode === "down" ? "unchanged" : "as in the manifest"}, history and schema consistent, ${v.smokeQueries} smoke queries ok${v.hooks.length ? `, ${v.hooks.map((h) => `${h.name} ${h.outcome}`).join(", ")}` : ""}`,
						data: v,
					};
				} finally {
					if (rehearsing) {
						await db.end().catch(() => {});
						await dropDatabase(await ctx.db(), ctx.state.scratch as string);
						ctx.state.scratchDropped = true;
						ctx.log(`dropped ${ctx.state.scratch}`);
					}
				}
			},
			onFailure: restoreState,
		},
		{
			title: "Summary",
			async run(ctx) {
				const s = settings(ctx);
				const st = ctx.state;
				ctx.log(
					table(
						ctx.reports
							.filter((r) => r.title !== "Summary" && r.status !== "skipped")
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
				if (st.nothing) return { summary: st.nothing };
				const m = st.backup?.manifest;
				if (ctx.dryRun) {
					return {
						summary:
							s.mode === "down"
								? `dry run: would roll back ${st.later.join(", ")} with ${st.down?.statements.length ?? 0} statement(s) of down SQL`
								: s.mode === "rehearse"
									? `dry run: would restore ${m?.id} into a scratch database and drop it`
									: `dry run: would restore ${m?.id} over ${ctx.target.direct.display} (--method ${s.method})`,
					};
				}
				if (s.mode === "rehearse") {
					const ms = st.restore?.durationMs ?? 0;
					const safetyMs = m?.duration_ms ?? 0;
					ctx.log(
						`restore time: ${formatDuration(ms)} for ${fmt(sum(m?.row_counts ?? {}))} rows (--method ${s.method})`,
					);
					ctx.log(
						`a real rollback of this backup: about ${formatDuration(ms + safetyMs)} of database work (safety backup ~${formatDuration(safetyMs)}, as long as this backup's dump took, plus the restore), and the verification`,
					);
					ctx.log(
						`the target ${ctx.target.direct.display} was not touched; ${st.scratch} was dropped`,
					);
					return {
						summary: `${m?.id} restores in ${formatDuration(ms)} and verifies; target untouched`,
					};
				}
				if (s.mode === "put-back") {
					const put = (st.putBack ?? []).reduce((a, p) => a + p.inserted, 0);
					return {
						summary: st.newRows?.length
							? `put back ${fmt(put)} row(s) from ${st.safetyEntry?.manifest.id}`
							: "no row to put back",
					};
				}
				// From stopping the app to starting it again.
				const stop = ctx.reports.findIndex(
					(r) => r.title === APP_HOOK.stop.title,
				);
				const start = ctx.reports.findIndex(
					(r) => r.title === APP_HOOK.start.title,
				);
				const downtime = ctx.reports
					.slice(stop, start + 1)
					.reduce((a, r) => a + (r.duration_ms ?? 0), 0);
				if (s.mode === "down")
					ctx.log(
						`rolled back: ${st.later.join(", ")} (down SQL, one transaction)`,
					);
				else
					ctx.log(
						`restored: ${m?.id} (made ${m ? when(m.created_at) : "?"}, latest migration ${m?.latest_migration ?? "none"}) in ${formatDuration(st.restore?.durationMs ?? 0)}`,
					);
				ctx.log(
					`from stopping the app to starting it: ${formatDuration(downtime)}`,
				);
				if (st.safety)
					ctx.log(`to undo this rollback: ${rollbackCommand(st.safety.id)}`);
				const leftOut = st.newRows?.length && !st.putBack;
				if (st.safety && leftOut)
					ctx.log(
						`rows inserted since the backup, not put back: ${st.newRows?.map((c) => `${c.table} ${fmt(c.rows.length)}`).join(", ")}; to put them back: ${putBackCommand(SCRIPT, st.safety.id, m?.id as string, ctx.target.direct.database)}`,
					);
				if (st.restore?.oldDatabase)
					ctx.log(
						`the previous database is kept as ${st.restore.oldDatabase}: DROP DATABASE ${quoteIdent(st.restore.oldDatabase)}; when satisfied`,
					);
				const files = filesAdvice(ctx);
				if (files) ctx.log(files);
				return {
					status: st.files.length && !st.reverted.length ? "warning" : "ok",
					summary:
						s.mode === "down"
							? `rolled back ${st.later.length} migration(s), data kept`
							: `restored ${m?.id}${st.files.length && !st.reverted.length ? `; still to run: ${st.revert ?? "remove the migration files"}` : ""}`,
				};
			},
		},
	],
	summarize: (ctx) => {
		const st = ctx.state;
		let s: Settings | undefined;
		try {
			s = settings(ctx);
		} catch {
			s = undefined;
		}
		return {
			mode: s?.mode ?? null,
			method: s?.mode === "down" ? null : (s?.method ?? null),
			backup_id: st.backup?.manifest.id ?? null,
			backup: st.backup
				? {
						created_at: st.backup.manifest.created_at,
						kind: st.backup.manifest.kind,
						latest_migration: st.backup.manifest.latest_migration,
					}
				: null,
			safety_backup_id: st.safety?.id ?? null,
			undo_command: st.safety ? rollbackCommand(st.safety.id) : null,
			restore_ms: st.restore?.durationMs ?? null,
			old_database: st.restore?.oldDatabase ?? null,
			rolled_back_migrations: st.later,
			migration_files: st.files,
			git_revert: st.revert ?? null,
			reverted: st.reverted,
			down_sql: st.down?.statements ?? null,
			data_losses: st.losses,
			scratch_database: st.scratch ?? null,
			verification: st.verification ?? null,
			nothing: st.nothing ?? null,
		};
	},
});

/**
 * What removes the migration folders the database no longer has: a revert of the commits that
 * added them, or, when one of those commits brought more (migrations that stay, code), `git rm` of
 * exactly those folders.
 */
async function filesRemoval(ctx: Ctx, commits: string[]) {
	const repo = ctx.state.repository as string;
	const dir = migrationsDir(ctx.env);
	const folders = ctx.state.files
		.filter((f) => f.commit)
		.map((f) => relative(repo, join(dir, f.migration)));
	const more = await revertTakesMore(repo, commits, folders);
	return {
		command: more.length
			? removeFoldersCommand(repo, folders)
			: revertCommand(repo, commits),
		more,
	};
}

/** Verifies a backup's archive (sha256, pg_restore --list); a bad one is refused before any change. */
async function verifyOrRefuse(
	ctx: Ctx,
	entry: BackupEntry,
): Promise<VerifyResult> {
	const r = await verifyBackup(entry, ctx.env, ctx.signal, {
		record: !ctx.dryRun,
	});
	const m = r.manifest;
	ctx.log(
		`${m.archive}: ${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 16)}…, pg_restore --list: ${r.tocEntries} entries, data for ${r.tablesWithData} tables`,
	);
	if (!r.ok) {
		for (const p of r.problems) ctx.warn(p);
		throw refusal(
			`The backup ${m.id} failed verification: ${r.problems[0]}. It cannot be trusted, so nothing was changed.`,
			"Pick another backup (npx tsx runbooks/backup.ts list; then --backup <id>).",
		);
	}
	return r;
}

/** --put-back, step 1: the restored backup and the safety backup that holds the newer rows. */
function choosePutBack(ctx: Ctx) {
	const backup = findBackup(ctx.env, String(ctx.flags.backup));
	const safety = findBackup(ctx.env, String(ctx.flags["put-back"]));
	if (safety.manifest.created_at <= backup.manifest.created_at)
		throw usageError(
			`--put-back ${safety.manifest.id} was made before --backup ${backup.manifest.id}: it cannot hold rows inserted since that backup.`,
			"Name the safety backup the rollback took (its id is in the rollback's output and in npx tsx runbooks/backup.ts list).",
		);
	ctx.state.backup = backup;
	ctx.state.safetyEntry = safety;
	ctx.log(
		`rows inserted between ${backup.manifest.id} (${when(backup.manifest.created_at)}) and ${safety.manifest.id} (${when(safety.manifest.created_at)}) go back into ${ctx.target.direct.display}`,
	);
	return {
		summary: `put back the rows ${safety.manifest.id} holds that ${backup.manifest.id} does not`,
	};
}

/** The rows a safety backup holds whose key the restored backup does not: what --put-back puts back. */
async function newRowsFromSafety(
	ctx: Ctx,
	db: Db,
	safety: BackupEntry,
): Promise<NewRows[]> {
	const { pgRestore } = ctx.state.tools as { pgRestore: Tool };
	const opts = { env: ctx.env, signal: ctx.signal };
	const dir = backupDir(ctx.env);
	const tables = await appTables(db, ["public"]);
	const m = ctx.state.backup?.manifest as BackupManifest;
	const index = await indexBackup(
		pgRestore,
		`${dir}/${m.archive}`,
		tables,
		opts,
	);
	return newRowsInArchive(
		tables,
		index,
		pgRestore,
		`${dir}/${safety.manifest.archive}`,
		opts,
	);
}

/** Restore mode, before it asks: per table, the rows written since the backup that the restore takes away. */
async function showWhatRestoreTakes(ctx: Ctx): Promise<void> {
	const m = ctx.state.backup?.manifest as BackupManifest;
	const { pgRestore, psql } = ctx.state.tools as {
		pgRestore: Tool;
		psql: Tool;
	};
	const opts = { env: ctx.env, signal: ctx.signal };
	const tables = await appTables(await ctx.db(), ["public"]);
	const archive = `${backupDir(ctx.env)}/${m.archive}`;
	const index = await indexBackup(pgRestore, archive, tables, {
		...opts,
		compareWith: true,
	});
	ctx.state.backupIndex = index;
	const changes = byImportance(
		await compareWithDatabase(tables, index, psql, ctx.target.direct, opts),
	);
	ctx.state.changes = changes;
	for (const line of describeChanges(changes)) ctx.log(line);
	const inserted = changes.reduce((a, c) => a + c.inserted, 0);
	if (inserted)
		ctx.log(
			settings(ctx).keepNewRows
				? `--keep-new-rows: the ${fmt(inserted)} inserted row(s) go back in after the restore`
				: `the ${fmt(inserted)} inserted row(s) can go back in after the restore (--keep-new-rows, or asked then)`,
		);
	for (const line of await downInstead(ctx, m)) ctx.log(line);
}

/** What --mode down would do instead of the restore: the migrations since the backup undone, rows kept. */
async function downInstead(ctx: Ctx, m: BackupManifest): Promise<string[]> {
	const applied = finishedNames(ctx.state.history as History);
	const to = m.latest_migration;
	if (!ctx.state.later.length || !to || !applied.includes(to)) return [];
	try {
		const down = await computeDownSql(
			ctx.target,
			ctx.env,
			applied,
			to,
			ctx.signal,
		);
		const losses = await measureLosses(
			await ctx.db(),
			dataLosses(down.statements),
		);
		return [
			`--mode down --to ${to} would undo ${ctx.state.later.join(", ")} and keep every row written since the backup${losses.length ? `; it ${losses.map(describeLoss).join("; ")}` : "; it drops no data"}:`,
			`  ${rerunCommand(SCRIPT, { argv: [], add: ["--mode", "down", "--to", to] })}`,
		];
	} catch (err) {
		return [
			`--mode down cannot be offered (${(err as Error).message.split("\n")[0]}): the restore is the way back.`,
		];
	}
}

/** --mode down, step 1: the migration to go back to, and the later ones. */
async function chooseDown(
	ctx: Ctx,
	s: Settings,
	h: History,
	applied: string[],
) {
	const to = String(ctx.flags.to);
	const dir = migrationsDir(ctx.env);
	if (!h.local.some((x) => x.name === to))
		throw usageError(
			`--to ${to}: there is no such migration in ${displayPath(dir)}.`,
			`Pass a folder name from it, e.g. ${h.local.at(-2)?.name ?? "20241230000000_comprehensive_schema"}.`,
		);
	const failed = h.issues.filter((i) => i.kind === "failed");
	if (failed.length)
		throw refusal(
			`_prisma_migrations has a failed or unfinished migration (${failed.map((i) => i.migration).join(", ")}): the down SQL would be computed from a history that is not what the database holds. Nothing was changed.`,
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
			`${changed.map((i) => i.migration).join(", ")} changed since ${changed.length === 1 ? "it was" : "they were"} applied: the down SQL computed from the files would not match the database. Nothing was changed.`,
			"Check out the files as they were applied, or restore the pre-deploy backup instead (without --mode down).",
		);
	ctx.state.later = later;
	ctx.log(
		`latest applied: ${h.latestApplied ?? "(none)"}; roll back to: ${to}`,
	);
	if (!later.length) {
		ctx.state.nothing = `nothing to roll back: ${to} is the latest applied migration`;
		return { summary: ctx.state.nothing };
	}
	for (const name of later) {
		const row = h.applied.find(
			(r) => r.migration_name === name && r.finished_at,
		);
		ctx.log(
			`  to roll back: ${name} (applied ${row?.finished_at ? when(row.finished_at.toISOString()) : "?"})`,
		);
	}
	const local = new Set(h.local.map((x) => x.name));
	await checkGitRevert(
		ctx,
		s,
		later.filter((n) => local.has(n)),
	);
	return {
		summary: `roll back ${later.length} migration(s) after ${to}: ${later.join(", ")}`,
		data: { later },
	};
}

/** Step 8: the rolled-back database (or the rehearsal's scratch copy) checked as validate would. */
async function verifyDatabase(
	ctx: Ctx,
	s: Settings,
	db: Db,
	target: Target,
): Promise<Verification> {
	const problems: string[] = [];
	const m = ctx.state.backup?.manifest;
	const tables = await listTables(db);
	let counts: Verification["counts"];
	if (s.mode === "down") {
		const before = ctx.state.countsBefore ?? {};
		const now = await countTables(db, tables);
		counts = Object.keys(before).map((t) => ({
			table: t,
			expected:
				t === "_prisma_migrations"
					? before[t] - (ctx.state.deletedRows ?? 0)
					: before[t],
			actual: now[t] ?? null,
		}));
		const dropped = new Set(
			ctx.state.losses
				.filter((l) => l.kind === "table")
				.map((l) => l.table.replace(/^public\./, "")),
		);
		for (const c of counts) {
			if (dropped.has(c.table)) continue;
			if (c.actual !== c.expected)
				problems.push(
					`table ${c.table}: ${fmt(c.actual)} rows, ${fmt(c.expected)} before the down SQL`,
				);
		}
	} else {
		const expected = { ...(m?.row_counts ?? {}) };
		for (const p of ctx.state.putBack ?? [])
			expected[p.table] = (expected[p.table] ?? 0) + p.inserted;
		const now = await countTables(db, [
			...new Set([...Object.keys(expected), ...tables]),
		]);
		counts = Object.keys(now)
			.sort()
			.map((t) => ({
				table: t,
				expected: expected[t] ?? null,
				actual: now[t],
			}));
		for (const c of counts)
			if (c.actual !== c.expected)
				problems.push(
					`table ${c.table}: ${fmt(c.actual)} rows, the manifest${ctx.state.putBack?.length ? " and the rows put back say" : " says"} ${fmt(c.expected)}`,
				);
	}
	ctx.log(
		`row counts: ${counts.length} tables, ${problems.length ? `${problems.length} differ` : "all as expected"}`,
	);

	const h = await readHistory(db, migrationsDir(ctx.env));
	const applied = finishedNames(h);
	if (s.mode !== "down" && m && h.latestApplied !== m.latest_migration)
		problems.push(
			`latest applied migration is ${h.latestApplied ?? "none"}, the backup's was ${m.latest_migration ?? "none"}`,
		);
	if (s.mode === "down" && applied.some((n) => ctx.state.later.includes(n)))
		problems.push(
			`_prisma_migrations still records ${applied.filter((n) => ctx.state.later.includes(n)).join(", ")}`,
		);
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
	const hooks: HookRun[] = [];
	if (s.mode !== "rehearse") {
		const smokeHook = await runHookOrAsk(
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
		hooks.push(smokeHook);
		const verifyHook = await runHook("VERIFY_CMD", {
			env: ctx.env,
			signal: ctx.signal,
			log: (line) => ctx.log(`  | ${line}`),
		});
		if (verifyHook) hooks.push(verifyHook);
		for (const hk of hooks)
			if (hk.outcome === "failed")
				problems.push(
					`${hk.name} failed${hk.exitCode !== undefined ? ` (exit ${hk.exitCode})` : ""}: ${hk.output.split("\n").slice(-2).join(" ")}`,
				);
	}
	return { problems, counts, drift, smokeQueries: smoke.length, hooks };
}
