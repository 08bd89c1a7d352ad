// Stopping and starting the app around a rollback: APP_STOP_CMD / APP_START_CMD, or the operator.

import { runHookOrAsk } from "../app/hooks.ts";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { rerunCommand } from "../kit/rerun.ts";
import type { StepResult } from "../kit/runner.ts";
import * as say from "../messages/rollback.ts";
import { type RollbackCtx, SCRIPT } from "./settings.ts";

type Which = keyof typeof say.APP_HOOK;

/** A hook's options in a run: its output indented under the step; unset, the operator is asked. */
export function hookOptions(ctx: RollbackCtx) {
	const { env, signal, confirm: ask, log: say } = ctx;
	const log = (line: string) => ctx.log(`  | ${line}`);
	return { env, signal, yes: Boolean(ctx.flags.yes), ask, say, log };
}

export const appHookPlan = (ctx: RollbackCtx, which: Which) => {
	const t = say.APP_HOOK[which];
	const command = ctx.env[t.hook];
	return [
		command
			? `sh -c ${JSON.stringify(command)}`
			: `${t.hook} is not set: ${t.unset}`,
	];
};

export async function appHook(
	ctx: RollbackCtx,
	which: Which,
): Promise<StepResult> {
	const t = say.APP_HOOK[which];
	const run = await runHookOrAsk(t.hook, t.byHand, hookOptions(ctx));
	if (run.outcome === "failed")
		throw new RunbookError(
			say.hookFailed(t, run),
			EXIT.failed,
			t.hint(rerunCommand(SCRIPT)),
		);
	return {
		status: run.outcome === "skipped" ? "warning" : "ok",
		summary: say.hookDone(t, run),
		value: run,
	};
}
