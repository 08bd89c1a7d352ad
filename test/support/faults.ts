// Fault injection for the runbooks: a signal to the process group (as `kill -9` or Ctrl-C from a
// terminal) or the runbook's own database sessions terminated, at the moment a given step starts;
// and what the audit log says about where a run stopped.

import { existsSync, readFileSync } from "node:fs";
import { expect } from "vitest";
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

/**
 * What every fault must leave in the audit log and the output, by kind. A fault that lands after
 * the last step ended (the run was finishing) leaves a finished run: both outcomes are checked.
 */
export function expectStopped(
	run: RunResult,
	audit: string,
	runbook: string,
	fault: Fault,
	totalSteps: number,
	resumeHint: RegExp,
): void {
	const stop = stoppedAt(audit, runbook);
	const out = run.stdout + run.stderr;
	expect(stop.stepNo, out).not.toBeNull();
	expect(stop.stepNo as number, out).toBeGreaterThanOrEqual(fault.step);
	const finished =
		stop.stepNo === totalSteps &&
		stop.ended &&
		stop.status !== "interrupted" &&
		stop.status !== "failed";
	if (fault.kind === "SIGKILL") {
		// Killed (no exit code), or it had already exited, done, when the kill came.
		if (!finished || run.code !== 0) expect(run.code, out).toBeNull();
		// No run_end line, unless the kill came as the finished run was exiting.
		if (!finished) expect(stop.runEnded).toBe(false);
	} else if (fault.kind === "SIGINT") {
		if (finished) {
			expect([0, 130], out).toContain(run.code);
		} else {
			expect(run.code, out).toBe(130);
			// tsx's launcher turns a Ctrl-C the runbook does not acknowledge within ~60 ms (a loaded
			// machine) into SIGKILL and exits 130 itself: then the audit log ends as after a kill
			// (checked as such), and the state checks that follow hold as for SIGKILL.
			const escalated = !stop.ended && !stop.runEnded;
			if (!escalated) {
				expect(stop, out).toMatchObject({ ended: true, status: "interrupted" });
				expect(run.stderr).toMatch(resumeHint);
			}
		}
	} else {
		// A lost connection: the runbook reconnects and finishes, or fails saying how to carry on.
		expect([0, 1], out).toContain(run.code);
		expect(stop.runEnded).toBe(true);
		if (run.code === 1) {
			expect(stop.status).toBe("failed");
			expect(run.stderr).toMatch(resumeHint);
		}
	}
}
