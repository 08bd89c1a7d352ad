// The smoke test: read queries over every app table, then SMOKE_TEST_CMD (or the operator checks by
// hand). A failed query or a failed command fails the step. Value: { queries, hook }.

import type { HookRun } from "../app/hooks.ts";
import { type SmokeQuery, smokeQueries } from "../app/smoke.ts";
import { RunbookError } from "../kit/errors.ts";
import { formatDuration } from "../kit/format.ts";
import type { Step } from "../kit/runner.ts";
import { hookOrAsk } from "./app-hooks.ts";
import { type Placement, placeStep } from "./placement.ts";

export interface SmokeResult {
	queries: SmokeQuery[];
	hook: HookRun;
}

export function smokeTestStep<P>(o: Placement<P>): Step<unknown, P> {
	return placeStep(o, "Smoke test: read queries, SMOKE_TEST_CMD", {
		async run(ctx) {
			const queries = await smokeQueries(await ctx.db());
			const failed = queries.filter((q) => q.error);
			const tables = new Set(queries.map((q) => q.table)).size;
			ctx.log(
				`${queries.length} read queries over ${tables} tables, slowest ${Math.max(0, ...queries.map((q) => q.ms))}ms`,
			);
			for (const q of failed) ctx.warn(`${q.sql}: ${q.error}`);
			const hook = await hookOrAsk(
				ctx,
				"SMOKE_TEST_CMD",
				"check the app's main pages and its API by hand",
			);
			if (hook.command)
				ctx.log(
					`SMOKE_TEST_CMD (${hook.command}): ${hook.outcome} in ${formatDuration(hook.durationMs)}`,
				);
			if (failed.length || hook.outcome === "failed") {
				throw new RunbookError(
					failed.length
						? `${failed.length} smoke query(ies) failed, first: ${failed[0].sql}: ${failed[0].error}`
						: `The smoke test failed (SMOKE_TEST_CMD${hook.exitCode !== undefined ? ` exit ${hook.exitCode}` : ""}): ${hook.output.split("\n").slice(-2).join(" ")}`,
				);
			}
			const value: SmokeResult = { queries, hook };
			return {
				summary: `${queries.length} queries ok; SMOKE_TEST_CMD ${hook.command ? hook.outcome : hook.outcome === "manual" ? "checked by hand" : "not set"}`,
				data: value,
				value,
			};
		},
	});
}
