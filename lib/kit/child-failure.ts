// Why a child tool (Prisma, pg_dump, pg_restore, psql, a hook) failed, in words the operator can
// act on: its own message when it printed one, else how it ended (exit code or signal) and the
// last lines it wrote. A failure never reads "failed: " with nothing after it.

export interface ChildEnd {
	exitCode: number | null;
	/** The signal that ended it, when one did (exitCode is then null). */
	signal?: string | null;
	stdout?: string;
	stderr?: string;
}

/** The last `n` non-empty lines of `text`, on one line. */
export function lastLines(text: string, n = 3): string {
	return text
		.split("\n")
		.map((l) => l.trim())
		.filter(Boolean)
		.slice(-n)
		.join(" | ");
}

/** `message` when the tool said something; else its exit code or signal and its last output. */
export function failureReason(run: ChildEnd, message = ""): string {
	if (message.trim()) return message.trim();
	const how = run.signal
		? `it was ended by ${run.signal}`
		: `it exited with code ${run.exitCode ?? "unknown"}`;
	const tail = lastLines(run.stderr ?? "") || lastLines(run.stdout ?? "");
	return tail
		? `${how}; its last output: ${tail}`
		: `${how} and printed nothing`;
}
