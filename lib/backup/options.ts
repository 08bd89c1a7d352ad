// backup's invocation: its action (create, verify, list, prune), the backup id verify takes, and
// the flags that go with each, checked once before anything runs (exit 2 on bad input).

import type { FlagValues } from "../kit/cli.ts";
import { usageError } from "../kit/errors.ts";
import type { BackupFormat } from "./archive.ts";

export type Action = "create" | "verify" | "list" | "prune";

export interface BackupOptions {
	action: Action;
	/** For verify: a backup id, or latest. */
	id: string;
	format: BackupFormat;
	jobs: number;
	keep?: number;
}

export function backupOptions(
	args: string[],
	flags: FlagValues,
): BackupOptions {
	const action = (args[0] as Action | undefined) ?? "create";
	const format = flags.format as string;
	if (format !== "custom" && format !== "directory") {
		throw usageError(`--format must be custom or directory, not "${format}".`);
	}
	const jobs = Number(flags.jobs ?? 1);
	if (!Number.isInteger(jobs) || jobs < 1)
		throw usageError(
			`--jobs needs a whole number of at least 1, not "${flags.jobs}".`,
		);
	if (jobs > 1 && format !== "directory") {
		throw usageError(
			"--jobs needs --format directory: only directory archives are dumped in parallel.",
			"Example: --format directory --jobs 4",
		);
	}
	const keep = flags.keep === undefined ? undefined : Number(flags.keep);
	if (keep !== undefined && (!Number.isInteger(keep) || keep < 1))
		throw usageError(
			`--keep needs a whole number of at least 1, not "${flags.keep}".`,
		);
	if (keep !== undefined && action !== "create" && action !== "prune")
		throw usageError(`--keep goes with create or prune, not ${action}.`);
	if (action === "prune" && keep === undefined)
		throw usageError(
			"prune needs --keep N: how many of this database's newest backups to keep.",
		);
	if (args[1] !== undefined && action !== "verify")
		throw usageError(
			`Only verify takes a backup id (got "${args[1]}" with ${action}).`,
		);
	return { action, id: args[1] ?? "latest", format, jobs, keep };
}
