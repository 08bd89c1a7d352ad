// Judging each lint finding by the table it is about, as that table will be when the statement
// runs: created earlier in this deploy or existing with no rows (nothing to lose, a lock over no
// rows: accepted whatever the rule), small (accepted when the only risk is a short lock), or
// holding rows (refused unless --allow, naming the rows). Tables are looked up by their exact
// name (to_regclass on the quoted form), so "Recipient" and other schemas resolve as PostgreSQL
// resolves them.

import type { Db } from "../pg/db.ts";
import {
	type Finding,
	type LintResult,
	NEVER_ACCEPTED,
	SIZE_BOUND_RULES,
} from "./lint.ts";
import { commitsAsOne, qualifiedName, readSql } from "./sql.ts";

/** Tables at or under this size are counted exactly; larger ones are estimated from statistics. */
export const EXACT_COUNT_BYTES = 64 * 1024 * 1024;

export interface TableRows {
	bytes: number;
	rows: number;
	/** true: count(*); false: pg_class.reltuples (the planner's estimate). */
	exact: boolean;
}

const mb = (n: number) => `${(n / 1048576).toFixed(n < 1048576 ? 2 : 0)} MB`;

export function describeRows(table: string, r: TableRows): string {
	return r.exact
		? `${table} has ${r.rows} row(s) (counted)`
		: `${table} has about ${Math.max(0, Math.round(r.rows))} row(s) (estimated from statistics: ${mb(r.bytes)})`;
}

/** Size and rows of an existing table, or null when it does not exist (yet). */
export async function tableRows(
	db: Db,
	table: string,
): Promise<TableRows | null> {
	const r = await db.query<{ name: string; bytes: string; est: number }>(
		"select c.oid::regclass::text as name, pg_table_size(c.oid) as bytes, c.reltuples as est from pg_class c where c.oid = to_regclass($1)",
		[table],
	);
	if (!r.rows[0]) return null;
	const bytes = Number(r.rows[0].bytes);
	if (bytes <= EXACT_COUNT_BYTES) {
		// A short lock wait at most: a table someone holds exclusively is estimated instead.
		try {
			await db.query("begin");
			await db.query("set local lock_timeout = '2s'");
			const n = await db.query<{ n: string }>(
				`select count(*) as n from ${r.rows[0].name}`,
			);
			await db.query("commit");
			return { bytes, rows: Number(n.rows[0].n), exact: true };
		} catch {
			await db.query("rollback").catch(() => {});
		}
	}
	return { bytes, rows: r.rows[0].est, exact: false };
}

/** The table an index belongs to, or null when no such index exists. */
async function tableOfIndex(db: Db, index: string): Promise<string | null> {
	const r = await db.query<{ t: string | null }>(
		"select (select i.indrelid::regclass::text from pg_index i where i.indexrelid = to_regclass($1)) as t",
		[index],
	);
	const t = r.rows[0].t;
	if (!t) return null;
	// regclass::text leaves names on the search_path unqualified; qualify them as the rest do.
	const q = await db.query<{ q: string }>(
		"select format('%I.%I', n.nspname, c.relname) as q from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.oid = to_regclass($1)",
		[t],
	);
	return q.rows[0]?.q ?? t;
}

/**
 * What a deploy knows while it walks its pending migrations in order: the tables and indexes the
 * earlier statements create, and the created tables they put rows into.
 */
export class DeployWalk {
	readonly created = new Map<string, string>();
	readonly filled = new Set<string>();
	readonly createdIndexes = new Map<string, string>();
	readonly #rows = new Map<string, TableRows | null>();

	constructor(
		readonly db: Db,
		readonly opts: {
			smallTableBytes: number;
			/** No _prisma_migrations and no app tables: every finding is a note. */
			freshInstall: boolean;
			/** Unqualified names resolve here (public, or the URL's ?schema=). */
			defaultSchema?: string;
		},
	) {}

	async rowsOf(table: string): Promise<TableRows | null> {
		if (!this.#rows.has(table))
			this.#rows.set(table, await tableRows(this.db, table));
		return this.#rows.get(table) ?? null;
	}

	/**
	 * Judges one migration's findings, then records what it creates and fills. `baseline` names the
	 * --lint-since migration when this one is at or before it.
	 */
	async judge(
		migration: string,
		sql: string,
		result: LintResult,
		baseline?: string,
	): Promise<LintResult> {
		const schema = this.opts.defaultSchema ?? "public";
		let stmts: ReturnType<typeof readSql> = [];
		try {
			stmts = readSql(sql);
		} catch {
			// Unparsable: findings keep no table; squawk reports the syntax error.
		}
		const findings: Finding[] = [];
		const atomic = stmts.length > 0 && commitsAsOne(sql);
		const byStatement = (no: number) =>
			result.findings.filter((f) => f.statementNo === no);
		for (let no = -1; no < stmts.length; no++) {
			for (const f of byStatement(no))
				findings.push(
					f.rule === "transaction-nesting" && atomic && !f.allowed
						? {
								...f,
								allowed: true,
								note: "its BEGIN ... COMMIT closes the migration (Prisma's pattern): it still commits as one transaction, and a failure leaves none of it.",
							}
						: await this.#judgeOne(f, migration, baseline),
				);
			const s = stmts[no];
			if (!s) continue;
			for (const t of s.creates)
				this.created.set(qualifiedName(t, schema), migration);
			for (const t of s.fills) this.filled.add(qualifiedName(t, schema));
			// A table created earlier and renamed keeps what it holds under its new name.
			if (s.table && s.renamesTo) {
				const from = qualifiedName(s.table, schema);
				const to = qualifiedName(s.renamesTo, schema);
				const by = this.created.get(from);
				if (by) this.created.set(to, by);
				if (this.filled.has(from)) this.filled.add(to);
			}
			if (s.table && s.indexName)
				this.createdIndexes.set(
					qualifiedName({ schema: s.table.schema, name: s.indexName }, schema),
					qualifiedName(s.table, schema),
				);
		}
		return { ...result, findings };
	}

	async #judgeOne(
		f: Finding,
		migration: string,
		baseline?: string,
	): Promise<Finding> {
		if (f.allowed) return f;
		const accept = (note: string): Finding => ({ ...f, allowed: true, note });
		if (baseline)
			return accept(
				`${migration} is at or before the lint baseline (--lint-since ${baseline}).`,
			);
		if (NEVER_ACCEPTED.includes(f.rule)) return f;
		const table = f.table ?? (await this.#tableOfDroppedIndex(f));
		if (table) {
			const by = this.created.get(table);
			if (by && !this.filled.has(table))
				return accept(
					`${table} is created ${by === migration ? "earlier in this migration" : `by ${by}, earlier in this deploy`}: it has no rows (no data to lose, a lock over no rows).`,
				);
			const rows = by ? null : await this.rowsOf(table);
			if (rows?.exact && rows.rows === 0)
				return accept(
					`${table} has no rows (counted): no data to lose, a lock over no rows.`,
				);
			if (
				rows &&
				SIZE_BOUND_RULES.includes(f.rule) &&
				rows.bytes < this.opts.smallTableBytes
			)
				return accept(
					`${table} is small (${mb(rows.bytes)}, under ${mb(this.opts.smallTableBytes)}; ${describeRows(table, rows).replace(`${table} has `, "")}): the lock lasts a fraction of a second.`,
				);
			if (this.opts.freshInstall)
				return accept(
					"fresh install: the database had no tables and no _prisma_migrations, so nothing can be locked or lost.",
				);
			return {
				...f,
				context: rows
					? describeRows(table, rows)
					: by
						? `${table}, created by ${by} and filled by an earlier statement of this deploy`
						: `${table} (not found in the database)`,
			};
		}
		if (this.opts.freshInstall)
			return accept(
				"fresh install: the database had no tables and no _prisma_migrations, so nothing can be locked or lost.",
			);
		return f;
	}

	async #tableOfDroppedIndex(f: Finding): Promise<string | null> {
		for (const index of f.indexes) {
			const t =
				this.createdIndexes.get(index) ?? (await tableOfIndex(this.db, index));
			if (t) return t;
		}
		return null;
	}
}
