// Built-in smoke test: read queries over the app's tables, as the app reads them (every column,
// and a lookup by primary key), in a read-only transaction with a statement timeout.

import { type Db, quoteIdent } from "../pg/db.ts";

export interface SmokeQuery {
	table: string;
	sql: string;
	rows: number;
	ms: number;
	error?: string;
}

/** The app's tables: public, ordinary or partitioned, not Prisma's bookkeeping. */
async function appTables(
	db: Db,
): Promise<Array<{ name: string; pk: string[] }>> {
	const { rows } = await db.query<{ name: string; pk: string[] | null }>(
		`select c.relname as name,
            (select array_agg(a.attname::text order by k.ord)
               from pg_constraint p
               cross join lateral unnest(p.conkey) with ordinality k(attnum, ord)
               join pg_attribute a on a.attrelid = p.conrelid and a.attnum = k.attnum
              where p.conrelid = c.oid and p.contype = 'p') as pk
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p') and not c.relispartition and c.relname <> '_prisma_migrations'
      order by c.relname`,
	);
	return rows.map((r) => ({ name: r.name, pk: r.pk ?? [] }));
}

/** Runs the queries; a failing query is reported, not thrown. */
export async function smokeQueries(
	db: Db,
	timeoutMs = 10_000,
): Promise<SmokeQuery[]> {
	const out: SmokeQuery[] = [];
	const tables = await appTables(db);
	await db.query("begin read only");
	try {
		await db.query(
			`set local statement_timeout = ${Math.max(1, Math.round(timeoutMs))}`,
		);
		for (const t of tables) {
			const from = `public.${quoteIdent(t.name)}`;
			const queries = [`select * from ${from} limit 5`];
			if (t.pk.length) {
				const cols = t.pk.map(quoteIdent).join(", ");
				queries.push(
					`select * from ${from} where (${cols}) = (select ${cols} from ${from} limit 1)`,
				);
			}
			for (const sql of queries) {
				const started = performance.now();
				await db.query("savepoint smoke");
				try {
					const r = await db.query(sql);
					out.push({
						table: t.name,
						sql,
						rows: r.rowCount ?? 0,
						ms: Math.round(performance.now() - started),
					});
					await db.query("release savepoint smoke");
				} catch (err) {
					await db.query("rollback to savepoint smoke");
					out.push({
						table: t.name,
						sql,
						rows: 0,
						ms: Math.round(performance.now() - started),
						error: (err as Error).message,
					});
				}
			}
		}
	} finally {
		// Commit (read only: nothing to commit) rather than roll back, so the monitor's rollback count stays the app's.
		await db.query("commit").catch(() => {});
	}
	return out;
}
