// Bad input, table-driven: every runbook given malformed URLs, unreachable servers, missing or too
// old client tools, bad flags, names and SQL crafted to break out of quoting, broken backups,
// unreadable or unwritable .env files and unconfirmed destructive steps. Each row must exit with
// the documented code, say what went wrong in a plain sentence (no stack trace), and change
// nothing: not the database (catalog and every row) and not a file the runbook could write (.env,
// BACKUP_DIR, prisma/ with its migrations folder, logs/).
//
// The rows are plain data in CASES, one a line ({runbook, input, args, env, expectCode,
// expectMessage}); values known only once the fixtures exist are written as {placeholders} and
// filled in by fill().

import {
	chmodSync,
	cpSync,
	mkdirSync,
	readdirSync,
	readFileSync,
	symlinkSync,
	truncateSync,
	writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import {
	adminUrl,
	copyRepository,
	createSeededDatabase,
	dropDatabase,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { freePort } from "./support/postgres.ts";
import { snapshotDatabase, snapshotFiles } from "./support/snapshot.ts";

interface BadInputCase {
	runbook: string;
	/** What is wrong, in a few words (a row of docs/reliability.md). */
	input: string;
	args: string[];
	/** Added to the base environment (DATABASE_URL, RUNBOOK_AUDIT_LOG, BACKUP_DIR); undefined removes. */
	env?: Record<string, string | undefined>;
	/** Working directory (default: the repository copy). */
	cwd?: string;
	/**
	 * "executable": run ./runbooks/<name>.ts through its shebang instead of `node tsx/cli`. Needed for
	 * --env-file with a path Node cannot read: Node 20 scans its whole argv for --env-file (up to a
	 * "--", even after the script name: nodejs/node#54232) and exits 9 before any JavaScript runs.
	 * The shebang (`node --import tsx --`) ends Node's options with "--", so only the runbook sees the flag.
	 */
	via?: "executable";
	expectCode: 0 | 1 | 2 | 3;
	/** A phrase the output must contain. */
	expectMessage: string;
}

// Placeholders: {db} the seeded database's URL, {dbName} its name, {url:user:password@host:port/db}
// parts are written out in full below; {refusedPort} a port nothing listens on; {backupId} a good
// backup; {emptyBin}/{oldBin} PG_BIN_DIRs; {noPgPath} a PATH without PostgreSQL tools; {...Dir} scratch dirs.
// biome-ignore format: a table, one row a line
const CASES: BadInputCase[] = [
	// Connection strings that are not one.
	{ runbook: "validate", input: "DATABASE_URL of another scheme (mysql://)", args: [], env: { DATABASE_URL: "mysql://app:secretpw1@localhost:3306/faceswap" }, expectCode: 2, expectMessage: "DATABASE_URL is not a PostgreSQL connection string" },
	{ runbook: "db-health", input: "DATABASE_URL with a space in the host", args: [], env: { DATABASE_URL: "postgresql://app:secretpw1@local host:5432/faceswap" }, expectCode: 2, expectMessage: "DATABASE_URL is not a valid connection string" },
	{ runbook: "monitor", input: "DATABASE_URL with port 99999", args: ["--once"], env: { DATABASE_URL: "postgresql://app:secretpw1@localhost:99999/faceswap" }, expectCode: 2, expectMessage: "DATABASE_URL is not a valid connection string." },
	{ runbook: "backup", input: "DATABASE_URL without a database name", args: ["create"], env: { DATABASE_URL: "postgresql://app:secretpw1@localhost:5432" }, expectCode: 2, expectMessage: "DATABASE_URL names no database" },
	{ runbook: "backfill", input: "DATABASE_URL not set (empty)", args: ["--table", "users", "--set", "name = name"], env: { DATABASE_URL: "" }, expectCode: 2, expectMessage: "DATABASE_URL is not set." },
	{ runbook: "troubleshoot", input: "--database-url that is not a URL", args: ["--database-url", "faceswap-db"], expectCode: 2, expectMessage: "DATABASE_URL is not a PostgreSQL connection string" },
	{ runbook: "deploy-production", input: "malformed DIRECT_URL beside a good DATABASE_URL", args: ["--yes", "--confirm", "{dbName}"], env: { DIRECT_URL: "postgres//app:secretpw1@localhost/faceswap" }, expectCode: 2, expectMessage: "DIRECT_URL is not a PostgreSQL connection string" },
	// Servers that cannot be reached or refuse us.
	{ runbook: "validate", input: "unknown host", args: [], env: { DATABASE_URL: "postgresql://app:secretpw1@db.nonexistent.invalid:5432/faceswap" }, expectCode: 1, expectMessage: "the host name does not resolve" },
	{ runbook: "db-health", input: "port where nothing listens", args: [], env: { DATABASE_URL: "postgresql://app:secretpw1@127.0.0.1:{refusedPort}/faceswap" }, expectCode: 1, expectMessage: "the connection was refused" },
	{ runbook: "deploy-production", input: "port where nothing listens", args: ["--yes", "--confirm", "faceswap"], env: { DATABASE_URL: "postgresql://app:secretpw1@127.0.0.1:{refusedPort}/faceswap" }, expectCode: 1, expectMessage: "the connection was refused" },
	{ runbook: "backup", input: "wrong password", args: ["create"], env: { DATABASE_URL: "{wrongPassword}" }, expectCode: 1, expectMessage: "rejected the user name or password" },
	{ runbook: "backfill", input: "wrong password", args: ["--table", "users", "--set", "name = name", "--yes"], env: { DATABASE_URL: "{wrongPassword}" }, expectCode: 1, expectMessage: "rejected the user name or password" },
	{ runbook: "monitor", input: "database that does not exist", args: ["--once"], env: { DATABASE_URL: "{missingDb}" }, expectCode: 1, expectMessage: "does not exist" },
	{ runbook: "validate", input: "database that does not exist", args: [], env: { DATABASE_URL: "{missingDb}" }, expectCode: 1, expectMessage: "does not exist" },
	// PostgreSQL client tools.
	{ runbook: "backup", input: "no pg_dump (empty PG_BIN_DIR, PATH without pg tools)", args: ["create"], env: { PG_BIN_DIR: "{emptyBin}", PATH: "{noPgPath}" }, expectCode: 1, expectMessage: "pg_dump was not found" },
	{ runbook: "backup", input: "pg_dump 9.6.0, older than the server", args: ["create"], env: { PG_BIN_DIR: "{oldBin}" }, expectCode: 3, expectMessage: "is older than the server" },
	{ runbook: "backup", input: "verify with no pg_restore (empty PG_BIN_DIR)", args: ["verify", "{backupId}"], env: { PG_BIN_DIR: "{emptyBin}", PATH: "{noPgPath}" }, expectCode: 1, expectMessage: "pg_restore was not found" },
	// Flags.
	{ runbook: "validate", input: "unknown flag", args: ["--frobnicate"], expectCode: 2, expectMessage: "Unknown flag --frobnicate." },
	{ runbook: "monitor", input: "unknown short flag", args: ["-x"], expectCode: 2, expectMessage: "Unknown flag -x." },
	{ runbook: "backup", input: "duplicate flag (--format twice)", args: ["create", "--format", "custom", "--format", "directory"], expectCode: 2, expectMessage: "The flag --format is given more than once." },
	{ runbook: "emergency-rollback", input: "duplicate flag (--yes twice)", args: ["--yes", "--yes", "--confirm", "{dbName}"], expectCode: 2, expectMessage: "The flag --yes is given more than once." },
	{ runbook: "db-health", input: "flag without its value (--top at the end)", args: ["--top"], expectCode: 2, expectMessage: "The flag --top needs a value" },
	{ runbook: "backfill", input: "flag without its value (--table followed by --set)", args: ["--table", "--set", "name = name"], expectCode: 2, expectMessage: "The flag --table needs a value" },
	{ runbook: "add-required-field", input: "flag with an empty value (--column=)", args: ["--table", "users", "--column=", "--type", "text"], expectCode: 2, expectMessage: "The flag --column needs a non-empty value." },
	{ runbook: "db-health", input: "number flag given a word (--top ten)", args: ["--top", "ten"], expectCode: 2, expectMessage: 'The flag --top needs a non-negative number, not "ten".' },
	{ runbook: "deploy-production", input: "boolean flag given a value (--yes=please)", args: ["--yes=please"], expectCode: 2, expectMessage: "The flag --yes takes no value." },
	{ runbook: "backup", input: "bad --format (tar)", args: ["create", "--format", "tar"], expectCode: 2, expectMessage: '--format must be custom or directory, not "tar".' },
	{ runbook: "emergency-rollback", input: "bad --mode (sideways)", args: ["--mode", "sideways"], expectCode: 2, expectMessage: '--mode must be restore or down, not "sideways".' },
	{ runbook: "emergency-rollback", input: "bad --method (rsync)", args: ["--method", "rsync"], expectCode: 2, expectMessage: 'not "rsync"' },
	{ runbook: "emergency-rollback", input: "--mode down without --to", args: ["--mode", "down"], expectCode: 2, expectMessage: "--mode down needs --to <migration>" },
	{ runbook: "switch-db-env", input: "unknown command (upstairs)", args: ["upstairs"], expectCode: 2, expectMessage: '<command> must be one of local, remote, status, not "upstairs".' },
	{ runbook: "switch-db-env", input: "no command", args: [], expectCode: 2, expectMessage: "Missing <command>" },
	{ runbook: "backup", input: "unexpected extra argument", args: ["list", "extra", "more"], expectCode: 2, expectMessage: 'Unexpected argument "more".' },
	{ runbook: "monitor", input: "--watch together with --once", args: ["--watch", "2", "--once"], expectCode: 2, expectMessage: "--watch and --once exclude each other." },
	// Names and SQL written by the operator.
	{ runbook: "backfill", input: "table that does not exist", args: ["--table", "no_such_table", "--set", "name = name", "--yes"], expectCode: 2, expectMessage: 'There is no table "no_such_table" in this database.' },
	{ runbook: "backfill", input: "column that does not exist in --set", args: ["--table", "users", "--set", "no_such_column = 1", "--yes"], expectCode: 2, expectMessage: "no_such_column" },
	{ runbook: "backfill", input: 'table name crafted to break out of quoting (users"; drop table users; --)', args: ["--table", 'users"; drop table users; --', "--set", "name = name", "--yes"], expectCode: 2, expectMessage: 'There is no table "users"; drop table users; --" in this database.' },
	{ runbook: "backfill", input: "--set column crafted to break out of quoting", args: ["--table", "users", "--set", '"name"" = 1; drop table users; --" = 1', "--yes"], expectCode: 2, expectMessage: 'users has no column "name" = 1; drop table users; --" (named in --set).' },
	{ runbook: "backfill", input: "--set with a syntax error", args: ["--table", "users", "--set", "name = 'x' ||", "--yes"], expectCode: 2, expectMessage: "syntax error" },
	{ runbook: "backfill", input: "--where with a syntax error", args: ["--table", "users", "--set", "name = upper(name)", "--where", "name = = 'x'", "--yes"], expectCode: 2, expectMessage: "syntax error" },
	{ runbook: "backfill", input: "--where carrying a second statement (; drop table users)", args: ["--table", "users", "--set", "name = upper(name)", "--where", "name <> upper(name); drop table users", "--yes"], expectCode: 2, expectMessage: "--where: it holds a semicolon" },
	{ runbook: "add-required-field", input: "table that does not exist", args: ["--table", "no_such_table", "--column", "nickname", "--type", "text", "--default", "'x'", "--yes"], expectCode: 2, expectMessage: "no_such_table" },
	{ runbook: "add-required-field", input: 'column name crafted to break out of quoting (x"; drop table users; --)', args: ["--table", "users", "--column", 'x"; drop table users; --', "--type", "text", "--default", "'x'", "--yes"], expectCode: 2, expectMessage: "use a snake_case name" },
	{ runbook: "add-required-field", input: "column that exists with another type (users.email as integer)", args: ["--table", "users", "--column", "email", "--type", "integer", "--default", "0", "--yes"], expectCode: 2, expectMessage: "users.email exists already, as text, not integer." },
	{ runbook: "add-required-field", input: "column that exists and is NOT NULL already (users.id)", args: ["--table", "users", "--column", "id", "--type", "text", "--default", "'x'", "--yes"], expectCode: 3, expectMessage: "users.id exists and is NOT NULL already. Nothing was changed." },
	{ runbook: "add-required-field", input: "type that does not exist", args: ["--table", "users", "--column", "nickname", "--type", "no_such_type", "--default", "'x'", "--yes"], expectCode: 2, expectMessage: "no_such_type" },
	{ runbook: "add-required-field", input: "--backfill with a syntax error", args: ["--table", "users", "--column", "nickname", "--type", "text", "--backfill", "'x' ||", "--yes"], expectCode: 2, expectMessage: "syntax error" },
	// Backups.
	{ runbook: "backup", input: "verify a backup id that does not exist", args: ["verify", "faceswap-20000101T000000Z"], expectCode: 2, expectMessage: 'There is no backup "faceswap-20000101T000000Z"' },
	{ runbook: "backup", input: "verify a truncated backup", args: ["verify", "{backupId}"], env: { BACKUP_DIR: "{truncatedDir}" }, expectCode: 1, expectMessage: "sha256 mismatch: the archive changed since it was written" },
	{ runbook: "backup", input: "verify a backup whose manifest does not match its file", args: ["verify", "{backupId}"], env: { BACKUP_DIR: "{mismatchDir}" }, expectCode: 1, expectMessage: "sha256 mismatch: the archive changed since it was written" },
	{ runbook: "emergency-rollback", input: "--backup id that does not exist", args: ["--backup", "faceswap-20000101T000000Z", "--yes", "--confirm", "{dbName}"], expectCode: 2, expectMessage: 'There is no backup "faceswap-20000101T000000Z"' },
	{ runbook: "emergency-rollback", input: "--backup that is truncated", args: ["--backup", "{backupId}", "--yes", "--confirm", "{dbName}"], env: { BACKUP_DIR: "{truncatedDir}" }, expectCode: 3, expectMessage: "sha256 mismatch: the archive changed since it was written" },
	// Confirmation and safety checks.
	{ runbook: "emergency-rollback", input: "--yes without --confirm (restore destroys data)", args: ["--backup", "{backupId}", "--yes"], expectCode: 3, expectMessage: "--yes alone is not enough" },
	{ runbook: "emergency-rollback", input: "--confirm with the wrong database name", args: ["--backup", "{backupId}", "--yes", "--confirm", "faceswap_prod"], expectCode: 3, expectMessage: '--confirm "faceswap_prod" does not match the target database' },
	{ runbook: "backfill", input: "no TTY and no --yes (would ask before updating)", args: ["--table", "users", "--set", "name = upper(name)"], expectCode: 3, expectMessage: "standard input is not a terminal" },
	{ runbook: "dev-migrate", input: "target marked production (RUNBOOK_ENV=production)", args: ["--name", "add_nickname", "--yes"], env: { RUNBOOK_ENV: "production" }, expectCode: 3, expectMessage: "marked production (RUNBOOK_ENV=production)" },
	{ runbook: "dev-migrate", input: "non-local host", args: ["--name", "add_nickname", "--yes"], env: { DATABASE_URL: "postgresql://app:secretpw1@db.example.com:5432/faceswap" }, expectCode: 3, expectMessage: "is not a local host" },
	{ runbook: "troubleshoot", input: "--reset on a production-marked target", args: ["--reset", "--yes", "--confirm", "{dbName}"], env: { RUNBOOK_ENV: "production" }, expectCode: 3, expectMessage: "Reset drops every table and all data: refused because the target is marked production" },
	// Environment files. As root, mode 000 does not stop reads or writes, so an unreadable .env is
	// a directory where the file should be (EISDIR) or a path under a regular file (ENOTDIR), and an
	// unwritable one is a symlink to a file whose name is too long for the temporary file written
	// beside it (ENAMETOOLONG): both fail the same code path a permission error would.
	{ runbook: "validate", input: ".env is a directory (unreadable)", args: [], env: { DATABASE_URL: undefined }, cwd: "{envIsDirDir}", expectCode: 2, expectMessage: "Cannot read the environment file .env (EISDIR)" },
	{ runbook: "switch-db-env", input: ".env is a directory (unreadable)", args: ["remote"], env: { DATABASE_URL: undefined, REMOTE_DATABASE_URL: "{db}" }, cwd: "{envIsDirDir}", expectCode: 2, expectMessage: "Cannot read the environment file .env (EISDIR)" },
	{ runbook: "switch-db-env", input: ".env that cannot be written", args: ["remote"], env: { DATABASE_URL: undefined, REMOTE_DATABASE_URL: "{db}", LOCAL_DATABASE_URL: "{db2}" }, cwd: "{unwritableEnvDir}", expectCode: 2, expectMessage: "Cannot write the environment file" },
	{ runbook: "backup", input: "--env-file pointing at a missing file", args: ["list", "--env-file", "{scratch}/missing.env"], via: "executable", expectCode: 2, expectMessage: "Cannot read the environment file" },
	{ runbook: "switch-db-env", input: "--env-file=<path under a regular file> (unreadable)", args: ["status", "--env-file={scratch}/regular-file/.env"], via: "executable", env: { DATABASE_URL: undefined }, expectCode: 2, expectMessage: "Cannot read the environment file" },
];

const repo = copyRepository();
const scratch = scratchDir();
// Outside scratch: the audit log grows with every run, refused ones included.
const audit = join(scratchDir(), "audit.jsonl");
const backupDir = join(scratch, "backups");
const truncatedDir = join(scratch, "backups-truncated");
const mismatchDir = join(scratch, "backups-mismatch");
const emptyBin = join(scratch, "empty-bin");
const oldBin = join(scratch, "old-bin");
const envIsDirDir = join(scratch, "env-is-dir");
const unwritableEnvDir = join(scratch, "env-unwritable");
let db = "";
const values: Record<string, string> = {};

const fill = (s: string) =>
	s.replace(/\{(\w+)\}/g, (m, k: string) => {
		if (!(k in values)) throw new Error(`unknown placeholder ${m}`);
		return values[k];
	});

/** The files any of these runbooks could write. The audit log is not among them: it records every run, refused ones too. */
const writable = () => [
	join(repo, ".env"),
	join(repo, "prisma"),
	join(repo, "logs"),
	join(repo, "backups"),
	backupDir,
	truncatedDir,
	mismatchDir,
	envIsDirDir,
	unwritableEnvDir,
	scratch,
];

beforeAll(async () => {
	db = await createSeededDatabase("bad_input", 100);
	const created = await runRunbook("backup", ["create"], {
		root: repo,
		env: { DATABASE_URL: db, BACKUP_DIR: backupDir, RUNBOOK_AUDIT_LOG: audit },
	});
	expect(created.code, created.stdout + created.stderr).toBe(0);
	const manifest = readdirSync(backupDir).find((f) => f.endsWith(".json"));
	if (!manifest) throw new Error("backup create wrote no manifest");
	const backupId = manifest.slice(0, -".json".length);
	const archive = readdirSync(backupDir).find(
		(f) => f.startsWith(backupId) && !f.endsWith(".json"),
	) as string;

	cpSync(backupDir, truncatedDir, { recursive: true });
	const truncated = join(truncatedDir, archive);
	truncateSync(truncated, Math.floor(readFileSync(truncated).length / 2));

	cpSync(backupDir, mismatchDir, { recursive: true });
	const m = JSON.parse(readFileSync(join(mismatchDir, manifest), "utf8"));
	m.sha256 = "0".repeat(64);
	writeFileSync(join(mismatchDir, manifest), JSON.stringify(m, null, 2), {
		mode: 0o600,
	});

	mkdirSync(emptyBin);
	mkdirSync(oldBin);
	writeFileSync(
		join(oldBin, "pg_dump"),
		'#!/bin/sh\necho "pg_dump (PostgreSQL) 9.6.0"\n',
	);
	chmodSync(join(oldBin, "pg_dump"), 0o755);
	// A PATH with node only: no pg_dump, pg_restore or psql (PG_BIN_DIR also set, to an empty dir).
	const nodeOnly = join(scratch, "node-only-bin");
	mkdirSync(nodeOnly);
	symlinkSync(process.execPath, join(nodeOnly, "node"));

	mkdirSync(join(envIsDirDir, ".env"), { recursive: true });
	writeFileSync(join(scratch, "regular-file"), "not a directory\n");

	// .env -> a file whose name leaves no room for the ".<name>.<random>.tmp" written beside it.
	mkdirSync(unwritableEnvDir);
	const longName = "e".repeat(250);
	const other = new URL(db);
	other.pathname = "/faceswap_local_profile";
	writeFileSync(
		join(unwritableEnvDir, longName),
		`DATABASE_URL=${other.toString()}\n`,
	);
	symlinkSync(join(unwritableEnvDir, longName), join(unwritableEnvDir, ".env"));

	const wrong = new URL(db);
	wrong.password = "not-the-password";
	const missing = new URL(db);
	missing.pathname = "/no_such_database_here";
	Object.assign(values, {
		db,
		db2: other.toString(),
		dbName: new URL(db).pathname.slice(1),
		wrongPassword: wrong.toString(),
		missingDb: missing.toString(),
		refusedPort: String(await freePort()),
		backupId,
		emptyBin,
		oldBin,
		noPgPath: nodeOnly,
		truncatedDir,
		mismatchDir,
		envIsDirDir,
		unwritableEnvDir,
		scratch,
	});
});

afterAll(async () => {
	if (db) await dropDatabase(db);
});

/**
 * snapshotFiles of the writable paths, except that a backup manifest's verification record
 * (verified_at, verify_error) is left out: verifying a backup reads it and records the outcome in
 * its manifest, which is what verification is for (a failed check marks the backup unusable).
 */
function filesNow(): Record<string, string> {
	const out = snapshotFiles(writable());
	for (const path of Object.keys(out)) {
		if (!path.endsWith(".json") || out[path] === "missing") continue;
		try {
			const { verified_at, verify_error, ...rest } = JSON.parse(
				readFileSync(path, "utf8"),
			);
			out[path] = JSON.stringify(rest);
		} catch {
			// not JSON: keep its sha256
		}
	}
	return out;
}

// Runbooks that take the per-database run lock: two at once on the one database would refuse
// each other, so their rows take turns while the others run alongside (and a row that still meets
// the lock, e.g. held by a runbook added to the lock later, is run again).
const LOCKING = new Set([
	"add-required-field",
	"backfill",
	"backup",
	"deploy-production",
	"emergency-rollback",
	"migrate-to-supabase",
	"switch-db-env",
	"troubleshoot",
]);
const LOCK_BUSY = "Another runbook is already changing";
let lockChain: Promise<unknown> = Promise.resolve();
function inTurn<T>(fn: () => Promise<T>): Promise<T> {
	const next = lockChain.then(fn, fn);
	lockChain = next.catch(() => {});
	return next;
}

describe("bad input: exit code, plain message, nothing changed", () => {
	it("has at least 45 rows, each named once", () => {
		expect(CASES.length).toBeGreaterThanOrEqual(45);
		const names = CASES.map((c) => `${c.runbook} | ${c.input}`);
		expect(new Set(names).size).toBe(names.length);
	});

	// Rows run a few at a time (each is mostly tsx starting up); a change made by one row would
	// also show in the snapshots of the rows beside it, so a failure here is never hidden.
	it.concurrent.for(CASES)(
		"$runbook | $input | exit $expectCode | $expectMessage",
		async (c, { expect }) => {
			const env: Record<string, string | undefined> = {
				DATABASE_URL: db,
				RUNBOOK_AUDIT_LOG: audit,
				BACKUP_DIR: backupDir,
			};
			for (const [k, v] of Object.entries(c.env ?? {}))
				env[k] = v === undefined ? undefined : fill(v);
			const args = c.args.map(fill);
			const cwd = c.cwd ? fill(c.cwd) : repo;

			const attempt = async () => {
				const dbBefore = await snapshotDatabase(db);
				const filesBefore = filesNow();
				const run = await runRunbook(c.runbook, args, {
					root: repo,
					cwd,
					env,
					asExecutable: c.via === "executable",
				});
				return {
					run,
					dbBefore,
					filesBefore,
					dbAfter: await snapshotDatabase(db),
					filesAfter: filesNow(),
				};
			};
			const once = () => (LOCKING.has(c.runbook) ? inTurn(attempt) : attempt());
			let r = await once();
			for (let i = 0; i < 3; i++) {
				if (!(r.run.stdout + r.run.stderr).includes(LOCK_BUSY)) break;
				await new Promise((done) => setTimeout(done, 1000));
				r = await once();
			}
			const out = r.run.stdout + r.run.stderr;

			expect(r.run.code, out).toBe(c.expectCode);
			expect(out).toContain(fill(c.expectMessage));
			expect(out, "a stack trace").not.toMatch(/\n\s+at /);
			expect(out).not.toContain(new URL(adminUrl()).password);
			expect(r.dbAfter, "the database changed").toEqual(r.dbBefore);
			expect(r.filesAfter, "a file changed").toEqual(r.filesBefore);
		},
	);
});
