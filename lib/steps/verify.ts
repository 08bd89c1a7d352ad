// Verify after a change: prisma migrate status, the history in _prisma_migrations, drift of the
// database from the migrations and of the migrations from prisma/schema.prisma.

import { RunbookError } from "../kit/errors.ts";
import type { Context, Step, StepResult } from "../kit/runner.ts";
import {
	databaseDrift,
	driftCommandsFor,
	explainDriftStatement,
	schemaDrift,
} from "../migrations/drift.ts";
import { type History, readHistory } from "../migrations/history.ts";
import {
	migrationsDir,
	prismaErrorText,
	runPrisma,
} from "../migrations/prisma-cli.ts";
import { type Placement, placeStep } from "./placement.ts";

export interface PrismaView {
	/** prisma migrate status exited 0. */
	statusOk: boolean;
	/** ... and said the database is up to date. */
	upToDate: boolean;
	statusText: string;
	history: History;
	/** SQL from the database to what the migrations build. */
	drift: string[];
	/** SQL from what the migrations build to prisma/schema.prisma. */
	schema: string[];
}

/** The three Prisma CLI runs (a few seconds each) side by side, then the history. */
export async function readPrismaView(
	ctx: Context<unknown, unknown>,
): Promise<PrismaView> {
	const [status, drift, schema] = await Promise.all([
		runPrisma(["migrate", "status"], ctx.target, ctx.env, ctx.signal),
		databaseDrift(ctx.target, ctx.env, ctx.signal),
		schemaDrift(ctx.target, ctx.env, ctx.signal),
	]);
	const statusText = prismaErrorText(status);
	return {
		statusOk: status.exitCode === 0,
		upToDate: status.exitCode === 0 && /up to date/i.test(statusText),
		statusText,
		history: await readHistory(await ctx.db(), migrationsDir(ctx.env)),
		drift,
		schema,
	};
}

const driftProblem = (sql: string) =>
	`drift: ${explainDriftStatement(sql)} (${sql})`;

/**
 * The check after a deploy: a failed status, an unhealthy history or drift fails the step (rows
 * marked rolled back are pending again, not a problem); schema.prisma differing from the
 * migrations is a warning. With `strict` (a runbook that wrote the migrations and schema.prisma
 * itself): every history issue, schema differences, a status not "up to date" and the `more`
 * problems are reported as problems (exit 1) instead. Value: whether all is well.
 */
export function verifyHistoryStep<P>(
	o: Placement<P> & {
		strict?: boolean;
		/** Lines before the check (e.g. the field in schema.prisma). */
		before?: (ctx: Context<unknown, P>) => void;
		/** More problems, found after Prisma's view (e.g. a column still nullable). */
		more?: (ctx: Context<unknown, P>) => Promise<string[]>;
		/** The summary when all is well. */
		healthy: (ctx: Context<unknown, P>, v: PrismaView) => string;
	},
): Step<unknown, P> {
	return placeStep(o, "Verify: migrate status, history, drift", {
		async run(ctx): Promise<StepResult> {
			o.before?.(ctx);
			const v = await readPrismaView(ctx as Context<unknown, unknown>);
			return o.strict ? strictly(ctx, v) : afterDeploy(ctx, v);
		},
	});

	function afterDeploy(ctx: Context<unknown, P>, v: PrismaView): StepResult {
		const problems: string[] = [];
		if (!v.statusOk)
			problems.push(
				`prisma migrate status: ${v.statusText.split("\n").slice(-3).join(" ")}`,
			);
		else
			ctx.log(
				`prisma migrate status: ${v.statusText.split("\n").filter(Boolean).pop()}`,
			);
		for (const i of v.history.issues.filter((x) => x.kind !== "rolled_back"))
			problems.push(`${i.migration}: ${i.detail}`);
		problems.push(...v.drift.map(driftProblem));
		if (!v.drift.length)
			ctx.log("no drift: the database matches what the migrations build");
		for (const sql of v.schema)
			ctx.warn(
				`${driftCommandsFor(ctx.env).schemaFile} differs from what the migrations build (the app's Prisma client is generated from it); to match it: ${sql}`,
			);
		if (problems.length) {
			for (const p of problems) ctx.warn(p);
			throw new RunbookError(
				`The database is not in the state the migrations describe: ${problems[0]}`,
			);
		}
		return {
			status: v.schema.length ? "warning" : "ok",
			summary: o.healthy(ctx, v),
			value: true,
		};
	}

	async function strictly(
		ctx: Context<unknown, P>,
		v: PrismaView,
	): Promise<StepResult> {
		ctx.log(
			`prisma migrate status: ${v.upToDate ? "Database schema is up to date!" : v.statusText}`,
		);
		const problems = [
			...(v.upToDate
				? []
				: ["prisma migrate status does not report the database up to date"]),
			...v.history.issues.map((i) => `migration ${i.migration}: ${i.detail}`),
			...v.drift.map(driftProblem),
			...v.schema.map((s) => `schema.prisma differs from the migrations: ${s}`),
		];
		for (const x of problems) ctx.warn(x);
		problems.push(...((await o.more?.(ctx)) ?? []));
		return {
			status: problems.length ? "problem" : "ok",
			summary: problems.length
				? `${problems.length} problem(s)`
				: o.healthy(ctx, v),
			data: { problems },
			value: problems.length === 0,
		};
	}
}
