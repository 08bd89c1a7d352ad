// A table's rows as COPY text, streamed from a backup archive (pg_restore --data-only, every table
// in one pass) or from a live database (psql COPY ... TO STDOUT), one row at a time: enough to
// compare rows by primary key and to copy rows back without loading a table into memory. Both
// sides print values the way pg_dump does (DateStyle ISO, IntervalStyle postgres,
// extra_float_digits 3), so an unchanged row reads the same from either.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createInterface } from "node:readline";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { redact } from "../kit/secrets.ts";
import type { Tool } from "../pg/client-tools.ts";
import { quoteIdent } from "../pg/db.ts";
import { type Connection, libpqEnv } from "../pg/target.ts";

/** pg_dump's output settings (pg_dump.c setup_connection), so values print as in its archives. */
const DUMP_SETTINGS = [
	"SET datestyle = ISO",
	"SET intervalstyle = postgres",
	"SET extra_float_digits = 3",
	"SET row_security = off",
];

interface StreamOptions {
	env?: NodeJS.ProcessEnv;
	signal?: AbortSignal;
}

/** Handles one table's rows: its fields, still COPY-escaped (`\\N` is NULL). */
export type RowHandler = (fields: string[]) => void;

/**
 * Every table's data in a backup archive, in one pass (one pg_restore --data-only): onTable is told
 * each table with its columns (the archive's) and returns the handler for its rows, or null.
 */
export async function readArchive(
	pgRestore: Tool,
	archive: string,
	schemas: string[],
	onTable: (
		schema: string,
		table: string,
		columns: string[],
	) => RowHandler | null,
	opts: StreamOptions = {},
): Promise<void> {
	let handler: RowHandler | null = null;
	let inCopy = false;
	const args = [
		"--data-only",
		...schemas.flatMap((n) => ["-n", n]),
		"-f",
		"-",
		archive,
	];
	await streamLines(pgRestore, args, null, opts, (line) => {
		if (inCopy) {
			if (line === "\\.") inCopy = false;
			else handler?.(line.split("\t"));
		} else if (line.startsWith("COPY ")) {
			const { schema, table, columns } = parseCopyLine(line);
			handler = onTable(schema, table, columns);
			inCopy = true;
		}
	});
}

/**
 * Columns of several tables of a live database, row by row as COPY text printed as pg_dump prints,
 * through one psql session: onRow is told which table (its index in `tables`) each row is from.
 */
export async function readTables(
	psql: Tool,
	conn: Connection,
	tables: Array<{
		schema: string;
		table: string;
		columns: string[];
		/** A condition on the rows to read (SQL), all rows when absent. */
		where?: string;
	}>,
	onRow: (table: number, fields: string[]) => void,
	opts: StreamOptions = {},
): Promise<void> {
	// A line no COPY row can be (a row of these columns never holds this random text alone).
	const marker = `-- runbook table ${randomBytes(12).toString("hex")} `;
	const args = [
		"-X",
		"-q",
		"-v",
		"ON_ERROR_STOP=1",
		...DUMP_SETTINGS.flatMap((s) => ["-c", s]),
	];
	for (const [i, t] of tables.entries()) {
		const list = t.columns.map(quoteIdent).join(", ");
		args.push("-c", `\\echo '${marker}${i}'`);
		args.push(
			"-c",
			`COPY (SELECT ${list} FROM ${quoteIdent(t.schema)}.${quoteIdent(t.table)}${t.where ? ` WHERE ${t.where}` : ""}) TO STDOUT`,
		);
	}
	let current = -1;
	await streamLines(psql, args, conn, opts, (line) => {
		if (line.startsWith(marker)) current = Number(line.slice(marker.length));
		else onRow(current, line.split("\t"));
	});
}

/** Schema, table and columns of pg_dump's `COPY public."Name" (a, "B c") FROM stdin;` line. */
function parseCopyLine(line: string): {
	schema: string;
	table: string;
	columns: string[];
} {
	const open = line.indexOf(" (");
	const close = line.lastIndexOf(") FROM stdin;");
	const [schema, table] = splitIdentifiers(line.slice(5, open), ".");
	return {
		schema,
		table,
		columns: splitIdentifiers(line.slice(open + 2, close), ","),
	};
}

/** Identifiers separated by `sep`, each bare or double-quoted (with "" for a quote inside). */
function splitIdentifiers(text: string, sep: string): string[] {
	const out: string[] = [];
	let i = 0;
	for (;;) {
		while (text[i] === " ") i++;
		let name = "";
		if (text[i] === '"') {
			for (i++; i < text.length; i++) {
				if (text[i] !== '"') name += text[i];
				else if (text[i + 1] === '"') name += text[i++];
				else break;
			}
			i++;
		} else {
			while (i < text.length && text[i] !== sep) name += text[i++];
			name = name.trim();
		}
		out.push(name);
		const next = text.indexOf(sep, i);
		if (next === -1) return out;
		i = next + 1;
	}
}

const ESCAPES: Record<string, string> = {
	b: "\b",
	f: "\f",
	n: "\n",
	r: "\r",
	t: "\t",
	v: "\v",
};

/** A COPY text field as the value it stands for (null for `\N`): what the type's input reads. */
export function unescapeField(field: string): string | null {
	if (field === "\\N") return null;
	if (!field.includes("\\")) return field;
	return field.replace(
		/\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)/g,
		(_, e: string) => {
			if (e[0] === "x" && e.length > 1)
				return String.fromCharCode(Number.parseInt(e.slice(1), 16));
			if (/^[0-7]/.test(e)) return String.fromCharCode(Number.parseInt(e, 8));
			return ESCAPES[e] ?? e;
		},
	);
}

/** Runs a client tool and hands each line of its stdout to onLine; throws with its stderr on failure. */
function streamLines(
	tool: Tool,
	args: string[],
	conn: Connection | null,
	opts: StreamOptions,
	onLine: (line: string) => void,
): Promise<void> {
	const env: NodeJS.ProcessEnv = {
		...process.env,
		...(opts.env ?? {}),
		...(conn ? libpqEnv(conn, "runbook:rows") : {}),
	};
	return new Promise((resolve, reject) => {
		const child = spawn(tool.path, args, {
			env,
			signal: opts.signal,
			stdio: ["ignore", "pipe", "pipe"],
		});
		let stderr = "";
		child.stderr.on("data", (d) => {
			stderr = (stderr + d).slice(-4000);
		});
		const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
		let failure: Error | null = null;
		lines.on("line", (line) => {
			if (failure) return;
			try {
				onLine(line);
			} catch (err) {
				failure = err as Error;
				child.kill("SIGTERM");
			}
		});
		child.on("error", (err) => {
			failure ??= opts.signal?.aborted ? new Error("aborted") : err;
		});
		child.on("close", (code) => {
			if (failure) return reject(failure);
			if (opts.signal?.aborted) return reject(new Error("aborted"));
			if (code === 0) return resolve();
			const last = redact(stderr).trim().split("\n").slice(-2).join(" ");
			reject(
				new RunbookError(
					`${tool.name} failed (exit ${code}) reading rows: ${last || "no message"}`,
					EXIT.failed,
				),
			);
		});
	});
}
