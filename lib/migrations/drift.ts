// Drift, as Prisma computes it (`prisma migrate diff`): the SQL that would take the database to
// what the migrations build, and the SQL that would take the migrations to prisma/schema.prisma.
// Empty SQL means no drift.

import {
	existsSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	rmSync,
	statSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cached } from "../kit/cache.ts";
import { RunbookError } from "../kit/errors.ts";
import type { Target } from "../pg/target.ts";
import { readLocalMigrations } from "./history.ts";
import {
	copyMigrations,
	displayPath,
	migrationsDir,
	type PrismaRun,
	prismaDiffInputs,
	prismaErrorText,
	runPrisma,
	schemaPath,
} from "./prisma-cli.ts";
import { matchesMigrations, migrationsContent } from "./schema-fingerprint.ts";
import { readSql } from "./sql.ts";

export interface DriftReport {
	/** SQL from the database to the migrations' result; empty when they agree. */
	databaseVsMigrations: string[];
	/** SQL from the migrations' result to schema.prisma; empty when schema.prisma has no unmigrated change. */
	migrationsVsSchema: string[];
}

// The database side is read by introspection (`prisma db pull --print`): with the WebAssembly
// engine Prisma cannot diff a live database directly (--from-schema-datasource needs the native
// engine, and --from-url would put the password on argv).
export function driftCommands(
	migrations = "prisma/migrations",
	schema = "prisma/schema.prisma",
) {
	return {
		schemaFile: schema,
		introspect: ["db", "pull", "--print"],
		database: (datamodel: string) => [
			"migrate",
			"diff",
			"--from-schema-datamodel",
			datamodel,
			"--to-migrations",
			migrations,
			"--script",
		],
		empty: [
			"migrate",
			"diff",
			"--from-empty",
			"--to-migrations",
			migrations,
			"--script",
		],
		schema: [
			"migrate",
			"diff",
			"--from-migrations",
			migrations,
			"--to-schema-datamodel",
			schema,
			"--script",
		],
	};
}

/** The commands for the migrations folder and schema this environment names (PRISMA_MIGRATIONS_DIR, PRISMA_SCHEMA). */
export const driftCommandsFor = (env: Record<string, string | undefined>) =>
	driftCommands(displayPath(migrationsDir(env)), displayPath(schemaPath(env)));

/** Statements of a `migrate diff --script` output (comments and the empty-migration marker are not statements). */
export function statements(script: string): string[] {
	return readSql(script).map((s) => `${s.sql};`);
}

/** "prisma <command> failed: " and the first lines of Prisma's error. */
const prismaFailure = (run: PrismaRun) =>
	new RunbookError(
		`${run.command.split(" --")[0]} failed: ${prismaErrorText(run).split("\n").slice(0, 4).join(" ")}`,
	);

async function prismaOrFail(
	args: string[],
	target: Target,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
) {
	const run = await runPrisma(args, target, env, signal);
	if (run.exitCode !== 0) throw prismaFailure(run);
	return run.stdout;
}

/** `db pull --print` output without the warnings Prisma prints before the schema on stdout. */
function schemaText(printed: string): string {
	const lines = printed.split("\n");
	const start = lines.findIndex((l) =>
		/^(generator|datasource|model|enum|view)\s/.test(l),
	);
	return start === -1 ? printed : lines.slice(start).join("\n");
}

const stopIfAborted = (signal?: AbortSignal) => {
	if (signal?.aborted) throw new Error("aborted");
};

/**
 * SQL that would take the live database to what prisma/migrations builds. When the database's
 * catalog equals that of the migrations built in a scratch database (lib/migrations/schema-fingerprint.ts),
 * that is nothing, and Prisma is not run; otherwise Prisma's introspection and diff name the
 * changes.
 */
export async function databaseDrift(
	target: Target,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
): Promise<string[]> {
	const same = await matchesMigrations(
		target,
		readLocalMigrations(migrationsDir(env)),
		signal,
	);
	stopIfAborted(signal);
	if (same) return [];
	const commands = driftCommandsFor(env);
	const pulled = await runPrisma(commands.introspect, target, env, signal);
	if (pulled.exitCode !== 0) {
		// An empty database introspects to nothing: everything the migrations build is missing.
		if (/introspected database was empty/i.test(prismaErrorText(pulled))) {
			return statements(
				await prismaOrFail(commands.empty, target, env, signal),
			);
		}
		throw new RunbookError(
			`prisma db pull failed: ${prismaErrorText(pulled).split("\n").slice(0, 4).join(" ")}`,
		);
	}
	const dir = mkdtempSync(join(tmpdir(), "runbook-drift-"));
	try {
		const file = join(dir, "database.prisma");
		writeFileSync(file, schemaText(pulled.stdout), { mode: 0o600 });
		return statements(
			await prismaOrFail(commands.database(file), target, env, signal),
		);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

/**
 * The schema Prisma reads, as texts (a folder's with their names inside it): PRISMA_SCHEMA (a
 * file, or a folder of .prisma files, relative to the repository root) else prisma/schema.prisma.
 * Not where it is: copies of the checkout share the cache. A missing path is hashed as such, and
 * Prisma then says what is wrong.
 */
function schemaSource(env: Record<string, string | undefined>): string[] {
	const path = schemaPath(env);
	if (!existsSync(path)) return ["(missing)", path];
	if (!statSync(path).isDirectory())
		return ["file", readFileSync(path, "utf8")];
	return readdirSync(path, { recursive: true, encoding: "utf8" })
		.filter((f) => f.endsWith(".prisma"))
		.sort()
		.flatMap((f) => [f, readFileSync(join(path, f), "utf8")]);
}

/**
 * Prisma's script from the migrations' result to the schema (`migrate diff --from-migrations
 * --to-schema-datamodel`). It depends on those files, Prisma and the server's major version, not on
 * the database: cached by them. `failed` makes the error when Prisma fails.
 */
export async function schemaDiffScript(
	target: Target,
	env: Record<string, string | undefined>,
	signal: AbortSignal | undefined,
	failed: (run: PrismaRun) => Error,
): Promise<string> {
	const inputs = [
		...(await prismaDiffInputs(target, env)),
		...schemaSource(env),
		...migrationsContent(readLocalMigrations(migrationsDir(env))),
	];
	const script = await cached("schema-diff", inputs, async () => {
		const run = await runPrisma(
			driftCommandsFor(env).schema,
			target,
			env,
			signal,
		);
		if (run.exitCode !== 0) throw failed(run);
		return run.stdout;
	});
	return script ?? "";
}

/** SQL that would take the migrations' result to prisma/schema.prisma (a change not yet migrated). */
export async function schemaDrift(
	target: Target,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
): Promise<string[]> {
	return statements(await schemaDiffScript(target, env, signal, prismaFailure));
}

/**
 * SQL that would take the live database to what the named migrations (e.g. those its
 * _prisma_migrations records as applied) build: drift without the changes of pending or failed
 * migrations. Runs `migrate diff` against a temporary folder holding copies of those migrations.
 */
export async function databaseDriftAgainst(
	target: Target,
	env: Record<string, string | undefined>,
	names: string[],
	signal?: AbortSignal,
): Promise<string[]> {
	const dir = copyMigrations(
		migrationsDir(env),
		names,
		"runbook-applied-migrations-",
	);
	try {
		return await databaseDrift(
			target,
			{ ...env, PRISMA_MIGRATIONS_DIR: dir },
			signal,
		);
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

/**
 * Where a migration that _prisma_migrations records as unfinished really stands: "rolled-back" when
 * the database is what the finished migrations build (PostgreSQL rolled its transaction back),
 * "applied" when it is what they build with it (it committed, but its process died before Prisma
 * recorded the end), "unknown" when neither (a partial, non-transactional migration, or drift).
 */
export async function unfinishedMigrationState(
	target: Target,
	env: Record<string, string | undefined>,
	finished: string[],
	migration: string,
	signal?: AbortSignal,
): Promise<"rolled-back" | "applied" | "unknown"> {
	if ((await databaseDriftAgainst(target, env, finished, signal)).length === 0)
		return "rolled-back";
	const withIt = await databaseDriftAgainst(
		target,
		env,
		[...finished, migration],
		signal,
	);
	return withIt.length === 0 ? "applied" : "unknown";
}

export async function detectDrift(
	target: Target,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
): Promise<DriftReport> {
	return {
		databaseVsMigrations: await databaseDrift(target, env, signal),
		migrationsVsSchema: await schemaDrift(target, env, signal),
	};
}

const NAME = String.raw`"(?:[^"]|"")+"(?:\."(?:[^"]|"")+")?`;
const unq = (n: string) =>
	n
		.split(".")
		.map((p) => p.slice(1, -1).replace(/""/g, '"'))
		.filter((p) => p !== "public")
		.join(".");

/**
 * One sentence naming what a statement of database-to-migrations SQL says about the database
 * (the SQL undoes the drift, so DROP means "exists only in the database").
 */
export function explainDriftStatement(sql: string): string {
	const rules: Array<[RegExp, (m: RegExpExecArray) => string]> = [
		[
			new RegExp(`^ALTER TABLE (${NAME}) DROP COLUMN (${NAME})`, "i"),
			(m) =>
				`column ${unq(m[1])}.${unq(m[2])} exists in the database but in no migration`,
		],
		[
			new RegExp(`^ALTER TABLE (${NAME}) ADD COLUMN (${NAME})`, "i"),
			(m) => `column ${unq(m[1])}.${unq(m[2])} is missing from the database`,
		],
		[
			new RegExp(`^ALTER TABLE (${NAME}) ALTER COLUMN (${NAME})`, "i"),
			(m) =>
				`column ${unq(m[1])}.${unq(m[2])} differs from the migrations (type, default or nullability)`,
		],
		[
			new RegExp(`^DROP TABLE (${NAME})`, "i"),
			(m) => `table ${unq(m[1])} exists in the database but in no migration`,
		],
		[
			new RegExp(`^CREATE TABLE (${NAME})`, "i"),
			(m) => `table ${unq(m[1])} is missing from the database`,
		],
		[
			new RegExp(`^DROP INDEX (${NAME})`, "i"),
			(m) => `index ${unq(m[1])} exists in the database but in no migration`,
		],
		[
			new RegExp(`^CREATE (?:UNIQUE )?INDEX (${NAME})`, "i"),
			(m) => `index ${unq(m[1])} is missing from the database`,
		],
		[
			new RegExp(`^ALTER TABLE (${NAME}) DROP CONSTRAINT (${NAME})`, "i"),
			(m) =>
				`constraint ${unq(m[2])} on ${unq(m[1])} exists in the database but in no migration`,
		],
		[
			new RegExp(`^ALTER TABLE (${NAME}) ADD CONSTRAINT (${NAME})`, "i"),
			(m) =>
				`constraint ${unq(m[2])} on ${unq(m[1])} is missing from the database`,
		],
		[
			new RegExp(`^DROP TYPE (${NAME})`, "i"),
			(m) => `type ${unq(m[1])} exists in the database but in no migration`,
		],
		[
			new RegExp(`^CREATE TYPE (${NAME})`, "i"),
			(m) => `type ${unq(m[1])} is missing from the database`,
		],
	];
	for (const [re, say] of rules) {
		const m = re.exec(sql.trim());
		if (m) return say(m);
	}
	return "the database differs from the migrations";
}

/**
 * One sentence per change in database-to-migrations SQL: Prisma folds several changes to one table
 * into one ALTER TABLE ("ALTER TABLE t DROP COLUMN a,\nDROP COLUMN b;"), explained here clause by clause.
 */
export function explainDrift(sql: string[]): string[] {
	const out: string[] = [];
	for (const statement of sql) {
		const m = /^(ALTER TABLE\s+\S+)\s+([\s\S]+?);?$/i.exec(statement.trim());
		const clauses = m ? m[2].split(/,\s*\n\s*/) : [];
		if (m && clauses.length > 1) {
			for (const c of clauses)
				out.push(explainDriftStatement(`${m[1]} ${c.trim()};`));
		} else {
			out.push(explainDriftStatement(statement));
		}
	}
	return out;
}
