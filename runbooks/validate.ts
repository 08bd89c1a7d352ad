#!/usr/bin/env -S node --import tsx --

// The seed's "Migration Validation", done right: structure per table, the health of Prisma's
// migration history, and drift against the migrations and prisma/schema.prisma.

import { formatBytes } from "../lib/kit/format.ts";
import { table } from "../lib/kit/output.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import {
	type DriftReport,
	detectDrift,
	driftCommandsFor,
	explainDriftStatement,
} from "../lib/migrations/drift.ts";
import { type History, readHistory } from "../lib/migrations/history.ts";
import {
	displayPath,
	migrationsDir,
	prismaCommand,
} from "../lib/migrations/prisma-cli.ts";
import { describeTables, type TableInfo } from "../lib/pg/catalog.ts";
import { serverVersion } from "../lib/pg/db.ts";

await runRunbook({
	name: "validate",
	summary:
		"Check the database's structure, its migration history and drift; exit 1 naming each problem.",
	description:
		"Read-only. Healthy means: every migration in prisma/migrations is applied and unchanged, none failed\n" +
		"or rolled back, no applied migration is missing locally, the database matches what the migrations\n" +
		"build, and prisma/schema.prisma has no change without a migration.",
	flags: {
		tables: {
			type: "boolean",
			description:
				"Print every table's columns, constraints and indexes (default: a summary).",
		},
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
	},
	examples: [
		"npx tsx runbooks/validate.ts",
		"npx tsx runbooks/validate.ts --tables",
		"npx tsx runbooks/validate.ts --json | jq .problems",
	],
	steps: [
		{
			id: "server",
			title: "Connect to the database",
			async run(ctx) {
				const v = await serverVersion(await ctx.db());
				return { summary: `PostgreSQL ${v.text}`, value: v.text };
			},
		},
		{
			id: "tables",
			title: "Inspect tables, constraints and indexes",
			async run(ctx) {
				const tables = await describeTables(await ctx.db());
				const app = tables.filter((t) => t.name !== "_prisma_migrations");
				ctx.log(
					table(
						app.map((t) => ({
							table: t.name,
							"rows (est.)": t.estimatedRows,
							size: formatBytes(t.totalBytes),
							columns: t.columns.length,
							constraints: t.constraints.length,
							indexes: t.indexes.length,
						})),
					),
				);
				if (ctx.flags.tables) for (const t of app) printTable(ctx.log, t);
				const problems: string[] = [];
				for (const t of tables) {
					for (const i of t.indexes.filter((x) => !x.valid)) {
						problems.push(
							`index ${i.name} on ${t.name} is invalid (a failed CREATE INDEX CONCURRENTLY): drop and recreate it`,
						);
					}
					for (const c of t.constraints.filter((x) => !x.validated)) {
						problems.push(
							`constraint ${c.name} on ${t.name} is NOT VALID: existing rows were never checked (run VALIDATE CONSTRAINT)`,
						);
					}
				}
				for (const p of problems) ctx.warn(p);
				return {
					summary: `${app.length} tables`,
					status: problems.length ? "problem" : "ok",
					data: tables,
					value: { tables, problems },
				};
			},
		},
		{
			id: "history",
			title: "Check the migration history (_prisma_migrations)",
			async run(ctx) {
				const h = await readHistory(await ctx.db(), migrationsDir(ctx.env));
				const { tables } = ctx.result<Found>("tables");
				const empty =
					!h.latestApplied &&
					tables.every((t) => t.name === "_prisma_migrations");
				// Nothing deployed: a drift list would name every object of the schema "to undo".
				const problems = empty
					? [
							"no migration applied; run deploy-production (npx tsx runbooks/deploy-production.ts) to build the schema",
						]
					: h.tableMissing
						? [
								"no _prisma_migrations table: no migration was ever deployed to this database",
							]
						: h.issues.map((i) => `migration ${i.migration}: ${i.detail}`);
				if (!empty && !h.tableMissing)
					ctx.log(
						`${h.local.length} migrations in ${displayPath(migrationsDir(ctx.env))}, latest applied: ${h.latestApplied ?? "none"}`,
					);
				for (const p of problems) ctx.warn(p);
				const failed = h.issues.find((i) => i.kind === "failed");
				if (failed)
					ctx.log(
						`To inspect the failure: select logs from _prisma_migrations where migration_name = '${failed.migration}';`,
					);
				return {
					status: problems.length ? "problem" : "ok",
					summary: empty
						? `${h.local.length} migrations in the repository, none applied, no table`
						: h.tableMissing
							? `${h.local.length} migrations in the repository, none applied`
							: problems.length
								? `${problems.length} problem(s)`
								: "all migrations applied, none failed or changed",
					data:
						empty || h.tableMissing
							? undefined
							: { issues: h.issues, latest_applied: h.latestApplied },
					value: { history: h, problems, empty },
				};
			},
		},
		{
			id: "drift",
			title: "Check drift (prisma migrate diff)",
			skip: (ctx) =>
				ctx.result<{ empty: boolean }>("history").empty
					? "no migration applied"
					: false,
			async run(ctx) {
				const commands = driftCommandsFor(ctx.env);
				ctx.log(`${prismaCommand(commands.introspect)} > database.prisma`);
				ctx.log(prismaCommand(commands.database("database.prisma")));
				ctx.log(prismaCommand(commands.schema));
				const drift = await detectDrift(ctx.target, ctx.env, ctx.signal);
				const problems = [
					...drift.databaseVsMigrations.map(
						(sql) => `${explainDriftStatement(sql)}; to undo: ${sql}`,
					),
					...drift.migrationsVsSchema.map(
						(sql) =>
							`${commands.schemaFile} has a change no migration holds (create one with runbooks/dev-migrate.ts): ${sql}`,
					),
				];
				for (const p of problems) ctx.warn(p);
				return {
					status: problems.length ? "problem" : "ok",
					summary: problems.length ? "drift found" : "no drift",
					data: drift,
					value: { drift, problems: problems.map((p) => `drift: ${p}`) },
				};
			},
		},
	],
	summarize(ctx, ok) {
		const found = (id: string) =>
			ctx.has(id) ? ctx.result<Found>(id) : undefined;
		const problems = ["tables", "history", "drift"].flatMap(
			(id) => found(id)?.problems ?? [],
		);
		return {
			server_version: ctx.has("server") ? ctx.result<string>("server") : null,
			healthy: ok && problems.length === 0,
			problems,
			latest_applied: found("history")?.history?.latestApplied ?? null,
			drift: found("drift")?.drift ?? null,
		};
	},
});

/** What a step found: its problems, and what later steps read. */
interface Found {
	problems: string[];
	tables: TableInfo[];
	history?: History;
	drift?: DriftReport;
}

function printTable(log: (text?: string) => void, t: TableInfo): void {
	log();
	log(`${t.name}`);
	log(
		table(
			t.columns.map((c) => ({
				column: c.name,
				type: c.type,
				null: c.nullable ? "yes" : "no",
				default: c.default,
			})),
		),
	);
	log(
		table(
			t.constraints.map((c) => ({
				constraint: c.name,
				type: c.type,
				definition: c.definition,
			})),
		),
	);
	log(
		table(t.indexes.map((i) => ({ index: i.name, definition: i.definition }))),
	);
}
