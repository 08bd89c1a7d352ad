// What a test file needs: its own database on the shared server, the runbooks run as child
// processes the way a user runs them, and the real Prisma CLI to migrate fixtures.

import { type ChildProcess, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { afterAll, beforeAll, inject } from "vitest";
import {
	copyCheckout,
	prismaCli,
	ROOT,
	tsxCli,
	withClient,
} from "./field-checkout.ts";
import { seedFaceSwap } from "./fixtures.ts";
import { BUNDLE_DIR, runbookBundle } from "./runbook-bundle.ts";

export { ROOT };

export function adminUrl(): string {
	return inject("adminUrl");
}

export function urlFor(database: string, base = adminUrl()): string {
	const u = new URL(base);
	u.pathname = `/${database}`;
	return u.toString();
}

export async function admin<T>(
	fn: (db: pg.Client) => Promise<T>,
	url = adminUrl(),
): Promise<T> {
	return withClient(url, fn);
}

/** A new, empty database for one test file (or one test); returns its connection string. */
export async function createDatabase(prefix: string): Promise<string> {
	const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
	await admin((db) => db.query(`create database "${name}"`));
	return urlFor(name);
}

/** The database name a connection string names. */
export const dbName = (url: string): string => new URL(url).pathname.slice(1);

/**
 * A new database migrated to the repository's schema (prisma migrate deploy) and seeded with Face
 * Swap data. Each size is migrated and seeded once per test server, into a template named by a
 * hash of the migrations and the fixtures; every test file then gets a copy (CREATE DATABASE …
 * TEMPLATE, a file copy: far faster than a Prisma process per file).
 */
export async function createSeededDatabase(
	prefix: string,
	users: number,
): Promise<string> {
	const template = await seededTemplate(users);
	const name = `${prefix.replace(/[^a-z0-9_]/gi, "_").toLowerCase()}_${randomBytes(4).toString("hex")}`;
	await admin(async (db) => {
		// Copies of one template wait for each other and for its build (the source must be idle).
		await db.query("select pg_advisory_lock(hashtext($1))", [template]);
		try {
			await db.query(`create database "${name}" template "${template}"`);
		} finally {
			await db.query("select pg_advisory_unlock(hashtext($1))", [template]);
		}
	});
	return urlFor(name);
}

const seedInputs = () => {
	const hash = createHash("sha256");
	const dir = join(ROOT, "prisma", "migrations");
	for (const m of readdirSync(dir).sort())
		if (existsSync(join(dir, m, "migration.sql")))
			hash.update(m).update(readFileSync(join(dir, m, "migration.sql")));
	hash.update(readFileSync(join(ROOT, "test", "support", "fixtures.ts")));
	return hash.digest("hex").slice(0, 10);
};

/** The template database of `users` seeded users, built under an advisory lock if missing. */
async function seededTemplate(users: number): Promise<string> {
	const template = `seeded_tpl_${users}_${seedInputs()}`;
	await admin(async (db) => {
		await db.query("select pg_advisory_lock(hashtext($1))", [template]);
		try {
			const found = await db.query(
				"select 1 from pg_database where datname = $1",
				[template],
			);
			if (found.rowCount) return;
			// Built under another name and renamed when whole: a killed build is never used.
			const building = `${template}_building`;
			await db.query(`drop database if exists "${building}" with (force)`);
			await db.query(`create database "${building}"`);
			const url = urlFor(building);
			const migrated = await runPrismaCli(["migrate", "deploy"], url);
			if (migrated.code !== 0)
				throw new Error(`prisma migrate deploy failed:\n${migrated.stderr}`);
			await seedFaceSwap(url, { users });
			await db.query(`alter database "${building}" rename to "${template}"`);
		} finally {
			await db.query("select pg_advisory_unlock(hashtext($1))", [template]);
		}
	});
	return template;
}

export async function dropDatabase(url: string): Promise<void> {
	await admin((db) =>
		db.query(`drop database if exists "${dbName(url)}" with (force)`),
	);
}

export interface RunResult {
	code: number | null;
	stdout: string;
	stderr: string;
	/** Every child process's argv seen while the runbook ran (from /proc). */
	childArgv: string[];
}

export interface RunOptions {
	env?: Record<string, string | undefined>;
	/** Run the runbook of another checkout (see copyRepository). */
	root?: string;
	/** A runbook file outside runbooks/ (e.g. docs/examples/row-counts.ts), from the root. */
	file?: string;
	cwd?: string;
	/** Run runbooks/<name>.ts itself (its shebang), as an operator may, instead of through tsx's cli. */
	asExecutable?: boolean;
	input?: string;
	/** Samples /proc for descendants' command lines while running. */
	watchChildren?: boolean;
	/** Called with the child process once started (e.g. to signal or kill it mid-run). */
	onSpawn?: (child: ChildProcess) => void;
	/**
	 * Sends a signal to the runbook's whole process group (as Ctrl-C or `kill -9` from a
	 * terminal would) the first time its output matches the pattern. to: "runbook" sends it to the
	 * runbook's own node process only (as `kill -INT <pid>`): tsx's launcher, which relays a
	 * terminal's Ctrl-C and turns it into SIGKILL when the runbook does not acknowledge it within
	 * 60 ms (a loaded machine), then has nothing to relay, so a test of the runbook's own clean
	 * stop does not depend on the load.
	 */
	signalOn?: {
		pattern: RegExp;
		signal: NodeJS.Signals;
		delayMs?: number;
		to?: "group" | "runbook";
	};
	/** Calls `run` (e.g. pg_terminate_backend) the first time the output matches the pattern. */
	onMatch?: {
		pattern: RegExp;
		delayMs?: number;
		run: (pid: number) => unknown;
	};
}

/**
 * A copy of the repository (without node_modules, which is linked) for tests that let a runbook
 * change prisma/ or .env as it would in a real checkout.
 */
export function copyRepository(): string {
	return copyCheckout("runbook-repo-");
}

/** A scratch directory for audit logs and the like, so tests never touch the repository's. */
export function scratchDir(): string {
	return mkdtempSync(join(tmpdir(), "runbook-test-"));
}

/**
 * The database a test file works on: made by `make` before the file's tests, dropped after them,
 * with one scratch audit log; env() is what a run on it needs, sql() queries it as the admin.
 */
export function fileDatabase(make: () => Promise<string>) {
	const file = {
		url: "",
		audit: "",
		env: (extra: Record<string, string> = {}) => ({
			DATABASE_URL: file.url,
			RUNBOOK_AUDIT_LOG: file.audit,
			...extra,
		}),
		sql: (text: string, values: unknown[] = []) =>
			admin((db) => db.query(text, values), file.url),
	};
	beforeAll(async () => {
		file.url = await make();
		file.audit = join(scratchDir(), "audit.jsonl");
	});
	afterAll(() => dropDatabase(file.url));
	return file;
}

function baseEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
	const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1", ...extra };
	for (const k of ["DATABASE_URL", "DIRECT_URL", "RUNBOOK_ENV"])
		if (!(k in extra)) delete env[k];
	for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
	return env;
}

export function runRunbook(
	name: string,
	args: string[],
	opts: RunOptions = {},
): Promise<RunResult> {
	const root = opts.root ?? ROOT;
	const file = join(root, opts.file ?? join("runbooks", `${name}.ts`));
	const cwd = opts.cwd ?? root;
	const bundle =
		opts.asExecutable || opts.file ? null : runbookBundle(root, name);
	const [command, argv] = opts.asExecutable
		? // As the operator types it from the checkout's root: ./runbooks/<name>.ts
			[cwd === root ? `./runbooks/${name}.ts` : file, args]
		: // "--", as in the runbooks' shebang: Node 20 would otherwise take the runbook's own
			// --env-file flag as its own (nodejs/node#54232).
			[
				process.execPath,
				bundle ? ["--", bundle, ...args] : [tsxCli, "--", file, ...args],
			];
	return runCommand(command, argv, {
		...opts,
		cwd,
		watchChildren: true,
	}).then((result) => {
		assertNoSecrets(name, result, opts);
		return result;
	});
}

/**
 * Every runbook run in the suite is scanned: the test server's password and every connection
 * string the test passed in the environment must appear nowhere in stdout, stderr, the audit
 * log, the manifests in BACKUP_DIR, or the argv of any process the runbook started.
 */
function assertNoSecrets(
	name: string,
	result: RunResult,
	opts: RunOptions,
): void {
	const secrets = new Set<string>();
	const addUrl = (value: string | undefined) => {
		if (!value || !/^postgres(ql)?:\/\//.test(value)) return;
		try {
			const u = new URL(value);
			if (u.password.length >= 6) {
				secrets.add(value);
				secrets.add(decodeURIComponent(u.password));
			}
		} catch {
			// not a URL: nothing to look for
		}
	};
	try {
		addUrl(adminUrl());
	} catch {
		// outside vitest (the demo): only the URLs given below
	}
	for (const v of Object.values(opts.env ?? {})) addUrl(v);
	const sources: Array<[string, string]> = [
		["stdout", result.stdout],
		["stderr", result.stderr],
		// The runbook's own command line is the operator's choice; its children's are the runbook's.
		...result.childArgv
			.filter((a) => !a.includes(`/runbooks/${name}.ts`))
			.map((a): [string, string] => [`a child's argv (${a.slice(0, 60)}…)`, a]),
	];
	const audit = opts.env?.RUNBOOK_AUDIT_LOG;
	if (audit && existsSync(audit))
		sources.push(["the audit log", readFileSync(audit, "utf8")]);
	const backups = opts.env?.BACKUP_DIR;
	if (backups && existsSync(backups)) {
		for (const f of readdirSync(backups).filter((f) => f.endsWith(".json"))) {
			sources.push([
				`backup manifest ${f}`,
				readFileSync(join(backups, f), "utf8"),
			]);
		}
	}
	for (const secret of secrets) {
		for (const [where, text] of sources) {
			if (text.includes(secret)) {
				throw new Error(
					`secret scan: runbooks/${name}.ts leaked a password or connection string into ${where}`,
				);
			}
		}
	}
}

/** The real Prisma CLI with the project's config, for fixtures (e.g. migrate deploy). */
export function runPrismaCli(
	args: string[],
	databaseUrl: string,
	/** e.g. PRISMA_MIGRATIONS_DIR for a temporary migrations folder. */
	extraEnv: Record<string, string> = {},
): Promise<RunResult> {
	return runCommand(
		process.execPath,
		[prismaCli, ...args, "--config", join(ROOT, "prisma", "prisma.config.ts")],
		{
			env: {
				...extraEnv,
				DATABASE_URL: databaseUrl,
				DIRECT_URL: databaseUrl,
				PRISMA_HIDE_UPDATE_MESSAGE: "1",
				CHECKPOINT_DISABLE: "1",
			},
		},
	);
}

function runCommand(
	command: string,
	argv: string[],
	opts: RunOptions,
): Promise<RunResult> {
	return new Promise((resolve, reject) => {
		const child = spawn(command, argv, {
			cwd: opts.cwd ?? ROOT,
			env: baseEnv(opts.env ?? {}),
			stdio: ["pipe", "pipe", "pipe"],
			// Its own process group, so a signal reaches tsx's child too, as from a terminal.
			detached: true,
		});
		opts.onSpawn?.(child);
		let stdout = "";
		let stderr = "";
		let signalled = false;
		let matched = false;
		const childArgv = new Set<string>();
		const watch = () => {
			const m = opts.onMatch;
			if (m && !matched && m.pattern.test(stdout + stderr)) {
				matched = true;
				setTimeout(async () => {
					try {
						if (child.pid && child.exitCode === null) await m.run(child.pid);
					} catch (err) {
						stderr += `\n[test harness] onMatch failed: ${String(err)}\n`;
					}
				}, m.delayMs ?? 0);
			}
			const on = opts.signalOn;
			if (!on || signalled || !on.pattern.test(stdout + stderr)) return;
			signalled = true;
			setTimeout(() => {
				try {
					if (!child.pid) return;
					const own = on.to === "runbook" ? runbookPid(child.pid) : undefined;
					process.kill(own ?? -child.pid, on.signal);
				} catch {
					// already gone
				}
			}, on.delayMs ?? 0);
		};
		child.stdout.on("data", (d) => {
			stdout += d;
			watch();
		});
		child.stderr.on("data", (d) => {
			stderr += d;
			watch();
		});
		const unwatch =
			opts.watchChildren && child.pid
				? watchDescendants(child.pid, childArgv)
				: undefined;
		child.stdin.end(opts.input ?? "");
		child.on("error", reject);
		child.on("close", (code) => {
			unwatch?.();
			resolve({ code, stdout, stderr, childArgv: [...childArgv] });
		});
	});
}

/**
 * The runs whose descendants' command lines are being collected. One timer samples them all: a
 * listing of /proc per tick, then the command lines of the watched runs' descendants only (a scan
 * per run of every process's stat and command line cost a quarter of a core each, every 20 ms).
 */
const watched = new Map<number, Set<string>>();
let sampler: NodeJS.Timeout | undefined;

function watchDescendants(rootPid: number, into: Set<string>): () => void {
	watched.set(rootPid, into);
	sampler ??= setInterval(() => {
		const parents = processParents();
		for (const [root, seen] of watched)
			for (const cmd of commandLines(below(root, parents)).values())
				seen.add(cmd);
	}, 20);
	return () => {
		watched.delete(rootPid);
		if (watched.size === 0) {
			clearInterval(sampler);
			sampler = undefined;
			parentOf.clear(); // unsampled, a pid may be reused meanwhile
		}
	};
}

/** The processes below `rootPid`, each with its command line. */
export function descendants(rootPid: number): Map<number, string> {
	if (!sampler) parentOf.clear();
	return commandLines(below(rootPid, processParents()));
}

/**
 * Every process's parent, from /proc/<pid>/stat, read once per process: a parent never changes but
 * to init when it dies, and a process reparented so is still counted as its old parent's.
 */
const parentOf = new Map<number, number>();
function processParents(): Map<number, number> {
	const alive = new Set<number>();
	for (const entry of readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		const pid = Number(entry);
		alive.add(pid);
		if (parentOf.has(pid)) continue;
		try {
			const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
			parentOf.set(
				pid,
				Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]),
			);
		} catch {
			// the process ended between listing and reading
		}
	}
	for (const pid of parentOf.keys()) if (!alive.has(pid)) parentOf.delete(pid);
	return parentOf;
}

function below(rootPid: number, parents: Map<number, number>): number[] {
	const pids: number[] = [];
	for (const pid of parents.keys()) {
		let p = parents.get(pid);
		while (p && p !== rootPid && p > 1) p = parents.get(p);
		if (p === rootPid) pids.push(pid);
	}
	return pids;
}

function commandLines(pids: number[]): Map<number, string> {
	const cmds = new Map<number, string>();
	for (const pid of pids) {
		try {
			const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8")
				.split("\0")
				.join(" ")
				.trim();
			if (cmd) cmds.set(pid, cmd);
		} catch {
			// gone meanwhile
		}
	}
	return cmds;
}

/** The pid of the runbook's own node process: the child tsx's launcher started. */
export function runbookPid(launcher: number): number | undefined {
	if (isRunbookItself(launcher)) return launcher;
	for (const entry of readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		try {
			const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
			const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
			if (ppid === launcher) return Number(entry);
		} catch {
			// gone meanwhile
		}
	}
	return undefined;
}

/** Started through the shebang (`node --import tsx -- <runbook>`) or as a bundle: no launcher. */
function isRunbookItself(pid: number): boolean {
	try {
		const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
		return (
			(argv[1] === "--import" && argv[2] === "tsx") ||
			(argv[1] === "--" && argv[2]?.includes(`/${BUNDLE_DIR}/`))
		);
	} catch {
		return false;
	}
}
