#!/usr/bin/env -S node --import tsx --

// The seed's "Cannot add NOT NULL column without default" (add optional, populate, make
// required), made safe for a large, busy table and kept in Prisma's migration history: four
// migrations, each applied in its own short transaction with a lock_timeout and retries, the
// backfill between the first two done by the batch engine, and prisma/schema.prisma updated.

import { type BackfillResult, DEFAULTS } from "../lib/data/backfill.ts";
import {
	type AppliedStep,
	applyMigration,
	fieldRequest,
	fillColumn,
	type MigrationStep,
	migrations,
	nullable,
	type Plan,
	planRequiredColumn,
	type StepKey,
	schemaFieldLine,
	schemaHasField,
	updateSchema,
} from "../lib/data/required-column.ts";
import { EXIT, RunbookError } from "../lib/kit/errors.ts";
import {
	batchFlags,
	lockFlags,
	parseLockFlags,
	wholeNumber,
} from "../lib/kit/flags.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import {
	appliedMigration,
	FAILED_FILL,
	FAILED_MIGRATION,
	fillPlan,
	fillReport,
	fillSummary,
	lockReport,
	migrationPlan,
	nothingToFill,
	planLines,
	planSummary,
	schemaRequiredNote,
	stillNull,
	wasApplied,
} from "../lib/messages/required-field.ts";
import { connect } from "../lib/pg/db.ts";
import { verifyHistoryStep } from "../lib/steps/verify.ts";

type Settings = ReturnType<typeof parseSettings>;
type Ctx = Context<unknown, Settings>;

function parseSettings({ flags: f }: { flags: Context["flags"] }) {
	const field = fieldRequest(f);
	const lock = parseLockFlags(f);
	const [batchSize, targetBatchMs, sleepMs] = [
		"batch-size",
		"target-batch",
		"sleep",
	].map((n) => wholeNumber(f, n));
	return { field, ...lock, batchSize, targetBatchMs, sleepMs };
}

const MIGRATIONS: StepKey[] = ["add", "check", "validate", "not_null"];
const again = () => rerunCommand("runbooks/add-required-field.ts");
const plan = (ctx: Ctx) => ctx.result<Plan>("plan");
const stepOf = (ctx: Ctx, key: StepKey) =>
	ctx.has("plan") ? plan(ctx).steps.find((x) => x.key === key) : undefined;

/** Applies one of the four migrations (or notes an earlier run did); value: its lock report. */
async function apply(ctx: Ctx, key: StepKey) {
	const s = stepOf(ctx, key) as MigrationStep;
	if (s.applied && (key === "add" || key === "not_null"))
		return { summary: wasApplied(s), data: {} };
	const a = await applyMigration(await ctx.db(), plan(ctx), key, ctx);
	return {
		summary: appliedMigration(a),
		data: { migration: a.migration, lock: a.lock },
		value: a,
	};
}

const schema = (ctx: Ctx, optional: boolean) =>
	updateSchema(plan(ctx), optional, ctx);
/** A step applying one of the migrations; `o` overrides its parts. */
function migrationStep(
	id: StepKey,
	title: string,
	note: string,
	o: Partial<Step<unknown, Settings>> = {},
): Step<unknown, Settings> {
	return {
		id,
		title,
		kind: "change",
		skip: (ctx) => (stepOf(ctx, id)?.applied ? "applied" : false),
		plan: (ctx) => [
			...migrationPlan(stepOf(ctx, id) as MigrationStep, note),
			...(id === "not_null" ? [schemaRequiredNote()] : []),
		],
		run: (ctx) => apply(ctx, id),
		onFailure: () => FAILED_MIGRATION,
		...o,
	};
}

await runRunbook({
	name: "add-required-field",
	summary:
		"Add a NOT NULL column to a large, busy table without downtime, as Prisma migrations.",
	description:
		"The seed's three steps (add optional, populate, make required), made safe for a busy table:\n" +
		"  1. ALTER TABLE ADD COLUMN, nullable (with --default: the default too; a constant default fills\n" +
		"     existing rows without rewriting the table);\n" +
		"  2. the existing rows are filled in short batches by the backfill engine (see backfill.ts);\n" +
		"  3. ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, then VALIDATE CONSTRAINT (a scan that\n" +
		"     blocks no reads or writes), then SET NOT NULL (PostgreSQL 12+ skips its scan thanks to the\n" +
		"     validated check) and DROP CONSTRAINT.\n" +
		"Each schema change is a migration folder in prisma/migrations, applied in its own transaction with a\n" +
		"lock_timeout and retries, and recorded in _prisma_migrations as `prisma migrate deploy` records it;\n" +
		"prisma/schema.prisma gets the field. It reports the lock each step took and how long it held it.\n" +
		"Rerun the same command after a failure: it carries on where it stopped.\n" +
		"\n" +
		"--default and --backfill are SQL that you write (checked in a rolled-back transaction first).\n" +
		"With --backfill, rows the app inserts without the column fail once step 2 of the migrations is in:\n" +
		"deploy the app version that writes the column first.",
	flags: {
		table: {
			type: "string",
			value: "<table>",
			description:
				"The table, as named in the database (the model's @@map), e.g. generated_videos.",
		},
		column: {
			type: "string",
			value: "<column>",
			description:
				"The new column, snake_case (the Prisma field is its camelCase with @map).",
		},
		type: {
			type: "string",
			value: "<sql type>",
			description:
				"Its PostgreSQL type, e.g. text, integer, varchar(32), timestamp(3), or an enum's name.",
		},
		default: {
			type: "string",
			value: "<expr>",
			description:
				"A default the column keeps (and existing rows get), e.g. \"'720p'\" or now().",
		},
		backfill: {
			type: "string",
			value: "<expr>",
			description:
				"The value for existing rows, computed from the row, e.g. \"'thumbs/' || id || '.jpg'\"; no default is kept.",
		},
		...lockFlags({
			lockTimeout: "500ms",
			lockTimeoutHelp:
				"lock_timeout of each schema change: the longest the app may queue behind it.",
			oldMsSpelling: true,
			retries: 20,
			retriesHelp:
				"Attempts after a lock timeout, with growing pauses, before giving up.",
		}),
		...batchFlags({
			...DEFAULTS,
			help: {
				batchSize: "Backfill: rows per batch to start with.",
				targetBatch: "Backfill: target duration of one batch.",
				sleep: "Backfill: pause between batches.",
			},
		}),
	},
	env: {
		PRISMA_ENGINE: "Prisma schema engine: wasm (default, offline) or native.",
	},
	examples: [
		`npx tsx runbooks/add-required-field.ts --table generated_videos --column thumbnail_path --type text --backfill "'thumbs/' || id || '.jpg'" --dry-run`,
		`npx tsx runbooks/add-required-field.ts --table generated_videos --column priority --type integer --default 0 --yes`,
	],
	exclusive: true,
	settings: parseSettings,
	steps: [
		{
			id: "plan",
			title: "Check the table, the column, the type and the expression",
			async run(ctx) {
				const p = await planRequiredColumn(
					await ctx.db(),
					ctx.env,
					ctx.settings.field,
					ctx,
				);
				const lines = planLines(p);
				for (const line of lines.log) ctx.log(line);
				for (const line of lines.warn) ctx.warn(line);
				return {
					summary: planSummary(p),
					data: {
						column: p.column,
						type: p.sqlType,
						prisma: `${p.field} ${p.prisma.type}`,
						migrations: migrations(p),
					},
					value: p,
				};
			},
		},
		migrationStep("add", "Add the column, nullable (migration 1)", "", {
			skip: (ctx) => {
				const s = stepOf(ctx, "add");
				if (!s) return "the column exists already";
				// Applied, and schema.prisma already has the field (or step 4 is in).
				const schemaDone =
					stepOf(ctx, "not_null")?.applied || schemaHasField(plan(ctx), true);
				return s.applied && schemaDone ? `${s.name} is applied` : false;
			},
			plan: (ctx) =>
				migrationPlan(
					stepOf(ctx, "add") as MigrationStep,
					`lock_timeout ${ctx.settings.lockTimeoutMs}ms`,
				),
			async run(ctx) {
				const r = await apply(ctx, "add");
				if (!stepOf(ctx, "not_null")?.applied) await schema(ctx, true);
				return r;
			},
		}),
		{
			id: "fill",
			title: "Fill the existing rows in batches",
			kind: "change",
			skip: (ctx) =>
				stepOf(ctx, "validate")?.applied
					? "the check is validated already"
					: false,
			plan: (ctx) => fillPlan(plan(ctx), ctx.settings.targetBatchMs),
			async run(ctx) {
				const p = plan(ctx);
				const result = await fillColumn(await ctx.db(), p, ctx, () =>
					connect(ctx.target.direct, "runbook:add-required-field:batches"),
				);
				if (!result) return { summary: nothingToFill(p) };
				if (result.remaining > 0) {
					const e = stillNull(p, again(), {
						remaining: result.remaining,
						rounds: result.catchUpRounds,
					});
					throw new RunbookError(e.message, EXIT.failed, e.hint);
				}
				return {
					summary: fillSummary(result),
					data: fillReport(result, true),
					value: result,
				};
			},
			onFailure: () => FAILED_FILL,
		},
		migrationStep(
			"check",
			"Add CHECK (column IS NOT NULL) NOT VALID (migration 2)",
			"no scan",
		),
		migrationStep(
			"validate",
			"Validate the check (migration 3)",
			"scans every row",
			{
				async run(ctx) {
					try {
						return await apply(ctx, "validate");
					} catch (err) {
						if ((err as { code?: string }).code !== "23514") throw err;
						const e = stillNull(plan(ctx), again(), "validate");
						throw new RunbookError(e.message, EXIT.failed, e.hint);
					}
				},
			},
		),
		migrationStep(
			"not_null",
			"SET NOT NULL and drop the check (migration 4)",
			"no scan: the validated check proves it",
			{
				skip: (ctx) =>
					stepOf(ctx, "not_null")?.applied && schemaHasField(plan(ctx), false)
						? "applied"
						: false,
				async run(ctx) {
					const r = await apply(ctx, "not_null");
					await schema(ctx, false);
					return r;
				},
			},
		),
		verifyHistoryStep<Settings>({
			id: "verify",
			title: "Check Prisma's view: migrate status and drift",
			skip: (ctx) => (ctx.dryRun ? "dry run: nothing was applied" : false),
			strict: true,
			before(ctx) {
				const line = schemaFieldLine(plan(ctx));
				if (line) ctx.log(`schema.prisma: ${line}`);
			},
			more: async (ctx) => nullable(await ctx.db(), plan(ctx)),
			healthy: (ctx) =>
				`${plan(ctx).table.display}.${plan(ctx).column} is NOT NULL; migrate status up to date; no drift`,
		}),
	],
	summarize: (ctx) => {
		const p = ctx.has("plan") ? plan(ctx) : null;
		const fill = ctx.has("fill") ? ctx.result<BackfillResult>("fill") : null;
		return {
			table: p?.table.display ?? null,
			column: p?.column ?? null,
			migrations: p ? migrations(p) : [],
			locks: MIGRATIONS.filter((id) => ctx.has(id)).map((id) =>
				lockReport(ctx.result<AppliedStep>(id)),
			),
			backfill: fill ? fillReport(fill) : null,
			healthy: ctx.has("verify") ? ctx.result<boolean>("verify") : null,
		};
	},
});
