// Proof that migrate-to-supabase's copy equals its source: each table's row count and checksum on
// both sides, _prisma_migrations row for row, and Prisma's view of the target (history, drift),
// plus the tables Supabase's Data API would serve to anyone holding the anon key.

import type pg from "pg";
import {
	CHECKSUM_SETTINGS,
	listTables,
	type TableChecksum,
	tableChecksums,
} from "../backup/row-checksums.ts";
import { EXIT, RunbookError } from "../kit/errors.ts";
import { formatDuration } from "../kit/format.ts";
import { table } from "../kit/output.ts";
import {
	type Advice,
	copyDiffers,
	exposedToAnon,
	targetInvalid,
	verifiedSummary,
} from "../messages/supabase.ts";
import { databaseDrift, explainDriftStatement } from "../migrations/drift.ts";
import { readHistory } from "../migrations/history.ts";
import { type Db, withClient } from "../pg/db.ts";
import { setPhase } from "../pg/supabase.ts";
import type { Connection, Target } from "../pg/target.ts";
import type { CopyRun } from "./copy-run.ts";
import type { CopyStart } from "./preflight.ts";
import { SCHEMA } from "./settings.ts";

export interface Comparison {
	source: Record<string, TableChecksum>;
	target: Record<string, TableChecksum>;
	/** Tables whose rows differ or are missing on the target. */
	bad: string[];
	/** Tables on the target the source does not have. */
	extra: string[];
	migrationsSame: boolean;
	/** Rows compared. */
	total: number;
}

/** Compares every table's rows (logging a table of them) and _prisma_migrations. */
export async function compareCopy(
	run: CopyRun,
	target: Connection,
	db: Db,
	o: { jobs: number; signal: AbortSignal; log: (text: string) => void },
): Promise<Comparison> {
	const targetTables = await listTables(db, SCHEMA);
	const tables = run.tables;
	const extra = targetTables.filter((t) => !tables.includes(t));
	const started = performance.now();
	const [s, t] = await Promise.all([
		run.sourceSums ?? run.checksums(o.jobs, o.signal),
		tableChecksums(
			target,
			tables.filter((x) => targetTables.includes(x)),
			{ jobs: o.jobs, signal: o.signal },
		),
	]);
	run.sums = { source: s, target: t };
	const rows = tables.map((name) => ({
		table: name,
		"rows (local)": s[name]?.rows,
		"rows (Supabase)": t[name]?.rows ?? "missing",
		checksum: !t[name]
			? "missing"
			: s[name].checksum === t[name].checksum && s[name].rows === t[name].rows
				? "equal"
				: "DIFFERENT",
	}));
	o.log(table(rows));
	const total = tables.reduce((n, x) => n + (s[x]?.rows ?? 0), 0);
	o.log(
		`(${total.toLocaleString("en-US")} rows compared; ${formatDuration(performance.now() - started)} in this step)`,
	);
	const srcMig = await migrationsDigest(run.snapshotDb ?? null, run.source);
	const tgtMig = await migrationsDigest(null, target);
	const migrationsSame = srcMig.n === tgtMig.n && srcMig.h === tgtMig.h;
	o.log(
		`_prisma_migrations: ${srcMig.n} rows locally, ${tgtMig.n} on Supabase, ${migrationsSame ? "identical" : "DIFFERENT"}`,
	);
	const bad = rows.filter((r) => r.checksum !== "equal").map((r) => r.table);
	return { source: s, target: t, bad, extra, migrationsSame, total };
}

/** _prisma_migrations row for row, in order, under the checksum settings (in the snapshot when given). */
async function migrationsDigest(
	snapshotDb: pg.Client | null,
	conn: Connection,
): Promise<{ n: string; h: string }> {
	const run = async (db: pg.Client) => {
		for (const s of CHECKSUM_SETTINGS) await db.query(s);
		const { rows } = await db.query<{ n: string; h: string }>(
			`select count(*) as n, coalesce(md5(string_agg(t::text, E'\\n' order by t.id)), '') as h from public._prisma_migrations t`,
		);
		return rows[0];
	};
	if (snapshotDb) return run(snapshotDb);
	return withClient(conn, run, "runbook:migrate-to-supabase");
}

/** Prisma's view of the target: migration history and drift; plus tables the API would expose. */
export async function validateTarget(
	target: Target,
	env: Record<string, string | undefined>,
	signal: AbortSignal,
) {
	const history = await withClient(target.direct, (db) => readHistory(db));
	const problems = history.issues.map(
		(i) => `migration ${i.migration}: ${i.detail}`,
	);
	// The database against what prisma/migrations builds (schema.prisma against the migrations is a
	// property of the repository, the same on both sides: validate.ts checks it).
	const drift = await databaseDrift(target, env, signal);
	for (const sql of drift)
		problems.push(`${explainDriftStatement(sql)}; to undo: ${sql}`);
	const exposed = await withClient(target.direct, apiExposedTables);
	return { problems, latest: history.latestApplied, exposed };
}

/** Tables of public that Supabase's anon role can read without row level security. */
async function apiExposedTables(db: pg.Client): Promise<string[]> {
	const { rows } = await db.query<{ t: string }>(
		`select c.relname as t from pg_class c
      where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p') and not c.relrowsecurity
        and exists (select 1 from pg_roles where rolname = 'anon')
        and has_table_privilege('anon', c.oid, 'select')
      order by 1`,
	);
	return rows.map((r) => r.t);
}

/**
 * The whole verification: rows and _prisma_migrations compared while Prisma validates the target;
 * the run recorded as verified once the rows are equal, and the source's snapshot released.
 * Throws (exit 1) when the copy differs or the target does not validate.
 */
export async function verifyCopy(
	run: CopyRun,
	start: CopyStart,
	target: Target,
	db: Db,
	o: {
		jobs: number;
		env: Record<string, string | undefined>;
		signal: AbortSignal;
		log: (text: string) => void;
		warn: (text: string) => void;
	},
) {
	// Prisma's validation (history and drift) runs while the rows are compared.
	const validation = validateTarget(target, o.env, o.signal);
	validation.catch(() => {});
	const found = await compareCopy(run, target.direct, db, o);
	if (found.bad.length || found.extra.length || !found.migrationsSame)
		throw failure(copyDiffers(found, start.mode === "resume"));
	const runId = run.runId ?? start.previous?.run_id;
	if (runId) await setPhase(db, runId, "verified", found.target);
	await run.snapshotDb?.query("commit").catch(() => {});
	// The rows are equal; now the schema as Prisma sees it.
	const v = await validation;
	for (const p of v.problems) o.warn(p);
	if (v.problems.length) throw failure(targetInvalid(v.problems.length));
	o.log(`Prisma: latest migration ${v.latest}, no drift`);
	if (v.exposed.length) o.warn(exposedToAnon(v.exposed));
	return {
		status: v.exposed.length ? ("warning" as const) : ("ok" as const),
		summary: verifiedSummary(run.tables.length, found.total),
		data: {
			tables: Object.fromEntries(
				run.tables.map((x) => [
					x,
					{ local: found.source[x], supabase: found.target[x] },
				]),
			),
			latest_migration: v.latest,
			rls_off_readable_by_anon: v.exposed,
		},
	};
}

const failure = (a: Advice) => new RunbookError(a.message, EXIT.failed, a.hint);

/** The --json account of the copied tables. */
export function tablesJson(run: CopyRun) {
	const sums = run.sums;
	if (!sums) return null;
	return Object.fromEntries(
		Object.entries(sums.source).map(([k, v]) => [
			k,
			{
				rows: v.rows,
				checksum: v.checksum,
				equal: sums.target[k]?.checksum === v.checksum,
			},
		]),
	);
}
