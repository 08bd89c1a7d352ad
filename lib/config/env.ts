// The environment a run sees: the process environment over the values of .env (or --dotenv <path>),
// as dotenv does it. Nothing is written back to process.env; children get it explicitly.

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { parse } from "dotenv";
import { usageError } from "../kit/errors.ts";

export type Env = Record<string, string | undefined>;

export function loadEnvironment(
	envFile?: string,
	base: NodeJS.ProcessEnv = process.env,
): Env {
	const path = resolve(envFile ?? ".env");
	let text: string;
	try {
		text = readFileSync(path, "utf8");
	} catch (err) {
		const code = (err as NodeJS.ErrnoException).code;
		if (!envFile && code === "ENOENT") return { ...base };
		throw usageError(
			`Cannot read the environment file ${envFile ?? ".env"} (${code ?? "unreadable"}).`,
			"Check the path and its permissions.",
		);
	}
	return { ...parse(text), ...base };
}
