// VERIFY_CMD, run against the Supabase project with the remote profile's URLs.

import { runHook } from "../app/hooks.ts";
import { failureReason } from "../kit/child-failure.ts";
import { RunbookError } from "../kit/errors.ts";
import { formatDuration } from "../kit/format.ts";
import type { Target } from "../pg/target.ts";

/** Runs VERIFY_CMD; throws (exit 1) when it fails; returns the step's result line. */
export async function verifyAgainst(
	t: Target,
	env: Record<string, string | undefined>,
	signal: AbortSignal,
	log: (text: string) => void,
): Promise<string> {
	const run = await runHook("VERIFY_CMD", {
		env: { ...env, DATABASE_URL: t.app.url, DIRECT_URL: t.direct.url },
		signal,
		log,
	});
	if (run && run.outcome !== "passed")
		throw new RunbookError(
			`VERIFY_CMD failed: ${failureReason({ exitCode: run.exitCode ?? null, stdout: run.output })}.`,
		);
	return `passed in ${formatDuration(run?.durationMs ?? 0)}`;
}
