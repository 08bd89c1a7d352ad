// Which process owns a leftover (a backup's .partial-* folder): its pid plus, on Linux, its start
// time. A pid alone is not enough: the kernel reuses pids (pid_max is often 32768, and a test suite
// or a busy host wraps it in minutes), and a killed process whose parent has not reaped it yet
// still answers kill(pid, 0) as a zombie.

import { readFileSync } from "node:fs";

/** "<pid>.<start>" on Linux (start in clock ticks since boot), "<pid>" elsewhere. */
export function processToken(pid = process.pid): string {
	const start = readStat(pid)?.start;
	return start === undefined ? String(pid) : `${pid}.${start}`;
}

/** Whether the process a token names is still running (not a zombie, not a later process with its pid). */
export function isRunning(token: string): boolean {
	const m = /^(\d+)(?:\.(\d+))?$/.exec(token);
	if (!m) return false;
	const pid = Number(m[1]);
	const stat = readStat(pid);
	if (stat === null) return false; // Linux, and no such process
	if (stat !== undefined) {
		if (stat.state === "Z" || stat.state === "X") return false;
		return m[2] === undefined || m[2] === stat.start;
	}
	try {
		process.kill(pid, 0);
		return true;
	} catch (err) {
		return (err as NodeJS.ErrnoException).code === "EPERM";
	}
}

/** /proc/<pid>/stat's state and start time; null when /proc has no such pid, undefined without /proc. */
function readStat(
	pid: number,
): { state: string; start: string } | null | undefined {
	let text: string;
	try {
		text = readFileSync(`/proc/${pid}/stat`, "utf8");
	} catch {
		try {
			readFileSync("/proc/self/stat");
		} catch {
			return undefined;
		}
		return null;
	}
	// The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
	const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
	return { state: fields[0], start: fields[19] };
}
