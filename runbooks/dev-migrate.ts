#!/usr/bin/env -S node --import tsx --
// The seed's "Development Migration Workflow": after editing prisma/schema.prisma, generate the
// migration (as `prisma migrate dev` would, see lib/migrations/new-migration.ts), read its SQL and
// its risks, apply it to the local database, check the status. Local databases only.

import { refusal } from "../lib/kit/errors.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/dev-migrate.ts";
import { driftCommands } from "../lib/migrations/drift.ts";
import {
	type History,
	type LocalMigration,
	readHistory,
} from "../lib/migrations/history.ts";
import {
	describeFindings,
	type LintResult,
	lintSql,
} from "../lib/migrations/lint.ts";
import {
	generateMigration,
	migrationName,
	prismaDeploy,
	writeMigration,
} from "../lib/migrations/new-migration.ts";
import {
	displayPath,
	migrationsDir,
	openStudio,
	prismaCommand,
	prismaErrorText,
	runPrisma,
} from "../lib/migrations/prisma-cli.ts";
import { serverVersion } from "../lib/pg/db.ts";

interface Settings {
	name: string;
	createOnly: boolean;
	studio: boolean;
}
type Ctx = Context<unknown, Settings>;

const history = (ctx: Ctx) => ctx.result<History>("history");
/** The migration step 3 wrote, if it wrote one. */
const created = (ctx: Ctx) =>
	ctx.has("generate")
		? ctx.result<LocalMigration | undefined>("generate")
		: undefined;
const folder = (ctx: Ctx) => displayPath(migrationsDir(ctx.env));

await runRunbook({
	name: "dev-migrate",
	summary:
		"Generate a migration from prisma/schema.prisma, lint it, apply it to the local database.",
	description:
		"Edit prisma/schema.prisma first. Pending migrations are applied, then Prisma generates the SQL that\n" +
		"takes the migrations to the schema; it is written to prisma/migrations/<timestamp>_<name>/migration.sql,\n" +
		"printed, and linted with squawk (unsafe changes explained in plain words), then applied to the local\n" +
		"database. Refuses a target that is not local or that is marked production (RUNBOOK_ENV=production).",
	flags: {
		name: {
			type: "string",
			value: "<name>",
			description:
				"Name of the migration, e.g. add_user_preferences (required).",
		},
		"create-only": {
			type: "boolean",
			description:
				"Write the migration but do not apply it (edit the SQL first).",
		},
		studio: {
			type: "boolean",
			description: "Open Prisma Studio at the end (Ctrl-C to close it).",
		},
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
		PRISMA_MIGRATIONS_DIR:
			"Another migrations folder (default prisma/migrations).",
	},
	examples: [
		"npx tsx runbooks/dev-migrate.ts --name add_user_preferences",
		"npx tsx runbooks/dev-migrate.ts --name add_user_preferences --create-only --dry-run",
	],
	localOnly: true,
	settings: ({ flags }) => ({
		name: migrationName(flags.name as string | undefined),
		createOnly: Boolean(flags["create-only"]),
		studio: Boolean(flags.studio),
	}),
	steps: [
		{
			id: "history",
			title: "Check the local database and its migration history",
			async run(ctx) {
				const db = await ctx.db();
				const v = await serverVersion(db);
				const h = await readHistory(db, migrationsDir(ctx.env));
				const failed = h.issues.find((i) => i.kind === "failed");
				if (failed) {
					const a = say.failedMigration(failed);
					throw refusal(a.message, a.hint);
				}
				return {
					summary: `PostgreSQL ${v.text}; ${h.local.length} migrations, ${h.pending.length} pending`,
					value: h,
				};
			},
		},
		{
			title: "Apply pending migrations (prisma migrate deploy)",
			kind: "change",
			skip: (ctx) => (history(ctx).pending.length ? false : "none pending"),
			plan: (ctx) => [
				prismaCommand(["migrate", "deploy"]),
				...history(ctx).pending.map((m) => `  ${m.name}`),
			],
			async run(ctx) {
				const failure = "prisma migrate deploy failed";
				await prismaDeploy(ctx.target, ctx.env, ctx.signal, failure);
				return { summary: `applied ${history(ctx).pending.length}` };
			},
			onFailure: () => say.STOPPED.pending,
		},
		{
			id: "generate",
			title:
				"Generate the migration SQL from prisma/schema.prisma (prisma migrate diff)",
			kind: "write",
			async plan(ctx) {
				const diff = driftCommands(folder(ctx)).schema;
				const lines = [
					`${prismaCommand(diff)} > ${folder(ctx)}/<timestamp>_${ctx.settings.name}/migration.sql`,
				];
				if (ctx.dryRun) {
					// Show the SQL Prisma would write, without writing it.
					const g = await generateMigration(ctx.target, ctx.env, ctx.signal);
					lines.push(say.wouldWrite(g.script, g.statements.length));
				}
				return lines;
			},
			async run(ctx) {
				const g = await generateMigration(ctx.target, ctx.env, ctx.signal);
				if (g.statements.length === 0)
					return {
						summary:
							"no schema change: prisma/schema.prisma already matches the migrations",
						value: undefined,
					};
				const w = writeMigration(ctx.env, ctx.settings.name, g.script);
				return {
					summary: `wrote ${displayPath(w.dir)}/migration.sql`,
					value: w.migration,
				};
			},
			onFailure: (ctx) => say.STOPPED.generate(folder(ctx)),
		},
		{
			id: "lint",
			title: "Show the SQL and lint it with squawk",
			skip: (ctx) =>
				created(ctx)
					? false
					: ctx.dryRun
						? "dry run: nothing written"
						: "no new migration",
			async run(ctx) {
				const m = created(ctx) as LocalMigration;
				ctx.log(m.sql.trim());
				ctx.log();
				const lint = await lintSql(m.sql, `${m.name}/migration.sql`);
				for (const line of describeFindings(lint)) ctx.log(line);
				const unsafe = lint.findings.length;
				return {
					status: unsafe ? "warning" : "ok",
					summary: say.lintSummary(unsafe),
					data: lint,
					value: lint,
				};
			},
		},
		{
			title: "Apply it to the local database (prisma migrate deploy)",
			kind: "change",
			skip: (ctx) =>
				ctx.settings.createOnly
					? say.SKIPPED.createOnly
					: !created(ctx) && !ctx.dryRun
						? "no new migration"
						: false,
			plan: () => [prismaCommand(["migrate", "deploy"])],
			async run(ctx) {
				const m = created(ctx) as LocalMigration;
				const failure = `Prisma could not apply ${m.name}`;
				await prismaDeploy(ctx.target, ctx.env, ctx.signal, failure);
				return { summary: `applied ${m.name}` };
			},
			onFailure: (ctx) =>
				say.STOPPED.apply(`${folder(ctx)}/${created(ctx)?.name}`),
		},
		{
			title: "Check the status (prisma migrate status)",
			async run(ctx) {
				const run = await runPrisma(
					["migrate", "status"],
					ctx.target,
					ctx.env,
					ctx.signal,
				);
				ctx.log(prismaErrorText(run));
				const ok = run.exitCode === 0;
				return { status: ok ? "ok" : "warning", summary: say.status(ok) };
			},
		},
		{
			title: "Open Prisma Studio",
			skip: (ctx) => (ctx.settings.studio ? false : say.SKIPPED.studio),
			async run(ctx) {
				ctx.log("Prisma Studio runs until you press Ctrl-C.");
				await openStudio(ctx.target, ctx.env, ctx.signal);
				return { summary: "closed" };
			},
		},
	],
	summarize: (ctx) => ({
		migration: created(ctx)?.name ?? null,
		findings: ctx.has("lint") ? ctx.result<LintResult>("lint").findings : [],
	}),
});
