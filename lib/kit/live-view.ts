// A view refreshed every few seconds until Ctrl-C or a time limit: on a terminal it is redrawn in
// place (like watch(1)); otherwise each refresh prints timestamped lines, so a log or a pipe
// reads as a time series. All text passes through redact().

import { utcStamp } from "./format.ts";
import { humanStream, say } from "./output.ts";
import { redact } from "./secrets.ts";

export interface Frame {
	/** The full view, redrawn in place on a terminal. */
	screen: string[];
	/** The same refresh as a few lines for a log; each gets the time in front. */
	lines: string[];
}

export interface LiveOptions {
	intervalMs: number;
	/** Stop after this long (default: until the signal aborts). */
	durationMs?: number;
	signal: AbortSignal;
	/** Force plain lines even on a terminal. */
	plain?: boolean;
}

export interface LiveResult {
	refreshes: number;
	elapsedMs: number;
	/** Stopped by the signal (Ctrl-C) rather than by the time limit. */
	interrupted: boolean;
}

function wait(ms: number, signal: AbortSignal): Promise<void> {
	return new Promise((resolve) => {
		if (signal.aborted || ms <= 0) return resolve();
		const done = () => {
			clearTimeout(timer);
			signal.removeEventListener("abort", done);
			resolve();
		};
		const timer = setTimeout(done, ms);
		signal.addEventListener("abort", done, { once: true });
	});
}

const clock = (d: Date) => utcStamp(d, "clock");

/** Calls render() every intervalMs and shows its frame, until the signal aborts or durationMs passes. */
export async function runLive(
	opts: LiveOptions,
	render: (at: Date) => Promise<Frame>,
): Promise<LiveResult> {
	const out = humanStream();
	const inPlace =
		!opts.plain && Boolean(out.isTTY) && process.env.TERM !== "dumb";
	const started = Date.now();
	let refreshes = 0;
	let drawn = 0;
	while (!opts.signal.aborted) {
		const at = new Date();
		let frame: Frame;
		try {
			frame = await render(at);
		} catch (err) {
			if (opts.signal.aborted) break;
			throw err;
		}
		if (opts.signal.aborted) break;
		refreshes++;
		if (inPlace) {
			const rows = Math.max(5, (out.rows || 40) - 1);
			const cols = Math.max(20, out.columns || 120);
			const header = `Every ${opts.intervalMs / 1000}s · ${clock(at)} · Ctrl-C to stop`;
			const screen = [header, "", ...frame.screen]
				.flatMap((l) => l.split("\n"))
				.slice(0, rows)
				.map((l) => clip(redact(l), cols));
			// Up to the first line of the previous frame, clear to the end of the screen, draw.
			out.write(`${drawn ? `\x1b[${drawn}F` : ""}\x1b[J${screen.join("\n")}\n`);
			drawn = screen.length;
		} else {
			const stamp = clock(at);
			for (const l of frame.lines) say(`${stamp}  ${l}`);
		}
		const elapsed = Date.now() - started;
		if (opts.durationMs !== undefined && elapsed >= opts.durationMs) break;
		const left =
			opts.durationMs === undefined
				? opts.intervalMs
				: Math.min(opts.intervalMs, opts.durationMs - elapsed);
		// At the time limit the loop refreshes once more, so the final state is on screen.
		await wait(left, opts.signal);
	}
	return {
		refreshes,
		elapsedMs: Date.now() - started,
		interrupted: opts.signal.aborted,
	};
}

// An SGR colour sequence: ESC [ digits/semicolons m.
const ESCAPE = new RegExp(`^${String.fromCharCode(27)}\\[[0-9;]*m`);

/** Cuts a line to the terminal width, counting visible characters only (colour codes are kept). */
function clip(line: string, cols: number): string {
	let visible = 0;
	let out = "";
	for (let i = 0; i < line.length; i++) {
		if (line[i] === "\x1b") {
			const m = ESCAPE.exec(line.slice(i));
			if (m) {
				out += m[0];
				i += m[0].length - 1;
				continue;
			}
		}
		if (visible >= cols - 1) return `${out}…\x1b[0m`;
		out += line[i];
		visible++;
	}
	return out;
}
