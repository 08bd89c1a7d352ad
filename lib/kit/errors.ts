// Errors in plain words, each carrying the exit code the conventions give it.

export const EXIT = {
	ok: 0,
	failed: 1,
	usage: 2,
	refused: 3,
	interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the operator should read: a plain sentence, an exit code, and what to do next. */
export class RunbookError extends Error {
	constructor(
		message: string,
		readonly exitCode: ExitCode = EXIT.failed,
		readonly hint?: string,
	) {
		super(message);
		this.name = "RunbookError";
	}
}

export const usageError = (message: string, hint?: string) =>
	new RunbookError(message, EXIT.usage, hint);
export const refusal = (message: string, hint?: string) =>
	new RunbookError(message, EXIT.refused, hint);

interface PgLikeError {
	code?: string;
	message?: string;
	errno?: number;
	syscall?: string;
	hostname?: string;
}

/**
 * Turns driver and system errors into one or two sentences an operator can act on.
 * `where` names the target (already masked), e.g. "app@db.example.com:5432/app".
 */
export function plainError(err: unknown, where?: string): RunbookError {
	if (err instanceof RunbookError) return err;
	const e = (err ?? {}) as PgLikeError;
	const at = where ? ` ${where}` : "";
	switch (e.code) {
		case "ECONNREFUSED":
			return new RunbookError(
				`Could not connect to${at}: the connection was refused.`,
				EXIT.failed,
				"Check that PostgreSQL is running and that the host and port in DATABASE_URL are right.",
			);
		case "ENOTFOUND":
		case "EAI_AGAIN":
			return new RunbookError(
				`Could not connect to${at}: the host name does not resolve.`,
				EXIT.failed,
				"Check the host in DATABASE_URL.",
			);
		case "ETIMEDOUT":
			return new RunbookError(
				`Could not connect to${at}: the connection timed out.`,
				EXIT.failed,
				"Check the network path (firewall, VPN) and the host and port in DATABASE_URL.",
			);
		case "28P01":
		case "28000":
			return new RunbookError(
				`The server${at} rejected the user name or password.`,
				EXIT.failed,
				"Check the credentials in DATABASE_URL (or DIRECT_URL).",
			);
		case "3D000":
			return new RunbookError(
				`The database${at} does not exist.`,
				EXIT.failed,
				"Check the database name at the end of DATABASE_URL, or create the database first.",
			);
		case "57014":
			return new RunbookError(
				`A statement${at} was cancelled (statement timeout or operator cancel).`,
			);
		case "55P03":
			return new RunbookError(
				`A lock${at} could not be taken within the lock timeout.`,
				EXIT.failed,
				"Another session holds it: look in pg_stat_activity and pg_locks for the blocker, then retry.",
			);
		case "57P01":
			return new RunbookError(
				`The server${at} terminated the connection (administrator command).`,
			);
	}
	const message = e.message || String(err);
	// pg's words for a client whose connection broke earlier (terminated, server gone, network).
	if (
		/Connection terminated unexpectedly|not queryable|Connection terminated$/i.test(
			message,
		)
	) {
		return new RunbookError(
			`The connection to${at} was lost (${message.replace(/\.$/, "")}).`,
		);
	}
	if (/self[- ]signed certificate|SSL/i.test(message)) {
		return new RunbookError(
			`TLS to${at} failed: ${message}.`,
			EXIT.failed,
			"Check sslmode in the connection string.",
		);
	}
	return new RunbookError(message);
}
