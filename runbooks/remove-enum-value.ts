#!/usr/bin/env -S node --import tsx --

// The seed's "removing an enum value", online: its rows moved to another value in batches, then the
// type replaced by one without it for every column, as Prisma migrations; schema.prisma follows.

import { readFileSync } from "node:fs";
import { runWholeChange } from "../lib/data/column-change.ts";
import {
	COLUMN_CHANGE_FLAGS,
	type ColumnChangeSettings,
	columnChangeSettings,
} from "../lib/data/column-change-settings.ts";
import { fillBatches } from "../lib/data/column-fill.ts";
import {
	type EnumUsage,
	lockTableOf,
	planEnumColumns,
	planEnumType,
	readEnumUsage,
	removeEnumValue,
} from "../lib/data/enum-value.ts";
import {
	applyPhases,
	healthy,
	prismaViewStep,
	rewriteSchemaFile,
	writePlanned,
} from "../lib/data/recorded-steps.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import {
	enumInUse,
	enumPlanLines,
	migrationHeader,
	planOf,
	REMOVE_ENUM_VALUE_ABOUT,
} from "../lib/messages/column-type.ts";
import { SCHEMA_PATH } from "../lib/migrations/prisma-cli.ts";
import { quoteIdent, quoteLiteral } from "../lib/pg/db.ts";

interface Settings extends ColumnChangeSettings {
	enum: string;
	value: string;
	replaceWith?: string;
}
type Ctx = Context<unknown, Settings>;

const { abort: _abort, ...flags } = COLUMN_CHANGE_FLAGS;
const command = () =>
	rerunCommand("runbooks/remove-enum-value.ts", {
		drop: ["yes", "json", "verbose", "dry-run"],
	});
const usage = (ctx: Ctx) => ctx.result<EnumUsage>("usage");
const header = (what: string) => migrationHeader(what, command());
const io = (ctx: Ctx) => ({ ctx, u: usage(ctx), s: ctx.settings, header });
const gone = (ctx: Ctx) => !usage(ctx).values.includes(ctx.settings.value);

await runRunbook<unknown, Settings>({
	name: "remove-enum-value",
	summary:
		"Remove a value from an enum type on a busy database, its rows moved to another value, as Prisma migrations.",
	description: REMOVE_ENUM_VALUE_ABOUT,
	flags: {
		enum: {
			type: "string",
			value: "<enum>",
			description: "The enum type, as named in the database, e.g. VideoStatus.",
		},
		value: {
			type: "string",
			value: "<value>",
			description: "The value to remove, e.g. PROCESSING.",
		},
		"replace-with": {
			type: "string",
			value: "<value>",
			description:
				"The value its rows get (without it, a value still in use is refused: exit 3).",
		},
		...flags,
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
	},
	examples: [
		"npx tsx runbooks/remove-enum-value.ts --enum VideoStatus --value PROCESSING --dry-run",
		"npx tsx runbooks/remove-enum-value.ts --enum VideoStatus --value PROCESSING --replace-with PENDING --yes --confirm faceswap",
	],
	exclusive: true,
	settings: ({ flags: f }) => {
		if (!f.enum || !f.value)
			throw usageError(
				"--enum and --value are required.",
				"Run with --help for an example.",
			);
		if (f.abort)
			throw usageError(
				"--abort is not offered here: rerun the same command to finish instead.",
			);
		const replaceWith =
			f["replace-with"] === undefined ? undefined : String(f["replace-with"]);
		return {
			...columnChangeSettings(f, "remove-enum-value"),
			enum: String(f.enum),
			value: String(f.value),
			replaceWith,
		};
	},
	steps: [
		{
			id: "usage",
			title:
				"Read the enum and count the rows using the value in every column of its type",
			async run(ctx) {
				const s = ctx.settings;
				const u = await readEnumUsage(
					await ctx.db(),
					s.enum,
					s.value,
					s.replaceWith,
				);
				for (const line of enumPlanLines(u, s.value)) ctx.log(line);
				const rows = u.columns.reduce((n, c) => n + c.rows, 0);
				if (rows && s.replaceWith === undefined)
					throw refusal(
						enumInUse(u, s.value, rows),
						`Pass --replace-with <value> to move those rows, e.g.: ${command()} --replace-with ${u.values.find((v) => v !== s.value)}`,
					);
				return {
					summary: !u.values.includes(s.value)
						? `${s.value} is not in ${s.enum}`
						: `${rows} row(s) use ${s.value} in ${u.columns.length} column(s)`,
					value: u,
					data: u.columns,
				};
			},
		},
		{
			title:
				"Move the rows to the replacement value, in keyset batches (backfill engine)",
			kind: "change",
			skip: (ctx) =>
				usage(ctx).columns.some((c) => c.rows > 0)
					? false
					: "no row uses the value",
			plan: (ctx) =>
				usage(ctx)
					.columns.filter((c) => c.rows)
					.map(
						(c) =>
							`-- UPDATE ${quoteIdent(c.table)} SET ${quoteIdent(c.column)} = ${quoteLiteral(ctx.settings.replaceWith ?? "")} WHERE ${quoteIdent(c.column)} = ${quoteLiteral(ctx.settings.value)}, in primary-key batches (ROW EXCLUSIVE)`,
					),
			async run(ctx) {
				await ctx.confirmRun(
					`Remove ${ctx.settings.value} from ${ctx.settings.enum}, its rows becoming ${ctx.settings.replaceWith}?`,
				);
				let moved = 0;
				for (const c of usage(ctx).columns.filter((x) => x.rows > 0)) {
					const col = quoteIdent(c.column);
					const r = await fillBatches(
						ctx,
						c,
						`${col} = ${quoteLiteral(ctx.settings.replaceWith ?? "")}`,
						`${col} = ${quoteLiteral(ctx.settings.value)}`,
						ctx.settings.fill,
					);
					moved += r.updatedThisRun;
				}
				return {
					summary: `${moved} row(s) moved to ${ctx.settings.replaceWith}`,
				};
			},
		},
		{
			title: "Create the enum type without the value (migration)",
			kind: "change",
			skip: (ctx) =>
				gone(ctx) ? `${ctx.settings.value} is gone already` : false,
			plan: async (ctx) => (await planEnumType(io(ctx), 0)).flatMap(planOf),
			async run(ctx) {
				await ctx.confirmRun(
					`Remove ${ctx.settings.value} from ${ctx.settings.enum}?`,
				);
				const planned = await planEnumType(io(ctx), 0);
				writePlanned(ctx, planned);
				await applyPhases(ctx, planned, ["create_type"], {
					...ctx.settings,
					tableSql: lockTableOf(usage(ctx)),
				});
				return { summary: `${usage(ctx).newSql} created` };
			},
		},
		{
			title:
				"Change every column of the type to the new one (online on large tables, directly on small ones)",
			kind: "change",
			skip: (ctx) =>
				gone(ctx) ? `${ctx.settings.value} is gone already` : false,
			plan: (ctx) =>
				usage(ctx).columns.map(
					(c) =>
						`-- ${c.table}.${c.column}: the change-column-type.ts road to ${usage(ctx).newSql} (USING ${quoteIdent(c.column)}::text::${usage(ctx).newSql})`,
				),
			async run(ctx) {
				for (const p of await planEnumColumns(io(ctx))) {
					writePlanned(ctx, p.planned);
					await runWholeChange(ctx, p, ctx.settings);
					ctx.log(
						`${p.change.table}.${p.change.column}: ${p.direct ? "changed by a direct ALTER" : "changed online"} (${p.planned.length} migration(s))`,
					);
				}
				return {
					summary: `${usage(ctx).columns.length} column(s) on ${usage(ctx).newSql}`,
				};
			},
		},
		{
			title:
				"Drop the old type, give the new one its name (migration); update schema.prisma",
			kind: "change",
			skip: (ctx) =>
				gone(ctx) &&
				!readFileSync(SCHEMA_PATH, "utf8").match(
					new RegExp(
						`enum\\s+${ctx.settings.enum}\\s*\\{[^}]*\\b${ctx.settings.value}\\b`,
					),
				)
					? "done already"
					: false,
			plan: async (ctx) =>
				gone(ctx) ? [] : (await planEnumType(io(ctx), 1)).flatMap(planOf),
			async run(ctx) {
				if (!gone(ctx)) {
					const planned = await planEnumType(io(ctx), 1);
					writePlanned(ctx, planned);
					await applyPhases(ctx, planned, ["drop_old_type"], {
						...ctx.settings,
						tableSql: lockTableOf(usage(ctx)),
					});
				}
				await rewriteSchemaFile(ctx, (text) =>
					removeEnumValue(text, ctx.settings.enum, ctx.settings.value),
				);
				return {
					summary: `${ctx.settings.enum} without ${ctx.settings.value}, in the database and in schema.prisma`,
				};
			},
		},
		prismaViewStep<Settings>(
			(ctx) => `${ctx.settings.enum} without ${ctx.settings.value}`,
		),
	],
	summarize: (ctx, ok) => ({
		healthy: healthy(ctx, ok),
	}),
});
