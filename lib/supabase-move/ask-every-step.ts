// --interactive: ask before every step that the runner would not ask about anyway.

import type { Context, Step } from "../kit/runner.ts";

export const askEveryStep = <S, P extends { interactive: boolean }>(
	list: Step<S, P>[],
): Step<S, P>[] =>
	list.map((step, i) => ({
		...step,
		async run(ctx: Context<S, P>) {
			const kind = step.kind ?? "read";
			if (
				ctx.settings.interactive &&
				!ctx.dryRun &&
				(kind === "read" || kind === "write")
			)
				await ctx.confirm(`Run step ${i + 1}, "${step.title}"?`);
			return step.run(ctx);
		},
	}));
