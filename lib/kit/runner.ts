// The step runner every runbook shares: parse the invocation, build the target, then run the
// named steps in order, each numbered, timed, audited, confirmed when it changes something,
// planned only under --dry-run, and stopped cleanly on Ctrl-C. Ends with a summary and an exit code.

import { type Env, loadEnvironment } from "../config/env.ts";
import { connect, type Db } from "../pg/db.ts";
import { type Connection, makeTarget, type Target } from "../pg/target.ts";
import { type AuditLog, openAuditLog } from "./audit.ts";
import {
	type ArgSpec,
	COMMON_FLAGS,
	type FlagSpecs,
	type FlagValues,
	parseInvocation,
	renderHelp,
} from "./cli.ts";
import {
	type Choice,
	choose,
	confirm,
	confirmDestructive,
	confirmTarget,
} from "./confirm.ts";
import {
	EXIT,
	type ExitCode,
	plainError,
	RunbookError,
	refusal,
	usageError,
} from "./errors.ts";
import { formatDuration } from "./format.ts";
import { printJson, say, sayError, setJsonMode, style } from "./output.ts";
import { rerunCommand } from "./rerun.ts";
import { acquireRunLock } from "./run-lock.ts";

/**
 * read: runs under --dry-run too. write: writes files only (e.g. a backup), changes no database:
 * planned under --dry-run, never asks. change/destroy: change the database, confirmed first.
 */
export type StepKind = "read" | "write" | "change" | "destroy";
export type StepStatus =
	| "ok"
	| "warning"
	| "problem"
	| "failed"
	| "skipped"
	| "planned"
	| "not run"
	| "interrupted";

export interface StepResult {
	/** Kept by the runner under the step's id for later steps (ctx.result); not printed. */
	value?: unknown;
	/** One line shown after the step's status. */
	summary?: string;
	/** "warning" is reported; "problem" makes a read-only runbook exit 1. */
	status?: "ok" | "warning" | "problem";
	/** Included in --json output. */
	data?: unknown;
}

export interface Context<S = unknown, P = unknown> {
	readonly runbook: string;
	readonly flags: FlagValues;
	readonly args: string[];
	readonly env: Env;
	readonly target: Target;
	readonly dryRun: boolean;
	readonly json: boolean;
	readonly verbose: boolean;
	readonly signal: AbortSignal;
	readonly audit: AuditLog | null;
	/** Values computed by one step and handed forward to later ones (older runbooks; see result). */
	readonly state: S;
	/** The runbook's settings, parsed once from its flags before the first step. */
	readonly settings: P;
	/** The value an earlier step returned (StepResult.value), by the step's id. Throws if it has none. */
	result<T>(id: string): T;
	/** Whether the step with this id ran and returned a value. */
	has(id: string): boolean;
	/** A pg client on the target's direct connection, opened on first use and closed at the end. */
	db(): Promise<Db>;
	/** Indented detail under the current step. */
	log(text?: string): void;
	warn(text: string): void;
	/** Registers cleanup to run when the run ends, however it ends. */
	defer(fn: () => Promise<void> | void): void;
	/** Asks before a change (honours --yes; refuses without a TTY). */
	confirm(question: string): Promise<void>;
	/**
	 * One confirmation for the rest of the run, naming the target: asks yes/no, or with --yes needs
	 * --confirm <database>. Later change steps then do not ask again.
	 */
	confirmRun(question: string): Promise<void>;
	/**
	 * confirmRun for a run that destroys or overwrites data: the operator types the database name
	 * (or passes --yes --confirm <database>) once, after seeing what will happen; later change and
	 * destroy steps then do not ask again.
	 */
	confirmRunDestructive(question: string): Promise<void>;
	/**
	 * Asks the operator to pick one of several choices. Without a terminal, or with --yes, asks
	 * nothing and returns `fallback` (the runbook then takes its choice from flags).
	 */
	choose(
		question: string,
		choices: Choice[],
		fallback: string,
	): Promise<string>;
	/** The steps' results so far (status, duration), e.g. for a closing summary step. */
	readonly reports: ReadonlyArray<StepReport>;
}

export interface Step<S = unknown, P = unknown> {
	/** Names the step's result for later steps (ctx.result(id)). */
	id?: string;
	title: string;
	/** read: runs under --dry-run too. write/change/destroy: only planned under --dry-run (see StepKind). */
	kind?: StepKind;
	/** Exact commands and SQL the step would run, for --dry-run and for confirmation. */
	plan?: (ctx: Context<S, P>) => string[] | Promise<string[]>;
	/** A reason to skip this step, or false. */
	skip?: (ctx: Context<S, P>) => string | false;
	run: (ctx: Context<S, P>) => Promise<StepResult | undefined>;
	/**
	 * What the database (and files) hold when this step stops midway, failed or interrupted. The
	 * runner prints it, then the command that resumes (see resume). Default for a read step: it
	 * changed nothing.
	 */
	onFailure?: (ctx: Context<S, P>) => string;
	/** The exact command that carries on after this step stopped; default: this run's command again. */
	resume?: (ctx: Context<S, P>) => string;
}

export interface RunbookSpec<S = unknown, P = unknown> {
	name: string;
	summary: string;
	description?: string;
	args?: ArgSpec[];
	flags?: FlagSpecs;
	/** Extra environment variables this runbook reads, for --help. */
	env?: Record<string, string>;
	examples: string[];
	/** Dev-only runbooks refuse remote or production-marked targets. */
	localOnly?: boolean;
	/**
	 * Data-changing runbooks hold the per-database run lock on the target, so two never run at once:
	 * true, or per invocation (e.g. backup: only create). "when-reachable": for a runbook that changes
	 * no database but must not act while another runbook changes it (switch-db-env): the lock is
	 * taken when the target answers on a direct connection, and skipped (the steps report why) when not.
	 */
	exclusive?:
		| boolean
		| "when-reachable"
		| ((input: {
				flags: FlagValues;
				args: string[];
		  }) => boolean | "when-reachable");
	/**
	 * Other databases an exclusive run works on besides its target (migrate-to-supabase: its source),
	 * locked after the target, so no runbook changes them under this run and none starts while it runs.
	 */
	alsoLock?: (input: {
		env: Env;
		flags: FlagValues;
		args: string[];
	}) => Connection[];
	/**
	 * Where the target comes from, for runbooks that do not work on DATABASE_URL/DIRECT_URL (the
	 * default): e.g. a profile named on the command line. Return null when the run has no single
	 * target database (ctx.target and ctx.db() then throw). Throw usageError for missing settings.
	 */
	resolveTarget?: (input: {
		env: Env;
		flags: FlagValues;
		args: string[];
	}) => Target | null;
	/**
	 * The settings, parsed once from the flags before any step (usage errors exit 2 before anything
	 * runs); steps read them as ctx.settings.
	 */
	settings?: (input: { env: Env; flags: FlagValues; args: string[] }) => P;
	/**
	 * The steps, in order; their titles are also listed by --help. A runbook with modes gives one
	 * list per mode and `mode` picks one from the settings.
	 */
	steps: Step<S, P>[] | Record<string, Step<S, P>[]>;
	mode?: (settings: P) => string;
	state?: () => S;
	/**
	 * What the database holds when a step without its own onFailure stops midway: one handler for
	 * the whole runbook. Return undefined for the runner's default.
	 */
	onFailure?: (ctx: Context<S, P>, step: Step<S, P>) => string | undefined;
	/** Extra fields for the --json summary. */
	summarize?: (ctx: Context<S, P>, ok: boolean) => Record<string, unknown>;
}

const COMMON_ENV: Record<string, string> = {
	DATABASE_URL:
		"Connection string of the target database (also read from .env).",
	DIRECT_URL:
		"Direct, non-pooled connection used for migrations, dumps and restores when set.",
	RUNBOOK_ENV: "Set to 'production' to mark the target as production.",
	RUNBOOK_AUDIT_LOG: "Audit log path (default logs/audit.jsonl).",
	RUNBOOK_NO_CACHE:
		"Set to 1 to compute Prisma's diffs and formatting afresh, not from node_modules/.cache.",
	NO_COLOR: "Disable colours.",
	DEBUG: "Set to 1 for stack traces (same as --verbose).",
};

export interface StepReport {
	no: number;
	title: string;
	kind: StepKind;
	status: StepStatus;
	duration_ms?: number;
	summary?: string;
	error?: string;
	data?: unknown;
}

const MARK: Record<StepStatus, (s: string) => string> = {
	ok: (s) => style.green(`✓ ${s}`),
	warning: (s) => style.yellow(`! ${s}`),
	problem: (s) => style.red(`✗ ${s}`),
	failed: (s) => style.red(`✗ ${s}`),
	skipped: (s) => style.dim(`- ${s}`),
	planned: (s) => style.cyan(`~ ${s}`),
	"not run": (s) => style.dim(`- ${s}`),
	interrupted: (s) => style.yellow(`^C ${s}`),
};

export function helpText<S, P>(spec: RunbookSpec<S, P>): string {
	const all = Array.isArray(spec.steps)
		? [spec.steps]
		: Object.values(spec.steps as Record<string, Step<S, P>[]>);
	// Modes that number the same steps alike (each skips the others' steps) list them once.
	const shared = all.every(
		(l) =>
			l.map((s) => s.title).join("\n") ===
			all[0].map((s) => s.title).join("\n"),
	);
	const lists =
		Array.isArray(spec.steps) || shared
			? { "": all[0] }
			: (spec.steps as Record<string, Step<S, P>[]>);
	const steps = Object.entries(lists).flatMap(([mode, list]) => [
		...(mode ? [`(${mode})`] : []),
		...list.map(
			(s) =>
				`${s.title}${s.kind === "write" ? " [writes files]" : s.kind && s.kind !== "read" ? ` [${s.kind}s data]` : ""}`,
		),
	]);
	return renderHelp({
		name: spec.name,
		summary: spec.summary,
		description: spec.description,
		args: spec.args,
		flags: { ...(spec.flags ?? {}), ...COMMON_FLAGS },
		steps,
		env: { ...COMMON_ENV, ...(spec.env ?? {}) },
		examples: spec.examples,
	});
}

/** Parses argv, runs the runbook and exits the process with its exit code. */
export async function runRunbook<S = unknown, P = unknown>(
	spec: RunbookSpec<S, P>,
	argv = process.argv.slice(2),
): Promise<never> {
	const code = await execute(spec, argv);
	// Let stdout drain before exiting (a piped --json document can be large).
	await new Promise<void>((resolve) =>
		process.stdout.write("", () => resolve()),
	);
	process.exit(code);
}

async function execute<S, P>(
	spec: RunbookSpec<S, P>,
	argv: string[],
): Promise<ExitCode> {
	const verboseRequested =
		argv.includes("--verbose") || process.env.DEBUG === "1";
	if (argv.includes("--json")) setJsonMode(true);
	let ctx: Context<S, P> | undefined;
	try {
		const inv = parseInvocation(
			argv,
			{ ...(spec.flags ?? {}), ...COMMON_FLAGS },
			spec.args,
		);
		if (inv.flags.help) {
			setJsonMode(false);
			say(helpText(spec));
			return EXIT.ok;
		}
		const env = loadEnvironment(inv.flags.dotenv as string | undefined);
		const target = spec.resolveTarget
			? spec.resolveTarget({ env, flags: inv.flags, args: inv.args })
			: defaultTarget(inv.flags, env);
		if (spec.localOnly && target) refuseNonLocal(spec.name, target);
		const settings = spec.settings
			? spec.settings({ env, flags: inv.flags, args: inv.args })
			: (undefined as P);
		const steps = Array.isArray(spec.steps)
			? spec.steps
			: (spec.steps as Record<string, Step<S, P>[]>)[
					spec.mode?.(settings) ?? ""
				];
		if (!steps)
			throw new RunbookError(
				`${spec.name}: no steps for mode ${spec.mode?.(settings)} (internal error).`,
			);
		return await runSteps(
			spec,
			steps,
			settings,
			inv.flags,
			inv.args,
			env,
			target,
			(c) => {
				ctx = c;
			},
		);
	} catch (err) {
		const e = plainError(err);
		sayError(style.red(`✗ ${e.message}`));
		if (e.hint) sayError(`  ${e.hint}`);
		if (verboseRequested && !(err instanceof RunbookError))
			sayError(String((err as Error)?.stack ?? err));
		if (ctx === undefined && argv.includes("--json")) {
			printJson({
				runbook: spec.name,
				ok: false,
				exit_code: e.exitCode,
				error: e.message,
				hint: e.hint ?? null,
			});
		}
		return e.exitCode;
	}
}

/** The target from DATABASE_URL (or --database-url) and DIRECT_URL. */
function defaultTarget(flags: FlagValues, env: Env): Target {
	const databaseUrl =
		(flags["database-url"] as string | undefined) ?? env.DATABASE_URL;
	if (!databaseUrl) {
		throw usageError(
			"DATABASE_URL is not set.",
			"Set it in the environment or in .env (see .env.example), or pass --dotenv <path>.",
		);
	}
	return makeTarget(databaseUrl, env.DIRECT_URL || undefined, env);
}

function refuseNonLocal(name: string, target: Target): void {
	if (target.isProduction) {
		throw refusal(
			`${name} is for local development and the target is marked production (RUNBOOK_ENV=production). Nothing was changed.`,
			"Use deploy-production for production databases.",
		);
	}
	if (!target.isLocal) {
		throw refusal(
			`${name} is for local development, but ${target.direct.display} is not a local host. Nothing was changed.`,
			"Point DATABASE_URL at localhost, 127.0.0.1, ::1 or a unix socket; use deploy-production for shared databases.",
		);
	}
}

async function runSteps<S, P>(
	spec: RunbookSpec<S, P>,
	steps: Step<S, P>[],
	settings: P,
	flags: FlagValues,
	args: string[],
	env: Env,
	target: Target | null,
	expose: (ctx: Context<S, P>) => void,
): Promise<ExitCode> {
	const dryRun = Boolean(flags["dry-run"]);
	const json = Boolean(flags.json);
	const verbose = Boolean(flags.verbose) || env.DEBUG === "1";
	const controller = new AbortController();
	const cleanups: Array<() => Promise<void> | void> = [];
	// A dry run changes no file, the audit log included.
	const audit = dryRun
		? null
		: openAuditLog(spec.name, target?.direct.display ?? null, env);
	const where = target?.direct.display;
	const noTarget = () =>
		new RunbookError(
			`${spec.name} has no single target database (internal error: ctx.target used).`,
		);
	let db: Db | undefined;
	let runConfirmed = false;
	let destroyConfirmed = false;
	const values = new Map<string, unknown>();
	const reports: StepReport[] = steps.map((s, i) => ({
		no: i + 1,
		title: s.title,
		kind: s.kind ?? "read",
		status: "not run",
	}));
	const confirmOptions = {
		yes: Boolean(flags.yes),
		confirm: flags.confirm as string | undefined,
		output: json ? process.stderr : process.stdout,
	};
	const ctx: Context<S, P> = {
		runbook: spec.name,
		settings,
		result<T>(id: string): T {
			if (!values.has(id))
				throw new RunbookError(
					`${spec.name}: step "${id}" has no result yet (internal error).`,
				);
			return values.get(id) as T;
		},
		has: (id) => values.has(id),
		flags,
		args,
		env,
		get target(): Target {
			if (!target) throw noTarget();
			return target;
		},
		dryRun,
		json,
		verbose,
		signal: controller.signal,
		audit,
		state: spec.state ? spec.state() : ({} as S),
		async db() {
			if (!target) throw noTarget();
			if (!db) {
				db = await connect(target.direct, `runbook:${spec.name}`);
				cleanups.push(() => db?.end().catch(() => {}));
			}
			return db;
		},
		log: (text = "") => say(`    ${text.split("\n").join("\n    ")}`),
		warn: (text) =>
			say(style.yellow(`    ! ${text.split("\n").join("\n      ")}`)),
		defer: (fn) => {
			cleanups.push(fn);
		},
		confirm: (question) => confirm(question, confirmOptions),
		async confirmRun(question) {
			if (!target) throw noTarget();
			await confirmTarget(question, target.direct.database, confirmOptions);
			runConfirmed = true;
		},
		async confirmRunDestructive(question) {
			if (!target) throw noTarget();
			await confirmDestructive(
				question,
				target.direct.database,
				confirmOptions,
			);
			runConfirmed = true;
			destroyConfirmed = true;
		},
		choose: (question, choices, fallback) =>
			choose(question, choices, fallback, confirmOptions),
		reports,
	};
	expose(ctx);
	const total = steps.length;
	say(
		style.bold(
			`${spec.name}${dryRun ? " (dry run: nothing will be changed)" : ""}`,
		),
	);
	if (target)
		say(
			`Target: ${target.direct.display}${target.isProduction ? style.red(" [production]") : ""}`,
		);
	audit?.write({
		event: "run_start",
		dry_run: dryRun,
		argv: process.argv.slice(2),
	});
	const exclusive =
		typeof spec.exclusive === "function"
			? spec.exclusive({ flags, args })
			: spec.exclusive;
	if (exclusive && !dryRun && target) {
		const held: Array<{ release(): Promise<void> }> = [];
		try {
			const lock = await acquireRunLock(target.direct, spec.name, {
				optional: exclusive === "when-reachable",
			});
			if (lock) held.push(lock);
			for (const conn of spec.alsoLock?.({ env, flags, args }) ?? []) {
				if (conn.display === target.direct.display) continue;
				const more = await acquireRunLock(conn, spec.name);
				if (more) held.push(more);
			}
			for (const lock of held) cleanups.push(() => lock.release());
		} catch (err) {
			for (const lock of held) await lock.release();
			const e = plainError(err, where);
			audit?.write({
				event: "run_end",
				status: "refused",
				exit_code: e.exitCode,
				error: e.message,
			});
			throw e;
		}
	}

	let interrupted = false;
	let interruptedAt = 0;
	let finished = false;
	const onSignal = () => {
		// Once run_end is written the process is only draining stdout: a late Ctrl-C must not
		// turn a logged outcome into a death by signal, so the exit code stays the one logged.
		if (finished) return;
		// tsx relays the terminal's SIGINT, so one Ctrl-C can arrive twice: only a press more
		// than a second later means "quit at once".
		if (interrupted) {
			if (Date.now() - interruptedAt > 1000) process.exit(EXIT.interrupted);
			return;
		}
		interrupted = true;
		interruptedAt = Date.now();
		sayError(
			style.yellow(
				"\nInterrupt received: stopping the current step (press Ctrl-C again to quit at once).",
			),
		);
		controller.abort();
	};
	process.on("SIGINT", onSignal);
	process.on("SIGTERM", onSignal);

	let exitCode: ExitCode = EXIT.ok;
	let failedAt: StepReport | undefined;
	try {
		for (const [i, step] of steps.entries()) {
			const report = reports[i];
			const kind = step.kind ?? "read";
			say();
			say(style.bold(`[${i + 1}/${total}] ${step.title}`));
			const skipReason = step.skip?.(ctx);
			if (skipReason) {
				report.status = "skipped";
				report.summary = skipReason;
				say(`    ${MARK.skipped(`skipped: ${skipReason}`)}`);
				audit?.write({
					event: "step_end",
					step: step.title,
					step_no: i + 1,
					status: "skipped",
					reason: skipReason,
				});
				continue;
			}
			if (kind !== "read" && (dryRun || step.plan)) {
				const plan = step.plan ? await step.plan(ctx) : [];
				if (plan.length) {
					say(`    ${dryRun ? "Would run:" : "Will run:"}`);
					for (const line of plan)
						say(`      ${line.split("\n").join("\n      ")}`);
				}
			}
			if (kind !== "read" && dryRun) {
				report.status = "planned";
				say(`    ${MARK.planned("planned (dry run)")}`);
				continue;
			}
			const started = performance.now();
			const stepEnd = (outcome: Record<string, unknown>) =>
				audit?.write({
					event: "step_end",
					step: step.title,
					step_no: i + 1,
					status: report.status,
					duration_ms: report.duration_ms,
					...outcome,
				});
			audit?.write({
				event: "step_start",
				step: step.title,
				step_no: i + 1,
				kind,
			});
			try {
				// A Ctrl-C that came between two steps stops the run before the next one begins.
				if (controller.signal.aborted) throw new Error("aborted");
				if (kind === "change" && !runConfirmed)
					await confirm(
						`Run step ${i + 1}, "${step.title}"${where ? `, on ${where}` : ""}?`,
						confirmOptions,
					);
				if (kind === "destroy" && !destroyConfirmed) {
					if (!target) throw noTarget();
					await confirmDestructive(
						`Step ${i + 1}, "${step.title}", destroys or overwrites data in ${target.direct.display}.`,
						target.direct.database,
						confirmOptions,
					);
				}
				const result = await abortable(step.run(ctx), controller.signal);
				report.duration_ms = Math.round(performance.now() - started);
				report.status =
					result?.status === "problem"
						? "problem"
						: result?.status === "warning"
							? "warning"
							: "ok";
				report.summary = result?.summary;
				report.data = result?.data;
				if (step.id && result && "value" in result)
					values.set(step.id, result.value);
				if (report.status === "problem") exitCode = EXIT.failed;
				const label = `${report.status === "ok" ? "done" : report.status} in ${formatDuration(report.duration_ms)}`;
				say(
					`    ${MARK[report.status](`${label}${report.summary ? `: ${report.summary}` : ""}`)}`,
				);
				stepEnd({ summary: report.summary });
			} catch (err) {
				report.duration_ms = Math.round(performance.now() - started);
				const e = interrupted
					? new RunbookError("Interrupted by the operator.", EXIT.interrupted)
					: plainError(err, where);
				// A child the Ctrl-C reached first may report it before our own handler runs.
				report.status =
					e.exitCode === EXIT.interrupted ? "interrupted" : "failed";
				report.error = e.message;
				failedAt = report;
				// A failed step may still hand its findings forward (e.g. to --json): the error's value.
				const kept = (err as { value?: unknown } | null)?.value;
				if (step.id && kept !== undefined) values.set(step.id, kept);
				exitCode = e.exitCode;
				stepEnd({ error: e.message, exit_code: e.exitCode });
				say(
					`    ${MARK[report.status](`${report.status} after ${formatDuration(report.duration_ms)}`)}`,
				);
				sayError(style.red(`✗ Step ${i + 1} (${step.title}): ${e.message}`));
				if (e.hint) sayError(`  ${e.hint}`);
				if (verbose && !(err instanceof RunbookError))
					sayError(String((err as Error)?.stack ?? err));
				for (const line of stopAdvice(spec, step, ctx, e.exitCode, i))
					sayError(`  ${line.split("\n").join("\n  ")}`);
				break;
			}
		}
	} finally {
		// The handlers stay until the process exits: a Ctrl-C relayed late (tsx forwards the
		// terminal's SIGINT to the runbook once more) must not kill the process, unlogged, meanwhile.
		for (const fn of cleanups.reverse())
			await Promise.resolve(fn()).catch(() => {});
	}

	say();
	const counts = reports.reduce<Record<string, number>>((acc, r) => {
		acc[r.status] = (acc[r.status] ?? 0) + 1;
		return acc;
	}, {});
	const verdict =
		exitCode === EXIT.ok
			? style.green(dryRun ? "Dry run complete: nothing was changed." : "Done.")
			: failedAt
				? style.red(`Stopped at step ${failedAt.no} (${failedAt.title}).`)
				: style.red("Problems found (see the steps marked ✗).");
	say(
		`${verdict} ${Object.entries(counts)
			.map(([k, v]) => `${v} ${k}`)
			.join(", ")}`,
	);
	if (audit) say(style.dim(`Audit log: ${audit.path} (run ${audit.runId})`));
	audit?.write({
		event: "run_end",
		status:
			exitCode === EXIT.ok
				? "ok"
				: failedAt
					? failedAt.status
					: "problems found",
		exit_code: exitCode,
	});
	// The handlers stay, ignoring signals, until runRunbook exits the process.
	finished = true;
	if (json) {
		printJson({
			runbook: spec.name,
			ok: exitCode === EXIT.ok,
			exit_code: exitCode,
			dry_run: dryRun,
			target: where ?? null,
			steps: reports,
			...(spec.summarize?.(ctx, exitCode === EXIT.ok) ?? {}),
		});
	}
	return exitCode;
}

/**
 * What the operator reads after a step stopped: what the database holds, then, for a failure or an
 * interrupt, the one resume line every step shares. A refusal or bad input changed nothing and
 * would be refused again: its hint says what to do instead.
 */
function stopAdvice<S, P>(
	spec: RunbookSpec<S, P>,
	step: Step<S, P>,
	ctx: Context<S, P>,
	code: ExitCode,
	index: number,
): string[] {
	const runbook = spec.name;
	let state: string | undefined;
	try {
		state = step.onFailure ? step.onFailure(ctx) : spec.onFailure?.(ctx, step);
	} catch {
		// An account that cannot be given (its inputs never computed) gives way to the generic one.
	}
	const stopped = code === EXIT.failed || code === EXIT.interrupted;
	state ||= `${stopped && step.kind && step.kind !== "read" ? "This step stopped before its end" : "Nothing was changed by this step"}${earlier(ctx.reports, index)}.`;
	if (!stopped) return [state];
	// The resume line, worded the same after every step.
	const command = step.resume?.(ctx) ?? rerunCommand(`runbooks/${runbook}.ts`);
	return [state, `To resume, run: ${command}`];
}

/** "; what steps 2 and 3 changed is in place", for the earlier steps that changed something. */
function earlier(reports: ReadonlyArray<StepReport>, index: number): string {
	const done = reports
		.slice(0, index)
		.filter(
			(r) => r.kind !== "read" && (r.status === "ok" || r.status === "warning"),
		)
		.map((r) => r.no);
	if (!done.length) return "";
	const list =
		done.length === 1
			? `step ${done[0]}`
			: `steps ${done.slice(0, -1).join(", ")} and ${done.at(-1)}`;
	return `; what ${list} changed is in place`;
}

/** Resolves with the step's result, or rejects soon after an abort even if the step ignores the signal. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
	if (signal.aborted) {
		// The step's own promise is left behind: its late failure must not crash the run.
		work.catch(() => {});
		return Promise.reject(new Error("aborted"));
	}
	return new Promise<T>((resolve, reject) => {
		const onAbort = () => {
			// Give the step a moment to stop its child processes and queries itself.
			setTimeout(() => reject(new Error("aborted")), 3000).unref();
		};
		signal.addEventListener("abort", onAbort, { once: true });
		work
			.then(resolve, reject)
			.finally(() => signal.removeEventListener("abort", onAbort));
	});
}
