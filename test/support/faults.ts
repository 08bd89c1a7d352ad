// Fault injection for the runbooks: a signal to the process group (as `kill -9` or Ctrl-C from a
// terminal) or the runbook's own database sessions terminated, at the moment a given step starts;
// and what the audit log says about where a run stopped.

import { existsSync, readFileSync } from "node:fs";
import {
	admin,
	type RunOptions,
	type RunResult,
	runRunbook,
} from "./harness.ts";

export type Fault =
	| { kind: "SIGKILL" | "SIGINT"; step: number; delayMs?: number }
	/** pg_terminate_backend on every session of `database` but the test's own. */
	| { kind: "terminate"; step: number; delayMs?: number; database: string };

/** Matches the runner's step header "[k/N] Title" for step k. */
export const stepHeader = (step: number): RegExp =>
	new RegExp(`\\[${step}/\\d+\\] `);

export const describeFault = (f: Fault): string =>
	`${f.kind === "terminate" ? "pg_terminate_backend" : f.kind} at step ${f.step}${f.delayMs ? ` +${f.delayMs} ms` : ""}`;

/** Runs the runbook and injects the fault once step `fault.step` has been announced. */
export function runWithFault(
	runbook: string,
	args: string[],
	fault: Fault,
	opts: RunOptions = {},
): Promise<RunResult> {
	const pattern = stepHeader(fault.step);
	if (fault.kind === "terminate") {
		return runRunbook(runbook, args, {
			...opts,
			onMatch: {
				pattern,
				delayMs: fault.delayMs,
				run: () => terminateSessions(fault.database),
			},
		});
	}
	return runRunbook(runbook, args, {
		...opts,
		signalOn: { pattern, signal: fault.kind, delayMs: fault.delayMs },
	});
}

/** Terminates every session on the database except the caller's; returns how many. */
export async function terminateSessions(database: string): Promise<number> {
	return admin(async (db) => {
		const r = await db.query(
			"select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
			[database],
		);
		return r.rowCount ?? 0;
	});
}

export interface Stop {
	/** The last step the run started (title), or null when it stopped before any step. */
	step: string | null;
	stepNo: number | null;
	/** Whether that step has a step_end line, and its status. */
	ended: boolean;
	status: string | null;
	/** Whether the run wrote its run_end line (a SIGKILL leaves none). */
	runEnded: boolean;
}

/** Where the latest run of `runbook` stopped, as the audit log at `path` records it. */
export function stoppedAt(path: string, runbook: string): Stop {
	const lines = existsSync(path)
		? readFileSync(path, "utf8")
				.trim()
				.split("\n")
				.filter(Boolean)
				.map((l) => JSON.parse(l) as Record<string, unknown>)
				.filter((l) => l.runbook === runbook)
		: [];
	const runId = lines.at(-1)?.run_id;
	const mine = lines.filter((l) => l.run_id === runId);
	const starts = mine.filter((l) => l.event === "step_start");
	const last = starts.at(-1);
	const end = mine.find(
		(l) => l.event === "step_end" && last && l.step === last.step,
	);
	return {
		step: (last?.step as string) ?? null,
		stepNo: (last?.step_no as number) ?? null,
		ended: Boolean(end),
		status: (end?.status as string) ?? null,
		runEnded: mine.some((l) => l.event === "run_end"),
	};
}
