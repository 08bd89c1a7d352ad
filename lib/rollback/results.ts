// What each emergency-rollback step hands forward, by step id (ctx.result), typed in one place;
// and `midway`: what a step that stops midway (and so returns no result) had reached, for the
// advice printed after it.

import type { HookRun } from "../app/hooks.ts";
import type { BackupEntry, BackupManifest } from "../backup/archive.ts";
import type { PutBack } from "../backup/keep-new-rows.ts";
import type { RestoreMethod } from "../backup/restore.ts";
import type { BackupIndex, NewRows } from "../backup/row-changes.ts";
import type { DataLoss, DownSql } from "../migrations/down.ts";
import type { MigrationCommit } from "../migrations/git.ts";
import type { History } from "../migrations/history.ts";
import type { Tool } from "../pg/client-tools.ts";
import type { RollbackCtx } from "./settings.ts";

/** Step 1: where the rollback goes, and what it takes out. */
export interface Chosen {
	serverMajor: number;
	history: History;
	/** The migrations finished in _prisma_migrations now. */
	applied: string[];
	backup?: BackupEntry;
	/** --put-back: the safety backup whose new rows go back in. */
	safetyEntry?: BackupEntry;
	/** Why there is nothing to do (no backup under --dry-run, nothing to roll back). */
	nothing?: string;
	/** Migrations the rollback takes out of the database (applied now, not after). */
	later: string[];
	git: MigrationFiles;
}

/** Migrations in the folder that the rolled-back database does not have, with their commits. */
export interface MigrationFiles {
	repository: string | null;
	files: MigrationCommit[];
	/** The command that removes them (printed), once the files step worked it out. */
	revert?: string;
	/** Commits reverted by --git-revert. */
	reverted: string[];
}

export interface Tools {
	pgRestore: Tool;
	psql: Tool;
}

export interface DownPlan {
	down: DownSql;
	losses: DataLoss[];
}

export interface Safety {
	manifest: BackupManifest;
	/** Rows inserted since the backup, read from the database just before the restore. */
	captured?: NewRows[];
}

export interface Restored {
	method: RestoreMethod;
	durationMs: number;
	rows: number;
	attempts: number;
	oldDatabase?: string;
	/** A swap ended every session: later steps connect anew. */
	swapped: boolean;
	/** --rehearse: the scratch database restored into. */
	scratch?: string;
}

export interface PutBackOutcome {
	newRows: NewRows[];
	putBack?: PutBack[];
}

export interface DownApplied {
	attempts: number;
	deletedRows: number;
	countsBefore: Record<string, number>;
}

export interface Verification {
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

/** A step that stops midway returns no result: what it had reached, for its failure advice. */
export const midway: {
	/** The transaction restore's phase (clearing, loading, committing, committed). */
	restorePhase?: string;
	/** The rehearsal's scratch database, once created. */
	scratch?: string;
	/** The files step's findings, before its git revert ran. */
	files?: MigrationFiles;
} = {};

const optional = <T>(ctx: RollbackCtx, id: string) =>
	ctx.has(id) ? ctx.result<T>(id) : undefined;

/** Every step's result so far, for the summary, the failure advice and --json. */
export function results(ctx: RollbackCtx) {
	const chosen = optional<Chosen>(ctx, "choose");
	const restore =
		optional<Restored>(ctx, "restore") ?? optional<Restored>(ctx, "rehearse");
	return {
		chosen,
		backup: chosen?.backup?.manifest,
		later: chosen?.later ?? [],
		tools: optional<Tools>(ctx, "verify-backup"),
		down: optional<DownPlan>(ctx, "down-sql"),
		index: optional<BackupIndex>(ctx, "confirm"),
		safety: optional<Safety>(ctx, "safety"),
		restore,
		putBack: optional<PutBackOutcome>(ctx, "put-back"),
		applied: optional<DownApplied>(ctx, "apply-down"),
		git: optional<MigrationFiles>(ctx, "files") ??
			midway.files ??
			chosen?.git ?? { repository: null, files: [], reverted: [] },
		verification: optional<Verification>(ctx, "verify"),
	};
}

export type Results = ReturnType<typeof results>;
