// A NOT NULL column added without a default: found in pending migrations, in a failed one (its
// SQL, or the server's "contains null values" in its logs) and in schema.prisma's unmigrated
// changes; with whether the table has rows now (then the statement fails).

import { oneLineOf } from "../messages/diagnose.ts";
import type { AppliedRow, History } from "../migrations/history.ts";
import { lintSql } from "../migrations/lint.ts";
import { qualifiedName } from "../migrations/sql.ts";
import type { Db } from "../pg/db.ts";

export interface RequiredField {
	source: string;
	table: string | null;
	column: string | null;
	statement: string;
	tableHasRows: boolean | null;
}

const NULLS_IN_LOGS =
	/column "([^"]+)" of relation "([^"]+)" contains null values/i;

export async function findRequiredFields(
	db: Db,
	h: History,
	unfinished: AppliedRow[],
	migrationsVsSchema: string[],
): Promise<{ sources: string[]; found: RequiredField[] }> {
	const failedNames = new Set(unfinished.map((r) => r.migration_name));
	const sources: Array<[string, string]> = [
		...h.pending.map((m): [string, string] => [
			`pending migration ${m.name}`,
			m.sql,
		]),
		...h.local
			.filter((m) => failedNames.has(m.name))
			.map((m): [string, string] => [`failed migration ${m.name}`, m.sql]),
	];
	if (migrationsVsSchema.length) {
		sources.push([
			"prisma/schema.prisma (not yet migrated)",
			migrationsVsSchema.join("\n"),
		]);
	}
	const found: RequiredField[] = [];
	for (const [source, sql] of sources) {
		const lint = await lintSql(sql, source);
		for (const f of lint.findings.filter(
			(x) =>
				x.rule === "adding-required-field" ||
				x.rule === "adding-not-nullable-field",
		)) {
			found.push({
				source,
				table: f.table,
				column: columnOf(f.statement),
				statement: f.statement,
				tableHasRows: await tableHasRows(db, f.table),
			});
		}
	}
	for (const row of unfinished) {
		const m = NULLS_IN_LOGS.exec(row.logs ?? "");
		if (m && !found.some((f) => f.column === m[1])) {
			// The server's message names the relation as stored: quote it to look it up exactly.
			const table = qualifiedName({ schema: null, name: m[2] });
			found.push({
				source: `failed migration ${row.migration_name} (its logs)`,
				table,
				column: m[1],
				statement: oneLineOf(row.logs ?? ""),
				tableHasRows: await tableHasRows(db, table),
			});
		}
	}
	return { sources: sources.map(([s]) => s), found };
}

function columnOf(statement: string): string | null {
	const m =
		/ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[\w$]+)/i.exec(
			statement,
		) ??
		/ALTER\s+COLUMN\s+("(?:[^"]|"")+"|[\w$]+)\s+SET\s+NOT\s+NULL/i.exec(
			statement,
		);
	if (!m) return null;
	return m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1];
}

async function tableHasRows(
	db: Db,
	table: string | null,
): Promise<boolean | null> {
	if (!table) return null;
	const { rows } = await db.query<{ reg: string | null }>(
		"select to_regclass($1)::text as reg",
		[table],
	);
	if (!rows[0].reg) return false;
	const r = await db.query<{ any: boolean }>(
		`select exists (select 1 from ${rows[0].reg}) as any`,
	);
	return r.rows[0].any;
}
