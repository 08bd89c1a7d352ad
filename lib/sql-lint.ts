// Linting migration SQL with squawk, and explaining each finding in the seed's terms
// (safe vs unsafe modifications) with what to do instead.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RunbookError } from "./errors.ts";

const execFileAsync = promisify(execFile);

/**
 * Rules left out, and why: Prisma's ordinary SQL for safe changes trips them, or the runbooks
 * satisfy them themselves.
 * - prefer-robust-stmts: Prisma runs each migration.sql in one transaction and records it.
 * - prefer-bigint-over-int, prefer-bigint-over-smallint, prefer-identity, prefer-timestamptz,
 *   prefer-text-field: type style; Prisma maps Int, DateTime and @db.VarChar this way by design.
 * - require-lock-timeout, require-statement-timeout: the deploy runbook sets both itself.
 * - require-enum-value-ordering: appending an enum value is the seed's safe pattern.
 */
export const EXCLUDED_RULES = [
	"prefer-robust-stmts",
	"prefer-bigint-over-int",
	"prefer-bigint-over-smallint",
	"prefer-identity",
	"prefer-timestamptz",
	"prefer-text-field",
	"require-lock-timeout",
	"require-statement-timeout",
	"require-enum-value-ordering",
];

interface Explanation {
	/** The seed's name for the risk. */
	title: string;
	why: string;
	instead: string;
}

const EXPLAIN: Record<string, Explanation> = {
	"adding-required-field": {
		title: "NOT NULL column without a default",
		why: "Existing rows have no value for it: the migration fails on a table with rows, and the app's older code cannot insert.",
		instead:
			"Add it as optional, backfill, then make it required (npx tsx runbooks/add-required-field.ts), or give it a constant DEFAULT.",
	},
	"adding-not-nullable-field": {
		title: "making a field required",
		why: "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock, blocking reads and writes meanwhile, and fails if any row is null.",
		instead:
			"Backfill first, add CHECK (col IS NOT NULL) NOT VALID, VALIDATE it, then SET NOT NULL (npx tsx runbooks/add-required-field.ts).",
	},
	"changing-column-type": {
		title: "changing a data type",
		why: "Most type changes rewrite the table under an ACCESS EXCLUSIVE lock (reads and writes wait), and can fail or truncate on existing data. Shrinking a length is one of them.",
		instead:
			"Add a new column, backfill it in batches, switch the app over, then drop the old column in a later release.",
	},
	"require-concurrent-index-creation": {
		title: "index built without CONCURRENTLY",
		why: "CREATE INDEX blocks every write to the table until the index is built, which on a large table can take minutes.",
		instead:
			"Create it with CREATE INDEX CONCURRENTLY in a migration of its own (Prisma runs a one-statement migration outside a transaction block only if you split it).",
	},
	"require-concurrent-index-deletion": {
		title: "index dropped without CONCURRENTLY",
		why: "DROP INDEX takes an ACCESS EXCLUSIVE lock on the table, blocking reads and writes while it waits and runs.",
		instead: "Use DROP INDEX CONCURRENTLY in a migration of its own.",
	},
	"constraint-missing-not-valid": {
		title: "constraint validated in place",
		why: "Adding a CHECK or foreign key validates every existing row while holding a lock that blocks writes.",
		instead:
			"Add it NOT VALID, then VALIDATE CONSTRAINT in a separate migration (validation does not block writes).",
	},
	"adding-foreign-key-constraint": {
		title: "foreign key on an existing table",
		why: "Adding a foreign key scans the table under a SHARE ROW EXCLUSIVE lock on both tables, blocking writes.",
		instead:
			"Add it NOT VALID, then VALIDATE CONSTRAINT in a separate migration.",
	},
	"disallowed-unique-constraint": {
		title: "unique constraint built in place",
		why: "Adding a UNIQUE constraint builds its index while blocking writes.",
		instead:
			"CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING INDEX.",
	},
	"adding-field-with-default": {
		title: "column with a volatile default",
		why: "A volatile DEFAULT (now(), random(), gen_random_uuid()) rewrites every row under an ACCESS EXCLUSIVE lock.",
		instead:
			"Add the column without a default, backfill in batches (npx tsx runbooks/backfill.ts), then set the default.",
	},
	"adding-primary-key-constraint": {
		title: "primary key added in place",
		why: "Adding a primary key builds its index while blocking reads and writes.",
		instead:
			"CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX.",
	},
	"ban-drop-column": {
		title: "removing a column",
		why: "Data in the column is lost, and app instances still running the old code fail when they read or write it.",
		instead:
			"Stop using the column in the app first, deploy, then drop it in a later migration (after a backup).",
	},
	"ban-drop-table": {
		title: "removing a table",
		why: "Its data is lost, and app instances still running the old code fail.",
		instead:
			"Stop using the table in the app first, deploy, then drop it in a later migration (after a backup).",
	},
	"ban-drop-database": {
		title: "dropping a database",
		why: "Everything in it is lost.",
		instead: "Never in a migration.",
	},
	"renaming-column": {
		title: "renaming a column",
		why: "App instances still running the old code break at once.",
		instead:
			"Add the new column, write to both, backfill, switch reads, then drop the old one.",
	},
	"renaming-table": {
		title: "renaming a table",
		why: "App instances still running the old code break at once.",
		instead:
			"Create the new table (or a view under the old name), migrate, then drop the old one.",
	},
	"ban-char-field": {
		title: "char(n) column",
		why: "char(n) pads with spaces and compares surprisingly; changing it later rewrites the table.",
		instead: "Use text (Prisma String) with a CHECK on the length if needed.",
	},
};

export interface Finding {
	rule: string;
	line: number;
	statement: string;
	message: string;
	title: string;
	why: string;
	instead: string;
	allowed: boolean;
	/** Why an allowed finding was accepted, when not by --allow (e.g. the table is small). */
	note?: string;
}

export interface LintResult {
	file: string;
	findings: Finding[];
}

/**
 * squawk's binary ships in one npm package per platform (@squawk-cli/<platform>-<arch>). Only the
 * linux-x64 one is a dependency: the registry reachable here lacks the others, and npm ci refuses
 * a lockfile without them. Elsewhere set SQUAWK_BIN or put squawk on PATH.
 */
function squawkBin(): string {
	if (process.env.SQUAWK_BIN) return process.env.SQUAWK_BIN;
	try {
		return createRequire(import.meta.url).resolve(
			`@squawk-cli/${process.platform}-${process.arch}/bin/squawk`,
		);
	} catch {
		return "squawk";
	}
}

interface SquawkViolation {
	line: number;
	line_end: number;
	column: number;
	column_end: number;
	message: string;
	help: string | null;
	rule_name: string;
}

async function runSquawk(
	file: string,
	pgVersion: string,
): Promise<SquawkViolation[]> {
	const args = [
		"--reporter",
		"json",
		"--assume-in-transaction",
		"--pg-version",
		pgVersion,
		"--exclude",
		EXCLUDED_RULES.join(","),
		file,
	];
	let stdout: string;
	try {
		({ stdout } = await execFileAsync(squawkBin(), args, {
			maxBuffer: 16 * 1024 * 1024,
		}));
	} catch (err) {
		// squawk exits 1 when it finds something; its JSON is still on stdout.
		const e = err as {
			stdout?: string;
			stderr?: string;
			message: string;
			code?: string;
		};
		if (e.code === "ENOENT") {
			throw new RunbookError(
				"squawk (the SQL linter) is not installed for this platform.",
				1,
				"Install it (npm install -g squawk-cli, or a release binary) and set SQUAWK_BIN to its path.",
			);
		}
		if (!e.stdout?.trim().startsWith("[")) {
			throw new RunbookError(
				`squawk could not lint ${file}: ${(e.stderr || e.message).trim().split("\n")[0]}`,
			);
		}
		stdout = e.stdout;
	}
	return JSON.parse(stdout) as SquawkViolation[];
}

function statementAt(sql: string, v: SquawkViolation): string {
	const lines = sql.split("\n").slice(v.line, v.line_end + 1);
	return lines.join(" ").replace(/\s+/g, " ").trim().slice(0, 200);
}

/** Lints SQL text; `allow` names rules the operator accepted (--allow). */
export async function lintSql(
	sql: string,
	label: string,
	allow: string[] = [],
	pgVersion = "15",
): Promise<LintResult> {
	const dir = mkdtempSync(join(tmpdir(), "runbook-lint-"));
	const file = join(dir, "migration.sql");
	try {
		writeFileSync(file, sql);
		const violations = await runSquawk(file, pgVersion);
		const findings = violations.map((v): Finding => {
			const ex = EXPLAIN[v.rule_name] ?? {
				title: v.rule_name,
				why: v.message,
				instead: v.help ?? "",
			};
			return {
				rule: v.rule_name,
				line: v.line + 1,
				statement: statementAt(sql, v),
				message: v.message,
				...ex,
				allowed: allow.includes(v.rule_name),
			};
		});
		// One finding per rule and statement: squawk can report a rule twice for one statement.
		const unique = findings.filter(
			(f, i) =>
				findings.findIndex((g) => g.rule === f.rule && g.line === f.line) === i,
		);
		return { file: label, findings: unique };
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

/** Human lines for one file's findings, Squawk-documentation style. */
export function describeFindings(result: LintResult): string[] {
	if (result.findings.length === 0)
		return [`${result.file}: no unsafe statements found`];
	const lines = [`${result.file}: ${result.findings.length} finding(s)`];
	for (const f of result.findings) {
		lines.push(
			`  ${f.allowed ? "~ allowed" : "✗ unsafe"}: ${f.title} [${f.rule}] at line ${f.line}`,
			`    ${f.statement}`,
			...(f.note
				? [`    Accepted: ${f.note}`]
				: [`    Why: ${f.why}`, `    Instead: ${f.instead}`]),
		);
	}
	return lines;
}

/**
 * Rules whose risk is a lock held while the table is scanned or an index is built: harmless on a
 * small table, where that lasts a fraction of a second. (Rules about lost data, failing
 * statements or breaking old app code do not depend on size and are not here.)
 */
export const SIZE_BOUND_RULES = [
	"require-concurrent-index-creation",
	"require-concurrent-index-deletion",
	"constraint-missing-not-valid",
	"adding-foreign-key-constraint",
	"disallowed-unique-constraint",
	"adding-primary-key-constraint",
	"adding-field-with-default",
];

/**
 * Accepts size-bound findings on tables smaller than limitBytes. `tableOf` names a finding's table
 * and `sizeOf` gives its size in bytes (table and TOAST, no indexes), or null when it does not
 * exist yet (created by an earlier migration of the same deploy: empty, so accepted as well).
 * Other findings are returned unchanged.
 */
export async function acceptOnSmallTables(
	result: LintResult,
	limitBytes: number,
	tableOf: (f: Finding) => Promise<string | null>,
	sizeOf: (table: string) => Promise<number | null>,
	createdEarlier: (table: string) => boolean = () => false,
): Promise<LintResult> {
	const findings: Finding[] = [];
	for (const f of result.findings) {
		if (f.allowed || !SIZE_BOUND_RULES.includes(f.rule)) {
			findings.push(f);
			continue;
		}
		const table = await tableOf(f);
		const size = table ? await sizeOf(table) : null;
		const mb = (n: number) =>
			`${(n / 1048576).toFixed(n < 1048576 ? 2 : 0)} MB`;
		if (table && size === null && createdEarlier(table)) {
			findings.push({
				...f,
				allowed: true,
				note: `${table} is created by an earlier migration of this deploy, so it is empty.`,
			});
		} else if (table && size !== null && size < limitBytes) {
			findings.push({
				...f,
				allowed: true,
				note: `${table} is small (${mb(size)}, under ${mb(limitBytes)}): the lock lasts a fraction of a second.`,
			});
		} else {
			findings.push(f);
		}
	}
	return { ...result, findings };
}
