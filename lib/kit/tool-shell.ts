// How the runbooks start a child (a client tool, Prisma's CLI, an application hook), and the one
// rule for a child that a signal ended.
//
// zx as the runbooks use it: quiet, never throwing (the caller reads how it ended), and with stdin
// from /dev/null. On a socket stdin (Node's default for a child), a bash started outside any shell
// (cron, systemd, a CI agent: SHLVL unset) takes itself for sshd's and sources ~/.bashrc: a pyenv
// or conda init there costs from a tenth of a second to a minute per tool run, and may change the
// tool's environment.

import type { Options } from "zx";
import { sleep } from "./duration.ts";

export async function toolShell(
	opts: Pick<Partial<Options>, "env" | "signal" | "cwd">,
) {
	const { $ } = await import("zx"); // on first use: it costs start-up that --help should not pay
	return $({
		...opts,
		quiet: true,
		nothrow: true,
		stdio: ["ignore", "pipe", "pipe"],
	});
}

/** How long a child stopped by a signal waits for the run's own interrupt. */
const CHILD_STOP_GRACE_MS = 2000;

/**
 * After a child ended: a terminal's Ctrl-C reaches the whole process group, and the child's end
 * (by a signal, or exit 130) can be seen before the runbook's own handler has run. Then this waits
 * for that handler, up to 2 s, and throws "aborted", so the step ends as interrupted rather than
 * failed. A run that was not interrupted meanwhile returns: the child alone was stopped (someone
 * signalled it, or it exited 130 of its own), and the caller reports it as it ended.
 */
export async function awaitRunInterrupt(
	ended: { signal?: string | null; exitCode: number | null },
	signal?: AbortSignal,
): Promise<void> {
	if (signal && (ended.signal || ended.exitCode === 130))
		await sleep(CHILD_STOP_GRACE_MS, signal).catch(() => {});
	if (signal?.aborted) throw new Error("aborted");
}
