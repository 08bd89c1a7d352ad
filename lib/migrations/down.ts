// Rolling migrations back without a restore ("down"): the SQL that takes the schema the applied
// migrations build back to what the migrations up to <migration> build, computed by Prisma
// (`prisma migrate diff --from-migrations --to-migrations`, each side a temporary folder of copies),
// what data that SQL drops, and applying it in one transaction together with removing the later
// migrations' rows from `_prisma_migrations`. Removing the rows (rather than marking them rolled
// back) is what Prisma itself leaves for a migration that was never applied: once the files are
// reverted, `prisma migrate status` is up to date, and the migrations can be applied again later.

import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { cached } from "../kit/cache.ts";
import { sleep } from "../kit/duration.ts";
import { EXIT, RunbookError, refusal } from "../kit/errors.ts";
import { formatMs } from "../kit/format.ts";
import { type Db, quoteIdent, quoteLiteral } from "../pg/db.ts";
import { PRISMA_MIGRATE_LOCK } from "../pg/sessions.ts";
import type { Target } from "../pg/target.ts";
import { statements } from "./drift.ts";
import {
	copyMigrations,
	migrationsDir,
	prismaCommand,
	prismaDiffInputs,
	prismaErrorText,
	runPrisma,
} from "./prisma-cli.ts";
import { migrationsContent } from "./schema-fingerprint.ts";
import { alterCommands, qualifiedName, readSql } from "./sql.ts";

export const MIGRATIONS_TABLE = "public._prisma_migrations";

/** The diff's arguments; the folders are temporary copies (shown as placeholders in plans). */
export function downDiffArgs(from: string, to: string): string[] {
	return [
		"migrate",
		"diff",
		"--from-migrations",
		from,
		"--to-migrations",
		to,
		"--script",
	];
}

export const describeDownDiff = (to: string) =>
	prismaCommand(
		downDiffArgs(
			"<copies of the applied migrations>",
			`<copies of the migrations up to ${to}>`,
		),
	);

/** Drops statements that control the transaction (Prisma wraps some enum changes in BEGIN/COMMIT). */
const TRANSACTION_CONTROL = /^(BEGIN|COMMIT|START\s+TRANSACTION|END)\s*;?$/i;

export interface DownSql {
	/** Prisma's script, as printed. */
	script: string;
	/** Its statements, without comments and transaction control: what is run. */
	statements: string[];
	command: string;
}

/**
 * The down SQL from the migrations `applied` (in order; every one must have its migration.sql in
 * the migrations folder) back to those up to and including `to`.
 */
export async function computeDownSql(
	target: Target,
	env: Record<string, string | undefined>,
	applied: string[],
	to: string,
	signal?: AbortSignal,
): Promise<DownSql> {
	const source = migrationsDir(env);
	const missing = applied.filter(
		(n) => !existsSync(join(source, n, "migration.sql")),
	);
	if (missing.length) {
		throw refusal(
			`The down SQL is computed from the migration files, and ${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} no longer in ${source} (already reverted?). Nothing was changed.`,
			"Bring the files back for the rollback (git checkout <commit> -- <folder>), or restore the pre-deploy backup instead (without --mode down).",
		);
	}
	const upTo = applied.slice(0, applied.indexOf(to) + 1);
	// The diff depends on the files, Prisma and the server's version: a rerun (after a Ctrl-C, say)
	// reads it back.
	const files = (names: string[]) =>
		migrationsContent(
			names.map((name) => ({
				name,
				sql: readFileSync(join(source, name, "migration.sql"), "utf8"),
			})),
		);
	const lock = join(source, "migration_lock.toml");
	const inputs = [
		...(await prismaDiffInputs(target, env)),
		existsSync(lock) ? readFileSync(lock, "utf8") : "(no lock file)",
		`${applied.length} applied, back to the first ${upTo.length}`,
		...files(applied),
	];
	const script =
		(await cached("down-diff", inputs, async () => {
			const from = copyMigrations(source, applied, "runbook-down-");
			const toDir = copyMigrations(source, upTo, "runbook-down-");
			try {
				const run = await runPrisma(
					downDiffArgs(from, toDir),
					target,
					env,
					signal,
				);
				if (run.exitCode !== 0) {
					throw new RunbookError(
						`prisma migrate diff failed: ${prismaErrorText(run).split("\n").slice(0, 4).join(" ")}`,
					);
				}
				return run.stdout
					.split("\n")
					.filter((l) => !/^Loaded Prisma config/.test(l))
					.join("\n")
					.trim();
			} finally {
				rmSync(from, { recursive: true, force: true });
				rmSync(toDir, { recursive: true, force: true });
			}
		})) ?? "";
	return {
		script,
		statements: statements(script).filter(
			(s) => !TRANSACTION_CONTROL.test(s.trim()),
		),
		command: describeDownDiff(to),
	};
}

export interface DataLoss {
	kind: "table" | "column" | "type";
	/** schema.table */
	table: string;
	column?: string;
	statement: string;
	/** Rows (table) or non-null values (column, type change) that are lost or converted. */
	values?: number;
}

/** ALTER TABLE commands whose data the down SQL drops (a column) or converts (a type change). */
const LOSING_COMMANDS: Record<string, DataLoss["kind"] | undefined> = {
	AT_DropColumn: "column",
	AT_AlterColumnType: "type",
};

/** Every table and column whose data the statements drop (DROP TABLE, DROP COLUMN) or convert (a type change). */
export function dataLosses(sql: string[]): DataLoss[] {
	const out: DataLoss[] = [];
	for (const statement of sql) {
		const text = statement.trim();
		for (const s of readSql(text)) {
			if (s.kind === "DropStmt" && s.table) {
				for (const t of s.locks)
					out.push({ kind: "table", table: qualifiedName(t), statement: text });
				continue;
			}
			if (s.kind !== "AlterTableStmt" || !s.table) continue;
			const table = qualifiedName(s.table);
			for (const c of alterCommands(s.sql)) {
				const kind = LOSING_COMMANDS[c.subtype];
				if (kind)
					out.push({
						kind,
						table,
						column: c.name ?? undefined,
						statement: text,
					});
			}
		}
	}
	return out;
}

/** How much data each loss holds now. */
export async function measureLosses(
	db: Db,
	losses: DataLoss[],
): Promise<DataLoss[]> {
	const out: DataLoss[] = [];
	for (const l of losses) {
		const what = l.kind === "table" ? "*" : quoteIdent(l.column as string);
		// The name exactly as PostgreSQL resolves it ("Recipient", other schemas, quotes in names).
		const rel = (
			await db.query<{ r: string }>("select to_regclass($1)::text as r", [
				l.table,
			])
		).rows[0].r;
		const { rows } = await db.query<{ n: string }>(
			`select count(${what}) as n from ${rel}`,
		);
		out.push({ ...l, values: Number(rows[0].n) });
	}
	return out;
}

export function describeLoss(l: DataLoss): string {
	const t = l.table.replace(/^public\./, "");
	const n = (l.values ?? 0).toLocaleString("en-US");
	if (l.kind === "table") return `drops table ${t} and its ${n} row(s)`;
	if (l.kind === "column")
		return `drops column ${t}.${l.column} and its ${n} non-null value(s)`;
	return `changes the type of ${t}.${l.column}: its ${n} non-null value(s) are converted (and may be truncated or rejected)`;
}

/** The statements that bring `_prisma_migrations` in line: the later migrations' rows go. */
export function historySql(later: string[]): string {
	return `DELETE FROM ${MIGRATIONS_TABLE} WHERE migration_name IN (${later.map(quoteLiteral).join(", ")});`;
}

export interface ApplyDownOptions {
	lockTimeoutMs: number;
	statementTimeoutMs: number;
	/** Attempts after the first one that gave up on a lock (backoff 1 s, 2 s, 4 s ...). */
	retries: number;
	signal?: AbortSignal;
	/** Called inside the transaction before the down SQL runs, e.g. to count rows. */
	before?: (db: Db) => Promise<void>;
	/** Called after an attempt gave up on a lock, before waiting `delayMs` to retry. */
	onLockTimeout?: (attempt: number, delayMs: number) => Promise<void> | void;
}

/** applyDownOnce, retried with backoff while it gives up on a lock. */
export async function applyDown(
	db: Db,
	sql: string[],
	later: string[],
	opts: ApplyDownOptions,
): Promise<{ deletedRows: number; attempts: number }> {
	for (let attempt = 1; ; attempt++) {
		try {
			return {
				...(await applyDownOnce(db, sql, later, opts)),
				attempts: attempt,
			};
		} catch (err) {
			if (!(err instanceof LockTimeout) || attempt > opts.retries) throw err;
			const delayMs = Math.min(1000 * 2 ** (attempt - 1), 30_000);
			await opts.onLockTimeout?.(attempt, delayMs);
			await sleep(delayMs, opts.signal);
		}
	}
}

class LockTimeout extends RunbookError {}

/**
 * One attempt: runs the down SQL and the history change in one transaction with lock_timeout and
 * statement_timeout, under Prisma Migrate's advisory lock (so it never races a deploy).
 * All or nothing: on any error PostgreSQL rolls it all back.
 */
export async function applyDownOnce(
	db: Db,
	sql: string[],
	later: string[],
	opts: ApplyDownOptions,
): Promise<{ deletedRows: number }> {
	await db.query("BEGIN");
	try {
		await db.query(
			`SET LOCAL lock_timeout = ${Math.max(1, Math.round(opts.lockTimeoutMs))}`,
		);
		await db.query(
			`SET LOCAL statement_timeout = ${Math.max(0, Math.round(opts.statementTimeoutMs))}`,
		);
		const { rows } = await db.query<{ ok: boolean }>(
			"select pg_try_advisory_xact_lock($1) as ok",
			[PRISMA_MIGRATE_LOCK],
		);
		if (!rows[0].ok) {
			throw refusal(
				`A Prisma migration is running on this database (it holds Prisma Migrate's lock ${PRISMA_MIGRATE_LOCK}). Nothing was changed.`,
				"Wait for it to end (npx tsx runbooks/monitor.ts shows it), then rerun.",
			);
		}
		await opts.before?.(db);
		for (const statement of sql) await db.query(statement);
		const deleted = await db.query(historySql(later));
		await db.query("COMMIT");
		return { deletedRows: deleted.rowCount ?? 0 };
	} catch (err) {
		await db.query("ROLLBACK").catch(() => {});
		if ((err as { code?: string }).code === "55P03")
			throw new LockTimeout(
				`A lock could not be taken within the lock timeout (${formatMs(opts.lockTimeoutMs)}): the down SQL was rolled back, nothing was changed.`,
				EXIT.failed,
				"Another session holds a lock on a table it changes (is the app stopped?): see npx tsx runbooks/monitor.ts, then rerun.",
			);
		throw err;
	}
}
