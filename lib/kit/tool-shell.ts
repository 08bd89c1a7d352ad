// zx as the runbooks start a child tool: quiet, never throwing (the caller reads how it ended),
// and with stdin from /dev/null. On a socket stdin (Node's default for a child), a bash started
// outside any shell (cron, systemd, a CI agent: SHLVL unset) takes itself for sshd's and sources
// ~/.bashrc: a pyenv or conda init there costs from a tenth of a second to a minute per tool run,
// and may change the tool's environment.

import type { Options } from "zx";

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
