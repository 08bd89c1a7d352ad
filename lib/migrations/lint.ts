// Linting migration SQL with squawk, and explaining each finding in the seed's terms
// (safe vs unsafe modifications) with what to do instead.

import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { RunbookError } from "../kit/errors.ts";
import {
	qualifiedName,
	readSql,
	type SqlStatement,
	statementAtLine,
} from "./sql.ts";

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
	"prefer-timestamp-tz",
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
			"Change it online instead: npx tsx runbooks/change-column-type.ts --table <table> --column <column> --type <type> (values checked first, a new column filled in batches and swapped in one short transaction); to remove an enum value: npx tsx runbooks/remove-enum-value.ts --enum <Enum> --value <VALUE> --replace-with <OTHER>.",
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
	"adding-serial-primary-key-field": {
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
	"ban-drop-not-null": {
		title: "making a required field optional",
		why: "App instances still running the old code assume the field always has a value; once NULLs are written, they fail when they read them.",
		instead:
			"Make the field optional in the app first (String? in schema.prisma, code that handles null), deploy, then drop NOT NULL in a later migration.",
	},
	"ban-create-domain-with-constraint": {
		title: "domain with a constraint",
		why: "Changing a domain's constraint later checks every column of that type in every table, under locks, with no NOT VALID escape.",
		instead:
			"Put the CHECK on the table's column instead (a CHECK constraint added NOT VALID, then VALIDATE).",
	},
	"ban-alter-domain-with-add-constraint": {
		title: "constraint added to a domain",
		why: "ALTER DOMAIN ... ADD CONSTRAINT checks every column of that type in every table while holding locks on them.",
		instead:
			"Add a CHECK constraint NOT VALID on each table's column, then VALIDATE it in a separate migration.",
	},
	"ban-truncate-cascade": {
		title: "TRUNCATE ... CASCADE",
		why: "CASCADE also empties every table that references this one through a foreign key, and theirs in turn: data lost well beyond the table named.",
		instead:
			"Name exactly the tables to empty, without CASCADE (and take a backup first: npx tsx runbooks/backup.ts).",
	},
	"ban-uncommitted-transaction": {
		title: "transaction left open",
		why: "A BEGIN without COMMIT leaves the migration's changes uncommitted, and Prisma records it as applied while PostgreSQL throws it away.",
		instead:
			"Remove BEGIN/COMMIT: Prisma already runs each migration.sql in one transaction.",
	},
	"transaction-nesting": {
		title: "transaction control inside a migration",
		why: "Prisma runs each migration.sql in one transaction; a BEGIN or COMMIT inside it ends that transaction early, so a failure leaves part of the migration applied.",
		instead:
			"Remove BEGIN/COMMIT/ROLLBACK; split the work into separate migrations if parts must commit on their own.",
	},
	"ban-concurrent-index-creation-in-transaction": {
		title: "CONCURRENTLY inside a transaction",
		why: "CREATE INDEX CONCURRENTLY cannot run inside a transaction block: with other statements in the same migration.sql, the migration fails.",
		instead:
			"Put the CREATE INDEX CONCURRENTLY alone in a migration of its own (Prisma then sends it outside a transaction).",
	},
	"identifier-too-long": {
		title: "name longer than 63 bytes",
		why: "PostgreSQL cuts names at 63 bytes: the object gets another name than the migration wrote, and a later migration (or prisma migrate diff) that uses the full name does not find it.",
		instead:
			'Give it a shorter name (@@index(..., map: "short_name") or @map in schema.prisma).',
	},
	"syntax-error": {
		title: "SQL that does not parse",
		why: "PostgreSQL will reject the statement, and the migration fails at that point.",
		instead:
			"Fix the SQL (npx prisma migrate diff prints what Prisma would write).",
	},
};

/**
 * The rules squawk 2.66 can report by default (its Rule list, less the opt-in require-table-schema;
 * identifier-too-long seen on a real history):
 * every one is either excluded above or explained above (a test walks this list).
 */
export const SQUAWK_RULES = [
	"require-concurrent-index-creation",
	"require-concurrent-index-deletion",
	"constraint-missing-not-valid",
	"adding-field-with-default",
	"adding-foreign-key-constraint",
	"changing-column-type",
	"adding-not-nullable-field",
	"adding-serial-primary-key-field",
	"renaming-column",
	"renaming-table",
	"disallowed-unique-constraint",
	"ban-drop-database",
	"prefer-bigint-over-int",
	"prefer-bigint-over-smallint",
	"prefer-identity",
	"prefer-robust-stmts",
	"prefer-text-field",
	"prefer-timestamp-tz",
	"ban-char-field",
	"ban-drop-column",
	"ban-drop-table",
	"ban-drop-not-null",
	"transaction-nesting",
	"adding-required-field",
	"ban-concurrent-index-creation-in-transaction",
	"ban-create-domain-with-constraint",
	"ban-alter-domain-with-add-constraint",
	"ban-truncate-cascade",
	"require-lock-timeout",
	"require-statement-timeout",
	"ban-uncommitted-transaction",
	"require-enum-value-ordering",
	"identifier-too-long",
	"syntax-error",
];

/** The seed's words for a rule: its title, why it is risky, what to do instead. */
export function explain(rule: string): Explanation | undefined {
	return EXPLAIN[rule];
}

/** Rules whose statement fails or corrupts the deploy whatever the table holds: never accepted but by --allow. */
export const NEVER_ACCEPTED = [
	"ban-drop-database",
	"ban-uncommitted-transaction",
	"ban-concurrent-index-creation-in-transaction",
	"syntax-error",
];

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
	/** What the refusal rests on, when known (the table and its rows). */
	context?: string;
	/** The table the statement is about (`schema.name`, quoted as PostgreSQL needs), or null. */
	table: string | null;
	/** Indexes a DROP INDEX statement drops (their table is in the catalog). */
	indexes: string[];
	/** Index of the statement in the file (0-based), -1 when the SQL did not parse. */
	statementNo: number;
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
	inTransaction = true,
): Promise<SquawkViolation[]> {
	const args = [
		"--reporter",
		"json",
		...(inTransaction ? ["--assume-in-transaction"] : []),
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

/**
 * Lints SQL text; `allow` names rules the operator accepted (--allow). Each finding is tied to its
 * statement as PostgreSQL's parser reads it, and so to the table that statement is about
 * (unqualified names in `defaultSchema`).
 */
export async function lintSql(
	sql: string,
	label: string,
	allow: string[] = [],
	pgVersion = "15",
	defaultSchema = "public",
): Promise<LintResult> {
	const dir = mkdtempSync(join(tmpdir(), "runbook-lint-"));
	const file = join(dir, "migration.sql");
	let stmts: SqlStatement[] = [];
	try {
		stmts = readSql(sql);
	} catch {
		// squawk reports the syntax error itself.
	}
	try {
		writeFileSync(file, sql);
		// A migration of one statement runs outside a transaction block (that is how Prisma can run
		// CREATE INDEX CONCURRENTLY); anything longer runs as one transaction.
		const violations = await runSquawk(file, pgVersion, stmts.length !== 1);
		const findings = violations.map((v): Finding => {
			const ex = EXPLAIN[v.rule_name] ?? {
				title: v.rule_name,
				why: v.message,
				instead:
					v.help ??
					"Rewrite the statement, or accept the risk by name with --allow.",
			};
			const stmt = statementAtLine(stmts, v.line + 1);
			return {
				rule: v.rule_name,
				line: v.line + 1,
				statement: statementAt(sql, v),
				message: v.message,
				...ex,
				allowed: allow.includes(v.rule_name),
				table: stmt?.table ? qualifiedName(stmt.table, defaultSchema) : null,
				indexes: (stmt?.dropsIndexes ?? []).map((i) =>
					qualifiedName(i, defaultSchema),
				),
				statementNo: stmt ? stmts.indexOf(stmt) : -1,
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
				: [
						...(f.context ? [`    On: ${f.context}`] : []),
						`    Why: ${f.why}`,
						`    Instead: ${f.instead}`,
					]),
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
	"adding-serial-primary-key-field",
	"adding-field-with-default",
];
