// The run lock (lib/kit/run-lock.ts) between the seven data-changing runbooks, pair by pair: the first
// runbook of a pair is started on a copy of a small seeded Face Swap database and paused
// (SIGSTOP to its process group) while it holds the lock; then every one of the seven, itself
// included, is started against the same database and must refuse with exit 3, name the first
// (runbook, pid, user, start time, as pg_stat_activity has them) and change nothing: neither the
// database, nor the Supabase-shaped target, nor BACKUP_DIR, .env or prisma/. Then SIGCONT: the
// first must finish with exit 0 and leave exactly what an undisturbed run of it leaves on another
// copy. Each first is paused once and the seven seconds run against it one after another, so the
// 7 x 7 ordered pairs (every unordered pair in both orders, and each runbook against itself) cost
// 7 paused runs, 7 undisturbed ones and 49 refusals.
//
// Where each first is paused, deterministically and before it takes any table lock that would
// block a reader (so the snapshots can be taken while it is stopped):
// - backup, deploy-production, migrate-to-supabase: as their pg_dump starts (a PG_BIN_DIR of
//   wrappers in which pg_dump stops itself before exec'ing the real one); backup and deploy hold
//   the lock on the database, migrate-to-supabase on its target and its source.
// - emergency-rollback: as the pg_restore --list of its backup verification starts.
// - backfill, add-required-field: at the header of their batch step, which runs for seconds
//   (small batches with sleeps; batches take row locks only).
// - switch-db-env local: as its probe sends `select 1` through LOCAL_DATABASE_URL, which points at
//   a small TCP proxy in this file that holds that query (after the connection is made, so no
//   client-side connect timeout runs while the process is stopped). switch-db-env changes no
//   database; it holds the run lock of the profile it switches to (see runbooks/switch-db-env.ts).

import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import {
	chmodSync,
	existsSync,
	mkdirSync,
	readdirSync,
	readFileSync,
	writeFileSync,
} from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
	admin,
	copyRepository,
	dropDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { rewind, scratchDatabases } from "./support/migration-fixtures.ts";
import { findPgBin } from "./support/postgres.ts";
import { snapshotDatabase, snapshotFiles } from "./support/snapshot.ts";
import {
	cliArgs,
	deployAndSeed,
	type RunResult,
	type SupabaseFixture,
	startSupabaseWithLocal,
} from "./support/supabase-suite.ts";

/** One copy of everything a run works on: the database, its Supabase target, files. */
interface Group {
	db: string;
	url: string;
	/** The same-named database on the Supabase-shaped server (migrate-to-supabase's target). */
	sbDirect: string;
	sbPooler: string;
	sbAdmin: string;
	repo: string;
	backups: string;
	envDir: string;
	envFile: string;
	audit: string;
	/** Where the pg_dump/pg_restore wrappers note that they stopped (first runs only). */
	pauseDir: string;
}

type Pause =
	| { tool: "pg_dump" | "pg_restore" }
	| { header: RegExp }
	| { proxy: true };

interface Case {
	name: string;
	/** State the run needs, made on the group's fresh copy before it starts. */
	prepare?: (g: Group) => Promise<void>;
	args: (g: Group) => string[];
	/** Reads DATABASE_URL from the environment, or the profiles from --env-file. */
	envFile?: boolean;
	/** .env's DATABASE_URL before the run: the local or the remote profile. */
	envStart?: "local" | "remote";
	pause: Pause;
	/** Columns whose values depend on the time of the run (compared without them). */
	volatile?: Record<string, string[]>;
}

/**
 * A progress line of the batch step with rows done: its batches' connection is open by then (a
 * connect in flight when the process stops would time out, client-side, the moment it continues).
 */
const BATCHES = /\b[1-9][\d,]* of ~?[\d,]+ rows/;

const VIDEOS_WHERE = "processing_ms IS NULL AND status <> 'COMPLETED'";

const CASES: Case[] = [
	{ name: "backup", args: () => ["create"], pause: { tool: "pg_dump" } },
	{
		name: "deploy-production",
		// Two migrations behind, so the deploy has something to apply.
		prepare: async (g) => {
			await rewind(g.url, 2);
		},
		args: (g) => ["--yes", "--confirm", g.db, "--monitor-seconds", "0"],
		pause: { tool: "pg_dump" },
		// The migration adds them with DEFAULT CURRENT_TIMESTAMP.
		volatile: { users: ["created_at", "updated_at"] },
	},
	{
		name: "emergency-rollback",
		// A verified backup, then changes after it for the rollback to undo.
		prepare: async (g) => {
			const made = await runRunbook("backup", ["create"], {
				env: envFor(g),
				root: g.repo,
			});
			expect(made.code, made.stdout + made.stderr).toBe(0);
			await admin(
				(db) =>
					db.query(
						`delete from purchases where id in (select id from purchases order by id limit 5);
						 update users set name = 'renamed' where id in (select id from users order by id limit 3)`,
					),
				g.url,
			);
		},
		args: (g) => [
			"--backup",
			backupIds(g)[0] ?? "none",
			"--yes",
			"--confirm",
			g.db,
		],
		pause: { tool: "pg_restore" },
	},
	{
		name: "migrate-to-supabase",
		args: () => ["--yes"],
		envFile: true,
		envStart: "local",
		pause: { tool: "pg_dump" },
	},
	{
		name: "switch-db-env",
		args: () => ["local"],
		envFile: true,
		pause: { proxy: true },
	},
	{
		name: "backfill",
		args: () =>
			cliArgs({
				table: "generated_videos",
				set: "processing_ms = 0",
				where: VIDEOS_WHERE,
				"batch-size": "10",
				"target-batch-ms": "0",
				"sleep-ms": "150",
				yes: true,
			}),
		pause: { header: BATCHES },
	},
	{
		name: "add-required-field",
		args: () =>
			cliArgs({
				table: "generated_videos",
				column: "thumbnail_path",
				type: "text",
				backfill: "'thumbs/' || id || '.jpg'",
				"batch-size": "20",
				"target-batch-ms": "0",
				"sleep-ms": "100",
				yes: true,
			}),
		pause: { header: BATCHES },
	},
];

let template: string;
let sb: SupabaseFixture;
let proxy: HoldingProxy;
/** The databases cloned from the template, dropped together at the end. */
const databases = scratchDatabases();

beforeAll(async () => {
	[sb, template] = await startSupabaseWithLocal("conc_tpl");
	await deployAndSeed(template, 100);
	// The platform's database as a template for one Supabase target per group (the fixture's
	// clone ends the pooler's idle connection to it first, or CREATE DATABASE ... TEMPLATE refuses).
	await sb.cloneDatabase("sb_template");
	proxy = await startProxy(Number(new URL(template).port));
}, 180_000);

afterAll(async () => {
	await proxy?.close();
	await sb?.stop();
	await databases.dropAll();
	if (template) await dropDatabase(template);
});

async function makeGroup(prefix: string, c: Case): Promise<Group> {
	const url = await databases.clone(template, prefix);
	const db = new URL(url).pathname.slice(1);
	await sb.cloneDatabase(db, "sb_template");
	const sbUrls = sb.urls(db);
	const dir = scratchDir();
	const envDir = join(dir, "app");
	mkdirSync(envDir);
	const g: Group = {
		db,
		url,
		sbDirect: sbUrls.direct,
		sbPooler: sbUrls.pooler,
		sbAdmin: sbUrls.admin,
		repo: copyRepository(),
		backups: join(dir, "backups"),
		envDir,
		envFile: join(envDir, ".env"),
		audit: join(dir, "audit.jsonl"),
		pauseDir: join(dir, "pause"),
	};
	const local = proxy.url(url);
	const start =
		c.envStart === "local"
			? { DATABASE_URL: local, DIRECT_URL: url }
			: { DATABASE_URL: g.sbPooler, DIRECT_URL: g.sbDirect };
	writeFileSync(
		g.envFile,
		[
			"# Face Swap",
			...assignments(start),
			"NEXTAUTH_URL=http://localhost:3000",
			"",
			// LOCAL_DATABASE_URL goes through the holding proxy (passing everything unless told to
			// hold): switch-db-env's probe uses it; every runbook's lock uses the direct URLs.
			...assignments({
				LOCAL_DATABASE_URL: local,
				LOCAL_DIRECT_URL: url,
				REMOTE_DATABASE_URL: g.sbPooler,
				REMOTE_DIRECT_URL: g.sbDirect,
			}),
			"",
		].join("\n"),
		{ mode: 0o600 },
	);
	await c.prepare?.(g);
	return g;
}

/** .env lines setting each variable to its value, quoted. */
const assignments = (vars: Record<string, string>) =>
	Object.entries(vars).map(([name, value]) => `${name}="${value}"`);

function envFor(g: Group, c?: Case): Record<string, string> {
	return {
		...(c?.envFile ? {} : { DATABASE_URL: g.url }),
		BACKUP_DIR: g.backups,
		RUNBOOK_AUDIT_LOG: g.audit,
		RUNBOOK_PROGRESS_INTERVAL_MS: "200",
	};
}

const argsFor = (c: Case, g: Group) => [
	...c.args(g),
	...(c.envFile ? ["--env-file", g.envFile] : []),
];

function run(
	c: Case,
	g: Group,
	extra: Parameters<typeof runRunbook>[2] = {},
): Promise<RunResult> {
	return runRunbook(c.name, argsFor(c, g), {
		env: envFor(g, c),
		root: g.repo,
		...extra,
		...(extra.env ? { env: { ...envFor(g, c), ...extra.env } } : {}),
	});
}

/** The manifests of the backups in the group's BACKUP_DIR (none before its first backup). */
function manifestsOf(g: Group) {
	if (!existsSync(g.backups)) return [];
	return readdirSync(g.backups)
		.filter((f) => f.endsWith(".json"))
		.map((f) => JSON.parse(readFileSync(join(g.backups, f), "utf8")));
}

function backupIds(g: Group): string[] {
	return manifestsOf(g)
		.map((m) => m.id)
		.sort();
}

/**
 * pg_dump, pg_restore and psql wrappers: the one named stops itself (SIGSTOP) the first time it is
 * run for real (not --version), after writing its pid, then execs the real tool once continued.
 */
function pausingBinDir(g: Group, tool: string): string {
	const dir = join(g.pauseDir, "bin");
	mkdirSync(dir, { recursive: true });
	const real = dirname(findPgBin("pg_dump"));
	for (const name of ["pg_dump", "pg_restore", "psql"]) {
		const path = join(dir, name);
		writeFileSync(
			path,
			name === tool
				? `#!/bin/sh
if [ "$1" != "--version" ] && mkdir "${g.pauseDir}/claimed" 2>/dev/null; then
  echo $$ > "${g.pauseDir}/pid.tmp" && mv "${g.pauseDir}/pid.tmp" "${g.pauseDir}/pid"
  kill -STOP $$
fi
exec "${join(real, name)}" "$@"
`
				: `#!/bin/sh\nexec "${join(real, name)}" "$@"\n`,
		);
		chmodSync(path, 0o755);
	}
	return dir;
}

/** Normalised: the group's database name, and values that differ from run to run, left out. */
async function dbResult(
	url: string,
	volatile: Record<string, string[]> = {},
): Promise<Record<string, unknown>> {
	const snap = await snapshotDatabase(url);
	for (const [table, columns] of Object.entries(volatile)) {
		const r = await admin(
			(db) =>
				db.query(
					`select count(*) as n, coalesce(md5(string_agg(md5((to_jsonb(x) - $1::text[])::text), '' order by md5((to_jsonb(x) - $1::text[])::text))), '') as h from public.${table} x`,
					[columns],
				),
			url,
		);
		snap[`rows public.${table}`] =
			`${r.rows[0].n} ${r.rows[0].h} (without ${columns.join(", ")})`;
	}
	for (const k of Object.keys(snap)) {
		// Bookkeeping with times and random ids (_prisma_migrations, checkpoints, migrate runs):
		// row counts only, plus the migration names below.
		if (
			k.startsWith("rows ") &&
			(k === "rows public._prisma_migrations" || !k.startsWith("rows public."))
		)
			snap[k] = snap[k].split(" ")[0];
	}
	const migrations = await admin(async (db) => {
		const exists = await db.query(
			"select to_regclass('public._prisma_migrations') is not null as ok",
		);
		if (!exists.rows[0].ok) return [];
		const r = await db.query<{ name: string; finished: boolean }>(
			"select migration_name as name, finished_at is not null and rolled_back_at is null as finished from _prisma_migrations order by migration_name",
		);
		return r.rows.map((x) => `${x.name.replace(/^\d{14}_/, "")}:${x.finished}`);
	}, url);
	return { ...snap, migrations };
}

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

/** What a run leaves: both databases, the backups' manifests, .env and prisma/, normalised. */
async function result(g: Group, c: Case): Promise<unknown> {
	const norm = (s: string) => s.split(g.db).join("<db>");
	const manifests = manifestsOf(g)
		.map(
			({ kind, format, target, latest_migration, row_counts, verified_at }) =>
				norm(
					JSON.stringify({
						kind,
						format,
						target,
						latest_migration,
						row_counts,
						verified: Boolean(verified_at),
					}),
				),
		)
		.sort();
	const migrationsDir = join(g.repo, "prisma", "migrations");
	return {
		local: await dbResult(g.url, c.volatile),
		supabase: await dbResult(g.sbAdmin),
		backups: manifests,
		env: norm(readFileSync(g.envFile, "utf8")),
		envFiles: readdirSync(g.envDir)
			.map((f) => f.replace(/\d/g, "0"))
			.sort(),
		migrations: readdirSync(migrationsDir)
			.filter((d) => existsSync(join(migrationsDir, d, "migration.sql")))
			.map(
				(d) =>
					`${d.replace(/^\d{14}_/, "")} ${sha(readFileSync(join(migrationsDir, d, "migration.sql"), "utf8"))}`,
			)
			.sort(),
		schema: sha(readFileSync(join(g.repo, "prisma", "schema.prisma"), "utf8")),
	};
}

/** Everything a refused run must leave as it was (exactly: names and times included). */
async function untouched(g: Group) {
	return {
		local: await snapshotDatabase(g.url),
		supabase: await snapshotDatabase(g.sbAdmin),
		files: snapshotFiles([
			g.backups,
			g.envDir,
			join(g.repo, "prisma"),
			g.pauseDir,
		]),
	};
}

interface Holder {
	pid: number;
	user: string;
	since: string;
	app: string;
}

/** Who holds the run lock on a database, as pg_locks and pg_stat_activity say. */
async function lockHolder(url: string): Promise<Holder | undefined> {
	const rows = await admin(
		async (db) =>
			(
				await db.query<{
					pid: number;
					usename: string;
					since: Date;
					app: string;
				}>(
					`select a.pid, a.usename, a.backend_start as since, a.application_name as app
					   from pg_locks l join pg_stat_activity a on a.pid = l.pid
					  where l.locktype = 'advisory' and l.classid = $1 and l.objid = 1 and l.granted
					    and l.database = (select oid from pg_database where datname = current_database())`,
					[0x52554e42],
				)
			).rows,
		url,
	);
	return rows.map((r) => ({
		pid: r.pid,
		user: r.usename,
		since: r.since.toISOString(),
		app: r.app,
	}))[0];
}

const stopped = (pid: number) => {
	try {
		const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
		return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
	} catch {
		return false;
	}
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A first run paused while it holds the lock; resume() continues it and gives its result. */
interface Paused {
	group: Group;
	resume(): Promise<RunResult>;
}

async function startPaused(c: Case, g: Group): Promise<Paused> {
	let child: ChildProcess | undefined;
	let onPause: () => void = () => {};
	const paused = new Promise<void>((resolve) => {
		onPause = resolve;
	});
	const stopGroup = () => {
		if (child?.pid) process.kill(-child.pid, "SIGSTOP");
		onPause();
	};
	const env: Record<string, string> = {};
	const pause = c.pause;
	if ("tool" in pause) env.PG_BIN_DIR = pausingBinDir(g, pause.tool);
	if ("proxy" in pause) proxy.hold(g.db);
	const done = run(c, g, {
		env,
		onSpawn: (p) => {
			child = p;
		},
		...("header" in pause
			? { onMatch: { pattern: pause.header, run: stopGroup } }
			: {}),
	});
	let exited: RunResult | undefined;
	done.then((r) => {
		exited = r;
	});
	const deadline = Date.now() + 60_000;
	if ("tool" in pause) {
		const pidFile = join(g.pauseDir, "pid");
		while (
			!exited &&
			Date.now() < deadline &&
			!(existsSync(pidFile) && stopped(Number(readFileSync(pidFile, "utf8"))))
		)
			await sleep(25);
		if (!exited && existsSync(pidFile)) stopGroup();
	} else if ("proxy" in pause) {
		await Promise.race([proxy.held(), done, sleep(60_000)]);
		// New connections pass again; the held one stays held until release().
		proxy.hold(null);
		if (!exited) stopGroup();
	} else {
		await Promise.race([paused, done, sleep(60_000)]);
	}
	if (exited) {
		throw new Error(
			`${c.name} ended (exit ${exited.code}) before it could be paused:\n${exited.stdout}\n${exited.stderr}`,
		);
	}
	await paused;
	// Give SIGSTOP a moment to reach every process of the group.
	await sleep(100);
	return {
		group: g,
		async resume() {
			if (child?.pid) process.kill(-child.pid, "SIGCONT");
			proxy.release();
			return done;
		},
	};
}

describe.each(CASES)("$name holds the run lock", (first) => {
	let baseline: unknown;
	let paused: Paused;
	let holder: Holder;
	let holderDb: Holder | undefined;

	beforeAll(async () => {
		// An undisturbed run on one copy, for the result to compare with, while the same run on
		// another copy is started and paused while it holds the lock.
		const undisturbed = (async () => {
			const ref = await makeGroup("conc_ref", first);
			const r = await run(first, ref);
			expect(r.code, r.stdout + r.stderr).toBe(0);
			return result(ref, first);
		})();
		const g = await makeGroup("conc", first);
		paused = await startPaused(first, g);
		baseline = await undisturbed;
		const h = await lockHolder(g.url);
		expect(h, "the paused run holds the lock on the database").toBeDefined();
		holder = h as Holder;
		expect(holder.app).toBe(`runbook:${first.name}`);
		holderDb = await lockHolder(g.sbAdmin);
	}, 240_000);

	afterAll(async () => {
		// A failed test must not leave a stopped process behind.
		await paused?.resume().catch(() => {});
	});

	// The seven seconds run at once: each must refuse on its own, and each checks that nothing
	// changed between its start and its end (none of them may change anything).
	it.concurrent.for(CASES)(
		"$name started meanwhile refuses (exit 3), names it, changes nothing",
		async (second, { expect }) => {
			const g = paused.group;
			const before = await untouched(g);
			const r = await run(second, g);
			const out = r.stdout + r.stderr;
			expect(r.code, out).toBe(3);
			const m =
				/Another runbook is already changing (\S+): (\S+) \(pid (\d+), user (\S+), since (\S+)\)\. Nothing was changed\./.exec(
					r.stderr,
				);
			expect(m, out).not.toBeNull();
			const [, where, name, pid, user, since] = m as RegExpExecArray;
			expect(name).toBe(first.name);
			// The session named is the one holding the lock on the database named.
			expect(where.endsWith(`/${g.db}`), where).toBe(true);
			const expected = where.startsWith(sbUser()) ? holderDb : holder;
			expect(expected, "a holder on the database named").toBeDefined();
			expect({ pid: Number(pid), user, since }).toEqual({
				pid: expected?.pid,
				user: expected?.user,
				since: expected?.since,
			});
			expect(await untouched(g)).toEqual(before);
		},
	);

	it("continued (SIGCONT), finishes with exit 0 and the result of an undisturbed run", async () => {
		const r = await paused.resume();
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expect(await result(paused.group, first)).toEqual(baseline);
		// The lock went with it.
		expect(await lockHolder(paused.group.url)).toBeUndefined();
	});
});

/** The Supabase direct URL's user, to tell its target's display from the local one. */
function sbUser(): string {
	return `${new URL(sb.directUrl).username}@${new URL(sb.directUrl).hostname}:${new URL(sb.directUrl).port}`;
}

interface HoldingProxy {
	/** The same connection string, through the proxy. */
	url(target: string): string;
	/** While set, a new connection to this database has its first query (and what follows) held. */
	hold(database: string | null): void;
	/** Resolves once a held connection has sent its first query. */
	held(): Promise<void>;
	/** Lets held connections go on. */
	release(): void;
	close(): Promise<void>;
}

/**
 * A TCP proxy to the test server that, for connections to the database named by hold(), lets the
 * connection start up and authenticate and then holds its first simple query ('Q' message) until
 * released. Every other connection passes untouched.
 */
async function startProxy(targetPort: number): Promise<HoldingProxy> {
	let holding: string | null = null;
	let releaseAll: () => void = () => {};
	let released = Promise.resolve();
	let notify: () => void = () => {};
	let heldOnce = new Promise<void>((r) => {
		notify = r;
	});
	const sockets = new Set<net.Socket>();
	const server = net.createServer((client) => {
		sockets.add(client);
		const upstream = net.connect(targetPort, "127.0.0.1");
		sockets.add(upstream);
		const gate = released;
		upstream.pipe(client);
		client.on("error", () => upstream.destroy());
		upstream.on("error", () => client.destroy());
		client.on("close", () => upstream.destroy());
		upstream.on("close", () => client.destroy());
		// Walk the client's messages: the startup packet (after an optional SSLRequest) has no type
		// byte and names the database; every later message has a type byte.
		let buf = Buffer.alloc(0);
		let startup = true;
		let gated = false;
		const passThrough = () => {
			client.off("data", onData);
			upstream.write(buf);
			client.pipe(upstream);
		};
		const onData = (chunk: Buffer) => {
			buf = Buffer.concat([buf, chunk]);
			let offset = 0;
			for (;;) {
				if (startup) {
					if (buf.length - offset < 8) break;
					const len = buf.readInt32BE(offset);
					if (len < 8 || buf.length - offset < len) break;
					const code = buf.readInt32BE(offset + 4);
					if (code !== 80877103) {
						const params = buf
							.subarray(offset + 8, offset + len)
							.toString()
							.split("\0");
						const db = params[params.indexOf("database") + 1];
						startup = false;
						gated = holding !== null && db === holding;
						if (!gated) return passThrough();
					}
					offset += len;
					continue;
				}
				if (buf.length - offset < 5) break;
				if (buf[offset] === 0x51 /* Q */) {
					upstream.write(buf.subarray(0, offset));
					const rest = buf.subarray(offset);
					client.off("data", onData);
					client.pause();
					notify();
					gate.then(() => {
						upstream.write(rest);
						client.pipe(upstream);
						client.resume();
					});
					return;
				}
				const len = buf.readInt32BE(offset + 1);
				if (len < 4 || buf.length - offset < len + 1) break;
				offset += len + 1;
			}
			upstream.write(buf.subarray(0, offset));
			buf = buf.subarray(offset);
		};
		client.on("data", onData);
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
	const port = (server.address() as net.AddressInfo).port;
	return {
		url(target) {
			const u = new URL(target);
			u.port = String(port);
			return u.toString();
		},
		hold(database) {
			if (database && !holding) {
				released = new Promise<void>((r) => {
					releaseAll = r;
				});
				heldOnce = new Promise<void>((r) => {
					notify = r;
				});
			}
			holding = database;
		},
		held: () => heldOnce,
		release() {
			holding = null;
			releaseAll();
		},
		async close() {
			for (const s of sockets) s.destroy();
			await new Promise((r) => server.close(r));
		},
	};
}
