// Fault injection for the runbooks: a signal to the process group (as `kill -9` or Ctrl-C from a
// terminal) or the runbook's own database sessions terminated, a given time after a given step
// started (its step_start line in the audit log, written just before the step's work begins); and
// what the audit log says about where a run stopped, which is what the fault is judged by.

import {
	closeSync,
	existsSync,
	openSync,
	readFileSync,
	readSync,
	statSync,
} from "node:fs";
import { expect } from "vitest";
import {
	admin,
	dbName,
	type RunOptions,
	type RunResult,
	runRunbook,
} from "./harness.ts";

/**
 * A fault `offsetMs` after step `step` started or, with `after`, after the step's output first
 * matched it (e.g. one of the step's migrations applied: a moment inside a step that does several).
 */
export type Fault =
	| {
			kind: "SIGKILL" | "SIGINT";
			step: number;
			offsetMs?: number;
			after?: RegExp;
	  }
	/**
	 * pg_terminate_backend on every session of `database` but the test's own, or what `terminate`
	 * does instead (a server where only some sessions may be ended).
	 */
	| {
			kind: "terminate";
			step: number;
			offsetMs?: number;
			after?: RegExp;
			database: string;
			terminate?: () => Promise<unknown>;
	  };

/** Matches the runner's step header "[k/N] Title" for step k. */
export const stepHeader = (step: number): RegExp =>
	new RegExp(`\\[${step}/\\d+\\] `);

export const describeFault = (f: Fault): string =>
	`${f.kind === "terminate" ? "pg_terminate_backend" : f.kind} at step ${f.step}${f.after ? ` after /${f.after.source}/` : ""}${f.offsetMs ? ` +${f.offsetMs} ms` : ""}`;

/** The fault aimed at the database `url` names (a terminate fault's sessions; signals as they are). */
export const onDatabase = (f: Fault, url: string): Fault =>
	f.kind === "terminate" ? { ...f, database: dbName(url) } : f;

/** The resume advice the runner prints after every failed or interrupted step, for `runbook`. */
export const resumeAdvice = (runbook: string): RegExp =>
	new RegExp(`\\n  To resume, run: npx tsx runbooks/${runbook}\\.ts\\b`);

export interface FaultRun extends RunResult {
	/** Whether the faulted step started (its step_start line appeared in the audit log). */
	stepStarted: boolean;
	/** Whether the fault was injected: false when the run had ended before its moment came. */
	injected: boolean;
}

/**
 * Runs the runbook (its env must name RUNBOOK_AUDIT_LOG) and injects the fault `offsetMs` after
 * step `fault.step` wrote its step_start line (and, with `fault.after`, its output matched).
 * Under load the step may be over by then: the fault lands in a later step, and the checks below
 * judge it where the audit log says it landed.
 */
export async function runWithFault(
	runbook: string,
	args: string[],
	fault: Fault,
	opts: RunOptions = {},
): Promise<FaultRun> {
	const audit = opts.env?.RUNBOOK_AUDIT_LOG;
	if (!audit) throw new Error("runWithFault needs RUNBOOK_AUDIT_LOG in env");
	// Earlier runs' lines (a reference run, say) are skipped: only what this run appends counts.
	let offset = existsSync(audit) ? statSync(audit).size : 0;
	let pending = "";
	let stepStarted = false;
	let injected = false;
	let child: import("node:child_process").ChildProcess | undefined;
	// With `after`: the output so far, and whether the step started and the match is awaited.
	let output = "";
	let awaiting = false;
	const fire = () =>
		setTimeout(() => {
			inject().catch(() => {});
		}, fault.offsetMs ?? 0);
	const onOutput = (d: Buffer | string) => {
		output += d;
		if (awaiting && fault.after?.test(output)) {
			awaiting = false;
			fire();
		}
	};
	const inject = async () => {
		if (!child?.pid || child.exitCode !== null || child.signalCode !== null)
			return;
		injected = true;
		if (fault.kind === "terminate")
			await (fault.terminate?.() ?? terminateSessions(fault.database));
		else process.kill(-child.pid, fault.kind);
	};
	const poll = setInterval(() => {
		if (stepStarted || !existsSync(audit)) return;
		const fd = openSync(audit, "r");
		try {
			const buf = Buffer.alloc(statSync(audit).size - offset);
			offset += readSync(fd, buf, 0, buf.length, offset);
			pending += buf.toString("utf8");
		} finally {
			closeSync(fd);
		}
		const lines = pending.split("\n");
		pending = lines.pop() ?? "";
		for (const line of lines) {
			const l = JSON.parse(line) as Record<string, unknown>;
			if (
				l.runbook === runbook &&
				l.event === "step_start" &&
				l.step_no === fault.step
			) {
				stepStarted = true;
				clearInterval(poll);
				if (fault.after) {
					awaiting = true;
					onOutput("");
				} else fire();
			}
		}
	}, 5);
	try {
		const run = await runRunbook(runbook, args, {
			...opts,
			onSpawn: (c) => {
				child = c;
				if (fault.after) {
					c.stdout?.on("data", onOutput);
					c.stderr?.on("data", onOutput);
				}
				opts.onSpawn?.(c);
			},
		});
		return { ...run, stepStarted, injected };
	} finally {
		clearInterval(poll);
	}
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
 * What every fault must leave in the audit log and the output, judged in the step where it landed
 * (the audit log's last step_start, which may be later than the step it was aimed at when that one
 * ended first). A fault that comes as the run is finishing, or never comes (the run was over before
 * its moment), leaves a finished run. Returns where the run stopped.
 */
export function expectStopped(
	run: FaultRun,
	audit: string,
	runbook: string,
	fault: Fault,
	what = `${describeFault(fault)}: exit ${run.code}\n${run.stdout}${run.stderr}`,
): Stop {
	const stop = stoppedAt(audit, runbook);
	const header = lastStepHeader(run.stdout + run.stderr);
	expect(run.stepStarted, `step ${fault.step} never started\n${what}`).toBe(
		true,
	);
	expect(stop.stepNo, what).not.toBeNull();
	expect(stop.stepNo as number, what).toBeGreaterThanOrEqual(fault.step);
	expect(stop.stepNo as number, what).toBeLessThanOrEqual(header);
	const finished =
		stop.runEnded &&
		stop.ended &&
		stop.status !== "interrupted" &&
		stop.status !== "failed";
	if (!run.injected) {
		expect({ code: run.code, finished }, what).toEqual({
			code: 0,
			finished: true,
		});
	} else if (fault.kind === "SIGKILL") {
		// Killed (no exit code), or it had already exited, done, when the kill came.
		if (!finished || run.code !== 0) expect(run.code, what).toBeNull();
		// No run_end line, unless the kill came as the finished run was exiting.
		if (!finished) expect(stop.runEnded, what).toBe(false);
		// A kill in the last step it announced, or after that step ended but before the run's end
		// (its summary): the step either has no end line or its end line is its last word.
		if (!finished && stop.stepNo === header && stop.ended)
			expect(stop.status, what).not.toBe("interrupted");
	} else if (fault.kind === "SIGINT") {
		if (finished) expect([0, 130], what).toContain(run.code);
		else expectInterrupted(run, stop, runbook, what);
	} else if (finished) {
		// A lost connection the runbook got over (it reconnects where it can).
		expect(run.code, what).toBe(0);
	} else {
		expect(run.code, what).toBe(1);
		expectFailed(run, stop, runbook, what);
	}
	return stop;
}

/** A failed step's outcome: logged as failed, named, and followed by the resume advice. */
function expectFailed(
	run: RunResult,
	stop: Stop,
	runbook: string,
	what: string,
): void {
	expect(stop, what).toMatchObject({ status: "failed", runEnded: true });
	expectAdvice(run, stop, runbook, what);
}

/**
 * Steps whose resume line runs another runbook: deploy-production's verify comes after the
 * migrations are applied, so a rerun would find nothing to deploy and not check again.
 */
const RESUMED_BY: Record<string, Record<number, string>> = {
	"deploy-production": { 5: "validate" },
};

/** The step where the run stopped is named, then what it left and the one resume line. */
function expectAdvice(
	run: RunResult,
	stop: Stop,
	runbook: string,
	what: string,
): void {
	const named = run.stderr.lastIndexOf(`✗ Step ${stop.stepNo} (`);
	expect(named, what).toBeGreaterThanOrEqual(0);
	const resumedBy = RESUMED_BY[runbook]?.[stop.stepNo as number] ?? runbook;
	expect(run.stderr.slice(named), what).toMatch(resumeAdvice(resumedBy));
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
	runbook: string,
	what: string,
): void {
	expect(run.code, what).toBe(130);
	const escalated = !stop.ended && !stop.runEnded;
	if (escalated) return;
	expect(stop, what).toMatchObject({ ended: true, status: "interrupted" });
	expect(run.stderr, what).toContain("Interrupted by the operator.");
	expectAdvice(run, stop, runbook, what);
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
