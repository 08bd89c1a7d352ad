// Application hooks: APP_STOP_CMD, APP_START_CMD, SMOKE_TEST_CMD, VERIFY_CMD. Optional shell
// commands a runbook runs at the matching step. When one is unset, the runbook says what to do by
// hand and, interactively, waits until the operator confirms it is done.

import { spawn } from "node:child_process";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { formatDuration } from "../kit/format.ts";
import { redact } from "../kit/secrets.ts";
import { awaitRunInterrupt } from "../kit/tool-shell.ts";

export type HookName =
	| "APP_STOP_CMD"
	| "APP_START_CMD"
	| "SMOKE_TEST_CMD"
	| "VERIFY_CMD";

export const HOOK_ENV: Record<HookName, string> = {
	APP_STOP_CMD: "Shell command that stops the app (optional).",
	APP_START_CMD: "Shell command that starts the app (optional).",
	SMOKE_TEST_CMD:
		"Shell command that checks the app works, e.g. curl -fsS https://app/api/health (optional).",
	VERIFY_CMD:
		"Shell command that verifies the app after a change, e.g. npm run build (optional).",
};

export interface HookRun {
	name: HookName;
	/** The command as configured (secrets masked), or null when the hook is unset. */
	command: string | null;
	/** "passed"/"failed": the command ran; "manual": the operator confirmed doing it by hand; "skipped": unset under --yes. */
	outcome: "passed" | "failed" | "manual" | "skipped";
	exitCode?: number | null;
	durationMs: number;
	/** The last lines of its output, masked. */
	output: string;
}

export interface HookOptions {
	env: Record<string, string | undefined>;
	signal?: AbortSignal;
	/** Default 5 minutes. */
	timeoutMs?: number;
	/** Receives the command's output lines as they come. */
	log?: (line: string) => void;
}

/** Runs the hook's command with `sh -c`, in the run's environment. Null when the hook is unset. */
export async function runHook(
	name: HookName,
	opts: HookOptions,
): Promise<HookRun | null> {
	const command = opts.env[name]?.trim();
	if (!command) return null;
	const started = performance.now();
	const timeoutMs = opts.timeoutMs ?? 300_000;
	const env = Object.fromEntries(
		Object.entries({ ...process.env, ...opts.env }).filter(
			([, v]) => v !== undefined,
		),
	) as NodeJS.ProcessEnv;
	return await new Promise<HookRun>((resolve, reject) => {
		const child = spawn("/bin/sh", ["-c", command], {
			env,
			stdio: ["ignore", "pipe", "pipe"],
		});
		const lines: string[] = [];
		let partial = "";
		const onData = (d: Buffer) => {
			const text = partial + d.toString();
			const parts = text.split("\n");
			partial = parts.pop() ?? "";
			for (const l of parts) {
				lines.push(redact(l));
				opts.log?.(redact(l));
			}
		};
		child.stdout.on("data", onData);
		child.stderr.on("data", onData);
		let timedOut = false;
		const timer = setTimeout(() => {
			timedOut = true;
			child.kill("SIGTERM");
		}, timeoutMs);
		const onAbort = () => child.kill("SIGTERM");
		opts.signal?.addEventListener("abort", onAbort, { once: true });
		child.on("error", (err) => {
			clearTimeout(timer);
			reject(new RunbookError(`${name} could not be started: ${err.message}`));
		});
		child.on("close", async (code, signal) => {
			clearTimeout(timer);
			opts.signal?.removeEventListener("abort", onAbort);
			if (partial) lines.push(redact(partial));
			// A Ctrl-C reaches the hook's shell too, maybe before the runbook's own handler.
			try {
				if (!timedOut)
					await awaitRunInterrupt({ signal, exitCode: code }, opts.signal);
			} catch (err) {
				return reject(err);
			}
			if (timedOut)
				lines.push(`(stopped after ${formatDuration(timeoutMs)}: timed out)`);
			resolve({
				name,
				command: redact(command),
				outcome: code === 0 && !timedOut ? "passed" : "failed",
				exitCode: code,
				durationMs: Math.round(performance.now() - started),
				output: lines.slice(-20).join("\n"),
			});
		});
	});
}

/**
 * The hook's command when set; otherwise the manual instruction, and (interactively, without
 * --yes) a confirmation that the operator did it. `ask` is the runbook's ctx.confirm.
 */
export async function runHookOrAsk(
	name: HookName,
	byHand: string,
	opts: HookOptions & {
		yes: boolean;
		ask: (question: string) => Promise<void>;
		say: (line: string) => void;
	},
): Promise<HookRun> {
	const run = await runHook(name, opts);
	if (run) return run;
	opts.say(`${name} is not set: ${byHand}`);
	if (opts.yes) {
		opts.say(
			`(--yes: not waiting; set ${name} to have this done and checked automatically)`,
		);
		return byHandRun(name, "skipped", 0, "");
	}
	const started = performance.now();
	const took = () => Math.round(performance.now() - started);
	try {
		await opts.ask(`Done, and it looks right? (${byHand})`);
	} catch (err) {
		if (
			err instanceof RunbookError &&
			err.exitCode === EXIT.refused &&
			/answered no/.test(err.message)
		) {
			return byHandRun(name, "failed", took(), "the operator answered no");
		}
		throw err;
	}
	return byHandRun(name, "manual", took(), "");
}

/** A hook the operator did (or was told to do) by hand: no command ran. */
const byHandRun = (
	name: HookName,
	outcome: HookRun["outcome"],
	durationMs: number,
	output: string,
): HookRun => ({ name, command: null, outcome, durationMs, output });
