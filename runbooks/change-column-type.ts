#!/usr/bin/env -S node --import tsx --

// The seed's "changing a data type" and "reducing a field's length", online on a large, busy table:
// expand and contract, each schema step a Prisma migration, schema.prisma updated.

import {
	appliedOf,
	applyLeft,
	type ChangePlan,
	fill,
	pendingOf,
	phaseStep,
	planColumnChange,
	swapped,
	undoColumnChange,
} from "../lib/data/column-change.ts";
import {
	COLUMN_CHANGE_FLAGS,
	type ColumnChangeSettings,
	columnChangeSettings,
} from "../lib/data/column-change-settings.ts";
import {
	findUnconvertible,
	type Phase,
	retypeField,
} from "../lib/data/column-type.ts";
import {
	healthy,
	prismaViewStep,
	rewriteSchemaFile,
	writePlanned,
} from "../lib/data/recorded-steps.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import {
	abortPlan,
	CHANGE_COLUMN_TYPE_ABOUT,
	changedSummary,
	fillPlan,
	migrationHeader,
	planLines,
	planOf,
	planSummary,
	stoppedAt,
	unconvertibleHint,
	unconvertibleMessage,
} from "../lib/messages/column-type.ts";

interface Settings extends ColumnChangeSettings {
	table: string;
	column: string;
	type: string;
	using?: string;
}

type Ctx = Context<unknown, Settings>;
const command = () =>
	rerunCommand("runbooks/change-column-type.ts", {
		drop: ["yes", "json", "verbose", "abort", "dry-run"],
	});
const plan = (ctx: Ctx) => ctx.result<ChangePlan>("plan");
const apply = async (ctx: Ctx, phases: Phase[]) => ({
	summary: await applyLeft(ctx, plan(ctx), phases, ctx.settings),
});

const migrationStep = (
	title: string,
	phases: Phase[],
	extra: Partial<Step<unknown, Settings>> = {},
) => phaseStep<Settings>(title, phases, plan, extra);

const readPlan: Step<unknown, Settings> = {
	id: "plan",
	title: "Read the column, its indexes and constraints; plan the migrations",
	async run(ctx) {
		const s = ctx.settings;
		const p = await planColumnChange(await ctx.db(), ctx.env, {
			...s,
			header: (what) => migrationHeader(what, command()),
			checkSchema: true,
		});
		for (const line of planLines(p, s.smallTableMb)) ctx.log(line);
		return {
			summary: planSummary(p.planned),
			data: { from: p.change.fromType, to: p.change.toType, direct: p.direct },
			value: p,
		};
	},
};

await runRunbook<unknown, Settings>({
	name: "change-column-type",
	summary:
		"Change a column's type (widen, shrink a length, text <-> other types) on a large, busy table, as Prisma migrations.",
	description: CHANGE_COLUMN_TYPE_ABOUT,
	flags: {
		table: {
			type: "string",
			value: "<table>",
			description:
				"The table, as named in the database, e.g. generated_videos.",
		},
		column: {
			type: "string",
			value: "<column>",
			description: "The column, as named in the database, e.g. processing_ms.",
		},
		type: {
			type: "string",
			value: "<sql type>",
			description: "The new PostgreSQL type, e.g. bigint, varchar(8), integer.",
		},
		using: {
			type: "string",
			value: "<expr>",
			description:
				"SQL over the column giving the new value, e.g. \"nullif(code, '')::integer\" (default: the column).",
		},
		...COLUMN_CHANGE_FLAGS,
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
	},
	examples: [
		"npx tsx runbooks/change-column-type.ts --table generated_videos --column processing_ms --type bigint --dry-run",
		"npx tsx runbooks/change-column-type.ts --table generated_videos --column quality --type 'varchar(8)' --yes --confirm faceswap",
	],
	exclusive: true,
	settings: ({ flags: f }) => {
		if (!f.table || !f.column || !f.type)
			throw usageError(
				"--table, --column and --type are required.",
				"Run with --help for an example.",
			);
		return {
			...columnChangeSettings(f, "change-column-type"),
			table: String(f.table),
			column: String(f.column),
			type: String(f.type),
			using: f.using === undefined ? undefined : String(f.using),
		};
	},
	mode: (s) => (s.abort ? "abort" : "change"),
	steps: {
		change: [
			readPlan,
			{
				id: "check",
				title:
					"Check that every value converts (a full scan, no lock that blocks the app)",
				skip: (ctx) =>
					!plan(ctx).planned.length ||
					appliedOf(plan(ctx), ["expand", "direct"])
						? "the change is under way or done"
						: false,
				async run(ctx) {
					const { change } = plan(ctx);
					const bad = await findUnconvertible(await ctx.db(), change);
					if (bad.count)
						throw refusal(
							unconvertibleMessage(change, bad),
							unconvertibleHint(change),
						);
					return { summary: `every value converts to ${change.toType}` };
				},
			},
			migrationStep(
				"Write the migrations; add the new column and its sync trigger (or the direct ALTER)",
				["expand", "direct"],
				{
					skip: (ctx) =>
						pendingOf(plan(ctx), ["expand", "direct"]).length ||
						plan(ctx).planned.some((p) => !p.exists)
							? false
							: "applied",
					plan: (ctx) =>
						plan(ctx)
							.planned.filter((p) => !p.applied)
							.flatMap(planOf),
					async run(ctx) {
						const { change, planned } = plan(ctx);
						await ctx.confirmRun(
							`Change ${change.table}.${change.column} from ${change.fromType} to ${change.toType}?`,
						);
						writePlanned(ctx, planned);
						return apply(ctx, ["expand", "direct"]);
					},
				},
			),
			{
				title: "Fill the new column in keyset batches (backfill engine)",
				kind: "change",
				skip: (ctx) =>
					plan(ctx).direct || !plan(ctx).planned.length || swapped(plan(ctx))
						? "no new column to fill"
						: false,
				plan: (ctx) => fillPlan(plan(ctx).change),
				run: async (ctx) => ({
					summary: await fill(ctx, plan(ctx), ctx.settings.fill),
				}),
			},
			migrationStep(
				"Build the indexes on the new column (CREATE INDEX CONCURRENTLY)",
				["index"],
			),
			migrationStep(
				"NOT NULL without a long lock: CHECK NOT VALID, then VALIDATE",
				["check", "validate"],
			),
			migrationStep(
				"Swap: drop the trigger and the old column, rename the new one, in one short transaction",
				["swap"],
				{
					skip: (ctx) => (plan(ctx).planned.length ? false : "nothing to do"),
					async run(ctx) {
						const r = await apply(ctx, ["swap"]);
						const { change } = plan(ctx);
						if (
							await rewriteSchemaFile(ctx, (text) =>
								retypeField(text, change.table, change.column, change.toType),
							)
						)
							ctx.log(
								`prisma/schema.prisma: ${change.column} now maps to ${change.toType}`,
							);
						return r;
					},
				},
			),
			migrationStep(
				"Validate the carried-over check and foreign-key constraints",
				["after"],
			),
			prismaViewStep<Settings>((ctx) => changedSummary(plan(ctx as Ctx))),
		],
		abort: [
			readPlan,
			{
				title:
					"Undo the unfinished change: drop the new column, its trigger and its migrations",
				kind: "change",
				plan: (ctx) => abortPlan(plan(ctx).change),
				run: async (ctx) => ({
					summary: await undoColumnChange(ctx, plan(ctx), ctx.settings),
				}),
			},
		],
	},
	onFailure: (ctx) =>
		stoppedAt(
			ctx.has("plan") ? plan(ctx as Ctx).planned : undefined,
			command(),
		),
	summarize: (ctx, ok) => ({
		migrations: ctx.has("plan")
			? plan(ctx as Ctx).planned.map((p) => ({
					name: p.name,
					applied: p.applied,
				}))
			: [],
		healthy: healthy(ctx, ok),
	}),
});
