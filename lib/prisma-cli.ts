// The Prisma CLI, run as a child process with the project's config (prisma/prisma.config.ts).
// Connection strings reach it through the environment only. PRISMA_ENGINE picks the schema
// engine: "wasm" (default, works offline) or "native" (Prisma's downloaded binary).

import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { $ } from "zx";
import { redact } from "./secrets.ts";
import type { Target } from "./target.ts";

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
  const run = await $({ cwd: ROOT, env: prismaEnv(target, env), signal, quiet: true, nothrow: true })`${process.execPath} ${[
    prismaBin,
    ...args,
    "--config",
    CONFIG_PATH,
  ]}`;
  if (signal?.aborted) throw new Error("aborted");
  return { exitCode: run.exitCode ?? 1, stdout: redact(run.stdout), stderr: redact(run.stderr), command };
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
