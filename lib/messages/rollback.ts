// The words emergency-rollback says: the backup next to the database, the questions it asks, each
// step's one-line outcome, what the database holds after a stop, and the summary. Functions over
// typed results; test/messages-rollback.test.ts holds their snapshots.

import type { BackupEntry, BackupManifest } from "../backup/archive.ts";
import { rollbackCommand } from "../backup/archive.ts";
import type { PutBack } from "../backup/keep-new-rows.ts";
import { formatBytes, formatDuration } from "../kit/format.ts";
import { table } from "../kit/output.ts";
import type { MigrationCommit } from "../migrations/git.ts";
import type { History } from "../migrations/history.ts";
import { backupEnvHelp } from "./backup.ts";

export const fmt = (n: number | null | undefined) =>
	n === null || n === undefined ? "-" : n.toLocaleString("en-US");
export const when = (iso: string) =>
	iso.replace("T", " ").replace(/\.\d+Z$/, " UTC");
export const age = (iso: string, now = Date.now()) =>
	`${formatDuration(now - Date.parse(iso))} ago`;

/** --help: what the runbook does, mode by mode. */
export const DESCRIPTION =
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
	"deploy-production). Once their files are reverted, migrate status and validate are clean.";

/** --help: the environment variables it reads beyond the common ones. */
export const ENV_HELP: Record<string, string> = {
	...backupEnvHelp(
		"Where backups and their manifests are (default backups/); the safety backup goes here too.",
		"the safety backup",
	),
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
};

/** The skip reason of a step another mode runs. */
export const notPartOf = (mode: string) =>
	`not part of ${mode === "down" ? "--mode down" : mode === "rehearse" ? "--rehearse" : mode === "put-back" ? "--put-back" : "restore mode"}`;

// --- choosing the backup -----------------------------------------------------------------------

export const otherAddress = (
	display: string,
	database: string,
	mine: BackupEntry[],
) =>
	`no backup names ${display}; these were made of a database named ${database} through another address (${[...new Set(mine.map((e) => e.manifest.target))].join(", ")}): check it is this one`;

const unusable = (e: BackupEntry) =>
	!e.archivePresent
		? "archive missing"
		: e.manifest.verify_error
			? `failed verification: ${e.manifest.verify_error}`
			: "never verified";

export const passedOver = (anyKind: boolean, newer: BackupEntry[]) =>
	`newer ${anyKind ? "" : "pre-deploy "}backup(s) passed over: ${newer.map((e) => `${e.manifest.id} (${unusable(e)})`).join("; ")}`;

/** No verified backup to propose: why, and what to do instead. */
export function noBackup(
	anyKind: boolean,
	display: string,
	dir: string,
	mine: BackupEntry[],
	usable: (e: BackupEntry) => boolean,
): { none: string; hint: string } {
	const others = mine.filter(usable);
	const listed = mine
		.slice(0, 3)
		.map(
			(e) =>
				`${e.manifest.id} ${e.manifest.kind}${usable(e) ? "" : ", not verified"}`,
		)
		.join("; ");
	return {
		none: `There is no verified ${anyKind ? "" : "pre-deploy "}backup of ${display} in ${dir}${mine.length ? ` (${mine.length} other backup(s) of it: ${listed})` : ""}.`,
		hint: others.length
			? `To restore another one, name it: ${rollbackCommand(others[0].manifest.id)} (list them: npx tsx runbooks/backup.ts list).`
			: "Check BACKUP_DIR (npx tsx runbooks/backup.ts list). To roll back migrations without a backup, see --mode down.",
	};
}

export const madeOfAnother = (m: BackupManifest, display: string) =>
	`${m.id} was made of ${m.target}, not of ${display}: check that this is the database you mean to overwrite.`;

export const rehearsing = (m: BackupManifest) =>
	`rehearsing the newest verified backup of the target: ${m.id}, a ${m.kind} backup`;

export const swapOfAppScope = (id: string, scope: string) =>
	`${id} holds the app's objects only (${scope}): --method swap would replace the whole database with it. Nothing was changed.`;

/** The backup next to the database now: when, what, and every table's rows in both. */
export function comparison(
	m: BackupManifest,
	cur: {
		latest: string | null;
		counts: Record<string, number>;
		exact: boolean;
	},
	now = Date.now(),
): string[] {
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
	return [
		`backup:   ${m.id} (${m.kind}), made ${when(m.created_at)} (${age(m.created_at, now)}) of ${m.target}`,
		`          ${formatBytes(m.size_bytes)} ${m.format} archive, pg_dump ${m.pg_dump_version}, verified ${m.verified_at ? when(m.verified_at) : "never"}`,
		`latest migration: backup ${m.latest_migration ?? "(none)"}; now ${cur.latest ?? "(none)"}`,
		table(rows),
	];
}

export const chosenSummary = (m: BackupManifest, now = Date.now()) =>
	`${m.id} (${m.kind}, ${age(m.created_at, now)}, latest migration ${m.latest_migration ?? "none"})`;

export const putBackTooOld = (safetyId: string, backupId: string) =>
	`--put-back ${safetyId} was made before --backup ${backupId}: it cannot hold rows inserted since that backup.`;

export const putBackBetween = (
	backup: BackupManifest,
	safety: BackupManifest,
	display: string,
) =>
	`rows inserted between ${backup.id} (${when(backup.created_at)}) and ${safety.id} (${when(safety.created_at)}) go back into ${display}`;

// --- migrations and their files ----------------------------------------------------------------

export const gitRevertNotOurs = (
	ref: string,
	names: string[],
	known: string[],
): [string, string] => [
	`--git-revert ${ref} did not add any of the migrations this rollback takes out (${names.join(", ") || "none"}). Nothing was changed.`,
	known.length
		? `The commits that added them: ${[...new Set(known)].map((c) => c.slice(0, 12)).join(", ")}`
		: "None of them is committed in git.",
];

export const fileLine = (f: MigrationCommit, rolledBackNow: boolean) =>
	`${f.migration}${rolledBackNow ? " (rolled back now)" : " (was not applied before either)"}: ${f.commit ? `added by ${f.commit.slice(0, 12)} "${f.subject}"` : "not committed in git"}`;

export const revertTakesMore = (more: { commit: string; others: string[] }) =>
	`${more.commit.slice(0, 12)} also added or changed ${more.others.length} file(s) that stay: ${more.others.slice(0, 5).join(", ")}${more.others.length > 5 ? " …" : ""}; a git revert would remove them too`;

export const downAfterFailed = (names: string[]) =>
	`_prisma_migrations has a failed or unfinished migration (${names.join(", ")}): the down SQL would be computed from a history that is not what the database holds. Nothing was changed.`;

export const downOfEdited = (names: string[]) =>
	`${names.join(", ")} changed since ${names.length === 1 ? "it was" : "they were"} applied: the down SQL computed from the files would not match the database. Nothing was changed.`;

export function toRollBack(h: History, name: string): string {
	const row = h.applied.find((r) => r.migration_name === name && r.finished_at);
	return `  to roll back: ${name} (applied ${row?.finished_at ? when(row.finished_at.toISOString()) : "?"})`;
}

/** Restore mode, before it asks: the rollback that keeps every row, when it can be offered. */
export const downInstead = (
	to: string,
	later: string[],
	losses: string[],
	command: string,
) => [
	`--mode down --to ${to} would undo ${later.join(", ")} and keep every row written since the backup${losses.length ? `; it ${losses.join("; ")}` : "; it drops no data"}:`,
	`  ${command}`,
];

// --- restoring and the rows since the backup ---------------------------------------------------

export function restorePhaseNote(
	phase: string,
	schemas: string[] | undefined,
	lockTimeout: string,
	id: string,
	total: number,
): string {
	if (phase === "clearing")
		return `BEGIN; dropping every object of schema ${schemas?.join(", ") ?? "public"} (lock_timeout ${lockTimeout})`;
	if (phase === "loading") return `loading ${id} (${fmt(total)} rows)`;
	if (phase === "committing") return "COMMIT: committing the restore";
	return "committed: the database now holds the backup";
}

export const insertedNote = (inserted: number, keep: boolean) =>
	keep
		? `--keep-new-rows: the ${fmt(inserted)} inserted row(s) go back in after the restore`
		: `the ${fmt(inserted)} inserted row(s) can go back in after the restore (--keep-new-rows, or asked then)`;

export const putBackQuestion = (count: number, perTable: string) =>
	`Put the ${fmt(count)} row(s) inserted since the backup back (${perTable})?`;

export const PUT_BACK_CHOICES = [
	{ value: "keep", title: "Yes, put them back now (one transaction)" },
	{
		value: "later",
		title: "No, leave them out (they stay in the safety backup)",
	},
];

export const leftOut = (count: number, perTable: string, later: string) =>
	`${fmt(count)} row(s) inserted since the backup left out (${perTable}); to put them back: ${later}`;

export const conflicts = (p: PutBack) =>
	`${p.table}: ${p.conflicts.length} row(s) left out, their key (or another unique value) exists again: ${p.conflicts.slice(0, 5).join(", ")}`;

export const putBackDone = (put: number, count: number, done: PutBack[]) =>
	`put back ${fmt(put)} of ${fmt(count)} row(s) inserted since the backup: ${done.map((p) => `${p.table} +${fmt(p.inserted)}`).join(", ")}`;

/** The plan of the put-back step. */
export const putBackPlan = (safetyId: string, backupId: string | undefined) => [
	`-- rows of ${safetyId} whose primary key ${backupId} does not hold, table by table in foreign-key order:`,
	"BEGIN; SET LOCAL lock_timeout = ...;",
	"INSERT INTO <table> (<columns the restored schema has>) VALUES ... ON CONFLICT DO NOTHING;  -- a key that exists again is left out and named",
	"SELECT setval(<serial sequence>, max(<column>));  -- where a table has one",
	"COMMIT;",
];

// --- the app's hooks ---------------------------------------------------------------------------

export const APP_HOOK = {
	stop: {
		hook: "APP_STOP_CMD",
		title: "Stop the app (APP_STOP_CMD)",
		unset: "the operator stops the app and confirms",
		byHand:
			"stop the app (every instance, and the workers and cron jobs that write to the database)",
		failed: "Stopping the app failed",
		state: " The database was not changed.",
		hint: (again: string) => `Stop the app by hand, then rerun: ${again}`,
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
		hint: (_again: string) =>
			"The database rollback is complete. Start the app by hand, then check it: npx tsx runbooks/validate.ts",
		manual: "started by the operator",
		skipped: "start the app",
	},
} as const;

type AppHook = (typeof APP_HOOK)[keyof typeof APP_HOOK];

export const hookFailed = (
	t: AppHook,
	run: { exitCode?: number | null; output: string },
) =>
	`${t.failed}${run.exitCode !== undefined ? ` (${t.hook} exit ${run.exitCode})` : ""}: ${run.output.split("\n").slice(-2).join(" ") || "no output"}.${t.state}`;

export const hookDone = (
	t: AppHook,
	run: { outcome: string; durationMs: number },
) =>
	run.outcome === "passed"
		? `${t.hook} done in ${formatDuration(run.durationMs)}`
		: run.outcome === "manual"
			? t.manual
			: `${t.hook} not set (--yes): ${t.skipped}`;

// --- confirming -------------------------------------------------------------------------------

export const confirmDown = (
	later: string[],
	display: string,
	losses: string[],
) =>
	`Roll back ${later.length} migration(s) on ${display}${losses.length ? `: this ${losses.join("; ")}` : ""}.`;

export const confirmRestore = (m: BackupManifest, display: string) =>
	`Replace everything in ${display} with backup ${m.id} (made ${age(m.created_at)}): data written since then is replaced.`;

export const confirmPutBack = (
	backupId: string | undefined,
	safetyId: string | undefined,
	display: string,
) =>
	`Put the rows inserted between ${backupId} and ${safetyId} back into ${display} (one transaction; rows whose key exists are left out).`;

// --- after a stop, and at the end ---------------------------------------------------------------

export interface FilesState {
	files: MigrationCommit[];
	revert?: string;
	reverted: string[];
}

/** The later migrations' fate after the rollback, for messages. */
export function filesAdvice(f: FilesState): string {
	if (!f.files.length) return "";
	if (f.reverted.length)
		return `Migration files: reverted (${f.reverted.map((c) => c.slice(0, 12)).join(", ")}).`;
	return `Migration files still to remove, so that the next deploy does not apply them again: ${f.revert ?? f.files.map((x) => x.migration).join(", ")}`;
}

/** What the database holds when a step of a real rollback stops midway, and what to do. */
export function rollbackState(s: {
	restoredId?: string;
	downApplied: boolean;
	committing: boolean;
	appStopped: boolean;
	safetyId?: string;
	files: FilesState;
}): string {
	const lines = [
		s.restoredId
			? `The database holds backup ${s.restoredId} (restored).`
			: s.downApplied
				? "The down SQL is applied."
				: s.committing
					? "The restore was stopped while committing: the database is either wholly restored or wholly as it was, never a mix (a rerun makes sure it holds the backup)."
					: "The database is as it was before the rollback (nothing was restored).",
	];
	if (s.appStopped)
		lines.push(
			"The app was stopped: start it again (APP_START_CMD) once the database is as you want it.",
		);
	if (s.safetyId)
		lines.push(
			`To return to the state before this rollback: ${rollbackCommand(s.safetyId)}`,
		);
	const files = filesAdvice(s.files);
	if (files && (s.restoredId || s.downApplied)) lines.push(files);
	return lines.join("\n");
}

export const rehearseStopped = (scratch: string | undefined) =>
	`The target was not touched. ${scratch ? `The scratch database ${scratch} is dropped at the end of the run (or by the next rehearsal).` : ""}`;

export const putBackStopped = (restoredId: string | undefined) =>
	`${restoredId ? `The database holds backup ${restoredId} (restored). ` : ""}None of the new rows is in: they were put back in one transaction, which did not commit.`;

export const verifySummary = (
	v: {
		problems: string[];
		counts: unknown[];
		smokeQueries: number;
		hooks: Array<{ name: string; outcome: string }>;
	},
	down: boolean,
) =>
	v.problems.length
		? `${v.problems.length} problem(s): ${v.problems[0]}`
		: `${v.counts.length} tables' row counts ${down ? "unchanged" : "as in the manifest"}, history and schema consistent, ${v.smokeQueries} smoke queries ok${v.hooks.length ? `, ${v.hooks.map((h) => `${h.name} ${h.outcome}`).join(", ")}` : ""}`;

export function dryRunSummary(
	mode: string,
	s: {
		later: string[];
		statements: number;
		backupId?: string;
		display: string;
		method: string;
	},
): string {
	if (mode === "down")
		return `dry run: would roll back ${s.later.join(", ")} with ${s.statements} statement(s) of down SQL`;
	if (mode === "rehearse")
		return `dry run: would restore ${s.backupId} into a scratch database and drop it`;
	return `dry run: would restore ${s.backupId} over ${s.display} (--method ${s.method})`;
}

/** --rehearse, at the end: how long a real rollback of this backup would take. */
export function rehearsalLines(
	m: BackupManifest | undefined,
	restoreMs: number,
	method: string,
	display: string,
	scratch: string | undefined,
): string[] {
	const safetyMs = m?.duration_ms ?? 0;
	const rows = Object.values(m?.row_counts ?? {}).reduce((a, b) => a + b, 0);
	return [
		`restore time: ${formatDuration(restoreMs)} for ${fmt(rows)} rows (--method ${method})`,
		`a real rollback of this backup: about ${formatDuration(restoreMs + safetyMs)} of database work (safety backup ~${formatDuration(safetyMs)}, as long as this backup's dump took, plus the restore), and the verification`,
		`the target ${display} was not touched; ${scratch} was dropped`,
	];
}

export const verifiedLine = (r: {
	manifest: BackupManifest;
	tocEntries: number;
	tablesWithData: number;
}) =>
	`${r.manifest.archive}: ${formatBytes(r.manifest.size_bytes)}, sha256 ${r.manifest.sha256.slice(0, 16)}…, pg_restore --list: ${r.tocEntries} entries, data for ${r.tablesWithData} tables`;
