// What a shared step takes from the runbook that places it: an id for its result, a title, when to
// skip it and what the database holds when it stops. The step itself brings its body.

import type { Step } from "../kit/runner.ts";

export interface Placement<P> {
	id?: string;
	title?: string;
	skip?: Step<unknown, P>["skip"];
	onFailure?: Step<unknown, P>["onFailure"];
	resume?: Step<unknown, P>["resume"];
}

/** A shared step at its place: the runbook's placement (title over the step's default) and the step's own parts. */
export function placeStep<P>(
	o: Placement<P>,
	defaultTitle: string,
	own: Omit<Step<unknown, P>, "id" | "title" | "skip" | "onFailure" | "resume">,
): Step<unknown, P> {
	return {
		id: o.id,
		title: o.title ?? defaultTitle,
		skip: o.skip,
		...own,
		onFailure: o.onFailure,
		resume: o.resume,
	};
}
