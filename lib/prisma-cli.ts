// The Prisma CLI, run as a child process with the project's config (prisma/prisma.config.ts).
// Connection strings reach it through the environment only. PRISMA_ENGINE picks the schema
// engine: "wasm" (default, works offline) or "native" (Prisma's downloaded binary).

import { execFile, spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { redact } from "./secrets.ts";
import type { Target } from "./target.ts";

const execFileAsync = promisify(execFile);

export const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const PRISMA_DIR = join(ROOT, "prisma");
export const SCHEMA_PATH = join(PRISMA_DIR, "schema.prisma");
export const MIGRATIONS_DIR = join(PRISMA_DIR, "migrations");
export const CONFIG_PATH = join(PRISMA_DIR, "prisma.config.ts");

const prismaBin = join(dirname(createRequire(import.meta.url).resolve("prisma/package.json")), "build", "index.js");

export interface PrismaRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** The command as the operator would type it (no secrets). */
  command: string;
}

export function prismaCommand(args: string[]): string {
  return `npx prisma ${args.join(" ")} --config prisma/prisma.config.ts`;
}

/** Environment for a Prisma child: the target's URLs, the chosen engine, no update checks or telemetry. */
export function prismaEnv(target: Target, env: Record<string, string | undefined>): NodeJS.ProcessEnv {
  return {
    ...process.env,
    DATABASE_URL: target.app.url,
    DIRECT_URL: target.direct.url,
    PRISMA_ENGINE: env.PRISMA_ENGINE ?? process.env.PRISMA_ENGINE ?? "wasm",
    PRISMA_HIDE_UPDATE_MESSAGE: "1",
    CHECKPOINT_DISABLE: "1",
    PRISMA_DISABLE_WARNINGS: "1",
    NO_COLOR: "1",
    FORCE_COLOR: "0",
  };
}

export async function runPrisma(
  args: string[],
  target: Target,
  env: Record<string, string | undefined>,
  signal?: AbortSignal,
): Promise<PrismaRun> {
  const command = prismaCommand(args);
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [prismaBin, ...args, "--config", CONFIG_PATH], {
      cwd: ROOT,
      env: prismaEnv(target, env),
      signal,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { exitCode: 0, stdout: redact(stdout), stderr: redact(stderr), command };
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { code?: number | string; stdout?: string; stderr?: string };
    if (e.name === "AbortError") throw err;
    return {
      exitCode: typeof e.code === "number" ? e.code : 1,
      stdout: redact(e.stdout ?? ""),
      stderr: redact(e.stderr ?? e.message),
      command,
    };
  }
}

/** Prisma's own error text, without its banner lines, for a one-paragraph failure message. */
export function prismaErrorText(run: PrismaRun): string {
  const text = `${run.stderr}\n${run.stdout}`
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => l && !/^(Prisma schema loaded|Datasource|Loaded Prisma config|Environment variables loaded)/.test(l));
  return text.join("\n").trim();
}

/** Prisma Studio in the foreground, until the operator closes it or the run is interrupted. */
export function openStudio(target: Target, env: Record<string, string | undefined>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [prismaBin, "studio", "--config", CONFIG_PATH], {
      cwd: ROOT,
      stdio: ["inherit", "inherit", "inherit"],
      env: prismaEnv(target, env),
    });
    signal.addEventListener("abort", () => child.kill("SIGINT"), { once: true });
    child.on("close", () => resolve());
  });
}
