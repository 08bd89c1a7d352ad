// What the fault suites of deploy, backup and the large-table runbooks do in every case: one test
// per fault, and a run interrupted by its fault, checked for where it stopped.

import { expect } from "vitest";
import { snapshotWithout } from "./deploy-suite.ts";
import {
	describeFault,
	expectStopped,
	type Fault,
	onDatabase,
	runWithFault,
} from "./faults.ts";
import type { RunOptions } from "./harness.ts";

/** A kill (SIGKILL) and an interrupt (SIGINT) `offsetMs` after step `step` started. */
export const killAndInterrupt = (step: number, offsetMs: number): Fault[] => [
	{ kind: "SIGKILL", step, offsetMs },
	{ kind: "SIGINT", step, offsetMs },
];

/** it.each's rows: the fault's description (the test name's %s) and the fault. */
export const faultCases = (faults: Fault[]) =>
	faults.map((f) => [describeFault(f), f] as const);

/**
 * Runs `runbook` with the fault `f` aimed at the database `url` (a terminate fault ends its
 * sessions). The output must show the header of the step the fault was aimed at (of `steps`), and
 * the audit log must say where the run stopped.
 */
export async function runInterrupted(
	runbook: string,
	args: string[],
	f: Fault,
	url: string,
	steps: number,
	opts: RunOptions & { env: { RUNBOOK_AUDIT_LOG: string } },
) {
	const fault = onDatabase(f, url);
	const run = await runWithFault(runbook, args, fault, opts);
	const out = run.stdout + run.stderr;
	expect(out).toMatch(new RegExp(`\\[${fault.step}/${steps}\\] `));
	expectStopped(run, opts.env.RUNBOOK_AUDIT_LOG, runbook, fault);
	return { run, out };
}

/**
 * A snapshot of the database without what legitimately differs between two runs that end in the
 * same state: the backfill checkpoint rows (batch counts, times) and _prisma_migrations rows
 * (random ids, times, and timestamped names; compared separately).
 */
export const endState = (url: string) =>
	snapshotWithout(
		url,
		"rows runbooks.backfill_checkpoints",
		"rows public._prisma_migrations",
	);
