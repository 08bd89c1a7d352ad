// Progress of long work (rows done, rate, ETA), for any runbook: a live bar (cli-progress) when
// the human output stream is a terminal, otherwise a plain line every few seconds, so logs and CI
// show it too. It writes where the other human text goes (stderr under --json), without colour
// (NO_COLOR and non-terminals get plain text anyway), and passes everything through redact().

import cliProgress from "cli-progress";
import { formatCount as fmt, formatDuration } from "./format.ts";
import { humanStream } from "./output.ts";
import { redact } from "./secrets.ts";

export interface ProgressOptions {
	/** What is counted, plural: "rows". */
	unit: string;
	/** The expected total when known (an estimate is fine: the ETA says "about"). */
	total?: number;
	/** Whether the total is an estimate. */
	estimated?: boolean;
	/** Seconds between plain lines when not on a terminal (default 5; RUNBOOK_PROGRESS_INTERVAL_MS overrides). */
	intervalMs?: number;
	/** Left margin, to sit under a runbook step (default four spaces). */
	indent?: string;
	/** Force the plain-line mode (tests; the stream is not a terminal there anyway). */
	plain?: boolean;
	/** Done before this run began (a resumed job): the rate and the closing line count from here. */
	initial?: number;
}

export interface Progress {
	/** The amount done so far (absolute), with an optional short detail shown after the rate. */
	update(done: number, detail?: string): void;
	/** A line of text above the bar (or among the plain lines). */
	note(text: string): void;
	/** Ends the display with a last line. */
	stop(): void;
}

/** Rate over the last ~10 seconds of samples, so the ETA follows the current pace. */
class RateWindow {
	private samples: Array<{ at: number; done: number }> = [];
	add(at: number, done: number) {
		this.samples.push({ at, done });
		while (this.samples.length > 2 && at - this.samples[0].at > 10_000)
			this.samples.shift();
	}
	perSecond(): number {
		if (this.samples.length < 2) return 0;
		const a = this.samples[0];
		const b = this.samples[this.samples.length - 1];
		return b.at > a.at ? ((b.done - a.done) * 1000) / (b.at - a.at) : 0;
	}
}

export function describeProgress(
	done: number,
	opts: Pick<ProgressOptions, "unit" | "total" | "estimated">,
	rate: number,
	detail?: string,
): string {
	const parts: string[] = [];
	if (opts.total && opts.total > 0) {
		const pct = Math.min(100, (done / opts.total) * 100);
		parts.push(
			`${fmt(done)} of ${opts.estimated ? "~" : ""}${fmt(opts.total)} ${opts.unit} (${pct.toFixed(pct < 10 ? 1 : 0)}%)`,
		);
	} else {
		parts.push(`${fmt(done)} ${opts.unit}`);
	}
	parts.push(`${fmt(rate)} ${opts.unit}/s`);
	if (opts.total && rate > 0) {
		const left = Math.max(0, opts.total - done);
		parts.push(
			`ETA ${opts.estimated ? "~" : ""}${formatDuration((left / rate) * 1000)}`,
		);
	}
	if (detail) parts.push(detail);
	return parts.join(", ");
}

/** The closing line: what was done, in how long, at what average rate. */
export function describeTotal(
	done: number,
	unit: string,
	elapsedMs: number,
	detail?: string,
): string {
	const avg = (done * 1000) / Math.max(1, elapsedMs);
	return `${fmt(done)} ${unit} in ${formatDuration(elapsedMs)} (${fmt(avg)} ${unit}/s)${detail ? `, ${detail}` : ""}`;
}

export function startProgress(opts: ProgressOptions): Progress {
	const stream = humanStream();
	const indent = opts.indent ?? "    ";
	const window = new RateWindow();
	const started = Date.now();
	const initial = opts.initial ?? 0;
	window.add(started, initial);
	let last = { done: initial, detail: undefined as string | undefined };
	const useBar =
		!opts.plain && Boolean(stream.isTTY) && process.env.TERM !== "dumb";

	if (useBar) {
		const multi = new cliProgress.MultiBar(
			{
				stream,
				hideCursor: true,
				gracefulExit: false,
				clearOnComplete: false,
				stopOnComplete: false,
				barsize: 24,
				barCompleteChar: "#",
				barIncompleteChar: "-",
				format: (_options, params, payload: { line: string }) => {
					const bar = opts.total
						? `[${"#".repeat(Math.round(params.progress * 24)).padEnd(24, "-")}] `
						: "";
					return `${indent}${bar}${payload.line}`;
				},
			},
			cliProgress.Presets.legacy,
		);
		const bar = multi.create(opts.total ?? 1, 0, {
			line: describeProgress(0, opts, 0),
		});
		return {
			update(done, detail) {
				last = { done, detail };
				window.add(Date.now(), done);
				bar.setTotal(Math.max(opts.total ?? 1, done));
				bar.update(done, {
					line: redact(
						describeProgress(done, opts, window.perSecond(), detail),
					),
				});
			},
			note(text) {
				multi.log(`${indent}${redact(text)}\n`);
			},
			stop() {
				bar.update(last.done, {
					line: redact(
						describeTotal(
							last.done - initial,
							opts.unit,
							Date.now() - started,
							last.detail,
						),
					),
				});
				multi.stop();
			},
		};
	}

	const interval =
		Number(process.env.RUNBOOK_PROGRESS_INTERVAL_MS) || opts.intervalMs || 5000;
	let printedAt = Date.now();
	let printedDone = -1;
	const line = (text: string) => stream.write(`${indent}${redact(text)}\n`);
	return {
		update(done, detail) {
			last = { done, detail };
			const now = Date.now();
			window.add(now, done);
			if (now - printedAt >= interval) {
				printedAt = now;
				printedDone = done;
				line(describeProgress(done, opts, window.perSecond(), detail));
			}
		},
		note(text) {
			line(text);
		},
		stop() {
			if (printedDone !== last.done || last.done === initial)
				line(
					describeTotal(
						last.done - initial,
						opts.unit,
						Date.now() - started,
						last.detail,
					),
				);
		},
	};
}
