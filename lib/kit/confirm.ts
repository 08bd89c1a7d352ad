// Asking the operator. --yes answers for them; a step that destroys data also needs the target's
// database name (typed, or --confirm <name>). With no terminal and no --yes we refuse rather than hang.

import { EXIT, RunbookError, refusal } from "./errors.ts";
import { isInteractive } from "./output.ts";

export interface ConfirmOptions {
	yes: boolean;
	confirm?: string;
	/** Where prompts write: stderr under --json so stdout keeps one JSON object. */
	output: NodeJS.WriteStream;
}

const interrupted = () =>
	new RunbookError(
		"Interrupted at a confirmation; nothing was changed by this step.",
		EXIT.interrupted,
	);

function needTerminal(what: string): never {
	throw refusal(
		`Cannot ask "${what}": standard input is not a terminal.`,
		"Rerun with --yes (and --confirm <database> for destructive steps) to proceed non-interactively.",
	);
}

export async function confirm(
	question: string,
	opts: ConfirmOptions,
): Promise<void> {
	if (opts.yes) return;
	if (!isInteractive()) needTerminal(question);
	const answer = await (await import("prompts")).default(
		{
			type: "confirm",
			name: "ok",
			message: question,
			initial: false,
			stdout: opts.output,
		},
		{
			onCancel: () => {
				throw interrupted();
			},
		},
	);
	if (!answer.ok)
		throw refusal(
			"Stopped: the operator answered no. Nothing was changed by this step.",
		);
}

export async function confirmDestructive(
	question: string,
	database: string,
	opts: ConfirmOptions,
): Promise<void> {
	if (opts.yes) {
		if (opts.confirm === database) return;
		throw refusal(
			opts.confirm === undefined
				? `This step destroys or overwrites data in "${database}"; --yes alone is not enough.`
				: `--confirm "${opts.confirm}" does not match the target database "${database}".`,
			`Rerun with --yes --confirm ${database}, or interactively to type the name.`,
		);
	}
	if (!isInteractive()) needTerminal(question);
	const answer = await (await import("prompts")).default(
		{
			type: "text",
			name: "typed",
			message: `${question}\n  Type the database name (${database}) to continue:`,
			stdout: opts.output,
		},
		{
			onCancel: () => {
				throw interrupted();
			},
		},
	);
	if (answer.typed !== database) {
		throw refusal(
			`The typed name does not match "${database}". Nothing was changed by this step.`,
		);
	}
}

/**
 * A run-wide yes/no that names the target: interactively a question; with --yes the operator must
 * also name the database (--confirm <database>), so a CI job cannot deploy to the wrong one.
 */
export async function confirmTarget(
	question: string,
	database: string,
	opts: ConfirmOptions,
): Promise<void> {
	if (opts.confirm !== undefined && opts.confirm !== database) {
		throw refusal(
			`--confirm "${opts.confirm}" does not match the target database "${database}". Nothing was changed.`,
			"Check DATABASE_URL/DIRECT_URL: they may point at another database than you meant.",
		);
	}
	if (opts.yes) {
		if (opts.confirm === database) return;
		throw refusal(
			`--yes alone is not enough here: name the target database too. Nothing was changed.`,
			`Rerun with --yes --confirm ${database}, or without --yes to be asked.`,
		);
	}
	await confirm(question, opts);
}

export interface Choice {
	/** What the runbook receives. */
	value: string;
	title: string;
	description?: string;
}

/**
 * One of several choices, asked interactively. Without a terminal, or with --yes, nothing is asked
 * and `fallback` is returned: the runbook takes its choice from flags instead.
 */
export async function choose(
	question: string,
	choices: Choice[],
	fallback: string,
	opts: ConfirmOptions,
): Promise<string> {
	if (opts.yes || !isInteractive() || choices.length === 0) return fallback;
	const answer = await (await import("prompts")).default(
		{
			type: "select",
			name: "value",
			message: question,
			choices,
			initial: 0,
			stdout: opts.output,
		},
		{
			onCancel: () => {
				throw interrupted();
			},
		},
	);
	return (answer.value as string | undefined) ?? fallback;
}
