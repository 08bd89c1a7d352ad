// What the operator sees. Human text goes to stdout, or to stderr under --json so that stdout holds
// one JSON object. Everything printed passes through redact(); NO_COLOR and non-TTYs get plain text.

import { redact } from "./secrets.ts";

let jsonMode = false;

export function setJsonMode(on: boolean): void {
	jsonMode = on;
}

const stream = () => (jsonMode ? process.stderr : process.stdout);

/** Where human text goes (stdout, or stderr under --json), e.g. for a view redrawn in place. */
export const humanStream = (): NodeJS.WriteStream => stream();

const useColor = () =>
	!process.env.NO_COLOR &&
	process.env.TERM !== "dumb" &&
	Boolean(stream().isTTY);

const paint = (code: number) => (text: string) =>
	useColor() ? `\x1b[${code}m${text}\x1b[0m` : text;

export const style = {
	bold: paint(1),
	dim: paint(2),
	red: paint(31),
	green: paint(32),
	yellow: paint(33),
	cyan: paint(36),
};

/** A line of human output. */
export function say(text = ""): void {
	stream().write(`${redact(text)}\n`);
}

export function warn(text: string): void {
	say(style.yellow(`! ${text}`));
}

/** Errors always go to stderr. */
export function sayError(text: string): void {
	process.stderr.write(`${redact(text)}\n`);
}

/** The single JSON document of a --json run. */
export function printJson(value: unknown): void {
	process.stdout.write(`${redact(JSON.stringify(value, null, 2))}\n`);
}

export function isInteractive(): boolean {
	return Boolean(process.stdin.isTTY);
}

/** Left-aligned columns, for reports read at 3 a.m. */
export function table(
	rows: Array<Record<string, unknown>>,
	columns?: string[],
): string {
	if (rows.length === 0) return "  (none)";
	const cols = columns ?? Object.keys(rows[0]);
	const cell = (v: unknown) => (v === null || v === undefined ? "" : String(v));
	const widths = cols.map((c) =>
		Math.max(c.length, ...rows.map((r) => cell(r[c]).length)),
	);
	const line = (values: string[]) =>
		`  ${values
			.map((v, i) => v.padEnd(widths[i]))
			.join("  ")
			.trimEnd()}`;
	return [
		line(cols),
		line(widths.map((w) => "-".repeat(w))),
		...rows.map((r) => line(cols.map((c) => cell(r[c])))),
	].join("\n");
}
