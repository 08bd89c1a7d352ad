// Copying one schema (the app's `public`, which holds `_prisma_migrations` too) from one server
// to another without owners or grants, in one of two ways:
//   jobs = 1: `pg_dump -Fc | pg_restore --single-transaction`, streamed: all or nothing.
//   jobs > 1: as pgcopydb does it: the schema's definitions from a small schema-only archive
//             (pg_restore --section=pre-data), then the tables' rows streamed by N parallel
//             `COPY ... TO STDOUT | COPY ... FROM STDIN` pipes (psql), all reading one exported
//             snapshot, biggest table first; each table's indexes and constraints are built (by N
//             more workers, pg_restore --use-list) as soon as its rows are in, while other tables
//             still stream; foreign keys last. No data archive on disk; not atomic (the runbook
//             records its runs so that a rerun clears a partial copy).
// Also: the schema's objects and what clears them, the extensions it uses and whether its objects
// name them by schema, and its sequences.

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { failureReason } from "../kit/child-failure.ts";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { redact } from "../kit/secrets.ts";
import { describeCommand, type Tool } from "../pg/client-tools.ts";
import { type Db, quoteIdent, quoteLiteral, withClient } from "../pg/db.ts";
import { type Connection, libpqEnv } from "../pg/target.ts";

export interface CopyPlan {
	schema: string;
	/** 1: one stream in a single transaction; more: N parallel table streams and index builds. */
	jobs: number;
	/** Where the schema-only archive goes (jobs > 1). */
	workDir: string;
	/** An exported snapshot of the source that every reader imports. */
	snapshot?: string;
	/** maintenance_work_mem of the target's sessions (index builds), e.g. "256MB". */
	maintenanceWorkMem?: string;
}

/**
 * Settings of every session writing to the target (PGOPTIONS): no wait for the WAL flush at each
 * commit (the copy is verified afterwards, and a crash leaves a run that a rerun clears), and more
 * memory for index builds, as pgcopydb does.
 */
export function targetOptions(plan: CopyPlan): string {
	return `-c synchronous_commit=off -c maintenance_work_mem=${plan.maintenanceWorkMem ?? "256MB"}`;
}

export interface CopyTools {
	pgDump: Tool;
	pgRestore: Tool;
	psql: Tool;
}

const APP = "runbook:migrate-to-supabase";

const dumpFlags = (schema: string) => [
	`--schema=${schema}`,
	"--no-owner",
	"--no-privileges",
	"--no-publications",
	"--no-subscriptions",
];

// pg_restore -n keeps the objects inside the schema and drops the schema's own entries
// (CREATE SCHEMA, its comment): the schema already exists on the target with the platform's grants.
// --dbname names the database only; host, user and password come from PG* variables.
const restoreFlags = (plan: CopyPlan, target: Connection) => [
	`--dbname=${target.database}`,
	`--schema=${plan.schema}`,
	"--no-owner",
	"--no-privileges",
	"--exit-on-error",
	"--verbose",
];

const snap = (plan: CopyPlan) =>
	plan.snapshot ? [`--snapshot=${plan.snapshot}`] : [];

/** jobs = 1: the streamed dump. */
export function dumpArgs(plan: CopyPlan): string[] {
	return ["--format=custom", ...dumpFlags(plan.schema), ...snap(plan)];
}

/** jobs = 1: the restore reading the stream. */
export function restoreArgs(plan: CopyPlan, target: Connection): string[] {
	return [...restoreFlags(plan, target), "--single-transaction"];
}

/** jobs > 1: the schema-only archive. */
export function schemaDumpArgs(plan: CopyPlan, archive: string): string[] {
	return [
		"--format=custom",
		"--schema-only",
		`--file=${archive}`,
		...dumpFlags(plan.schema),
		...snap(plan),
	];
}

export function sectionArgs(
	plan: CopyPlan,
	target: Connection,
	section: "pre-data" | "post-data",
	archive: string,
): string[] {
	return [
		...restoreFlags(plan, target),
		`--section=${section}`,
		...(section === "pre-data"
			? ["--single-transaction"]
			: [`--jobs=${plan.jobs}`]),
		archive,
	];
}

const table = (plan: CopyPlan, name: string) =>
	`${quoteIdent(plan.schema)}.${quoteIdent(name)}`;

/** psql quiet, without ~/.psqlrc, stopping at the first error. */
const PSQL_QUIET = ["-X", "-q", "-v", "ON_ERROR_STOP=1"];

/** jobs > 1: psql arguments of one table's stream, reading side and writing side. */
export function copyOutArgs(plan: CopyPlan, name: string): string[] {
	return [
		...PSQL_QUIET,
		"-c",
		"begin isolation level repeatable read read only",
		...(plan.snapshot
			? ["-c", `set transaction snapshot '${plan.snapshot}'`]
			: []),
		"-c",
		`copy ${table(plan, name)} to stdout`,
		"-c",
		"commit",
	];
}

export function copyInArgs(plan: CopyPlan, name: string): string[] {
	return [...PSQL_QUIET, "-c", `copy ${table(plan, name)} from stdin`];
}

/** The exact commands, as the operator would type them (passwords masked). */
export function describeCopy(
	plan: CopyPlan,
	source: Connection,
	target: Connection,
): string[] {
	// Commands on the target carry the session settings too.
	const onTarget = (tool: "pg_restore" | "psql", args: string[]) =>
		`PGOPTIONS='${targetOptions(plan)}' ${describeCommand(tool, args, target)}`;
	if (plan.jobs <= 1) {
		const dump = describeCommand("pg_dump", dumpArgs(plan), source);
		return [
			`${dump} \\\n  | ${onTarget("pg_restore", restoreArgs(plan, target))}`,
		];
	}
	const archive = "<work-dir>/schema.dump";
	const list = (name: string, jobs = 1) => [
		...restoreFlags(plan, target),
		`--use-list=<work-dir>/${name}.list`,
		...(jobs > 1 ? [`--jobs=${jobs}`] : []),
		archive,
	];
	return [
		describeCommand("pg_dump", schemaDumpArgs(plan, archive), source),
		onTarget("pg_restore", sectionArgs(plan, target, "pre-data", archive)),
		`for each table of ${plan.schema}, ${plan.jobs} at a time, biggest first:`,
		`  ${describeCommand("psql", copyOutArgs(plan, "<table>"), source)} \\\n    | ${onTarget("psql", copyInArgs(plan, "<table>"))}`,
		`as soon as a table's rows are in, ${plan.jobs} at a time, its indexes and constraints:`,
		`  ${onTarget("pg_restore", list("<table>"))}`,
		"then the foreign keys (and any other post-data entry):",
		onTarget("pg_restore", list("foreign-keys-and-rest", plan.jobs)),
	];
}

export interface CopyResult {
	durationMs: number;
	/** Bytes that went through the pipes. */
	bytes: number;
	tablesCopied: number;
}

export interface CopyOptions {
	signal?: AbortSignal;
	/** Progress lines: pg_restore's objects, each table's start and end. */
	onLine?: (l: string) => void;
	/** Bytes through the pipes so far. */
	onBytes?: (n: number) => void;
	/** Called once every row has been read from the source (it is free for other reads). */
	onSourceDone?: () => void;
}

interface Proc {
	code: number | null;
	signal: string | null;
	stderr: string;
}

function lines(onLine: (l: string) => void) {
	let partial = "";
	return {
		push(d: Buffer) {
			const parts = (partial + d.toString()).split("\n");
			partial = parts.pop() ?? "";
			for (const l of parts) onLine(l);
		},
		end() {
			if (partial) onLine(partial);
		},
	};
}

function start(
	tool: Tool,
	args: string[],
	conn: Connection | null,
	opts: {
		stdin?: "pipe" | "ignore";
		onLine?: (l: string) => void;
		/** PGOPTIONS for this session (see targetOptions). */
		pgOptions?: string;
	} = {},
): { child: ChildProcess; done: Promise<Proc> } {
	const child = spawn(tool.path, args, {
		env: {
			...process.env,
			...(conn ? libpqEnv(conn, APP) : {}),
			...(opts.pgOptions ? { PGOPTIONS: opts.pgOptions } : {}),
		},
		stdio: [opts.stdin ?? "ignore", "pipe", "pipe"],
	});
	let stderr = "";
	const out = lines((l) => {
		stderr += `${l}\n`;
		opts.onLine?.(redact(l));
	});
	child.stderr?.on("data", (d: Buffer) => out.push(d));
	const done = new Promise<Proc>((resolve) => {
		child.on("error", (err) => {
			stderr += `${err.message}\n`;
		});
		child.on("close", (code, signal) => {
			out.end();
			resolve({ code, signal, stderr: redact(stderr) });
		});
	});
	return { child, done };
}

/** The tool's own error lines (not its --verbose progress). */
function errorText(p: Proc): string {
	const errs = p.stderr
		.split("\n")
		.filter(
			(l) =>
				/error|fatal|could not|failed|denied/i.test(l) &&
				!/^pg_restore: (processing|creating|executing)/.test(l),
		);
	return failureReason(
		{ exitCode: p.code, signal: p.signal, stderr: p.stderr },
		errs.slice(0, 4).join(" "),
	);
}

/**
 * One producer piped into one consumer (pg_dump into pg_restore, or psql COPY out into psql COPY
 * in). If the consumer stops, the producer is stopped too rather than left blocked on a full pipe.
 * Throws a plain RunbookError naming the tool that failed first.
 */
async function pipe(
	out: { child: ChildProcess; done: Promise<Proc>; name: string },
	into: { child: ChildProcess; done: Promise<Proc>; name: string },
	opts: CopyOptions & {
		onProducerDone?: () => void;
		count?: (n: number) => void;
	},
): Promise<void> {
	into.child.stdin?.on("error", () => {});
	out.child.stdout?.on("data", (d: Buffer) => opts.count?.(d.length));
	out.child.stdout?.pipe(into.child.stdin as NodeJS.WritableStream);
	into.child.stdout?.resume();
	let producerStopped = false;
	into.done.then(() => {
		if (out.child.exitCode === null) {
			producerStopped = true;
			out.child.kill("SIGTERM");
		}
	});
	out.done.then((d) => {
		if (d.code === 0) opts.onProducerDone?.();
	});
	const onAbort = () => {
		out.child.kill("SIGINT");
		into.child.kill("SIGINT");
	};
	opts.signal?.addEventListener("abort", onAbort, { once: true });
	const [d, r] = await Promise.all([out.done, into.done]);
	opts.signal?.removeEventListener("abort", onAbort);
	if (opts.signal?.aborted)
		throw new RunbookError("Interrupted.", EXIT.interrupted);
	if (d.code !== 0 && !producerStopped)
		throw new RunbookError(`${out.name} failed: ${errorText(d)}`);
	if (r.code !== 0)
		throw new RunbookError(`${into.name} failed: ${errorText(r)}`);
	if (d.code !== 0)
		throw new RunbookError(`${out.name} failed: ${errorText(d)}`);
}

/** Runs one tool to its end; returns its standard output. */
async function run(
	tool: Tool,
	args: string[],
	conn: Connection | null,
	opts: CopyOptions,
	pgOptions?: string,
): Promise<string> {
	const p = start(tool, args, conn, { onLine: opts.onLine, pgOptions });
	let stdout = "";
	p.child.stdout?.on("data", (d: Buffer) => {
		stdout += d;
	});
	const onAbort = () => p.child.kill("SIGINT");
	opts.signal?.addEventListener("abort", onAbort, { once: true });
	const r = await p.done;
	opts.signal?.removeEventListener("abort", onAbort);
	if (opts.signal?.aborted)
		throw new RunbookError("Interrupted.", EXIT.interrupted);
	if (r.code !== 0)
		throw new RunbookError(`${tool.name} failed: ${errorText(r)}`);
	return stdout;
}

/** Copies the schema with plan.jobs streams (see the top of this file). */
export async function copySchema(
	plan: CopyPlan,
	source: Connection,
	target: Connection,
	tools: CopyTools,
	opts: CopyOptions = {},
): Promise<CopyResult> {
	const started = performance.now();
	let bytes = 0;
	const count = (n: number) => {
		bytes += n;
		opts.onBytes?.(bytes);
	};
	let tablesCopied = 0;
	if (plan.jobs <= 1) {
		const onLine = (l: string) => {
			if (/processing data for table/.test(l)) tablesCopied++;
			opts.onLine?.(l);
		};
		await pipe(
			{ ...start(tools.pgDump, dumpArgs(plan), source), name: "pg_dump" },
			{
				...start(tools.pgRestore, restoreArgs(plan, target), target, {
					pgOptions: targetOptions(plan),
					stdin: "pipe",
					onLine,
				}),
				name: "pg_restore (its transaction was rolled back)",
			},
			{ ...opts, count, onProducerDone: opts.onSourceDone },
		);
		return {
			durationMs: Math.round(performance.now() - started),
			bytes,
			tablesCopied,
		};
	}
	const dir = mkdtempSync(join(plan.workDir, "migrate-to-supabase-"));
	const archive = join(dir, "schema.dump");
	try {
		await run(tools.pgDump, schemaDumpArgs(plan, archive), source, opts);
		await run(
			tools.pgRestore,
			sectionArgs(plan, target, "pre-data", archive),
			target,
			opts,
			targetOptions(plan),
		);
		// Biggest tables first, so that the last stream to finish is a small one; and which table
		// each index and (non-foreign-key) constraint of the archive belongs to, by its source oid.
		const { tables, owner } = await withClient(
			source,
			async (db) => {
				const t = await db.query<{ t: string }>(
					`select c.relname as t from pg_class c join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1 and c.relkind = 'r' order by pg_total_relation_size(c.oid) desc, 1`,
					[plan.schema],
				);
				const o = await db.query<{ k: string; t: string }>(
					`select 'pg_class'::regclass::oid || ' ' || i.indexrelid as k, c.relname as t
             from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1
           union all
           select 'pg_constraint'::regclass::oid || ' ' || k.oid, c.relname
             from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1 and k.contype <> 'f'`,
					[plan.schema],
				);
				return {
					tables: t.rows.map((r) => r.t),
					owner: new Map(o.rows.map((r) => [r.k, r.t])),
				};
			},
			APP,
		);
		// The post-data entries (indexes, constraints, foreign keys, triggers), split into each
		// table's own, built as soon as that table's rows are in, and the rest (foreign keys, which
		// need two tables), built at the end.
		const listed = await run(
			tools.pgRestore,
			["--list", "--section=post-data", archive],
			null,
			opts,
		);
		const perTable = new Map<string, string[]>();
		const rest: string[] = [];
		for (const line of listed.split("\n")) {
			const m = /^\d+; (\d+) (\d+) /.exec(line);
			if (!m) continue;
			const t = owner.get(`${m[1]} ${m[2]}`);
			if (t) perTable.set(t, [...(perTable.get(t) ?? []), line]);
			else rest.push(line);
		}
		const restoreList = async (name: string, lines: string[], jobs = 1) => {
			const file = join(dir, `${name.replace(/[^\w.-]/g, "_")}.list`);
			writeFileSync(file, `${lines.join("\n")}\n`);
			await run(
				tools.pgRestore,
				[
					...restoreFlags(plan, target),
					`--use-list=${file}`,
					...(jobs > 1 ? [`--jobs=${jobs}`] : []),
					archive,
				],
				target,
				opts,
				targetOptions(plan),
			);
		};
		// Two pools, as pgcopydb has: `jobs` table streams, and `jobs` index builders fed by them.
		const built: string[] = [];
		let copying = true;
		let failed = false;
		const waiters: Array<() => void> = [];
		const wakeAll = () => {
			for (const w of waiters.splice(0)) w();
		};
		const ready = (t: string) => {
			built.push(t);
			waiters.shift()?.();
		};
		let next = 0;
		const copier = async () => {
			while (next < tables.length) {
				if (opts.signal?.aborted || failed) return;
				const name = tables[next++];
				const t0 = performance.now();
				opts.onLine?.(`copying data for table "${plan.schema}.${name}"`);
				await pipe(
					{
						...start(tools.psql, copyOutArgs(plan, name), source),
						name: `psql COPY ${name} TO STDOUT`,
					},
					{
						...start(tools.psql, copyInArgs(plan, name), target, {
							pgOptions: targetOptions(plan),
							stdin: "pipe",
						}),
						name: `psql COPY ${name} FROM STDIN`,
					},
					{ ...opts, count },
				);
				tablesCopied++;
				opts.onLine?.(
					`copied data for table "${plan.schema}.${name}" in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
				);
				ready(name);
			}
		};
		const builder = async () => {
			for (;;) {
				if (failed || opts.signal?.aborted) return;
				const t = built.shift();
				if (t === undefined) {
					if (!copying) return;
					await new Promise<void>((r) => {
						waiters.push(r);
					});
					continue;
				}
				const lines = perTable.get(t);
				if (!lines?.length) continue;
				const t0 = performance.now();
				await restoreList(t, lines);
				opts.onLine?.(
					`built ${lines.length} index(es) and constraint(s) of "${plan.schema}.${t}" in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
				);
			}
		};
		const stopOnFailure = (err: unknown) => {
			failed = true;
			wakeAll();
			throw err;
		};
		const builders = Promise.all(
			Array.from({ length: plan.jobs }, () => builder().catch(stopOnFailure)),
		);
		builders.catch(() => {});
		try {
			await Promise.all(
				Array.from({ length: Math.min(plan.jobs, tables.length) }, () =>
					copier().catch(stopOnFailure),
				),
			);
		} finally {
			copying = false;
			// Waiting builders finish the queue, then stop.
			wakeAll();
		}
		if (opts.signal?.aborted)
			throw new RunbookError("Interrupted.", EXIT.interrupted);
		opts.onSourceDone?.();
		await builders;
		if (rest.length) {
			const t0 = performance.now();
			await restoreList("foreign-keys-and-rest", rest, plan.jobs);
			opts.onLine?.(
				`built ${rest.length} foreign key(s) and other entries in ${((performance.now() - t0) / 1000).toFixed(1)}s`,
			);
		}
		return {
			durationMs: Math.round(performance.now() - started),
			bytes,
			tablesCopied,
		};
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

export interface SchemaObject {
	kind:
		| "table"
		| "view"
		| "materialized view"
		| "sequence"
		| "foreign table"
		| "type"
		| "domain"
		| "function"
		| "procedure"
		| "aggregate";
	name: string;
	/** The statement that drops it. */
	drop: string;
}

/** Objects in the schema that no extension owns: what a copy puts there, and what a restart removes. */
export async function schemaObjects(
	db: Db,
	schema = "public",
): Promise<SchemaObject[]> {
	const notExt = (cls: string, col: string) =>
		`not exists (select 1 from pg_depend d where d.classid = '${cls}'::regclass and d.objid = ${col} and d.deptype = 'e')`;
	const rel = await db.query<{ name: string; kind: string }>(
		`select c.relname as name, c.relkind::text as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f') and not c.relispartition
        and ${notExt("pg_class", "c.oid")}
        and not (c.relkind = 'S' and exists (select 1 from pg_depend d where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype in ('a', 'i')))
      order by 2, 1`,
		[schema],
	);
	const types = await db.query<{ name: string; kind: string }>(
		`select t.typname as name, t.typtype::text as kind from pg_type t join pg_namespace n on n.oid = t.typnamespace
      where n.nspname = $1 and t.typtype in ('e', 'd', 'r', 'm', 'c') and t.typelem = 0
        and (t.typrelid = 0 or (select relkind from pg_class where oid = t.typrelid) = 'c')
        and ${notExt("pg_type", "t.oid")}
      order by 1`,
		[schema],
	);
	const procs = await db.query<{ name: string; args: string; kind: string }>(
		`select p.proname as name, pg_get_function_identity_arguments(p.oid) as args, p.prokind::text as kind
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = $1 and ${notExt("pg_proc", "p.oid")}
      order by 1, 2`,
		[schema],
	);
	const q = (n: string) => `${quoteIdent(schema)}.${quoteIdent(n)}`;
	const relKind: Record<string, [SchemaObject["kind"], string]> = {
		r: ["table", "table"],
		p: ["table", "table"],
		v: ["view", "view"],
		m: ["materialized view", "materialized view"],
		S: ["sequence", "sequence"],
		f: ["foreign table", "foreign table"],
	};
	const out: SchemaObject[] = [];
	for (const r of rel.rows) {
		const [kind, sql] = relKind[r.kind];
		out.push({
			kind,
			name: r.name,
			drop: `drop ${sql} if exists ${q(r.name)} cascade;`,
		});
	}
	for (const t of types.rows) {
		const kind = t.kind === "d" ? "domain" : "type";
		out.push({
			kind,
			name: t.name,
			drop: `drop ${kind} if exists ${q(t.name)} cascade;`,
		});
	}
	for (const p of procs.rows) {
		const kind =
			p.kind === "p" ? "procedure" : p.kind === "a" ? "aggregate" : "function";
		out.push({
			kind,
			name: `${p.name}(${p.args})`,
			drop: `drop ${kind} if exists ${q(p.name)}(${p.args}) cascade;`,
		});
	}
	return out;
}

/** Drops the objects in one transaction (tables first; cascades take their indexes and sequences). */
export async function dropObjects(
	db: Db,
	objects: SchemaObject[],
): Promise<void> {
	const order = [
		"view",
		"materialized view",
		"foreign table",
		"table",
		"sequence",
		"function",
		"procedure",
		"aggregate",
		"type",
		"domain",
	];
	const sorted = [...objects].sort(
		(a, b) => order.indexOf(a.kind) - order.indexOf(b.kind),
	);
	await db.query("begin");
	try {
		await db.query("set local lock_timeout = '10s'");
		for (const o of sorted) await db.query(o.drop);
		await db.query("commit");
	} catch (err) {
		await db.query("rollback").catch(() => {});
		throw err;
	}
}

export interface ExtensionUse {
	name: string;
	schema: string;
	version: string;
	/** Objects of the copied schema that use the extension's objects (by schema-qualified name in a dump). */
	dependents: string[];
}

/** The source's extensions (plpgsql aside) and which objects of `schema` depend on each. */
export async function extensionsUsed(
	db: Db,
	schema = "public",
): Promise<ExtensionUse[]> {
	const { rows } = await db.query<{
		name: string;
		schema: string;
		version: string;
	}>(
		`select e.extname as name, n.nspname as schema, e.extversion as version
       from pg_extension e join pg_namespace n on n.oid = e.extnamespace
      where e.extname <> 'plpgsql' order by 1`,
	);
	const deps = await db.query<{ ext: string; dependent: string }>(
		`select distinct e.extname as ext, pg_describe_object(d.classid, d.objid, d.objsubid) as dependent
       from pg_depend d
       join pg_depend m on m.classid = d.refclassid and m.objid = d.refobjid and m.deptype = 'e'
       join pg_extension e on e.oid = m.refobjid
      where d.deptype = 'n'
        and not exists (select 1 from pg_depend x where x.classid = d.classid and x.objid = d.objid and x.deptype = 'e')
        and coalesce((pg_identify_object(d.classid, d.objid, d.objsubid)).schema,
                     split_part((pg_identify_object(d.classid, d.objid, d.objsubid)).identity, '.', 1)) = $1
      order by 1, 2`,
		[schema],
	);
	return rows.map((r) => ({
		...r,
		dependents: deps.rows
			.filter((d) => d.ext === r.name)
			.map((d) => d.dependent),
	}));
}

export function createExtensionSql(name: string, schema: string): string {
	return `create extension if not exists ${quoteIdent(name)} with schema ${quoteIdent(schema)};`;
}

export interface SequenceReset {
	sequence: string;
	column: string | null;
	before: string | null;
	after: string;
}

/**
 * Sets each sequence of the schema past the values in use: the larger of the value the source had
 * and the largest value in the column that owns it, so new rows never reuse an id.
 */
export async function resetSequences(
	target: Db,
	sourceValues: Record<string, { last: string | null; called: boolean }>,
	schema = "public",
): Promise<SequenceReset[]> {
	const { rows } = await target.query<{
		seq: string;
		tbl: string | null;
		col: string | null;
		last: string | null;
	}>(
		`select s.relname as seq, t.relname as tbl, a.attname as col, ps.last_value::text as last
       from pg_class s join pg_namespace n on n.oid = s.relnamespace
       join pg_sequences ps on ps.schemaname = n.nspname and ps.sequencename = s.relname
       left join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = s.oid and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')
       left join pg_class t on t.oid = d.refobjid
       left join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
      where n.nspname = $1 and s.relkind = 'S' order by 1`,
		[schema],
	);
	const out: SequenceReset[] = [];
	for (const r of rows) {
		const seq = `${quoteIdent(schema)}.${quoteIdent(r.seq)}`;
		const src = sourceValues[r.seq];
		const maxSql =
			r.tbl && r.col
				? `(select max(${quoteIdent(r.col)})::bigint from ${quoteIdent(schema)}.${quoteIdent(r.tbl)})`
				: "null::bigint";
		const srcSql =
			src?.last && src.called ? `${src.last}::bigint` : "null::bigint";
		const { rows: set } = await target.query<{ v: string | null }>(
			`select case when greatest(${maxSql}, ${srcSql}) is null then null
                   else setval(${quoteLiteral(seq)}, greatest(${maxSql}, ${srcSql}), true)::text end as v`,
		);
		out.push({
			sequence: r.seq,
			column: r.tbl && r.col ? `${r.tbl}.${r.col}` : null,
			before: r.last,
			after: set[0].v ?? "(unused: left at its start value)",
		});
	}
	return out;
}

/** Last values of the schema's sequences (pg_sequences), e.g. on the source. */
export async function sequenceValues(
	db: pg.Client,
	schema = "public",
): Promise<Record<string, { last: string | null; called: boolean }>> {
	const { rows } = await db.query<{ name: string; last: string | null }>(
		"select sequencename as name, last_value::text as last from pg_sequences where schemaname = $1",
		[schema],
	);
	return Object.fromEntries(
		rows.map((r) => [r.name, { last: r.last, called: r.last !== null }]),
	);
}
