// Operator-written SQL fragments (a --set list, a --where condition): split at top-level commas
// and checked for what would break the statement they are placed in (a stray semicolon, an
// unclosed quote or parenthesis), without pretending to parse SQL. PostgreSQL itself checks the
// rest when the runbook EXPLAINs the statement in a rolled-back transaction.

import { usageError } from "../kit/errors.ts";

/** Offsets of `sep` outside quotes, comments, dollar quotes and parentheses; throws on a stray ';' or imbalance. */
export function topLevelOffsets(
	sql: string,
	sep: string,
	label: string,
): number[] {
	const found: number[] = [];
	let depth = 0;
	let i = 0;
	const fail = (what: string): never => {
		throw usageError(
			`${label}: ${what}.`,
			`${label} is SQL placed inside the runbook's statement; check its quotes and parentheses.`,
		);
	};
	while (i < sql.length) {
		const c = sql[i];
		const next = sql[i + 1];
		if (c === "'") {
			// '...' with '' as an escaped quote; E'...' also takes backslash escapes.
			const escapes =
				i > 0 &&
				/[eE]/.test(sql[i - 1]) &&
				(i < 2 || !/[\w$]/.test(sql[i - 2]));
			i++;
			for (;;) {
				if (i >= sql.length) fail("a string literal is not closed");
				if (escapes && sql[i] === "\\") {
					i += 2;
					continue;
				}
				if (sql[i] === "'") {
					if (sql[i + 1] === "'") {
						i += 2;
						continue;
					}
					break;
				}
				i++;
			}
			i++;
			continue;
		}
		if (c === '"') {
			const end = sql.indexOf('"', i + 1);
			if (end === -1) fail("a quoted name is not closed");
			i = end + 1;
			continue;
		}
		if (c === "-" && next === "-") {
			const end = sql.indexOf("\n", i);
			i = end === -1 ? sql.length : end + 1;
			continue;
		}
		if (c === "/" && next === "*") {
			let nest = 1;
			i += 2;
			while (nest > 0) {
				if (i >= sql.length) fail("a /* comment */ is not closed");
				if (sql[i] === "/" && sql[i + 1] === "*") {
					nest++;
					i += 2;
				} else if (sql[i] === "*" && sql[i + 1] === "/") {
					nest--;
					i += 2;
				} else i++;
			}
			continue;
		}
		if (c === "$" && (i === 0 || !/[\w$]/.test(sql[i - 1]))) {
			const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i));
			if (tag) {
				const end = sql.indexOf(tag[0], i + tag[0].length);
				if (end === -1) fail(`a ${tag[0]} quoted string is not closed`);
				i = end + tag[0].length;
				continue;
			}
		}
		if (c === "(" || c === "[") depth++;
		else if (c === ")" || c === "]") {
			depth--;
			if (depth < 0) fail(`"${c}" has no opening partner`);
		} else if (depth === 0 && c === ";") {
			fail("it holds a semicolon: give one expression, not statements");
		} else if (depth === 0 && c === sep) found.push(i);
		i++;
	}
	if (depth !== 0) fail("a parenthesis is not closed");
	return found;
}

export function splitTopLevel(
	sql: string,
	sep: string,
	label: string,
): string[] {
	const cuts = topLevelOffsets(sql, sep, label);
	const parts: string[] = [];
	let start = 0;
	for (const cut of cuts) {
		parts.push(sql.slice(start, cut));
		start = cut + 1;
	}
	parts.push(sql.slice(start));
	return parts;
}

/** A name as PostgreSQL reads it: "Quoted" keeps its case, a bare name folds to lower case. */
export function identifierValue(token: string): string {
	return token.startsWith('"')
		? token.slice(1, -1).replace(/""/g, '"')
		: token.toLowerCase();
}

export interface Assignment {
	/** The column's name as stored in the catalog. */
	column: string;
	/** The operator's expression, as written. */
	expr: string;
}

const ASSIGNMENT = /^\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)\s*=([\s\S]*)$/;

/** `col = expr, other = expr` into assignments; a usage error (exit 2) for anything else. */
export function parseAssignments(text: string, label = "--set"): Assignment[] {
	const parts = splitTopLevel(text, ",", label);
	const out: Assignment[] = [];
	for (const part of parts) {
		const m = ASSIGNMENT.exec(part);
		if (!m?.[2].trim()) {
			throw usageError(
				`${label} must read "<column> = <expression>" (several separated by commas), not "${part.trim()}".`,
				`Example: ${label} "thumbnail_path = 'thumbs/' || id || '.jpg'"`,
			);
		}
		const column = identifierValue(m[1]);
		if (out.some((a) => a.column === column))
			throw usageError(`${label} sets the column ${column} twice.`);
		out.push({ column, expr: m[2].trim() });
	}
	return out;
}

/**
 * Whether PostgreSQL rejected the SQL itself (syntax, unknown name, type mismatch, bad literal,
 * unsupported feature) rather than failing for another reason (permissions, locks, connection).
 */
export function sqlErrorIsBadInput(err: unknown): boolean {
	const code = (err as { code?: string }).code;
	return (
		typeof code === "string" && /^(42|22|0A|2F)/.test(code) && code !== "42501"
	);
}
