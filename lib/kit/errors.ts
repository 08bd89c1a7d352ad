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

/** What a driver or server error code means, as a sentence about `at` (the target), and the hint. */
const KNOWN_CODES: Record<string, [(at: string) => string, string?]> = {
	ECONNREFUSED: [
		(at) => `Could not connect to${at}: the connection was refused.`,
		"Check that PostgreSQL is running and that the host and port in DATABASE_URL are right.",
	],
	ENOTFOUND: [
		(at) => `Could not connect to${at}: the host name does not resolve.`,
		"Check the host in DATABASE_URL.",
	],
	ETIMEDOUT: [
		(at) => `Could not connect to${at}: the connection timed out.`,
		"Check the network path (firewall, VPN) and the host and port in DATABASE_URL.",
	],
	"28P01": [
		(at) => `The server${at} rejected the user name or password.`,
		"Check the credentials in DATABASE_URL (or DIRECT_URL).",
	],
	"3D000": [
		(at) => `The database${at} does not exist.`,
		"Check the database name at the end of DATABASE_URL, or create the database first.",
	],
	"57014": [
		(at) =>
			`A statement${at} was cancelled (statement timeout or operator cancel).`,
	],
	"55P03": [
		(at) => `A lock${at} could not be taken within the lock timeout.`,
		"Another session holds it: look in pg_stat_activity and pg_locks for the blocker, then retry.",
	],
	"57P01": [
		(at) =>
			`The server${at} terminated the connection (administrator command).`,
	],
};
KNOWN_CODES.EAI_AGAIN = KNOWN_CODES.ENOTFOUND;
KNOWN_CODES["28000"] = KNOWN_CODES["28P01"];

/**
 * Turns driver and system errors into one or two sentences an operator can act on.
 * `where` names the target (already masked), e.g. "app@db.example.com:5432/app".
 */
export function plainError(err: unknown, where?: string): RunbookError {
	if (err instanceof RunbookError) return err;
	const e = (err ?? {}) as PgLikeError;
	const at = where ? ` ${where}` : "";
	const known = e.code ? KNOWN_CODES[e.code] : undefined;
	if (known) {
		const [what, hint] = known;
		return new RunbookError(what(at), EXIT.failed, hint);
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
