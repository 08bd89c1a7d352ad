// The one confirmation of a run, naming the target: what will happen, then yes/no (or --yes
// --confirm <database>); destructive runs make the operator type the database name.

import type { Context, Step } from "../kit/runner.ts";

export function confirmTargetStep<P>(o: {
	id?: string;
	title: string;
	skip?: Step<unknown, P>["skip"];
	/** What the operator reads first, and the question. */
	describe: (ctx: Context<unknown, P>) => { lines: string[]; question: string };
	destructive?: boolean;
}): Step<unknown, P> {
	return {
		id: o.id,
		title: o.title,
		skip: o.skip,
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
	};
}
