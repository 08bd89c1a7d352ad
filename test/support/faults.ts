// Fault injection for the runbooks: a signal to the process group (as `kill -9` or Ctrl-C from a
// terminal) or the runbook's own database sessions terminated, at the moment a given step starts;
// and what the audit log says about where a run stopped.

import { existsSync, readFileSync } from "node:fs";
import { expect } from "vitest";
import {
	admin,
	dbName,
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

/** The fault aimed at the database `url` names (a terminate fault's sessions; signals as they are). */
export const onDatabase = (f: Fault, url: string): Fault =>
	f.kind === "terminate" ? { ...f, database: dbName(url) } : f;

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
		if (finished) expect([0, 130], out).toContain(run.code);
		else expectInterrupted(run, stop, resumeHint, out);
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

/**
 * A Ctrl-C's outcome: exit 130, the step logged as interrupted, and how to resume. tsx's launcher
 * turns a Ctrl-C the runbook does not acknowledge within ~60 ms (a loaded machine) into SIGKILL and
 * exits 130 itself: then the audit log ends as after a kill, and the state checks the callers make
 * hold as for SIGKILL.
 */
function expectInterrupted(
	run: RunResult,
	stop: Stop,
	resumeHint: RegExp,
	what: string,
): void {
	expect(run.code, what).toBe(130);
	const escalated = !stop.ended && !stop.runEnded;
	if (escalated) return;
	expect(stop, what).toMatchObject({ ended: true, status: "interrupted" });
	expect(run.stderr, what).toContain("Interrupted by the operator.");
	expect(run.stderr, what).toMatch(resumeHint);
}

/**
 * Stricter than expectStopped, for faults that always land inside a step: the run stopped in the
 * faulted step or a later one it announced; a SIGKILL leaves no exit code and no run_end; a lost
 * connection fails the step (exit 1). Returns where it stopped.
 */
export function expectStoppedInStep(
	run: RunResult,
	audit: string,
	runbook: string,
	fault: Fault,
	resumeHint: RegExp,
	what: string,
): Stop {
	const stop = stoppedAt(audit, runbook);
	const header = lastStepHeader(run.stdout + run.stderr);
	expect(stop.stepNo, what).not.toBeNull();
	expect(stop.stepNo as number, what).toBeGreaterThanOrEqual(fault.step);
	expect(stop.stepNo as number, what).toBeLessThanOrEqual(header);
	if (fault.kind === "SIGKILL") {
		expect(run.code, what).toBeNull();
		expect(stop.runEnded, what).toBe(false);
		// Killed inside the last step it announced (or between its header and its audit line).
		if (stop.stepNo === header) expect(stop.ended, what).toBe(false);
	} else if (fault.kind === "SIGINT") {
		expectInterrupted(run, stop, resumeHint, what);
	} else {
		expect(run.code, what).toBe(1);
		expect(stop, what).toMatchObject({ status: "failed", runEnded: true });
		expect(run.stderr, what).toMatch(/✗ Step \d+ \(/);
	}
	return stop;
}

/** The number of the last step header "[k/N]" a run printed. */
export function lastStepHeader(out: string): number {
	return Number([...out.matchAll(/\[(\d+)\/\d+\] /g)].at(-1)?.[1] ?? 0);
}

/**
 * Waits until no session of a killed runbook or its tools (psql, pg_dump, pg_restore) is left on
 * the database. all: every other session. busyOnly: ignore idle ones (a pooler keeps its server
 * connections open, idle, under the application_name of their last client).
 */
export async function settle(
	url: string,
	opts: { all?: boolean; busyOnly?: boolean } = {},
): Promise<void> {
	const q = opts.all
		? "select 1 from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()"
		: `select 1 from pg_stat_activity where datname = $1 and (application_name like 'runbook:%' or application_name in ('pg_dump', 'pg_restore', 'psql'))${opts.busyOnly ? " and state <> 'idle'" : ""}`;
	for (let i = 0; i < 300; i++) {
		const r = await admin((c) => c.query(q, [dbName(url)]), url);
		if (r.rowCount === 0) return;
		await new Promise((res) => setTimeout(res, 100));
	}
	throw new Error(`sessions stayed on ${dbName(url)}`);
}
