// A new migration from prisma/schema.prisma, made as `prisma migrate dev` would make it. That
// command itself is not used: with Prisma 6.19's WebAssembly engine it fails when migrations are
// pending ("shadow DB must be provided through an external factory") and `--create-only` exits 1
// after writing the file. The same work is done with the two commands it is made of, which work
// with either engine: `migrate diff` (the migrations' end state to the schema), written to
// <timestamp>_<name>/migration.sql, and `migrate deploy`.

import { join } from "node:path";
import { RunbookError, usageError } from "../kit/errors.ts";
import { utcStamp } from "../kit/format.ts";
import type { Target } from "../pg/target.ts";
import { schemaDiffScript, statements } from "./drift.ts";
import { type LocalMigration, writeMigrationFolder } from "./history.ts";
import { migrationsDir, prismaErrorText, runPrisma } from "./prisma-cli.ts";

type Env = Record<string, string | undefined>;

/** --name, checked: it becomes a folder name. */
export function migrationName(name: string | undefined): string {
	if (!name)
		throw usageError(
			"--name is required: a short snake_case name for the migration, e.g. --name add_user_preferences.",
		);
	if (!/^[a-z0-9_]{1,200}$/i.test(name)) {
		throw usageError(
			`--name "${name}" may hold only letters, digits and underscores (it becomes a folder name).`,
		);
	}
	return name;
}

/** Prisma's SQL from the migrations' end state to prisma/schema.prisma. */
export async function generateMigration(
	target: Target,
	env: Env,
	signal: AbortSignal,
): Promise<{ script: string; statements: string[] }> {
	// The same diff as validate's schema drift, and the same cache entry.
	const script = await schemaDiffScript(
		target,
		env,
		signal,
		(run) =>
			new RunbookError(
				`prisma migrate diff failed:\n${prismaErrorText(run)}`,
				1,
				"Check prisma/schema.prisma with: npx prisma validate --config prisma/prisma.config.ts",
			),
	);
	return { script, statements: statements(script) };
}

/** Writes the script as <migrations>/<UTC timestamp>_<name>/migration.sql; returns it as read back. */
export function writeMigration(
	env: Env,
	name: string,
	script: string,
): { dir: string; migration?: LocalMigration } {
	// Prisma's folder naming: a UTC timestamp, then the name.
	const folder = `${utcStamp(new Date(), "digits")}_${name}`;
	const migration = writeMigrationFolder(migrationsDir(env), folder, script);
	return { dir: join(migrationsDir(env), folder), migration };
}

/** `prisma migrate deploy` on the target; throws `failure` with Prisma's error when it fails. */
export async function prismaDeploy(
	target: Target,
	env: Env,
	signal: AbortSignal,
	failure: string,
): Promise<void> {
	const run = await runPrisma(["migrate", "deploy"], target, env, signal);
	if (run.exitCode !== 0)
		throw new RunbookError(`${failure}:\n${prismaErrorText(run)}`);
}
