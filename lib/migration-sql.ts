// What a migration's SQL touches: the tables its statements lock, read from the statement text
// (Prisma writes quoted, mostly unqualified names), and the one table a lint finding is about.

const NAME = String.raw`(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)`;
const QUALIFIED = String.raw`(${NAME}(?:\s*\.\s*${NAME})?)`;

const unquote = (part: string) =>
	part.startsWith('"')
		? part.slice(1, -1).replace(/""/g, '"')
		: part.toLowerCase();

/** `"public"."users"` or `users` -> `public.users`; unqualified names are in public. */
export function normalizeTable(name: string): string {
	const parts = name.split(/\s*\.\s*(?=(?:[^"]*"[^"]*")*[^"]*$)/).map(unquote);
	return parts.length === 1 ? `public.${parts[0]}` : parts.join(".");
}

// Statements that lock an existing table, and where its name stands.
const PATTERNS = [
	String.raw`\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?${QUALIFIED}`,
	String.raw`\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?:${NAME}\s+)?ON\s+(?:ONLY\s+)?${QUALIFIED}`,
	String.raw`\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?${QUALIFIED}`,
	String.raw`\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?${QUALIFIED}`,
	String.raw`\bREFERENCES\s+${QUALIFIED}`,
	String.raw`\bINSERT\s+INTO\s+${QUALIFIED}`,
	String.raw`\bUPDATE\s+(?:ONLY\s+)?${QUALIFIED}\s+SET\b`,
	String.raw`\bDELETE\s+FROM\s+(?:ONLY\s+)?${QUALIFIED}`,
	String.raw`\bLOCK\s+(?:TABLE\s+)?(?:ONLY\s+)?${QUALIFIED}`,
	String.raw`\bCOMMENT\s+ON\s+TABLE\s+${QUALIFIED}`,
];

/** SQL without comments and string literals, so names inside them are not taken for tables. */
function code(sql: string): string {
	return sql
		.replace(/--[^\n]*/g, " ")
		.replace(/\/\*[\s\S]*?\*\//g, " ")
		.replace(/'(?:[^']|'')*'/g, "''");
}

/** Tables the SQL creates (locks on them cannot block anyone: they do not exist yet). */
function created(sql: string): Set<string> {
	const re = new RegExp(
		String.raw`\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?${QUALIFIED}`,
		"gi",
	);
	return new Set([...code(sql).matchAll(re)].map((m) => normalizeTable(m[1])));
}

/** Existing tables the SQL locks (`schema.table`), in order of first appearance. */
export function tablesTouched(sql: string): string[] {
	const text = code(sql);
	const fresh = created(sql);
	const found: Array<[number, string]> = [];
	for (const p of PATTERNS) {
		for (const m of text.matchAll(new RegExp(p, "gi")))
			found.push([m.index ?? 0, normalizeTable(m[1])]);
	}
	return [
		...new Set(found.sort((a, b) => a[0] - b[0]).map(([, t]) => t)),
	].filter((t) => !fresh.has(t));
}

/** The table one statement is about (ALTER TABLE x / CREATE INDEX ... ON x / DROP TABLE x), or null. */
export function tableOfStatement(statement: string): string | null {
	return tablesTouched(statement)[0] ?? null;
}

/** Whether the SQL manages transactions itself (then a failure may leave part of it applied). */
export function hasTransactionControl(sql: string): boolean {
	return /(^|;)\s*(BEGIN|COMMIT|ROLLBACK|END|START\s+TRANSACTION)\b/i.test(
		code(sql).replace(/\$\$[\s\S]*?\$\$/g, "''"),
	);
}
