// emergency-rollback's settings, parsed once from its flags before the first step: which procedure
// (restore, rehearse, down, put-back) and how. Bad combinations exit 2 before anything runs.

import { RESTORE_METHODS, type RestoreMethod } from "../backup/restore.ts";
import type { FlagValues } from "../kit/cli.ts";
import { parseDuration } from "../kit/duration.ts";
import { usageError } from "../kit/errors.ts";
import type { Context } from "../kit/runner.ts";

export const NAME = "emergency-rollback";
export const SCRIPT = `runbooks/${NAME}.ts`;

export type Mode = "restore" | "rehearse" | "down" | "put-back";

export interface Settings {
	mode: Mode;
	method: RestoreMethod;
	lockTimeoutMs: number;
	statementTimeoutMs: number;
	retries: number;
	jobs: number;
	maintenanceDb: string;
	gitRevert: string[];
	keepNewRows: boolean;
	skipSafetyBackup: boolean;
	/** --backup <id>, when given. */
	backupId?: string;
	/** --put-back <safety-id>, when given. */
	putBackId?: string;
	/** --mode down --to <migration>. */
	to: string;
}

export type RollbackCtx = Context<unknown, Settings>;

export function parseSettings(f: FlagValues): Settings {
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
		skipSafetyBackup: Boolean(f["skip-safety-backup"]),
		backupId: f.backup === undefined ? undefined : String(f.backup),
		putBackId: f["put-back"] === undefined ? undefined : String(f["put-back"]),
		to: String(f.to),
	};
}
