// The one confirmation of a run, naming the target: what will happen, then yes/no (or --yes
// --confirm <database>); destructive runs make the operator type the database name.

import type { Context, Step } from "../kit/runner.ts";
import { type Placement, placeStep } from "./placement.ts";

export function confirmTargetStep<P>(
	o: Placement<P> & {
		title: string;
		/** What the operator reads first, and the question. */
		describe: (ctx: Context<unknown, P>) => {
			lines: string[];
			question: string;
		};
		destructive?: boolean;
	},
): Step<unknown, P> {
	return placeStep(o, o.title, {
		async run(ctx) {
			const { lines, question } = o.describe(ctx);
			for (const line of lines) ctx.log(line);
			await (o.destructive
				? ctx.confirmRunDestructive(question)
				: ctx.confirmRun(question));
			return {
				summary: ctx.flags.yes
					? `confirmed with --yes --confirm ${ctx.target.direct.database}`
					: "confirmed by the operator",
			};
		},
	});
}
