// The Prisma CLI, run as a child process with the project's config (prisma/prisma.config.ts).
// Connection strings reach it through the environment only. PRISMA_ENGINE picks the schema
// engine: "wasm" (default, works offline) or "native" (Prisma's downloaded binary).

import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { failureReason } from "../kit/child-failure.ts";
import { redact } from "../kit/secrets.ts";
import { awaitRunInterrupt, toolShell } from "../kit/tool-shell.ts";
import { serverMajor } from "../pg/db.ts";
import type { Target } from "../pg/target.ts";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const PRISMA_DIR = join(ROOT, "prisma");
export const SCHEMA_PATH = join(PRISMA_DIR, "schema.prisma");

/**
 * The migrations folder: PRISMA_MIGRATIONS_DIR when set (absolute, or relative to the repository
 * root), else prisma/migrations. Tests point it at a temporary copy with extra migrations; the
 * Prisma config reads the same variable, so the CLI and the runbooks always agree.
 */
export function migrationsDir(
	env: Record<string, string | undefined> = process.env,
): string {
	const dir = env.PRISMA_MIGRATIONS_DIR;
	if (!dir) return join(PRISMA_DIR, "migrations");
	return isAbsolute(dir) ? dir : resolve(ROOT, dir);
}

/** The schema Prisma reads: PRISMA_SCHEMA (a file or a folder of .prisma files; absolute, or relative to the repository root), else prisma/schema.prisma. */
export function schemaPath(
	env: Record<string, string | undefined> = process.env,
): string {
	const named = env.PRISMA_SCHEMA;
	if (!named) return SCHEMA_PATH;
	return isAbsolute(named) ? named : resolve(ROOT, named);
}

/** Copies the named migration folders' migration.sql (those that have one) and the lock file into a new temporary folder. */
export function copyMigrations(
	source: string,
	names: string[],
	prefix: string,
): string {
	const dir = mkdtempSync(join(tmpdir(), prefix));
	for (const name of names) {
		if (!existsSync(join(source, name, "migration.sql"))) continue;
		mkdirSync(join(dir, name));
		copyFileSync(
			join(source, name, "migration.sql"),
			join(dir, name, "migration.sql"),
		);
	}
	const lock = join(source, "migration_lock.toml");
	if (existsSync(lock)) copyFileSync(lock, join(dir, "migration_lock.toml"));
	return dir;
}

/** The folder as the operator reads it: relative to the repository root when inside it. */
export function displayPath(path: string): string {
	const rel = relative(ROOT, path);
	return rel && !rel.startsWith("..") && !isAbsolute(rel) ? rel : path;
}

export const MIGRATIONS_DIR = migrationsDir();
export const CONFIG_PATH = join(PRISMA_DIR, "prisma.config.ts");

const prismaBin = join(
	dirname(createRequire(import.meta.url).resolve("prisma/package.json")),
	"build",
	"index.js",
);

export interface PrismaRun {
	exitCode: number;
	/** The signal that ended it, if one did. */
	signal?: string | null;
	stdout: string;
	stderr: string;
	/** The command as the operator would type it (no secrets). */
	command: string;
}

const PRISMA_VERSION = createRequire(import.meta.url)("prisma/package.json")
	.version as string;

/** What a cached Prisma result depends on besides its files: Prisma's version and engine. */
export const prismaCacheInputs = (
	env: Record<string, string | undefined>,
): string[] => [
	PRISMA_VERSION,
	env.PRISMA_ENGINE ?? process.env.PRISMA_ENGINE ?? "wasm",
];

/**
 * The same for a `migrate diff` of migrations, which Prisma builds in shadow databases on the
 * target's server: also that server's major version (its catalog is what Prisma compares).
 */
export async function prismaDiffInputs(
	target: Target,
	env: Record<string, string | undefined>,
): Promise<string[]> {
	return [
		...prismaCacheInputs(env),
		`PostgreSQL ${await serverMajor(target.direct)}`,
	];
}

export function prismaCommand(args: string[]): string {
	return `npx prisma ${args.join(" ")} --config prisma/prisma.config.ts`;
}

/** Environment for a Prisma child: the target's URLs, the chosen engine, no update checks or telemetry. */
export function prismaEnv(
	target: Target,
	env: Record<string, string | undefined>,
): NodeJS.ProcessEnv {
	return {
		...process.env,
		DATABASE_URL: target.app.url,
		DIRECT_URL: target.direct.url,
		PRISMA_ENGINE: env.PRISMA_ENGINE ?? process.env.PRISMA_ENGINE ?? "wasm",
		PRISMA_MIGRATIONS_DIR: migrationsDir(env),
		PRISMA_HIDE_UPDATE_MESSAGE: "1",
		CHECKPOINT_DISABLE: "1",
		PRISMA_DISABLE_WARNINGS: "1",
		NO_COLOR: "1",
		FORCE_COLOR: "0",
	};
}

/** One Prisma CLI command, its output redacted; throws "aborted" when the run was interrupted. */
export async function runPrisma(
	args: string[],
	target: Target,
	env: Record<string, string | undefined>,
	signal?: AbortSignal,
	/** Extra variables for this child only (e.g. the session settings read by prisma.config.ts). */
	extraEnv: Record<string, string> = {},
): Promise<PrismaRun> {
	const command = prismaCommand(args);
	const childEnv = { ...prismaEnv(target, env), ...extraEnv };
	const $ = await toolShell({ cwd: ROOT, env: childEnv, signal });
	const run =
		await $`${process.execPath} ${[prismaBin, ...args, "--config", CONFIG_PATH]}`;
	await awaitRunInterrupt(run, signal);
	return {
		exitCode: run.exitCode ?? 1,
		signal: run.signal,
		stdout: redact(run.stdout),
		stderr: redact(run.stderr),
		command,
	};
}

// Lines Prisma prints on every command that say nothing about the outcome.
const PRISMA_NOISE =
	/^(Prisma schema loaded|Datasource "|Loaded Prisma config|Prisma config detected|Environment variables loaded|WARNING: Your schema specifies the following datasource|- url$|- directUrl$|The values from your schema will NOT be used|We recommend you to remove those properties)/;

/**
 * Prisma's own error text, without its banner lines, for a one-paragraph failure message; when it
 * printed none, its exit code (or signal) and last lines.
 */
export function prismaErrorText(run: PrismaRun): string {
	const text = `${run.stderr}\n${run.stdout}`
		.split("\n")
		.map((l) => l.trimEnd())
		.filter((l) => l && !PRISMA_NOISE.test(l.trim()));
	return failureReason(run, text.join("\n"));
}

/** Prisma Studio in the foreground, until the operator closes it or the run is interrupted. */
export function openStudio(
	target: Target,
	env: Record<string, string | undefined>,
	signal: AbortSignal,
): Promise<void> {
	return new Promise((resolve) => {
		const child = spawn(
			process.execPath,
			[prismaBin, "studio", "--config", CONFIG_PATH],
			{
				cwd: ROOT,
				stdio: ["inherit", "inherit", "inherit"],
				env: prismaEnv(target, env),
			},
		);
		signal.addEventListener("abort", () => child.kill("SIGINT"), {
			once: true,
		});
		child.on("close", () => resolve());
	});
}
