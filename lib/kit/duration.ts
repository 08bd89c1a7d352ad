// Durations as operators type them ("5s", "500ms", "2min", "1h", or plain seconds), for timeouts
// and waits; and back into PostgreSQL's own spelling.

import { usageError } from "./errors.ts";

const UNITS: Record<string, number> = {
	ms: 1,
	s: 1000,
	sec: 1000,
	m: 60_000,
	min: 60_000,
	h: 3_600_000,
};

/** Milliseconds, or a usage error (exit 2) naming the flag. A bare number is in `unit` (seconds). */
export function parseDuration(
	text: string | number,
	flag: string,
	unit: "s" | "ms" = "s",
): number {
	if (typeof text === "number") return Math.round(text * UNITS[unit]);
	const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*$/i.exec(text);
	if (!m) {
		throw usageError(
			`${flag} needs a duration such as 5s, 500ms or 2min, not "${text}".`,
		);
	}
	return Math.round(Number(m[1]) * UNITS[(m[2] ?? unit).toLowerCase()]);
}

/** What sleep rejects with when its signal aborts. */
export class Aborted extends Error {
	constructor() {
		super("aborted");
	}
}

/** Resolves after ms, or rejects at once (with Aborted) when the signal aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
	return new Promise((resolve, reject) => {
		if (signal?.aborted) return reject(new Aborted());
		const timer = setTimeout(() => {
			signal?.removeEventListener("abort", onAbort);
			resolve();
		}, ms);
		const onAbort = () => {
			clearTimeout(timer);
			reject(new Aborted());
		};
		signal?.addEventListener("abort", onAbort, { once: true });
	});
}
