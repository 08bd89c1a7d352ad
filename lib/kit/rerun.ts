// The exact command to run a runbook again (to resume it, say), built from this run's own
// arguments: shell-quoted, without the flags that must not repeat, and never with a secret.

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** Quotes one argument for a POSIX shell. */
export function shellQuote(arg: string): string {
	if (arg !== "" && SAFE.test(arg)) return arg;
	if (!arg.includes("'")) return `'${arg}'`;
	if (!/["$`\\!]/.test(arg)) return `"${arg}"`;
	return `'${arg.replace(/'/g, `'"'"'`)}'`;
}

export interface RerunOptions {
	/** Boolean flags (without --) to leave out, e.g. ["restart", "dry-run"]. */
	drop?: string[];
	/** Arguments to append, e.g. ["--resume"]. */
	add?: string[];
	/** The arguments of this run (default process.argv.slice(2)). */
	argv?: string[];
	/** Flags that take a value (without --) to carry over with it; the rest are left out (for another runbook). */
	keep?: string[];
}

/** `npx tsx <script> <this run's arguments, adjusted>`; --database-url and its value are left out. */
export function rerunCommand(script: string, opts: RerunOptions = {}): string {
	const argv = opts.argv ?? process.argv.slice(2);
	const drop = new Set([...(opts.drop ?? []), "dry-run"].map((f) => `--${f}`));
	const keep = opts.keep && new Set(opts.keep.map((f) => `--${f}`));
	const out: string[] = [];
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const name = a.split("=")[0];
		if (keep && !keep.has(name)) continue;
		if (name === "--database-url") {
			if (!a.includes("=")) i++;
			continue;
		}
		if (drop.has(name)) continue;
		out.push(a);
		if (keep && !a.includes("=") && argv[i + 1] !== undefined)
			out.push(argv[++i]);
	}
	for (const a of opts.add ?? []) if (!out.includes(a)) out.push(a);
	return ["npx", "tsx", script, ...out.map(shellQuote)].join(" ");
}
