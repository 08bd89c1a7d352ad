// The shared library's mechanisms: masking, flag parsing, tool checks, the audit log.

import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { $ } from "zx";
import { runHook } from "../lib/app/hooks.ts";
import { removeStalePartials } from "../lib/backup/archive.ts";
import { entriesOutsideScope, writeRestoreList } from "../lib/backup/scope.ts";
import { readEnvFile, replaceEnvFile } from "../lib/config/env-file.ts";
import { openAuditLog } from "../lib/kit/audit.ts";
import { failureReason } from "../lib/kit/child-failure.ts";
import { parseInvocation } from "../lib/kit/cli.ts";
import { EXIT, plainError, RunbookError } from "../lib/kit/errors.ts";
import { isRunning, processToken } from "../lib/kit/process-identity.ts";
import { acquireRunLock, RERUN_GRACE_MS } from "../lib/kit/run-lock.ts";
import { redact } from "../lib/kit/secrets.ts";
import { computeDownSql } from "../lib/migrations/down.ts";
import {
	prismaErrorText,
	ROOT,
	runPrisma,
} from "../lib/migrations/prisma-cli.ts";
import { describeCommand, findTool, runTool } from "../lib/pg/client-tools.ts";
import { signalSession } from "../lib/pg/signal.ts";
import * as target from "../lib/pg/target.ts";
import { adminUrl, createDatabase, dropDatabase } from "./support/harness.ts";

describe("targets and masking", () => {
	it("shows a target as user@host:port/db and never its password", () => {
		const c = target.parseConnection(
			"postgresql://app:s3cr%40t-pw@db.example.com:6543/faceswap?pgbouncer=true",
		);
		expect(c.display).toBe("app@db.example.com:6543/faceswap");
		expect(c.password).toBe("s3cr@t-pw");
		expect(c.pooled).toBe(true);
		expect(redact(`failed: ${c.url} with s3cr@t-pw`)).toBe(
			"failed: **** with ****",
		);
		expect(redact("postgres://u:other-password@h/db")).toBe(
			"postgres://u:****@h/db",
		);
	});

	it("tells local hosts from remote ones and honours RUNBOOK_ENV=production", () => {
		for (const h of [
			"localhost",
			"127.0.0.1",
			"127.1.2.3",
			"::1",
			"/var/run/postgresql",
		])
			expect(target.isLocalHost(h)).toBe(true);
		for (const h of ["db.example.com", "10.0.0.5", "128.0.0.1"])
			expect(target.isLocalHost(h)).toBe(false);
		const t = target.makeTarget(
			"postgresql://u:p@localhost/db",
			"postgresql://u:p@db.supabase.co:5432/postgres",
			{
				RUNBOOK_ENV: "production",
			},
		);
		expect(t.isLocal).toBe(false);
		expect(t.isProduction).toBe(true);
		expect(t.direct.display).toBe("u@db.supabase.co:5432/postgres");
	});

	it("rejects malformed connection strings with exit 2", () => {
		for (const bad of [
			"mysql://u:p@h/db",
			"not a url",
			"postgresql://u:p@h:99999/db",
			"postgresql://u:p@h:5432/",
		]) {
			let err: unknown;
			try {
				target.parseConnection(bad);
			} catch (e) {
				err = e;
			}
			expect(err, bad).toBeInstanceOf(RunbookError);
			expect((err as RunbookError).exitCode).toBe(EXIT.usage);
			expect((err as RunbookError).message).not.toContain(":p@");
		}
	});

	it("passes the password to libpq tools in the environment, not in the command", () => {
		const c = target.parseConnection(
			"postgresql://app:hunter22@localhost:5432/faceswap",
		);
		expect(target.libpqEnv(c).PGPASSWORD).toBe("hunter22");
		const shown = describeCommand("pg_dump", ["-Fc", "-f", "x.dump"], c);
		expect(shown).not.toContain("hunter22");
		expect(shown).toContain("PGPASSWORD=****");
	});
});

describe("flag parsing", () => {
	const specs = {
		name: { type: "string" as const, description: "n" },
		retries: { type: "number" as const, description: "r", default: 5 },
		yes: { type: "boolean" as const, short: "y", description: "y" },
	};
	const usage = (argv: string[]) => {
		try {
			parseInvocation(argv, specs);
		} catch (e) {
			return e as RunbookError;
		}
		throw new Error(`no error for ${argv.join(" ")}`);
	};

	it("parses values, defaults and short flags", () => {
		const inv = parseInvocation(["--name=x", "-y"], specs);
		expect(inv.flags).toEqual({ name: "x", yes: true, retries: 5 });
		expect(parseInvocation(["--retries", "2"], specs).flags.retries).toBe(2);
	});

	it("rejects unknown, duplicate and value-less flags with exit 2", () => {
		expect(usage(["--nope"]).message).toBe("Unknown flag --nope.");
		expect(usage(["--name", "a", "--name", "b"]).message).toBe(
			"The flag --name is given more than once.",
		);
		expect(usage(["--name"]).message).toContain("needs a value");
		expect(usage(["--name", "--yes"]).message).toContain("needs a value");
		expect(usage(["--retries", "many"]).message).toContain(
			"non-negative number",
		);
		expect(usage(["extra"]).message).toContain('Unexpected argument "extra"');
		for (const argv of [["--nope"], ["--name"], ["extra"]])
			expect(usage(argv).exitCode).toBe(EXIT.usage);
	});
});

describe("PostgreSQL client tools", () => {
	it("finds pg_dump and refuses it for a newer server", async () => {
		const tool = await findTool("pg_dump", 15);
		expect(tool.major).toBeGreaterThanOrEqual(15);
		await expect(findTool("pg_dump", tool.major + 1)).rejects.toMatchObject({
			exitCode: EXIT.refused,
			message: expect.stringContaining(
				`older than the server (PostgreSQL ${tool.major + 1})`,
			),
		});
	});

	it("says plainly when a tool is missing", async () => {
		const empty = fs.mkdtempSync(join(tmpdir(), "no-tools-"));
		await expect(
			findTool("pg_restore", undefined, { PG_BIN_DIR: empty }),
		).rejects.toMatchObject({
			message: expect.stringContaining(
				"pg_restore was not found in PG_BIN_DIR",
			),
		});
	});

	it("runs psql against the real server with the password from the environment", async () => {
		const psql = await findTool("psql");
		const conn = target.parseConnection(adminUrl());
		const run = await runTool(psql, ["-XAtc", "select current_user"], conn, {
			env: { PATH: process.env.PATH },
		});
		expect(run.exitCode).toBe(0);
		expect(run.stdout.trim()).toBe(conn.user);
	});

	it("starts tools with stdin from /dev/null: bash started outside any shell (cron, CI) does not source ~/.bashrc", async () => {
		const home = fs.mkdtempSync(join(tmpdir(), "home-"));
		const marker = join(home, "bashrc-was-sourced");
		fs.writeFileSync(join(home, ".bashrc"), `touch '${marker}'\n`);
		// No SHLVL: as from cron, systemd or a CI agent.
		const env = { PATH: process.env.PATH, HOME: home };
		const psql = await findTool("psql");
		expect((await runTool(psql, ["--version"], null, { env })).exitCode).toBe(
			0,
		);
		const saved = { HOME: process.env.HOME, SHLVL: process.env.SHLVL };
		process.env.HOME = home;
		delete process.env.SHLVL;
		try {
			const t = target.makeTarget(adminUrl(), adminUrl(), {});
			expect((await runPrisma(["--version"], t, {})).exitCode).toBe(0);
		} finally {
			Object.assign(process.env, saved);
		}
		expect(fs.existsSync(marker)).toBe(false);
		// The check can fail: the same bash with Node's default (socket) stdin sources it.
		await new Promise((done) =>
			spawn("bash", ["-c", "true"], { env, stdio: "pipe" }).on("close", done),
		);
		expect(fs.existsSync(marker)).toBe(true);
	});

	it("turns a refused connection and a wrong password into plain sentences", async () => {
		const { connect } = await import("../lib/pg/db.ts");
		await expect(
			connect(target.parseConnection("postgresql://u:p@127.0.0.1:1/db")),
		).rejects.toMatchObject({
			message:
				"Could not connect to u@127.0.0.1:1/db: the connection was refused.",
		});
		const wrong = new URL(adminUrl());
		wrong.password = "wrong-password";
		await expect(
			connect(target.parseConnection(wrong.toString())),
		).rejects.toMatchObject({
			message: expect.stringContaining("rejected the user name or password"),
		});
		expect(plainError({ code: "3D000" }, "x").message).toBe(
			"The database x does not exist.",
		);
	});
});

describe("audit log", () => {
	it("appends one redacted JSON line per event with operator, target and commit", () => {
		const dir = fs.mkdtempSync(join(tmpdir(), "audit-"));
		const path = join(dir, "sub", "audit.jsonl");
		target.parseConnection("postgresql://u:topsecret-pw@localhost/db"); // registers the secret
		const log = openAuditLog("test-runbook", "u@localhost:5432/db", {
			RUNBOOK_AUDIT_LOG: path,
		});
		log.write({ event: "step_start", step: "Backup", step_no: 1 });
		log.write({
			event: "step_end",
			step: "Backup",
			step_no: 1,
			status: "failed",
			error: "pw topsecret-pw leaked?",
		});
		const lines = fs
			.readFileSync(path, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l));
		expect(lines).toHaveLength(2);
		expect(lines[0]).toMatchObject({
			runbook: "test-runbook",
			event: "step_start",
			step: "Backup",
			target: "u@localhost:5432/db",
		});
		expect(typeof lines[0].operator).toBe("string");
		expect(lines[0].run_id).toBe(lines[1].run_id);
		expect(lines[1].error).toBe("pw **** leaked?");
		expect(fs.readFileSync(path, "utf8")).not.toContain("topsecret-pw");
	});
});

describe(".env rewrites", () => {
	it("removes the temporary file a killed rewrite left (an hour old), keeps a live one", () => {
		const dir = fs.mkdtempSync(join(tmpdir(), "env-temps-"));
		const env = join(dir, ".env");
		fs.writeFileSync(env, "DATABASE_URL=postgresql://a@localhost/x\n");
		const stale = join(dir, "..env.deadbeef.tmp");
		const live = join(dir, "..env.0badcafe.tmp");
		fs.writeFileSync(stale, "half");
		fs.writeFileSync(live, "half");
		const hourAgo = new Date(Date.now() - 3_700_000);
		fs.utimesSync(stale, hourAgo, hourAgo);
		replaceEnvFile(
			readEnvFile(env),
			"DATABASE_URL=postgresql://a@localhost/y\n",
		);
		expect(fs.existsSync(stale)).toBe(false);
		expect(fs.existsSync(live)).toBe(true);
		expect(fs.readFileSync(env, "utf8")).toBe(
			"DATABASE_URL=postgresql://a@localhost/y\n",
		);
	});
});

describe("leftovers of killed backups", () => {
	it("removes a .partial-* folder whose owner is gone, a zombie, or a later process with its pid", async () => {
		// A zombie: sh starts `sleep 0` in the background, then becomes `sleep 30`, which never reaps it.
		const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"]);
		try {
			const zombie = Number(
				await new Promise<string>((res) =>
					parent.stdout.once("data", (d) => res(String(d))),
				),
			);
			for (let i = 0; i < 100 && isRunning(String(zombie)); i++)
				await new Promise((res) => setTimeout(res, 20));

			const dir = fs.mkdtempSync(join(tmpdir(), "partials-"));
			const own = processToken();
			const names = {
				mine: `.partial-app-20261126T000000Z-${own}`,
				mineOldStyle: `.partial-app-20261126T000001Z-${process.pid}`,
				reusedPid: `.partial-app-20261126T000002Z-${process.pid}.1`,
				zombie: `.partial-app-20261126T000003Z-${processToken(zombie)}`,
				zombieOldStyle: `.partial-app-20261126T000004Z-${zombie}`,
				gone: `.partial-app-20261126T000005Z-${parent.pid}99.1`,
			};
			for (const n of Object.values(names)) fs.mkdirSync(join(dir, n));

			expect(own).toMatch(/^\d+\.\d+$/); // Linux: pid and start time
			expect(removeStalePartials(dir).sort()).toEqual(
				[
					names.reusedPid,
					names.zombie,
					names.zombieOldStyle,
					names.gone,
				].sort(),
			);
			expect(fs.readdirSync(dir).sort()).toEqual(
				[names.mine, names.mineOldStyle].sort(),
			);
		} finally {
			parent.kill("SIGKILL");
		}
	});
});

describe("why a child tool failed", () => {
	it("gives the tool's own message, or else how it ended and its last lines: never nothing", async () => {
		const quiet = $({ nothrow: true, quiet: true });
		// Killed after printing only Prisma's banner (what CI saw as "prisma format failed: ").
		const killed =
			await quiet`sh -c ${"echo 'Prisma schema loaded from prisma/schema.prisma'; kill -9 $$"}`;
		const run = {
			exitCode: killed.exitCode ?? 1,
			signal: killed.signal,
			stdout: killed.stdout,
			stderr: killed.stderr,
			command: "npx prisma format",
		};
		expect(prismaErrorText(run)).toBe(
			"it was ended by SIGKILL; its last output: Prisma schema loaded from prisma/schema.prisma",
		);
		const silent = await quiet`sh -c ${"exit 3"}`;
		expect(failureReason(silent)).toBe(
			"it exited with code 3 and printed nothing",
		);
		const said =
			await quiet`sh -c ${"echo 'error: no such table' >&2; exit 1"}`;
		expect(
			prismaErrorText({
				...run,
				exitCode: said.exitCode ?? 1,
				signal: said.signal,
				stdout: said.stdout,
				stderr: said.stderr,
			}),
		).toBe("error: no such table");
	});
});

describe("application hooks", () => {
	it("a hook ended by SIGINT is an interruption when the run's own Ctrl-C follows (the terminal's reaches both), a stopped hook when none does", async () => {
		// The Ctrl-C reaches the hook's shell first and the runbook's handler 300 ms later.
		const run = new AbortController();
		const interrupted = runHook("APP_STOP_CMD", {
			env: { APP_STOP_CMD: "echo stopping; kill -INT $$" },
			signal: run.signal,
		});
		setTimeout(() => run.abort(), 300);
		await expect(interrupted).rejects.toThrow("aborted");
		// Someone stopped the hook alone: after the grace, it is a hook that failed.
		const alone = await runHook("APP_STOP_CMD", {
			env: { APP_STOP_CMD: "kill -INT $$" },
			signal: new AbortController().signal,
		});
		expect(alone).toMatchObject({ outcome: "failed", exitCode: null });
		const failed = await runHook("APP_STOP_CMD", {
			env: { APP_STOP_CMD: "echo no such app >&2; exit 3" },
		});
		expect(failed).toMatchObject({ outcome: "failed", exitCode: 3 });
	});
});

describe("terminating a session", () => {
	it("a session that ended between the check and the signal counts as terminated, not as a refusal", async () => {
		const url = adminUrl();
		const victim = new pg.Client({ connectionString: url });
		await victim.connect();
		const pid = (
			await victim.query<{ pid: number }>("select pg_backend_pid() as pid")
		).rows[0].pid;
		const db = new pg.Client({ connectionString: url });
		await db.connect();
		try {
			// The race, staged: just before the signal is sent, the session's client disconnects and
			// its backend is gone (pg_terminate_backend then returns false).
			const query = db.query.bind(db) as (...a: unknown[]) => Promise<unknown>;
			(db as unknown as { query: unknown }).query = async (...a: unknown[]) => {
				if (String(a[0]).includes("pg_terminate_backend(")) {
					await victim.end();
					for (let i = 0; i < 100; i++) {
						const r = (await query(
							"select 1 from pg_stat_activity where pid = $1",
							[pid],
						)) as pg.QueryResult;
						if (r.rowCount === 0) break;
						await new Promise((res) => setTimeout(res, 20));
					}
				}
				return query(...a);
			};
			const result = await signalSession(db, pid, "terminate");
			expect(result.before.pid).toBe(pid);
			expect(result.after).toBeNull();
		} finally {
			await db.end();
		}
	});
});

describe("Prisma results cached by their files", () => {
	it("reads a down diff back from the cache, computes it afresh when a file changes or RUNBOOK_NO_CACHE=1", async () => {
		const dir = fs.mkdtempSync(join(tmpdir(), "runbook-cache-migrations-"));
		const write = (name: string, sql: string) => {
			fs.mkdirSync(join(dir, name), { recursive: true });
			fs.writeFileSync(join(dir, name, "migration.sql"), sql);
		};
		fs.writeFileSync(
			join(dir, "migration_lock.toml"),
			'provider = "postgresql"\n',
		);
		// A table name of its own, so no earlier run left this diff in the cache.
		const table = `cache_probe_${randomBytes(4).toString("hex")}`;
		write("1_a", `CREATE TABLE "${table}" ("id" INTEGER PRIMARY KEY);\n`);
		write("2_b", `ALTER TABLE "${table}" ADD COLUMN "note" TEXT;\n`);
		const t = target.makeTarget(adminUrl(), adminUrl(), {});
		const env = { PRISMA_MIGRATIONS_DIR: dir };
		const down = async () =>
			(await computeDownSql(t, env, ["1_a", "2_b"], "1_a")).statements.join(
				" ",
			);
		const cacheDir = join(ROOT, "node_modules", ".cache", "faceswap-runbooks");
		const entries = () =>
			new Set(
				fs.existsSync(cacheDir)
					? fs.readdirSync(cacheDir).filter((f) => f.startsWith("down-diff-"))
					: [],
			);
		const before = entries();
		expect(await down()).toMatch(/DROP COLUMN "note"/);
		const added = [...entries()].filter((f) => !before.has(f));
		expect(added).toHaveLength(1);
		// What is in the cache is what the next run gets: a marked entry proves it was read.
		const entry = join(cacheDir, added[0]);
		fs.writeFileSync(entry, JSON.stringify("SELECT 'from the cache';"));
		expect(await down()).toBe("SELECT 'from the cache';");
		// RUNBOOK_NO_CACHE=1: Prisma again, and its result kept.
		process.env.RUNBOOK_NO_CACHE = "1";
		try {
			expect(await down()).toMatch(/DROP COLUMN "note"/);
		} finally {
			delete process.env.RUNBOOK_NO_CACHE;
		}
		expect(JSON.parse(fs.readFileSync(entry, "utf8"))).toMatch(/DROP COLUMN/);
		// A comment is not what the migrations build (a runbook's headers name the database): the
		// same entry. A changed statement is another: Prisma computes the new diff.
		fs.writeFileSync(entry, JSON.stringify("SELECT 'from the cache';"));
		write(
			"2_b",
			`-- rerun: --confirm other_db\nALTER TABLE "${table}" ADD COLUMN "note" TEXT;\n`,
		);
		expect(await down()).toBe("SELECT 'from the cache';");
		write("2_b", `ALTER TABLE "${table}" ADD COLUMN "other" TEXT;\n`);
		expect(await down()).toMatch(/DROP COLUMN "other"/);
	});
});

describe("the end of a run", () => {
	it("a Ctrl-C after run_end is written leaves the exit code the audit log records", async () => {
		const dir = fs.mkdtempSync(join(tmpdir(), "runbook-late-signal-"));
		const script = join(dir, "late-signal.mts");
		const runner = new URL("../lib/kit/runner.ts", import.meta.url).pathname;
		// The --json summary is built after run_end: the signal lands in the window before exit.
		fs.writeFileSync(
			script,
			`import { runRunbook } from ${JSON.stringify(runner)};
await runRunbook({
	name: "late-signal", summary: "x", examples: [], resolveTarget: () => null,
	steps: [{ title: "Nothing", kind: "read", run: async () => ({ summary: "ok" }) }],
	summarize: () => { process.kill(process.pid, "SIGINT"); const t = Date.now(); while (Date.now() - t < 100); return {}; },
});
`,
		);
		const audit = join(dir, "audit.jsonl");
		const run = await $({
			nothrow: true,
			cwd: new URL("..", import.meta.url).pathname,
			env: { ...process.env, RUNBOOK_AUDIT_LOG: audit },
		})`${process.execPath} --import tsx -- ${script} --json`;
		expect(fs.existsSync(audit), run.stderr).toBe(true);
		const end = fs
			.readFileSync(audit, "utf8")
			.trim()
			.split("\n")
			.map((l) => JSON.parse(l))
			.find((l) => l.event === "run_end");
		expect({ code: run.exitCode, signal: run.signal }).toEqual({
			code: 0,
			signal: null,
		});
		expect(end).toMatchObject({ status: "ok", exit_code: 0 });
	});
});

describe("backups of the app's objects only (scope app)", () => {
	const toc = [
		";",
		"; Archive created at 2026-12-03 07:48:52 UTC",
		"7; 2615 2200 SCHEMA - public pg_database_owner",
		"3602; 0 0 COMMENT - SCHEMA public pg_database_owner",
		"983; 1247 16714 TYPE public PurchaseStatus postgres",
		"239; 1259 16605 TABLE public _prisma_migrations postgres",
		"3500; 0 16605 TABLE DATA public users postgres",
		"9; 2615 16451 SCHEMA - auth supabase_admin",
		"264; 1255 16491 FUNCTION auth role() supabase_auth_admin",
		"2189; 826 16448 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES supabase_admin",
		"3650; 3466 16600 EVENT TRIGGER - pgrst_drop_watch supabase_admin",
		"3651; 6104 16601 PUBLICATION - supabase_realtime postgres",
	].join("\n");

	it("names every entry outside the app's schemas or of a platform kind", () => {
		expect(entriesOutsideScope(toc, ["public"])).toEqual([
			"9; 2615 16451 SCHEMA - auth supabase_admin",
			"264; 1255 16491 FUNCTION auth role() supabase_auth_admin",
			"2189; 826 16448 DEFAULT ACL public DEFAULT PRIVILEGES FOR TABLES supabase_admin",
			"3650; 3466 16600 EVENT TRIGGER - pgrst_drop_watch supabase_admin",
			"3651; 6104 16601 PUBLICATION - supabase_realtime postgres",
		]);
	});

	it("restores the objects of a schema that exists, not the schema itself", () => {
		const file = writeRestoreList(toc, ["public"]);
		try {
			const lines = fs.readFileSync(file, "utf8").split("\n");
			expect(lines).toContain(
				";7; 2615 2200 SCHEMA - public pg_database_owner",
			);
			expect(lines).toContain(
				";3602; 0 0 COMMENT - SCHEMA public pg_database_owner",
			);
			expect(lines).toContain(
				"239; 1259 16605 TABLE public _prisma_migrations postgres",
			);
			expect(fs.statSync(file).mode & 0o777).toBe(0o600);
		} finally {
			fs.rmSync(file, { force: true });
		}
	});
});

describe("the run lock", () => {
	// What the lock looks like while a run holds it: a session named after its runbook.
	async function holder(url: string, runbook: string) {
		const db = new pg.Client({
			connectionString: url,
			application_name: `runbook:${runbook}`,
		});
		await db.connect();
		await db.query("select pg_advisory_lock($1, $2)", [0x52554e42, 1]);
		return db;
	}

	it("waits out a same-named run whose session is going away, refuses another runbook at once, and a live same-named run after the grace", async () => {
		const url = await createDatabase("run_lock");
		const conn = target.parseConnection(url);
		try {
			// A killed run of backup: its session ends half a second later.
			const dying = await holder(url, "backup");
			setTimeout(() => void dying.end(), 500);
			let t = performance.now();
			const lock = await acquireRunLock(conn, "backup");
			expect(performance.now() - t).toBeGreaterThanOrEqual(400);
			await lock.release();

			// Another runbook holds it: refused at once, naming it.
			const other = await holder(url, "deploy-production");
			t = performance.now();
			await expect(acquireRunLock(conn, "backup")).rejects.toThrow(
				/already changing .*: deploy-production \(pid/,
			);
			expect(performance.now() - t).toBeLessThan(RERUN_GRACE_MS);
			await other.end();

			// A same-named run that stays: refused once the grace is over.
			const live = await holder(url, "backup");
			t = performance.now();
			await expect(acquireRunLock(conn, "backup")).rejects.toThrow(
				/already changing .*: backup \(pid/,
			);
			expect(performance.now() - t).toBeGreaterThanOrEqual(RERUN_GRACE_MS);
			await live.end();
		} finally {
			await dropDatabase(url);
		}
	});
});
