// What a migration's SQL does, read with PostgreSQL's own parser (libpg_query, compiled to
// WebAssembly: the grammar squawk builds on). Regular expressions misread quoted names with dots
// or quotes in them, names inside strings and dollar-quoted bodies, and statements split across
// lines; the parser reads each statement as the server will.

import { loadModule, parseSync } from "libpg-query";

await loadModule();

/** A table (or index) name as written: schema null when unqualified (then the search_path decides). */
export interface RelName {
	schema: string | null;
	name: string;
}

/** An identifier as quote_ident writes it: bare when PostgreSQL would read it back unchanged. */
export function quoteName(name: string): string {
	return /^[a-z_][a-z0-9_$]*$/.test(name)
		? name
		: `"${name.replace(/"/g, '""')}"`;
}

/**
 * `schema.name`, quoted where PostgreSQL needs it (public."Recipient"): both what the operator reads
 * and what to_regclass() resolves exactly. Unqualified names take `defaultSchema` (the schema the
 * migration runs in: public, or the URL's ?schema=).
 */
export function qualifiedName(r: RelName, defaultSchema = "public"): string {
	return `${quoteName(r.schema ?? defaultSchema)}.${quoteName(r.name)}`;
}

/** One statement of a migration, and what it does to which tables. */
export interface SqlStatement {
	/** The statement's text, from its first token to its semicolon. */
	sql: string;
	/** 1-based lines of its first and last character in the file. */
	startLine: number;
	endLine: number;
	/** The parser's node type, e.g. AlterTableStmt, IndexStmt, DoStmt. */
	kind: string;
	/** The table the statement is about (ALTER TABLE x, CREATE INDEX ... ON x, DROP TABLE x), or null. */
	table: RelName | null;
	/** Every table it locks, the one it is about first (a foreign key also locks the referenced table). */
	locks: RelName[];
	/** Tables it creates. */
	creates: RelName[];
	/** Tables it puts rows into (INSERT, COPY). */
	fills: RelName[];
	/** ALTER TABLE ... RENAME TO: the table's new name. */
	renamesTo?: RelName;
	/** Indexes it drops (DROP INDEX): their table is found in the catalog. */
	dropsIndexes: RelName[];
	/** CREATE INDEX: the index's name, null when PostgreSQL picks it. */
	indexName?: string | null;
	/** Set for CREATE INDEX CONCURRENTLY: the index's name (null if unnamed) and table. */
	concurrentIndex?: { index: string | null; table: RelName };
	/** Ends or starts a transaction (BEGIN, COMMIT, ROLLBACK ...). */
	transactionControl: boolean;
}

/** The SQL does not parse: PostgreSQL would reject it too. */
export class SqlSyntaxError extends Error {
	constructor(
		message: string,
		readonly line: number,
	) {
		super(message);
	}
}

// biome-ignore lint/suspicious/noExplicitAny: libpg_query's JSON tree; read defensively below.
type Node = any;

const rel = (r: Node): RelName => ({
	schema: r?.schemaname ?? null,
	name: r?.relname ?? "",
});

/** A name given as a list of String nodes (DROP TABLE a.b). */
const listName = (items: Node[]): RelName => {
	const parts = (items ?? []).map((i: Node) => i?.String?.sval ?? "");
	return parts.length >= 2
		? { schema: parts[parts.length - 2], name: parts[parts.length - 1] }
		: { schema: null, name: parts[0] ?? "" };
};

/** Tables a list of constraints references (FOREIGN KEY ... REFERENCES t). */
function referenced(constraints: Node[]): RelName[] {
	return (constraints ?? [])
		.map((c: Node) => c?.Constraint)
		.filter((c: Node) => c?.contype === "CONSTR_FOREIGN" && c.pktable)
		.map((c: Node) => rel(c.pktable));
}

function describe(
	kind: string,
	n: Node,
): Omit<SqlStatement, "sql" | "startLine" | "endLine" | "kind"> {
	const out = {
		table: null as RelName | null,
		locks: [] as RelName[],
		creates: [] as RelName[],
		fills: [] as RelName[],
		dropsIndexes: [] as RelName[],
		transactionControl: false,
	} as Omit<SqlStatement, "sql" | "startLine" | "endLine" | "kind">;
	const about = (r: RelName) => {
		out.table = r;
		out.locks.push(r);
	};
	switch (kind) {
		case "AlterTableStmt": {
			if (n.objtype !== "OBJECT_TABLE") break;
			about(rel(n.relation));
			const defs = (n.cmds ?? []).map((c: Node) => c?.AlterTableCmd?.def);
			out.locks.push(
				...referenced(defs),
				...defs.flatMap((d: Node) => referenced(d?.ColumnDef?.constraints)),
			);
			break;
		}
		case "IndexStmt":
			about(rel(n.relation));
			out.indexName = n.idxname ?? null;
			if (n.concurrent)
				out.concurrentIndex = {
					index: n.idxname ?? null,
					table: rel(n.relation),
				};
			break;
		case "CreateStmt": {
			// About the new table (findings on it concern a table with no rows), locking none.
			out.table = rel(n.relation);
			out.creates.push(rel(n.relation));
			const elts = n.tableElts ?? [];
			out.locks.push(
				...referenced(elts),
				...elts.flatMap((e: Node) => referenced(e?.ColumnDef?.constraints)),
			);
			break;
		}
		case "CreateTableAsStmt":
			out.creates.push(rel(n.into?.rel));
			break;
		case "DropStmt":
			if (n.removeType === "OBJECT_TABLE") {
				const names = (n.objects ?? []).map((o: Node) =>
					listName(o?.List?.items),
				);
				if (names[0]) about(names[0]);
				out.locks.push(...names.slice(1));
			} else if (n.removeType === "OBJECT_INDEX") {
				out.dropsIndexes.push(
					...(n.objects ?? []).map((o: Node) => listName(o?.List?.items)),
				);
			}
			break;
		case "RenameStmt":
			if (
				["OBJECT_TABLE", "OBJECT_COLUMN", "OBJECT_TABCONSTRAINT"].includes(
					n.renameType,
				)
			)
				about(rel(n.relation));
			break;
		case "TruncateStmt":
		case "LockStmt": {
			const names = (n.relations ?? []).map((r: Node) => rel(r?.RangeVar));
			if (names[0]) about(names[0]);
			out.locks.push(...names.slice(1));
			break;
		}
		case "InsertStmt":
		case "UpdateStmt":
		case "DeleteStmt":
			about(rel(n.relation));
			// An UPDATE or DELETE adds no rows to a table that had none.
			if (kind === "InsertStmt") out.fills.push(rel(n.relation));
			break;
		case "CopyStmt":
			if (n.is_from && n.relation) {
				about(rel(n.relation));
				out.fills.push(rel(n.relation));
			}
			break;
		case "SelectStmt": {
			// `TABLE x` (and SELECT ... FROM x): the first table read.
			const from = n.fromClause?.[0]?.RangeVar;
			if (from) out.table = rel(from);
			break;
		}
		case "CommentStmt":
			if (n.objtype === "OBJECT_TABLE") about(listName(n.object?.List?.items));
			break;
		case "TransactionStmt":
			out.transactionControl = [
				"TRANS_STMT_BEGIN",
				"TRANS_STMT_START",
				"TRANS_STMT_COMMIT",
				"TRANS_STMT_ROLLBACK",
				"TRANS_STMT_PREPARE",
				"TRANS_STMT_COMMIT_PREPARED",
				"TRANS_STMT_ROLLBACK_PREPARED",
			].includes(n.kind);
			break;
	}
	return out;
}

/** Where the first token starts: past whitespace and comments (libpg_query counts them in). */
function firstToken(text: string): number {
	let i = 0;
	for (;;) {
		while (i < text.length && /\s/.test(text[i])) i++;
		if (text.startsWith("--", i)) {
			const nl = text.indexOf("\n", i);
			i = nl === -1 ? text.length : nl + 1;
		} else if (text.startsWith("/*", i)) {
			let depth = 0;
			do {
				if (text.startsWith("/*", i)) {
					depth++;
					i += 2;
				} else if (text.startsWith("*/", i)) {
					depth--;
					i += 2;
				} else i++;
			} while (depth > 0 && i < text.length);
		} else return i;
	}
}

const linesIn = (s: string) => s.split("\n").length - 1;

/** The statements of a migration.sql, as PostgreSQL reads them. Throws SqlSyntaxError. */
export function readSql(sql: string): SqlStatement[] {
	let tree: {
		stmts?: Array<{ stmt: Node; stmt_location?: number; stmt_len?: number }>;
	};
	try {
		tree = parseSync(sql);
	} catch (err) {
		const e = err as Error & { sqlDetails?: { cursorPosition?: number } };
		const at = e.sqlDetails?.cursorPosition ?? 0;
		const line = linesIn(Buffer.from(sql).subarray(0, at).toString()) + 1;
		throw new SqlSyntaxError(`${e.message} (line ${line})`, line);
	}
	// Locations are byte offsets into the UTF-8 text.
	const bytes = Buffer.from(sql);
	return (tree.stmts ?? []).map((s) => {
		const from = s.stmt_location ?? 0;
		const to = s.stmt_len ? from + s.stmt_len : bytes.length;
		const raw = bytes.subarray(from, to).toString();
		const skip = firstToken(raw);
		const text = raw.slice(skip).trimEnd();
		const startLine =
			linesIn(bytes.subarray(0, from).toString() + raw.slice(0, skip)) + 1;
		const kind = Object.keys(s.stmt)[0];
		return {
			sql: text,
			startLine,
			endLine: startLine + linesIn(text),
			kind,
			...describe(kind, s.stmt[kind]),
		};
	});
}

const key = (r: RelName, defaultSchema: string) =>
	qualifiedName(r, defaultSchema);

/**
 * Existing tables the SQL locks, as `schema.name` (public."Recipient"), in order of first
 * appearance; tables it creates itself are left out (nobody else can hold a lock on them).
 */
export function tablesTouched(sql: string, defaultSchema = "public"): string[] {
	const stmts = readSql(sql);
	const fresh = new Set(
		stmts.flatMap((s) => s.creates.map((r) => key(r, defaultSchema))),
	);
	return [
		...new Set(stmts.flatMap((s) => s.locks.map((r) => key(r, defaultSchema)))),
	].filter((t) => !fresh.has(t));
}

/** Whether the SQL manages transactions itself (then a failure may leave part of it applied). */
export function hasTransactionControl(sql: string): boolean {
	return readSql(sql).some((s) => s.transactionControl);
}

/**
 * Whether a migration with BEGIN/COMMIT in it still commits as one transaction: its transaction
 * control is BEGIN and a single COMMIT that is its last statement (Prisma's own pattern for enum
 * changes). In one multi-statement query, BEGIN turns the implicit transaction into an explicit
 * one, statements before it included, so nothing commits before that final COMMIT.
 */
export function commitsAsOne(sql: string): boolean {
	const stmts = readSql(sql);
	const control = stmts.filter((s) => s.transactionControl);
	const ends = control.filter((s) => !/^(BEGIN|START)\b/i.test(s.sql));
	return (
		ends.length === 1 &&
		stmts[stmts.length - 1] === ends[0] &&
		/^COMMIT\b/i.test(ends[0].sql)
	);
}

/**
 * The indexes a migration builds with CREATE INDEX CONCURRENTLY, when that is all it does (the only
 * way it can run: CONCURRENTLY refuses a transaction block, so Prisma must send it alone). Null for
 * any other migration.
 */
export function concurrentIndexBuilds(
	sql: string,
): Array<{ index: string | null; table: RelName }> | null {
	let stmts: SqlStatement[];
	try {
		stmts = readSql(sql);
	} catch {
		return null;
	}
	const builds = stmts.map((s) => s.concurrentIndex);
	return builds.length > 0 && builds.every(Boolean)
		? (builds as Array<{ index: string | null; table: RelName }>)
		: null;
}

/** The statement a line (1-based) of the file belongs to, or the next one after it. */
export function statementAtLine(
	stmts: SqlStatement[],
	line: number,
): SqlStatement | null {
	return (
		stmts.find((s) => s.startLine <= line && line <= s.endLine) ??
		stmts.find((s) => s.startLine >= line) ??
		null
	);
}

/** The subcommands of one ALTER TABLE statement: AT_DropColumn, AT_AlterColumnType ... and the column. */
export function alterCommands(
	statement: string,
): Array<{ subtype: string; name: string | null }> {
	const tree = parseSync(statement) as { stmts?: Array<{ stmt: Node }> };
	return (tree.stmts ?? []).flatMap((s) =>
		(s.stmt.AlterTableStmt?.cmds ?? []).map((c: Node) => ({
			subtype: c?.AlterTableCmd?.subtype ?? "",
			name: c?.AlterTableCmd?.name ?? null,
		})),
	);
}
