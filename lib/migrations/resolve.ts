// `prisma migrate resolve`, done directly on Prisma's `_prisma_migrations` table with Prisma's
// semantics (schema-engine mark_migration_applied.rs / mark_migration_rolled_back.rs), because
// Prisma 6.19's resolve has no WebAssembly engine path. Same checks, same rows:
//   --rolled-back <m>: every row of <m> with neither finished_at nor rolled_back_at gets
//     rolled_back_at = now() (P3011 when <m> has no row, P3012 when no row of it failed).
//   --applied <m>: <m> must exist in the migrations folder (P3017) and have no finished row
//     (P3008); its failed rows are marked rolled back, then one row is inserted with a new uuid,
//     the sha256 of migration.sql, logs '', started_at = finished_at = now(),
//     applied_steps_count 0. The table is created first when missing (baseline).
// Both run in one transaction holding Prisma Migrate's advisory lock, so they never race a deploy.

import { randomUUID } from "node:crypto";
import { RunbookError, refusal, usageError } from "../kit/errors.ts";
import { type Db, quoteLiteral } from "../pg/db.ts";
import { PRISMA_MIGRATE_LOCK } from "../pg/sessions.ts";
import {
	type AppliedRow,
	type LocalMigration,
	readAppliedMigrations,
} from "./history.ts";
import { prismaCommand } from "./prisma-cli.ts";

export type ResolveKind = "applied" | "rolled-back";

export interface ResolvePlan {
	kind: ResolveKind;
	migration: string;
	/** The exact statements, run in this order inside one transaction. */
	sql: string[];
	/** Rows of the migration that were failed or unfinished before. */
	failedRows: AppliedRow[];
	/** The same change through Prisma's CLI (needs the native engine). */
	nativeCommand: string;
}

const TABLE = "public._prisma_migrations";

// Prisma's own DDL for the table (sql-schema-connector, PostgreSQL flavour).
const CREATE_TABLE = `CREATE TABLE ${TABLE} (
    "id"                    VARCHAR(36) PRIMARY KEY NOT NULL,
    "checksum"              VARCHAR(64) NOT NULL,
    "finished_at"           TIMESTAMPTZ,
    "migration_name"        VARCHAR(255) NOT NULL,
    "logs"                  TEXT,
    "rolled_back_at"        TIMESTAMPTZ,
    "started_at"            TIMESTAMPTZ NOT NULL DEFAULT now(),
    "applied_steps_count"   INTEGER NOT NULL DEFAULT 0
);`;

export function resolveArgs(kind: ResolveKind, migration: string): string[] {
	return ["migrate", "resolve", `--${kind}`, migration];
}

const failedOf = (rows: AppliedRow[]) =>
	rows.filter((r) => r.finished_at === null && r.rolled_back_at === null);

const rollBackSql = (rows: AppliedRow[]) =>
	rows.map(
		(r) =>
			`UPDATE ${TABLE} SET rolled_back_at = now() WHERE id = ${quoteLiteral(r.id)};`,
	);

/** What marking a failed migration rolled back would do, or Prisma's error when it cannot. */
export async function planRolledBack(
	db: Db,
	migration: string,
): Promise<ResolvePlan> {
	const all = await readAppliedMigrations(db);
	if (all === null) {
		throw usageError(
			`Migration \`${migration}\` cannot be rolled back: the database has no _prisma_migrations table (nothing was ever deployed).`,
		);
	}
	const rows = all.filter((r) => r.migration_name === migration);
	if (rows.length === 0) {
		throw usageError(
			`Migration \`${migration}\` cannot be rolled back because it was never applied to the database (P3011).`,
			'Pass the whole folder name, e.g. "20241230000000_comprehensive_schema".',
		);
	}
	const failed = failedOf(rows);
	if (failed.length === 0) {
		throw refusal(
			`Migration \`${migration}\` cannot be rolled back because it is not in a failed state (P3012). Nothing was changed.`,
			"Only a failed or unfinished migration can be marked rolled back. To undo an applied one, use the rollback runbook.",
		);
	}
	return {
		kind: "rolled-back",
		migration,
		sql: rollBackSql(failed),
		failedRows: failed,
		nativeCommand: prismaCommand(resolveArgs("rolled-back", migration)),
	};
}

/** What marking a migration applied would do, or Prisma's error when it cannot. */
export async function planApplied(
	db: Db,
	migration: string,
	local: LocalMigration[],
	id: string = randomUUID(),
): Promise<ResolvePlan> {
	const file = local.find((m) => m.name === migration);
	if (!file) {
		throw usageError(
			`The migration ${migration} could not be found in the migrations folder (P3017).`,
			"Pass the whole folder name from prisma/migrations, e.g. 20241230000000_comprehensive_schema.",
		);
	}
	const all = await readAppliedMigrations(db);
	const rows = (all ?? []).filter((r) => r.migration_name === migration);
	if (rows.some((r) => r.finished_at !== null)) {
		throw refusal(
			`The migration \`${migration}\` is already recorded as applied in the database (P3008). Nothing was changed.`,
		);
	}
	const failed = failedOf(rows);
	return {
		kind: "applied",
		migration,
		sql: [
			...(all === null ? [CREATE_TABLE] : []),
			...rollBackSql(failed),
			`INSERT INTO ${TABLE} (id, checksum, logs, started_at, finished_at, migration_name) VALUES (${quoteLiteral(id)}, ${quoteLiteral(file.checksum)}, '', now(), now(), ${quoteLiteral(migration)});`,
		],
		failedRows: failed,
		nativeCommand: prismaCommand(resolveArgs("applied", migration)),
	};
}

/**
 * Runs a plan in one transaction under Prisma Migrate's advisory lock. Refuses (exit 3) while a
 * migration holds that lock; checks the rows still are as planned.
 */
export async function applyResolve(db: Db, plan: ResolvePlan): Promise<void> {
	await db.query("BEGIN");
	try {
		const { rows } = await db.query<{ ok: boolean }>(
			"select pg_try_advisory_xact_lock($1) as ok",
			[PRISMA_MIGRATE_LOCK],
		);
		if (!rows[0].ok) {
			throw refusal(
				`A Prisma migration is running on this database (it holds Prisma Migrate's lock ${PRISMA_MIGRATE_LOCK}): not changing _prisma_migrations under it. Nothing was changed.`,
				"Wait for it to end (npx tsx runbooks/monitor.ts shows it), then rerun.",
			);
		}
		const ids = plan.failedRows.map((r) => r.id);
		if (ids.length) {
			const still = await db.query<{ n: string }>(
				`select count(*) as n from ${TABLE} where id = any($1::text[]) and finished_at is null and rolled_back_at is null`,
				[ids],
			);
			if (Number(still.rows[0].n) !== ids.length) {
				throw new RunbookError(
					`The rows of ${plan.migration} changed since they were read (another process resolved or finished it). Nothing was changed.`,
					1,
					"Rerun to see the current state.",
				);
			}
		}
		if (plan.kind === "applied" && !plan.sql[0].startsWith("CREATE TABLE")) {
			const done = await db.query<{ n: string }>(
				`select count(*) as n from ${TABLE} where migration_name = $1 and finished_at is not null`,
				[plan.migration],
			);
			if (Number(done.rows[0].n) > 0) {
				throw refusal(
					`The migration \`${plan.migration}\` was recorded as applied meanwhile. Nothing was changed.`,
				);
			}
		}
		for (const sql of plan.sql) await db.query(sql);
		await db.query("COMMIT");
	} catch (err) {
		await db.query("ROLLBACK").catch(() => {});
		throw err;
	}
}

export async function markRolledBack(
	db: Db,
	migration: string,
): Promise<ResolvePlan> {
	const plan = await planRolledBack(db, migration);
	await applyResolve(db, plan);
	return plan;
}

export async function markApplied(
	db: Db,
	migration: string,
	local: LocalMigration[],
): Promise<ResolvePlan> {
	const plan = await planApplied(db, migration, local);
	await applyResolve(db, plan);
	return plan;
}
