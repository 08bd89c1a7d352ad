// PostgreSQL's client tools (pg_dump, pg_restore, psql): found once, version-checked against the
// server, and run with the password in the environment (PGPASSWORD), never on the argument list.

import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { EXIT, RunbookError, refusal } from "../kit/errors.ts";
import { redact } from "../kit/secrets.ts";
import { awaitRunInterrupt, toolShell } from "../kit/tool-shell.ts";
import { type Connection, libpqEnv } from "./target.ts";

const execFileAsync = promisify(execFile);

export type ToolName = "pg_dump" | "pg_restore" | "psql";

export interface Tool {
	name: ToolName;
	path: string;
	version: string;
	major: number;
}

/** Candidate paths: PG_BIN_DIR alone when set; else Debian's versioned dirs and PATH. */
function candidates(name: ToolName, env: NodeJS.ProcessEnv): string[] {
	if (env.PG_BIN_DIR) return [join(env.PG_BIN_DIR, name)];
	const found: string[] = [];
	const debian = "/usr/lib/postgresql";
	if (existsSync(debian)) {
		for (const v of readdirSync(debian))
			found.push(join(debian, v, "bin", name));
	}
	for (const dir of (env.PATH ?? "").split(delimiter))
		if (dir) found.push(join(dir, name));
	return [...new Set(found)].filter((p) => existsSync(p));
}

async function probe(name: ToolName, path: string): Promise<Tool | null> {
	try {
		const { stdout } = await execFileAsync(path, ["--version"], {
			timeout: 10_000,
		});
		const m = /(\d+)(?:\.(\d+))?/.exec(stdout.replace(/^[^)]*\)/, ""));
		if (!m) return null;
		return {
			name,
			path,
			version: stdout.trim().replace(/^[^)]*\)\s*/, ""),
			major: Number(m[1]),
		};
	} catch {
		return null;
	}
}

/**
 * The newest installed copy of a tool, refusing one older than the server: pg_dump cannot dump a
 * newer server, and pg_restore may not read its archives.
 */
export async function findTool(
	name: ToolName,
	serverMajor?: number,
	env: NodeJS.ProcessEnv = process.env,
): Promise<Tool> {
	const tools = (
		await Promise.all(candidates(name, env).map((p) => probe(name, p)))
	).filter((t): t is Tool => t !== null);
	if (tools.length === 0) {
		throw new RunbookError(
			`${name} was not found${env.PG_BIN_DIR ? ` in PG_BIN_DIR (${env.PG_BIN_DIR})` : " on PATH or in /usr/lib/postgresql"}.`,
			EXIT.failed,
			"Install the PostgreSQL client tools (Debian: apt-get install postgresql-client-15) or set PG_BIN_DIR.",
		);
	}
	tools.sort((a, b) => b.major - a.major);
	const best = tools[0];
	if (serverMajor !== undefined && best.major < serverMajor) {
		throw refusal(
			`${name} ${best.version} (${best.path}) is older than the server (PostgreSQL ${serverMajor}).`,
			`Install the PostgreSQL ${serverMajor} client tools (or newer) and set PG_BIN_DIR to their bin directory.`,
		);
	}
	return best;
}

export interface ToolRun {
	exitCode: number;
	/** The signal that ended it, if one did. */
	signal?: string | null;
	stdout: string;
	stderr: string;
}

/**
 * Runs a client tool against a connection (or none, e.g. `pg_restore --list file`). argv holds
 * only options and file names: host, user, database and password reach the tool through PG*
 * environment variables.
 */
export async function runTool(
	tool: Tool,
	args: string[],
	conn: Connection | null,
	opts: {
		signal?: AbortSignal;
		appName?: string;
		env?: NodeJS.ProcessEnv;
	} = {},
): Promise<ToolRun> {
	const env = {
		...(opts.env ?? process.env),
		...(conn ? libpqEnv(conn, opts.appName) : {}),
	};
	const $ = await toolShell({ env, signal: opts.signal });
	const run = await $`${tool.path} ${args}`;
	await awaitRunInterrupt(run, opts.signal);
	return {
		exitCode: run.exitCode ?? 1,
		signal: run.signal,
		stdout: run.stdout,
		stderr: redact(run.stderr),
	};
}

/** The command as it would be typed, for plans and logs: the connection shown as PG* variables, masked. */
export function describeCommand(
	tool: ToolName,
	args: string[],
	conn: Connection,
): string {
	const q = (a: string) =>
		/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
	return `PGHOST=${conn.host} PGPORT=${conn.port} PGUSER=${conn.user} PGDATABASE=${q(conn.database)}${
		conn.password ? " PGPASSWORD=****" : ""
	} ${tool} ${args.map(q).join(" ")}`;
}
