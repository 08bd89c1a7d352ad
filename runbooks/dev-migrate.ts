#!/usr/bin/env -S npx tsx
// The seed's "Development Migration Workflow": after editing prisma/schema.prisma, generate the
// migration, read its SQL and its risks, apply it to the local database, check the status.
// Local databases only: it refuses remote or production-marked targets.

import { serverVersion } from "../lib/db.ts";
import { RunbookError, usageError } from "../lib/errors.ts";
import { type LocalMigration, readLocalMigrations } from "../lib/migrations.ts";
import { openStudio, prismaCommand, prismaErrorText, runPrisma } from "../lib/prisma-cli.ts";
import { runRunbook } from "../lib/runner.ts";
import { describeFindings, type LintResult, lintSql } from "../lib/sql-lint.ts";
import { DRIFT_COMMANDS, statements } from "../lib/drift.ts";

interface State {
  before: Set<string>;
  created?: LocalMigration;
  lint?: LintResult;
  status?: string;
}

const migrateDevArgs = (name: string, createOnly: boolean) => [
  "migrate",
  "dev",
  "--name",
  name,
  ...(createOnly ? ["--create-only"] : []),
  "--skip-generate",
];

const nameOf = (flags: Record<string, unknown>) => {
  const name = flags.name as string | undefined;
  if (!name) throw usageError("--name is required: a short snake_case name for the migration, e.g. --name add_user_preferences.");
  if (!/^[a-z0-9_]{1,200}$/i.test(name)) {
    throw usageError(`--name "${name}" may hold only letters, digits and underscores (it becomes a folder name).`);
  }
  return name;
};

await runRunbook<State>({
  name: "dev-migrate",
  summary: "Generate a migration from prisma/schema.prisma, lint it, apply it to the local database.",
  description:
    "Edit prisma/schema.prisma first. The migration is written to prisma/migrations/<timestamp>_<name>/,\n" +
    "its SQL is printed and linted with squawk (unsafe changes are explained in plain words), then it is\n" +
    "applied to the local database with `prisma migrate dev`. Refuses a target that is not local or that\n" +
    "is marked production (RUNBOOK_ENV=production).",
  flags: {
    name: { type: "string", value: "<name>", description: "Name of the migration, e.g. add_user_preferences (required)." },
    "create-only": { type: "boolean", description: "Write the migration but do not apply it (edit the SQL first)." },
    studio: { type: "boolean", description: "Open Prisma Studio at the end (Ctrl-C to close it)." },
  },
  env: { PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native." },
  examples: [
    "npx tsx runbooks/dev-migrate.ts --name add_user_preferences",
    "npx tsx runbooks/dev-migrate.ts --name add_user_preferences --create-only --dry-run",
  ],
  localOnly: true,
  state: () => ({ before: new Set() }),
  steps: [
    {
      title: "Check the local database and the migrations folder",
      async run(ctx) {
        nameOf(ctx.flags);
        const v = await serverVersion(await ctx.db());
        const local = readLocalMigrations();
        ctx.state.before = new Set(local.map((m) => m.name));
        return { summary: `PostgreSQL ${v.text}, ${local.length} migrations in prisma/migrations` };
      },
    },
    {
      title: "Generate the migration (prisma migrate dev --create-only)",
      kind: "change",
      async plan(ctx) {
        const lines = [prismaCommand(migrateDevArgs(nameOf(ctx.flags), true))];
        if (ctx.dryRun) {
          // Preview the SQL Prisma would write, without writing it.
          const run = await runPrisma(DRIFT_COMMANDS.schema, ctx.target, ctx.env, ctx.signal);
          const sql = run.exitCode === 0 ? statements(run.stdout) : [];
          lines.push(sql.length ? `-- SQL it would generate:\n${sql.join("\n")}` : "-- schema.prisma has no change to migrate");
        }
        return lines;
      },
      async run(ctx) {
        const run = await runPrisma(migrateDevArgs(nameOf(ctx.flags), true), ctx.target, ctx.env, ctx.signal);
        if (run.exitCode !== 0) {
          throw new RunbookError(`prisma migrate dev failed:\n${prismaErrorText(run)}`, 1,
            "If Prisma reports drift, run `npx tsx runbooks/validate.ts` to see it before resetting anything.");
        }
        const created = readLocalMigrations().find((m) => !ctx.state.before.has(m.name));
        if (!created) return { summary: "no schema change: prisma/schema.prisma already matches the migrations" };
        ctx.state.created = created;
        return { summary: `wrote prisma/migrations/${created.name}/migration.sql` };
      },
      onFailure: () => "No migration folder was kept. Fix prisma/schema.prisma and rerun.",
    },
    {
      title: "Show the SQL and lint it with squawk",
      skip: (ctx) => (ctx.state.created || ctx.dryRun ? false : "no new migration"),
      async run(ctx) {
        const m = ctx.state.created;
        if (!m) return { summary: "nothing generated in a dry run" };
        ctx.log(m.sql.trim());
        ctx.log();
        const lint = await lintSql(m.sql, `${m.name}/migration.sql`);
        ctx.state.lint = lint;
        for (const line of describeFindings(lint)) ctx.log(line);
        const unsafe = lint.findings.length;
        return {
          status: unsafe ? "warning" : "ok",
          summary: unsafe
            ? `${unsafe} unsafe change(s): fine on your laptop, but deploy-production will refuse them unless allowed`
            : "no unsafe statements",
          data: lint,
        };
      },
    },
    {
      title: "Apply it to the local database (prisma migrate dev)",
      kind: "change",
      skip: (ctx) =>
        ctx.flags["create-only"]
          ? "--create-only: edit the SQL, then rerun without --create-only to apply it"
          : !ctx.state.created && !ctx.dryRun
            ? "no new migration"
            : false,
      plan: (ctx) => [prismaCommand(migrateDevArgs(nameOf(ctx.flags), false))],
      async run(ctx) {
        const m = ctx.state.created as LocalMigration;
        const run = await runPrisma(migrateDevArgs(nameOf(ctx.flags), false), ctx.target, ctx.env, ctx.signal);
        if (run.exitCode !== 0) {
          throw new RunbookError(`prisma migrate dev could not apply ${m.name}:\n${prismaErrorText(run)}`);
        }
        return { summary: `applied ${m.name}` };
      },
      onFailure: (ctx) =>
        `The migration folder prisma/migrations/${ctx.state.created?.name} is kept; the database rolled back the failed migration's transaction.\n` +
        `Fix the SQL or the schema, delete the folder (rm -r prisma/migrations/${ctx.state.created?.name}) and rerun.`,
    },
    {
      title: "Check the status (prisma migrate status)",
      async run(ctx) {
        const run = await runPrisma(["migrate", "status"], ctx.target, ctx.env, ctx.signal);
        const text = prismaErrorText(run);
        ctx.state.status = text;
        ctx.log(text);
        return {
          status: run.exitCode === 0 ? "ok" : "warning",
          summary: run.exitCode === 0 ? "database schema is up to date" : "migrations remain to apply",
        };
      },
    },
    {
      title: "Open Prisma Studio",
      skip: (ctx) => (ctx.flags.studio ? false : "pass --studio to browse the data"),
      async run(ctx) {
        ctx.log("Prisma Studio runs until you press Ctrl-C.");
        await openStudio(ctx.target, ctx.env, ctx.signal);
        return { summary: "closed" };
      },
    },
  ],
  summarize: (ctx) => ({
    migration: ctx.state.created?.name ?? null,
    findings: ctx.state.lint?.findings ?? [],
  }),
});
