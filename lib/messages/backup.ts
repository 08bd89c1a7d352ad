// What backup tells the operator: the checks before a dump, the new backup, a verification, the
// list of backups, and what a stopped step left.

import type {
	BackupCheck,
	BackupEntry,
	BackupManifest,
	VerifyResult,
} from "../backup/archive.ts";
import { formatBytes, formatDuration } from "../kit/format.ts";

export const checkLines = (c: BackupCheck) => [
	`server PostgreSQL ${c.serverVersion}; pg_dump ${c.pgDump.version} (${c.pgDump.path})`,
	`database ${formatBytes(c.databaseBytes)}; dump estimated at ${formatBytes(c.estimateBytes)}; ${formatBytes(c.freeBytes)} free in ${c.dir}`,
];

export const checkSummary = (c: BackupCheck) =>
	`room for about ${formatBytes(c.estimateBytes)}, pg_dump ${c.pgDump.version}`;

export function createdLines(dir: string, m: BackupManifest): string[] {
	const tables = Object.keys(m.row_counts).length;
	const rows = Object.values(m.row_counts).reduce((a, b) => a + b, 0);
	return [
		`${dir}/${m.archive} and ${m.id}.json (mode 0600)`,
		`${tables} tables, ${rows} rows; latest migration ${m.latest_migration ?? "(none)"}`,
	];
}

export const createdSummary = (m: BackupManifest) =>
	`${m.id}, ${formatBytes(m.size_bytes)} in ${formatDuration(m.duration_ms)}`;

/** The plan of a verification: of a named backup's files, or of the one about to be made. */
export function verifyPlan(dir: string, m: BackupManifest | null): string[] {
	const archive = m ? `${dir}/${m.archive}` : "<the new archive>";
	return [
		`sha256 of ${archive}, compared with the manifest`,
		`pg_restore --list ${archive}`,
		`record verified_at in ${m ? `${dir}/${m.id}.json` : "its manifest"}`,
	];
}

export function verifyLines(r: VerifyResult): string[] {
	const m = r.manifest;
	return [
		`${m.id}: ${m.format} archive ${m.archive}, ${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 16)}…`,
		`pg_restore --list: ${r.tocEntries} entries, data for ${r.tablesWithData} tables (manifest counts ${Object.keys(m.row_counts).length})`,
	];
}

export const verifyFailed = (id: string, problem: string) => ({
	message: `Backup ${id} failed verification: ${problem}.`,
	hint: "Do not restore from it. Take a new backup (npx tsx runbooks/backup.ts) and keep this one for inspection.",
});

/** What a stopped verification left: interrupted, nothing recorded; failed, the failure recorded. */
export const verifyStopped = (
	aborted: boolean,
	created: BackupManifest | undefined,
) =>
	aborted
		? `Interrupted before the check ended: nothing was recorded${
				created
					? `; ${created.id} is complete but not verified, so it does not count as a backup yet (npx tsx runbooks/backup.ts verify ${created.id} verifies it alone)`
					: ""
			}.`
		: `The manifest now records the failure (verified_at cleared). Nothing else was changed.${
				created
					? ` The new archive ${created.archive} is kept for inspection but does not count as a backup.`
					: ""
			}`;

/** One row of the list. */
export function entryRow(e: BackupEntry) {
	const m = e.manifest;
	return {
		id: m.id,
		kind: m.kind,
		created: m.created_at.replace("T", " ").replace(/\.\d+Z$/, "Z"),
		size: e.archivePresent ? formatBytes(m.size_bytes) : "MISSING",
		format: m.format,
		verified: m.verified_at
			? m.verified_at.slice(0, 19).replace("T", " ")
			: m.verify_error
				? "FAILED"
				: "no",
		"latest migration": m.latest_migration ?? "(none)",
		target: m.target,
	};
}

export const strayWarning = (stray: string[]) =>
	`not backups (no manifest, or a dump in progress): ${stray.join(", ")}`;

export const archiveMissing = (m: BackupManifest) =>
	`${m.id}: the manifest is here but the archive ${m.archive} is missing`;

export function listSummary(list: BackupEntry[]): string {
	const present = list.filter((e) => e.archivePresent);
	const verified = present.filter((e) => e.manifest.verified_at).length;
	const bytes = present.reduce((a, e) => a + e.manifest.size_bytes, 0);
	return `${list.length} backup(s), ${verified} verified, ${formatBytes(bytes)}`;
}

export const pruneSummary = (removed: number, freed: number, kept: number) =>
	removed
		? `deleted ${removed}, freed ${formatBytes(freed)}; kept ${kept}`
		: `nothing to delete (${kept} kept)`;

export const pruneStopped = (verified: VerifyResult | undefined) =>
	`Each older backup is wholly kept or wholly removed${verified?.ok ? `; the new backup ${verified.manifest.id} is verified` : ""}.`;

/** --help: the variables every runbook that takes a backup reads; `dir` and `after` say where it goes and which dump the free space is measured after. */
export const backupEnvHelp = (dir: string, after: string) => ({
	BACKUP_DIR: dir,
	BACKUP_SCOPE:
		"What a backup holds: auto (default: the app's objects only on a Supabase database, else the whole database), app or database.",
	APP_SCHEMAS:
		"With scope app: the app's schemas, comma-separated (default public).",
	BACKUP_MIN_FREE_MB: `Space to leave free on BACKUP_DIR's disk after ${after} (default 256).`,
});
