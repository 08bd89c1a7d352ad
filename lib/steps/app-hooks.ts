// App hooks as steps: APP_STOP_CMD / APP_START_CMD run when set; otherwise the operator is told
// what to do by hand and, interactively, confirms it. Value: the HookRun.

import { type HookName, type HookRun, runHookOrAsk } from "../app/hooks.ts";
import type { Context, Step } from "../kit/runner.ts";
import { type Placement, placeStep } from "./placement.ts";

/** Runs an app hook, or asks the operator to do it by hand (see runHookOrAsk). */
export const hookOrAsk = <P>(
	ctx: Context<unknown, P>,
	name: HookName,
	byHand: string,
): Promise<HookRun> =>
	runHookOrAsk(name, byHand, {
		env: ctx.env,
		signal: ctx.signal,
		yes: Boolean(ctx.flags.yes),
		ask: ctx.confirm,
		say: ctx.log,
		log: (line) => ctx.log(`  | ${line}`),
	});

export function appHookStep<P>(
	o: Placement<P> & {
		title: string;
		hook: "APP_STOP_CMD" | "APP_START_CMD";
		/** What the operator does when the hook is unset, e.g. "stop the app (every instance ...)". */
		byHand: string;
		/** The error when the command failed. */
		failed: (run: HookRun) => Error;
		summary: (run: HookRun) => string;
	},
): Step<unknown, P> {
	return placeStep(o, o.title, {
		async run(ctx) {
			const run = await hookOrAsk(ctx, o.hook, o.byHand);
			if (run.outcome === "failed") throw o.failed(run);
			return { summary: o.summary(run), data: run, value: run };
		},
	});
}
