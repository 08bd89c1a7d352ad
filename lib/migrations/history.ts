// Migration history: the migration folders in the repository against the rows of Prisma's
// `_prisma_migrations` table, read with Prisma's own semantics (a row with neither finished_at
// nor rolled_back_at is failed or still running; a rolled-back row does not count as applied).

import { createHash } from "node:crypto";
import {
	existsSync,
	mkdirSync,
	readdirSync,
	readFileSync,
	renameSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { Db } from "../pg/db.ts";
import { MIGRATIONS_DIR } from "./prisma-cli.ts";

export interface LocalMigration {
	name: string;
	path: string;
	sql: string;
	checksum: string;
}

export interface AppliedRow {
	id: string;
	migration_name: string;
	checksum: string;
	started_at: Date;
	finished_at: Date | null;
	rolled_back_at: Date | null;
	logs: string | null;
	applied_steps_count: number;
}

/** A row whose migration is in the database: finished and not marked rolled back since. */
export const isFinished = (
	r: Pick<AppliedRow, "finished_at" | "rolled_back_at">,
): boolean => Boolean(r.finished_at && !r.rolled_back_at);

/** The names of the migrations the database holds (see isFinished), in row order. */
export const finishedMigrations = (
	rows: ReadonlyArray<
		Pick<AppliedRow, "migration_name" | "finished_at" | "rolled_back_at">
	>,
): string[] => rows.filter(isFinished).map((r) => r.migration_name);

export type MigrationIssueKind =
	| "failed"
	| "rolled_back"
	| "checksum_mismatch"
	| "missing_locally"
	| "pending";

export interface MigrationIssue {
	kind: MigrationIssueKind;
	migration: string;
	detail: string;
}

export interface History {
	local: LocalMigration[];
	applied: AppliedRow[];
	/** The table is absent: nothing was ever deployed to this database. */
	tableMissing: boolean;
	issues: MigrationIssue[];
	pending: LocalMigration[];
	latestApplied: string | null;
}

export function sha256(text: string | Buffer): string {
	return createHash("sha256").update(text).digest("hex");
}

export function readLocalMigrations(dir = MIGRATIONS_DIR): LocalMigration[] {
	if (!existsSync(dir)) return [];
	return readdirSync(dir, { withFileTypes: true })
		.filter(
			(d) => d.isDirectory() && existsSync(join(dir, d.name, "migration.sql")),
		)
		.map((d) => {
			const path = join(dir, d.name, "migration.sql");
			const sql = readFileSync(path, "utf8");
			return { name: d.name, path, sql, checksum: sha256(sql) };
		})
		.sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Writes <dir>/<name>/migration.sql (mode 0644, as Prisma does), whole or not at all, and returns
 * it as a LocalMigration.
 */
export function writeMigrationFolder(
	dir: string,
	name: string,
	sql: string,
): LocalMigration {
	// Whole or not at all: written beside prisma/migrations (where Prisma looks for no folder),
	// then renamed in, so a kill never leaves a folder with a short migration.sql.
	const folder = join(dir, name);
	const staging = join(dirname(dir), `.${name}.tmp`);
	rmSync(staging, { recursive: true, force: true });
	mkdirSync(staging, { recursive: true });
	writeFileSync(join(staging, "migration.sql"), sql);
	rmSync(folder, { recursive: true, force: true });
	renameSync(staging, folder);
	const path = join(folder, "migration.sql");
	return { name, path, sql, checksum: sha256(sql) };
}

export async function readAppliedMigrations(
	db: Db,
): Promise<AppliedRow[] | null> {
	const { rows } = await db.query<{ exists: boolean }>(
		"select to_regclass('public._prisma_migrations') is not null as exists",
	);
	if (!rows[0].exists) return null;
	const res = await db.query<AppliedRow>(
		`select id, migration_name, checksum, started_at, finished_at, rolled_back_at, logs, applied_steps_count
       from public._prisma_migrations order by started_at, migration_name`,
	);
	return res.rows;
}

// The wasm engine's logs start with "external connector error"; the line after says what happened.
const firstLine = (text: string | null) =>
	(
		(text ?? "")
			.trim()
			.split("\n")
			.map((l) => l.trim())
			.find((l) => l && !/^(Error: )?external connector error$/i.test(l)) ?? ""
	).slice(0, 300);

/** Compares the repository's migrations with the database's history. */
export function compareHistory(
	local: LocalMigration[],
	applied: AppliedRow[] | null,
): History {
	const rows = applied ?? [];
	const issues: MigrationIssue[] = [];
	const localByName = new Map(local.map((m) => [m.name, m]));
	const done = new Set<string>();
	const finishedNames = new Set(finishedMigrations(rows));
	for (const row of rows) {
		const file = localByName.get(row.migration_name);
		if (finishedNames.has(row.migration_name) && !isFinished(row)) continue; // superseded
		if (row.rolled_back_at) {
			issues.push({
				kind: "rolled_back",
				migration: row.migration_name,
				detail: `marked rolled back at ${row.rolled_back_at.toISOString()}; Prisma will apply it again on the next deploy`,
			});
			continue;
		}
		if (!row.finished_at) {
			issues.push({
				kind: "failed",
				migration: row.migration_name,
				detail: row.logs
					? `failed: ${firstLine(row.logs)}`
					: `started at ${row.started_at.toISOString()} and never finished (failed, or still running)`,
			});
			continue;
		}
		done.add(row.migration_name);
		if (!file) {
			issues.push({
				kind: "missing_locally",
				migration: row.migration_name,
				detail: "applied to the database but absent from prisma/migrations",
			});
		} else if (file.checksum !== row.checksum) {
			issues.push({
				kind: "checksum_mismatch",
				migration: row.migration_name,
				detail:
					"migration.sql was edited after it was applied (its checksum differs from the database's record)",
			});
		}
	}
	const reported = new Set(issues.map((i) => i.migration));
	const pending = local.filter(
		(m) =>
			!done.has(m.name) &&
			!issues.some((i) => i.kind === "failed" && i.migration === m.name),
	);
	for (const m of pending) {
		if (!reported.has(m.name))
			issues.push({
				kind: "pending",
				migration: m.name,
				detail: "not yet applied",
			});
	}
	const finished = rows.filter(isFinished);
	return {
		local,
		applied: rows,
		tableMissing: applied === null,
		issues,
		pending,
		latestApplied: finished.length
			? finished[finished.length - 1].migration_name
			: null,
	};
}

export async function readHistory(
	db: Db,
	dir = MIGRATIONS_DIR,
): Promise<History> {
	return compareHistory(
		readLocalMigrations(dir),
		await readAppliedMigrations(db),
	);
}
