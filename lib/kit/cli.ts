// Invocation parsing and --help. Flags are declared once, with the descriptions --help prints;
// anything unknown, repeated or missing its value is a usage error (exit 2) before anything runs.

import { parseDuration } from "./duration.ts";
import { usageError } from "./errors.ts";
import { formatMs } from "./format.ts";

export interface FlagSpec {
	/** "duration": 500ms, 30s, 2min, 1h; parsed to milliseconds. */
	type: "boolean" | "string" | "number" | "duration";
	description: string;
	/** Placeholder shown in --help, e.g. "<name>". */
	value?: string;
	default?: string | number | boolean;
	short?: string;
	/** A string flag that may be given several times; the values are joined with commas. */
	repeatable?: boolean;
	/** A duration flag: what a bare number means (default seconds). */
	unit?: "s" | "ms";
	/**
	 * An old spelling kept working: its value is stored under the flag named here (giving both is
	 * a usage error). --help lists it apart, without a description of its own.
	 */
	replacedBy?: string;
}

export type FlagSpecs = Record<string, FlagSpec>;

export interface ArgSpec {
	name: string;
	description: string;
	choices?: readonly string[];
	required?: boolean;
}

export type FlagValues = Record<string, string | number | boolean | undefined>;

export interface Invocation {
	flags: FlagValues;
	args: string[];
}

/** Flags every runbook understands. */
export const COMMON_FLAGS: FlagSpecs = {
	help: {
		type: "boolean",
		short: "h",
		description: "Show this help and exit. Needs no database.",
	},
	"dry-run": {
		type: "boolean",
		description:
			"Print the plan (steps, exact commands and SQL) and change nothing.",
	},
	yes: {
		type: "boolean",
		short: "y",
		description: "Answer yes to every confirmation (for CI).",
	},
	confirm: {
		type: "string",
		value: "<database>",
		description:
			"With --yes, the target's database name: required for steps that destroy or overwrite data.",
	},
	json: {
		type: "boolean",
		description:
			"Print one JSON object on stdout at the end; human text goes to stderr.",
	},
	dotenv: {
		type: "string",
		value: "<path>",
		description: "Read the environment from this file instead of .env.",
	},
	// Node 20 reads --env-file as its own option even after the script's name (nodejs/node#54232):
	// with `npx tsx runbooks/<name>.ts --env-file <missing>` it exits 9 before the runbook starts.
	"env-file": {
		type: "string",
		value: "<path>",
		description: "",
		replacedBy: "dotenv",
	},
	"database-url": {
		type: "string",
		value: "<url>",
		description:
			"Override DATABASE_URL (prefer the environment: argv is visible to other users).",
	},
	verbose: {
		type: "boolean",
		description:
			"Show stack traces and the full output of child tools (also DEBUG=1).",
	},
};

/**
 * A duration flag and its old spelling, which carried its unit in its name (--sleep-ms,
 * --monitor-seconds): the old spelling still works, with bare numbers in that unit.
 */
export function renamedDuration(
	name: string,
	oldName: string,
	oldUnit: "s" | "ms",
	spec: Omit<FlagSpec, "type">,
): FlagSpecs {
	return {
		[name]: { ...spec, type: "duration" },
		[oldName]: {
			type: "duration",
			description: "",
			unit: oldUnit,
			replacedBy: name,
		},
	};
}

export function parseInvocation(
	argv: string[],
	specs: FlagSpecs,
	argSpecs: ArgSpec[] = [],
): Invocation {
	const byShort = new Map(
		Object.entries(specs)
			.filter(([, s]) => s.short)
			.map(([n, s]) => [s.short as string, n]),
	);
	const flags: FlagValues = {};
	const args: string[] = [];
	const seen = new Set<string>();
	for (let i = 0; i < argv.length; i++) {
		const token = argv[i];
		if (token === "--") {
			args.push(...argv.slice(i + 1));
			break;
		}
		let name: string | undefined;
		let inline: string | undefined;
		if (token.startsWith("--")) {
			const eq = token.indexOf("=");
			name = eq === -1 ? token.slice(2) : token.slice(2, eq);
			inline = eq === -1 ? undefined : token.slice(eq + 1);
		} else if (/^-[a-zA-Z]$/.test(token)) {
			name = byShort.get(token.slice(1));
			if (!name)
				throw usageError(
					`Unknown flag ${token}.`,
					"Run with --help to see the flags.",
				);
		} else {
			args.push(token);
			continue;
		}
		const spec = specs[name];
		if (!spec)
			throw usageError(
				`Unknown flag --${name}.`,
				"Run with --help to see the flags.",
			);
		if (seen.has(name) && !spec.repeatable)
			throw usageError(`The flag --${name} is given more than once.`);
		seen.add(name);
		if (spec.type === "boolean") {
			if (inline !== undefined && !["true", "false"].includes(inline)) {
				throw usageError(`The flag --${name} takes no value.`);
			}
			flags[name] = inline !== "false";
			continue;
		}
		let value = inline;
		if (value === undefined) {
			const next = argv[i + 1];
			if (next === undefined || (next.startsWith("--") && next.length > 2)) {
				throw usageError(
					`The flag --${name} needs a value${spec.value ? ` ${spec.value}` : ""}.`,
				);
			}
			value = next;
			i++;
		}
		if (value === "")
			throw usageError(`The flag --${name} needs a non-empty value.`);
		if (spec.type === "duration") {
			flags[name] = parseDuration(value, `--${name}`, spec.unit);
		} else if (spec.type === "number") {
			const n = Number(value);
			if (!Number.isFinite(n) || n < 0)
				throw usageError(
					`The flag --${name} needs a non-negative number, not "${value}".`,
				);
			flags[name] = n;
		} else {
			flags[name] =
				spec.repeatable && flags[name] !== undefined
					? `${flags[name]},${value}`
					: value;
		}
	}
	for (const [name, spec] of Object.entries(specs)) {
		if (!spec.replacedBy || flags[name] === undefined) continue;
		if (flags[spec.replacedBy] !== undefined)
			throw usageError(
				`--${name} is the old spelling of --${spec.replacedBy}: give one of them.`,
			);
		flags[spec.replacedBy] = flags[name];
		delete flags[name];
	}
	for (const [name, spec] of Object.entries(specs)) {
		if (flags[name] === undefined && spec.default !== undefined)
			flags[name] =
				spec.type === "duration"
					? parseDuration(
							spec.default as string | number,
							`--${name}`,
							spec.unit,
						)
					: spec.default;
	}
	argSpecs.forEach((a, i) => {
		const v = args[i];
		if (v === undefined) {
			// --help needs none of the arguments.
			if (a.required && !flags.help)
				throw usageError(
					`Missing <${a.name}>: ${a.description}.`,
					"Run with --help for an example.",
				);
			return;
		}
		if (a.choices && !a.choices.includes(v)) {
			throw usageError(
				`<${a.name}> must be one of ${a.choices.join(", ")}, not "${v}".`,
			);
		}
	});
	if (args.length > argSpecs.length) {
		throw usageError(
			`Unexpected argument "${args[argSpecs.length]}".`,
			"Run with --help to see the usage.",
		);
	}
	return { flags, args };
}

export interface HelpSpec {
	name: string;
	summary: string;
	description?: string;
	args?: ArgSpec[];
	flags: FlagSpecs;
	steps: string[];
	env: Record<string, string>;
	examples: string[];
}

export function renderHelp(h: HelpSpec): string {
	const argUsage = (h.args ?? [])
		.map((a) => (a.required ? `<${a.name}>` : `[${a.name}]`))
		.join(" ");
	const current = Object.entries(h.flags).filter(([, s]) => !s.replacedBy);
	const flagRows = current.map(([name, s]) => {
		const value = s.type === "duration" ? "<duration>" : s.value;
		const left = `${s.short ? `-${s.short}, ` : "    "}--${name}${value ? ` ${value}` : ""}`;
		const def =
			s.default === undefined || s.type === "boolean"
				? ""
				: s.type === "duration"
					? ` (default: ${formatMs(parseDuration(s.default as string | number, name, s.unit))})`
					: ` (default: ${s.default})`;
		return [left, `${s.description}${def}`];
	});
	const oldSpellings = Object.entries(h.flags)
		.filter(([, s]) => s.replacedBy)
		.map(([name, s]) => `--${name} (now --${s.replacedBy})`);
	const width = Math.max(...flagRows.map(([l]) => l.length));
	const envWidth = Math.max(0, ...Object.keys(h.env).map((k) => k.length));
	const lines = [
		`${h.name}: ${h.summary}`,
		"",
		"Usage:",
		`  npx tsx runbooks/${h.name}.ts ${argUsage ? `${argUsage} ` : ""}[flags]`,
	];
	if (h.description)
		lines.push(
			"",
			...h.description.split("\n").map((l) => (l ? `  ${l}` : "")),
		);
	if (h.args?.length) {
		lines.push("", "Arguments:");
		for (const a of h.args) {
			lines.push(
				`  ${a.name}  ${a.description}${a.choices ? ` (${a.choices.join(" | ")})` : ""}`,
			);
		}
	}
	lines.push("", "Steps:", ...h.steps.map((s, i) => `  ${i + 1}. ${s}`));
	lines.push(
		"",
		"Flags:",
		...flagRows.map(([l, r]) => `  ${l.padEnd(width)}  ${r}`),
	);
	if (
		current.some(([, s]) => s.type === "duration" || s.value === "<duration>")
	)
		lines.push(
			"",
			"  <duration>: 500ms, 30s, 2min or 1h; a bare number is seconds.",
		);
	if (oldSpellings.length)
		lines.push(`  Old spellings still accepted: ${oldSpellings.join(", ")}.`);
	lines.push(
		"",
		"Environment:",
		...Object.entries(h.env).map(([k, v]) => `  ${k.padEnd(envWidth)}  ${v}`),
	);
	lines.push(
		"",
		"Exit codes:",
		"  0 done/healthy   1 a step failed or a problem was found   2 bad usage or input",
		"  3 refused by a safety check   130 interrupted",
	);
	lines.push("", "Examples:", ...h.examples.map((e) => `  ${e}`));
	return lines.join("\n");
}
