#!/usr/bin/env -S node --import tsx --

// The example runbook of docs/architecture.md: count the rows of the app's tables, exit 1 when one
// holds more than --max-rows. Read-only; test/architecture-example.test.ts runs it.

import { usageError } from "../../lib/kit/errors.ts";
import { formatBytes, formatCount } from "../../lib/kit/format.ts";
import { table } from "../../lib/kit/output.ts";
import { runRunbook } from "../../lib/kit/runner.ts";
import {
	countTables,
	describeTables,
	type TableInfo,
} from "../../lib/pg/catalog.ts";

/** What the flags ask for, parsed once before the first step. */
interface Settings {
	only?: string;
	maxRows?: number;
}

await runRunbook({
	name: "row-counts",
	summary:
		"Count the rows of the app's tables; exit 1 when one holds more than --max-rows.",
	flags: {
		table: {
			type: "string",
			value: "<table>",
			description: "Count this table only (default: every table in public).",
		},
		"max-rows": {
			type: "number",
			value: "<rows>",
			description: "A table with more rows than this is a problem (exit 1).",
		},
	},
	examples: [
		"npx tsx docs/examples/row-counts.ts",
		"npx tsx docs/examples/row-counts.ts --table users --max-rows 100000",
	],
	settings: ({ flags }): Settings => {
		const maxRows = flags["max-rows"] as number | undefined;
		if (maxRows !== undefined && !Number.isInteger(maxRows))
			throw usageError(`--max-rows needs a whole number, not ${maxRows}.`);
		return { only: flags.table as string | undefined, maxRows };
	},
	steps: [
		{
			id: "tables",
			title: "List the app's tables",
			async run(ctx) {
				const { only } = ctx.settings;
				const tables = (await describeTables(await ctx.db())).filter(
					(t) => t.name !== "_prisma_migrations" && (!only || t.name === only),
				);
				if (only && !tables.length)
					throw usageError(`There is no table "${only}" in the public schema.`);
				return { summary: `${tables.length} table(s)`, value: tables };
			},
		},
		{
			id: "counts",
			title: "Count their rows",
			async run(ctx) {
				const tables = ctx.result<TableInfo[]>("tables");
				const counts = await countTables(
					await ctx.db(),
					tables.map((t) => `public.${t.name}`),
					{ signal: ctx.signal },
				);
				const rows = tables.map((t) => ({
					table: t.name,
					rows: counts[`public.${t.name}`] ?? 0,
					size: formatBytes(t.totalBytes),
				}));
				ctx.log(table(rows.map((r) => ({ ...r, rows: formatCount(r.rows) }))));
				const { maxRows } = ctx.settings;
				const over = rows.filter(
					(r) => maxRows !== undefined && r.rows > maxRows,
				);
				for (const r of over)
					ctx.warn(
						`${r.table} holds ${formatCount(r.rows)} rows, more than ${formatCount(maxRows ?? 0)}`,
					);
				return {
					summary: `${formatCount(rows.reduce((n, r) => n + r.rows, 0))} rows in all`,
					status: over.length ? "problem" : "ok",
					data: rows,
					value: over.map((r) => r.table),
				};
			},
		},
	],
	summarize: (ctx) => ({
		over_limit: ctx.has("counts") ? ctx.result<string[]>("counts") : null,
	}),
});
