#!/usr/bin/env -S npx tsx --

// The seed's "Migration Validation", done right: structure per table, the health of Prisma's
// migration history, and drift against the migrations and prisma/schema.prisma.

import { table } from "../lib/kit/output.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import {
	DRIFT_COMMANDS,
	type DriftReport,
	detectDrift,
	explainDriftStatement,
} from "../lib/migrations/drift.ts";
import { type History, readHistory } from "../lib/migrations/history.ts";
import {
	displayPath,
	migrationsDir,
	prismaCommand,
} from "../lib/migrations/prisma-cli.ts";
import {
	describeTables,
	formatBytes,
	type TableInfo,
} from "../lib/pg/catalog.ts";
import { serverVersion } from "../lib/pg/db.ts";

interface State {
	server?: string;
	tables: TableInfo[];
	history?: History;
	drift?: DriftReport;
	problems: string[];
	/** Nothing deployed: no migration applied and no table of the app. */
	empty?: boolean;
}

await runRunbook<State>({
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
	state: () => ({ tables: [], problems: [] }),
	steps: [
		{
			title: "Connect to the database",
			async run(ctx) {
				const v = await serverVersion(await ctx.db());
				ctx.state.server = v.text;
				return { summary: `PostgreSQL ${v.text}` };
			},
		},
		{
			title: "Inspect tables, constraints and indexes",
			async run(ctx) {
				const tables = await describeTables(await ctx.db());
				ctx.state.tables = tables;
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
				ctx.state.problems.push(...problems);
				return {
					summary: `${app.length} tables`,
					status: problems.length ? "problem" : "ok",
					data: tables,
				};
			},
		},
		{
			title: "Check the migration history (_prisma_migrations)",
			async run(ctx) {
				const h = await readHistory(await ctx.db(), migrationsDir(ctx.env));
				ctx.state.history = h;
				const appTables = ctx.state.tables.filter(
					(t) => t.name !== "_prisma_migrations",
				);
				if (!h.latestApplied && appTables.length === 0) {
					// A drift list would name every object of the schema "to undo": say what to run instead.
					ctx.state.empty = true;
					const p =
						"no migration applied; run deploy-production (npx tsx runbooks/deploy-production.ts) to build the schema";
					ctx.state.problems.push(p);
					ctx.warn(p);
					return {
						status: "problem",
						summary: `${h.local.length} migrations in the repository, none applied, no table`,
					};
				}
				if (h.tableMissing) {
					const p =
						"no _prisma_migrations table: no migration was ever deployed to this database";
					ctx.state.problems.push(p);
					ctx.warn(p);
					return {
						status: "problem",
						summary: `${h.local.length} migrations in the repository, none applied`,
					};
				}
				ctx.log(
					`${h.local.length} migrations in ${displayPath(migrationsDir(ctx.env))}, latest applied: ${h.latestApplied ?? "none"}`,
				);
				for (const i of h.issues) {
					const p = `migration ${i.migration}: ${i.detail}`;
					ctx.state.problems.push(p);
					ctx.warn(p);
				}
				const failed = h.issues.filter((i) => i.kind === "failed");
				if (failed.length) {
					ctx.log(
						`To inspect the failure: select logs from _prisma_migrations where migration_name = '${failed[0].migration}';`,
					);
				}
				return {
					status: h.issues.length ? "problem" : "ok",
					summary: h.issues.length
						? `${h.issues.length} problem(s)`
						: "all migrations applied, none failed or changed",
					data: { issues: h.issues, latest_applied: h.latestApplied },
				};
			},
		},
		{
			title: "Check drift (prisma migrate diff)",
			skip: (ctx) => (ctx.state.empty ? "no migration applied" : false),
			async run(ctx) {
				ctx.log(
					`${prismaCommand(DRIFT_COMMANDS.introspect)} > database.prisma`,
				);
				ctx.log(prismaCommand(DRIFT_COMMANDS.database("database.prisma")));
				ctx.log(prismaCommand(DRIFT_COMMANDS.schema));
				const drift = await detectDrift(ctx.target, ctx.env, ctx.signal);
				ctx.state.drift = drift;
				const problems: string[] = [];
				for (const sql of drift.databaseVsMigrations) {
					problems.push(`${explainDriftStatement(sql)}; to undo: ${sql}`);
				}
				for (const sql of drift.migrationsVsSchema) {
					problems.push(
						`prisma/schema.prisma has a change no migration holds (create one with runbooks/dev-migrate.ts): ${sql}`,
					);
				}
				for (const p of problems) ctx.warn(p);
				ctx.state.problems.push(...problems.map((p) => `drift: ${p}`));
				return {
					status: problems.length ? "problem" : "ok",
					summary: problems.length ? "drift found" : "no drift",
					data: drift,
				};
			},
		},
	],
	summarize: (ctx, ok) => ({
		server_version: ctx.state.server ?? null,
		healthy: ok && ctx.state.problems.length === 0,
		problems: ctx.state.problems,
		latest_applied: ctx.state.history?.latestApplied ?? null,
		drift: ctx.state.drift ?? null,
	}),
});

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
