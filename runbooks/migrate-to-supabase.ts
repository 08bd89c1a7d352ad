#!/usr/bin/env -S npx tsx --
// The seed's "Local to Cloud Migration" (pg_dump > file; sed; psql < file; switch-db-env remote;
// npm run build), done properly: copy the app's schema and data (public, _prisma_migrations) from
// the local PostgreSQL into a Supabase project through its direct connection, without owners or
// grants and without touching the platform's schemas or roles; prove the copy equal row for row;
// validate it with Prisma; then point .env at the remote profile and run VERIFY_CMD.

import { availableParallelism, tmpdir } from "node:os";
import type pg from "pg";
import { runHook } from "../lib/app/hooks.ts";
import {
	CHECKSUM_SETTINGS,
	listTables,
	type TableChecksum,
	tableChecksums,
} from "../lib/backup/row-checksums.ts";
import {
	applySwitch,
	describeEnd,
	describeSwitch,
	PROFILE_ENV,
	pooledDirectRefusal,
	prepareSwitch,
	probeEnd,
	probeProfile,
	readProfile,
	type SwitchPlan,
} from "../lib/config/db-profiles.ts";
import { envFilePath } from "../lib/config/env-file.ts";
import {
	type CopyPlan,
	type CopyResult,
	type CopyTools,
	copySchema,
	createExtensionSql,
	describeCopy,
	dropObjects,
	type ExtensionUse,
	extensionsUsed,
	resetSequences,
	type SchemaObject,
	type SequenceReset,
	schemaObjects,
	sequenceValues,
} from "../lib/data/schema-copy.ts";
import { failureReason } from "../lib/kit/child-failure.ts";
import { EXIT, RunbookError, refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration, table } from "../lib/kit/output.ts";
import { rerunCommand } from "../lib/kit/rerun.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import {
	databaseDrift,
	explainDriftStatement,
} from "../lib/migrations/drift.ts";
import { readHistory } from "../lib/migrations/history.ts";
import { databaseSize, formatBytes } from "../lib/pg/catalog.ts";
import { findTool } from "../lib/pg/client-tools.ts";
import { connect, serverVersion, withClient } from "../lib/pg/db.ts";
import {
	EXTENSIONS_SCHEMA,
	latestRun,
	type PlatformShape,
	RECORD_DDL,
	type RunRecord,
	readPlatformShape,
	setPhase,
	startRun,
} from "../lib/pg/supabase.ts";
import {
	type Connection,
	isLocalHost,
	parseConnection,
	type Target,
} from "../lib/pg/target.ts";

type Mode = "fresh" | "restart" | "resume";
type Env = Record<string, string | undefined>;

interface State {
	source?: Connection;
	sourceKey?: string;
	tools?: CopyTools;
	shape?: PlatformShape;
	extensions: ExtensionUse[];
	toCreate: string[];
	mode?: Mode;
	previous?: RunRecord | null;
	leftovers: SchemaObject[];
	tables: string[];
	sourceBytes?: number;
	snapshotDb?: pg.Client;
	snapshot?: string;
	runId?: string;
	copy?: CopyResult;
	sequences: SequenceReset[];
	/** The source's checksums, started as soon as pg_dump has read everything. */
	sourceSums?: Promise<Record<string, TableChecksum>>;
	sums?: {
		source: Record<string, TableChecksum>;
		target: Record<string, TableChecksum>;
	};
	switchPlan?: SwitchPlan;
	backup?: string | null;
}

const SCHEMA = "public";

/** The local database: LOCAL_DIRECT_URL/LOCAL_DATABASE_URL, else DIRECT_URL/DATABASE_URL. */
function sourceOf(
	env: Env,
	flags: Record<string, unknown>,
): { url: string; key: string } {
	if (env.LOCAL_DIRECT_URL?.trim())
		return { url: env.LOCAL_DIRECT_URL.trim(), key: "LOCAL_DIRECT_URL" };
	if (env.LOCAL_DATABASE_URL?.trim())
		return { url: env.LOCAL_DATABASE_URL.trim(), key: "LOCAL_DATABASE_URL" };
	if (env.DIRECT_URL?.trim())
		return { url: env.DIRECT_URL.trim(), key: "DIRECT_URL" };
	const url = (flags["database-url"] as string | undefined) ?? env.DATABASE_URL;
	if (!url?.trim()) {
		throw usageError(
			"DATABASE_URL is not set.",
			"migrate-to-supabase copies from LOCAL_DATABASE_URL (or DATABASE_URL when that is unset) to REMOTE_DIRECT_URL: set them in .env (see .env.example) or pass --dotenv <path>.",
		);
	}
	return { url: url.trim(), key: "DATABASE_URL" };
}

/** The Supabase project: dumps and restores through REMOTE_DIRECT_URL, the app through REMOTE_DATABASE_URL. */
function remoteTarget(env: Env): Target {
	const directUrl = env.REMOTE_DIRECT_URL?.trim();
	const appUrl = env.REMOTE_DATABASE_URL?.trim();
	if (!directUrl) {
		throw usageError(
			"REMOTE_DIRECT_URL is not set.",
			"Set it in .env to the Supabase project's direct connection (db.<project-ref>.supabase.co, port 5432): restores go through it, never through the pooler. See .env.example.",
		);
	}
	const direct = parseConnection(directUrl, "REMOTE_DIRECT_URL");
	if (direct.pooled) throw pooledDirectRefusal("REMOTE_DIRECT_URL", direct);
	const app = appUrl ? parseConnection(appUrl, "REMOTE_DATABASE_URL") : direct;
	return {
		app,
		direct,
		isLocal: isLocalHost(direct.host),
		isProduction: (env.RUNBOOK_ENV ?? "").toLowerCase() === "production",
	};
}

/** Databases from this size on are copied in parallel streams unless --jobs says otherwise. */
const PARALLEL_FROM_BYTES = 512 * 1024 * 1024;

/** --jobs, or: one atomic stream for small databases, parallel streams (2 to 4) for big ones. */
function jobsFor(ctx: Context<State>): number {
	if (ctx.flags.jobs !== undefined)
		return Math.max(1, Math.floor(Number(ctx.flags.jobs)));
	if ((ctx.state.sourceBytes ?? 0) < PARALLEL_FROM_BYTES) return 1;
	return Math.min(4, Math.max(2, availableParallelism()));
}

/** --maintenance-work-mem, checked: a size PostgreSQL reads (e.g. 256MB, 1GB). */
function memoryFor(flags: Record<string, unknown>): string {
	const v = String(flags["maintenance-work-mem"] ?? "256MB").trim();
	if (!/^\d+\s*(kB|MB|GB)$/.test(v))
		throw usageError(
			`--maintenance-work-mem must be a size such as 256MB or 1GB, not "${v}".`,
		);
	return v.replace(/\s+/g, "");
}

const copyPlan = (ctx: Context<State>): CopyPlan => ({
	schema: SCHEMA,
	jobs: jobsFor(ctx),
	maintenanceWorkMem: memoryFor(ctx.flags),
	workDir: (ctx.flags["work-dir"] as string | undefined) ?? tmpdir(),
	snapshot:
		ctx.state.snapshot ?? (ctx.dryRun ? "<exported at run time>" : undefined),
});

const skipWhenCopied = (ctx: Context<State>) =>
	ctx.state.mode === "resume" && ctx.state.previous
		? `run ${ctx.state.previous.run_id} already copied and verified public (at ${ctx.state.previous.updated_at.toISOString()})`
		: false;

const steps: Step<State>[] = [
	{
		title:
			"Check both ends: versions, client tools, the target's public schema",
		async run(ctx) {
			const { url, key } = sourceOf(ctx.env, ctx.flags);
			const source = parseConnection(url, key);
			ctx.state.source = source;
			ctx.state.sourceKey = key;
			const target = ctx.target.direct;
			if (source.pooled) {
				throw key.includes("DIRECT")
					? pooledDirectRefusal(key, source)
					: refusal(
							`${key} (${source.display}) goes through a transaction pooler, but pg_dump needs a direct connection to the local database. Nothing was changed.`,
							"Set LOCAL_DIRECT_URL to the local database's direct URL (no pgbouncer=true).",
						);
			}
			if (
				source.host === target.host &&
				source.port === target.port &&
				source.database === target.database
			) {
				throw refusal(
					`The source (${key}) and the target (REMOTE_DIRECT_URL) are the same database, ${target.display}. Nothing was changed.`,
				);
			}
			const warnings: string[] = [];
			// The local side.
			const src = await withClient(
				source,
				async (db) => {
					const version = await serverVersion(db);
					const history = await readHistory(db);
					const tables = await listTables(db, SCHEMA);
					const bytes = await databaseSize(db);
					const extensions = await extensionsUsed(db, SCHEMA);
					const { rows: others } = await db.query<{ s: string; n: string }>(
						`select n.nspname as s, count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and n.nspname not in ('public', 'pg_catalog', 'information_schema')
                and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%' group by 1 order by 1`,
					);
					return { version, history, tables, bytes, extensions, others };
				},
				"runbook:migrate-to-supabase",
			);
			ctx.state.tables = src.tables;
			ctx.state.sourceBytes = src.bytes;
			ctx.state.extensions = src.extensions;
			ctx.log(
				`Source (${key}): ${source.display}, PostgreSQL ${src.version.text}, ${src.tables.length} tables in public, ${formatBytes(src.bytes)}`,
			);
			if (src.history.tableMissing) {
				throw refusal(
					`The source has no _prisma_migrations table: it was never migrated with Prisma, so the copy could not be validated. Nothing was changed.`,
					"Check LOCAL_DATABASE_URL (or DATABASE_URL): it should be the Face Swap app's database.",
				);
			}
			if (src.history.issues.length) {
				throw refusal(
					`The source's migration history is not clean: ${src.history.issues.map((i) => `${i.migration}: ${i.detail}`).join("; ")}. A copy would carry that to Supabase. Nothing was changed.`,
					"Fix the local database first (npx tsx runbooks/validate.ts names each problem; apply pending migrations with prisma migrate deploy), then rerun.",
				);
			}
			for (const o of src.others)
				warnings.push(
					`schema ${o.s} on the source has ${o.n} table(s): only public is copied (the app's schema)`,
				);
			// The Supabase side.
			const tdb = await ctx.db();
			const tv = await serverVersion(tdb);
			const shape = await readPlatformShape(tdb);
			ctx.state.shape = shape;
			ctx.log(
				`Target (REMOTE_DIRECT_URL): ${target.display}, PostgreSQL ${tv.text}, connected as ${shape.user}${shape.superuser ? " (superuser)" : ""}`,
			);
			if (!shape.looksLikeSupabase)
				warnings.push(
					`the target does not look like a Supabase project (missing: ${[
						"anon",
						"authenticated",
						"service_role",
					]
						.filter((r) => !shape.roles.includes(r))
						.concat(shape.hasExtensionsSchema ? [] : ["schema extensions"])
						.join(", ")})`,
				);
			if (!shape.canCreateInPublic || !shape.canCreateSchema) {
				throw refusal(
					`${shape.user} on the target may not create ${!shape.canCreateInPublic ? "objects in public" : "schemas (for this runbook's record)"}. Nothing was changed.`,
					"Use the project's postgres user in REMOTE_DIRECT_URL.",
				);
			}
			if (tv.major < src.version.major)
				warnings.push(
					`the target runs PostgreSQL ${tv.major}, older than the source's ${src.version.major}: objects using newer features may fail to restore`,
				);
			// Client tools new enough for both servers.
			const major = Math.max(src.version.major, tv.major);
			const pgDump = await findTool("pg_dump", major, ctx.env);
			const pgRestore = await findTool("pg_restore", major, ctx.env);
			const psql = await findTool("psql", major, ctx.env);
			ctx.state.tools = { pgDump, pgRestore, psql };
			ctx.log(
				`Client tools: pg_dump ${pgDump.version}, pg_restore ${pgRestore.version} (servers: ${src.version.major} and ${tv.major})`,
			);
			// Extensions: created in the target's extensions schema; objects that name one by schema must find it there.
			if (src.extensions.length) {
				const { rows } = await tdb.query<{
					name: string;
					installed: string | null;
					schema: string | null;
				}>(
					`select a.name, a.installed_version as installed, n.nspname as schema
             from pg_available_extensions a
             left join pg_extension e on e.extname = a.name
             left join pg_namespace n on n.oid = e.extnamespace
            where a.name = any($1)`,
					[src.extensions.map((e) => e.name)],
				);
				const avail = new Map(rows.map((r) => [r.name, r]));
				const missing = src.extensions.filter((e) => !avail.has(e.name));
				if (missing.length) {
					throw refusal(
						`The target cannot install the extension(s) ${missing.map((e) => e.name).join(", ")} that the source uses. Nothing was changed.`,
						"Enable them in the Supabase dashboard (Database > Extensions) if offered, or remove their use locally.",
					);
				}
				const wrongSchema: string[] = [];
				for (const e of src.extensions) {
					const t = avail.get(e.name);
					const where = t?.schema ?? EXTENSIONS_SCHEMA;
					if (e.dependents.length && e.schema !== where) {
						wrongSchema.push(
							`${e.name} is in schema ${e.schema} locally but will be in ${where} on the target, and ${e.dependents.slice(0, 3).join(", ")}${e.dependents.length > 3 ? ` and ${e.dependents.length - 3} more` : ""} name its objects as ${e.schema}.<name>`,
						);
					}
				}
				if (wrongSchema.length) {
					throw refusal(
						`Restored objects would point at extension objects that do not exist on the target: ${wrongSchema.join("; ")}. Nothing was changed.`,
						`Move the extension locally first, e.g. create schema if not exists extensions; alter extension "<name>" set schema extensions; (Supabase keeps extensions there), then rerun.`,
					);
				}
				ctx.state.toCreate = src.extensions
					.filter((e) => !avail.get(e.name)?.installed)
					.map((e) => e.name);
				for (const e of src.extensions) {
					const t = avail.get(e.name);
					ctx.log(
						`Extension ${e.name}: ${t?.installed ? `already installed on the target (schema ${t.schema})` : `to create in ${EXTENSIONS_SCHEMA}`}`,
					);
				}
			}
			// What the target's public holds, and what this runbook's record says about it.
			const objects = await schemaObjects(tdb, SCHEMA);
			const previous = await latestRun(tdb);
			ctx.state.previous = previous;
			let mode: Mode;
			if (objects.length === 0) {
				mode = "fresh";
			} else if (!previous) {
				throw refusal(
					`The target's public schema is not empty: it holds ${objects.length} object(s) (${objects
						.slice(0, 5)
						.map((o) => `${o.kind} ${o.name}`)
						.join(
							", ",
						)}${objects.length > 5 ? ", ..." : ""}) that this runbook did not put there. Nothing was changed.`,
					"Migrate into an empty project, or empty public yourself if those objects are expendable (this runbook never drops what it did not create).",
				);
			} else if (previous.source !== source.display) {
				throw refusal(
					`The target's public schema holds a copy of another database (${previous.source}, run ${previous.run_id}, ${previous.phase}). Nothing was changed.`,
					`Check LOCAL_DATABASE_URL: it is ${source.display} now.`,
				);
			} else if (previous.phase === "verified" && !ctx.flags.restart) {
				mode = "resume";
			} else {
				mode = "restart";
			}
			ctx.state.mode = mode;
			ctx.state.leftovers = mode === "restart" ? objects : [];
			const why: Record<Mode, string> = {
				fresh: "the target's public schema is empty: fresh copy",
				restart:
					previous?.phase === "verified"
						? `--restart: the copy of run ${previous.run_id} (verified ${previous.updated_at.toISOString()}) will be cleared and made again`
						: `run ${previous?.run_id} stopped while ${previous?.phase}: its partial copy (${objects.length} objects) will be cleared and the copy made again`,
				resume: `run ${previous?.run_id} already copied and verified public at ${previous?.updated_at.toISOString()}: the copy is checked again, nothing is copied twice (--restart copies again)`,
			};
			ctx.log(why[mode]);
			// The .env switch at the end, checked now so that it cannot refuse after the copy.
			if (!ctx.flags["no-switch"]) {
				if (!readProfile(ctx.env, "remote")) {
					throw usageError(
						"REMOTE_DATABASE_URL is not set: the app's .env could not be switched to Supabase at the end.",
						"Set REMOTE_DATABASE_URL to the project's pooler URL (port 6543, ?pgbouncer=true), or pass --no-switch.",
					);
				}
				const plan = prepareSwitch(
					envFilePath(ctx.flags.dotenv as string | undefined),
					ctx.env,
					"remote",
				);
				ctx.state.switchPlan = plan;
				if (plan.unrecorded.length && !plan.unchanged) {
					throw refusal(
						`.env holds ${plan.unrecorded.join(" and ")}, which no profile records: switching to Supabase at the end would lose it. Nothing was changed.`,
						"Add LOCAL_DATABASE_URL=<the current DATABASE_URL> to .env (so switch-db-env local can switch back), or pass --no-switch.",
					);
				}
				const pooler = await probeEnd(ctx.target.app, "REMOTE_DATABASE_URL");
				ctx.log(describeEnd(pooler));
				if (!pooler.ok) {
					throw refusal(
						`The app's connection to Supabase (REMOTE_DATABASE_URL) does not answer: the switch at the end would fail. Nothing was changed.`,
						pooler.hint ??
							"Check the pooler URL and password, or pass --no-switch.",
					);
				}
			}
			for (const w of warnings) ctx.warn(w);
			return {
				status: warnings.length ? "warning" : "ok",
				summary: `${source.display} (PostgreSQL ${src.version.major}) -> ${target.display} (PostgreSQL ${tv.major}); ${{ fresh: "fresh copy", restart: "clear the previous copy and copy again", resume: "already copied: verify again" }[mode]}`,
				data: {
					mode,
					tables: src.tables,
					source_bytes: src.bytes,
					previous_run: previous?.run_id ?? null,
				},
			};
		},
	},
	{
		title: "Clear this runbook's previous copy from the target's public schema",
		kind: "destroy",
		skip: (ctx) =>
			ctx.state.mode === "restart" ? false : "no previous copy to clear",
		plan: (ctx) => [
			"begin;",
			...ctx.state.leftovers.map((o) => o.drop),
			"commit;",
		],
		async run(ctx) {
			await dropObjects(await ctx.db(), ctx.state.leftovers);
			return {
				summary: `dropped ${ctx.state.leftovers.length} objects from public`,
			};
		},
		onFailure: (ctx) =>
			`The drops run in one transaction: public is as it was before this step (a rerun asks again: type the database name, or --yes --confirm ${ctx.target.direct.database}).`,
	},
	{
		title:
			"Create the extensions the app uses in the target's extensions schema",
		kind: "change",
		skip: (ctx) =>
			skipWhenCopied(ctx) ||
			(ctx.state.toCreate.length
				? false
				: "every extension the source uses is already installed (or none is used)"),
		plan: (ctx) =>
			ctx.state.toCreate.map((e) => createExtensionSql(e, EXTENSIONS_SCHEMA)),
		async run(ctx) {
			const db = await ctx.db();
			for (const e of ctx.state.toCreate)
				await db.query(createExtensionSql(e, EXTENSIONS_SCHEMA));
			return { summary: ctx.state.toCreate.join(", ") };
		},
		onFailure: () =>
			"Each extension is created wholly or not at all; public is still empty and .env unchanged.",
	},
	{
		title:
			"Copy public and _prisma_migrations (pg_dump | pg_restore, no owners or grants)",
		kind: "change",
		skip: skipWhenCopied,
		plan(ctx) {
			const source = ctx.state.source as Connection;
			return [
				...RECORD_DDL,
				"insert into migrate_to_supabase.runs (run_id, source, phase) values (<new id>, '<source>', 'copying');",
				`begin isolation level repeatable read read only; select pg_export_snapshot();   -- on the source, held until verified`,
				...describeCopy(copyPlan(ctx), source, ctx.target.direct),
				"update migrate_to_supabase.runs set phase = 'copied' where run_id = <new id>;",
			];
		},
		async run(ctx) {
			const source = ctx.state.source as Connection;
			// A snapshot of the source, for pg_dump and for the verification of the same rows.
			const snap = await connect(source, "runbook:migrate-to-supabase");
			ctx.defer(() => snap.end().catch(() => {}));
			ctx.state.snapshotDb = snap;
			await snap.query("begin isolation level repeatable read read only");
			const { rows } = await snap.query<{ s: string }>(
				"select pg_export_snapshot() as s",
			);
			ctx.state.snapshot = rows[0].s;
			const db = await ctx.db();
			ctx.state.runId = await startRun(db, source.display);
			ctx.log(
				`Recorded as run ${ctx.state.runId} in migrate_to_supabase.runs on the target`,
			);
			const started = performance.now();
			let lastBytes = 0;
			const copy = await copySchema(
				copyPlan(ctx),
				source,
				ctx.target.direct,
				ctx.state.tools as CopyTools,
				{
					signal: ctx.signal,
					onLine: (l) => {
						const m =
							/(?:processing|copied) data for table "?([^"]+)"?(.*)$/.exec(l);
						if (m)
							ctx.log(
								`${formatDuration(performance.now() - started).padStart(6)}  data of ${m[1]}${m[2] ? ` copied${m[2]}` : ""}`,
							);
						else if (
							/^built /.test(l) ||
							(/creating (INDEX|CONSTRAINT|FK CONSTRAINT)/.test(l) &&
								ctx.verbose)
						)
							ctx.log(
								`${formatDuration(performance.now() - started).padStart(6)}  ${l.replace(/^pg_restore: /, "")}`,
							);
					},
					onSourceDone: () => {
						// The source is free now: compare its rows (in the same snapshot) while the target builds indexes.
						const sums = sourceChecksums(ctx);
						sums.catch(() => {});
						ctx.state.sourceSums = sums;
					},
					onBytes: (n) => {
						if (n - lastBytes >= 256 * 1024 * 1024) {
							lastBytes = n;
							ctx.log(
								`${formatDuration(performance.now() - started).padStart(6)}  ${formatBytes(n)} streamed`,
							);
						}
					},
				},
			);
			ctx.state.copy = copy;
			await setPhase(db, ctx.state.runId, "copied");
			return {
				summary: `${copy.tablesCopied} tables, ${formatBytes(copy.bytes)} streamed, ${copyPlan(ctx).jobs > 1 ? `${copyPlan(ctx).jobs} streams and index builds at a time` : "in one transaction"}`,
				data: {
					duration_ms: copy.durationMs,
					bytes: copy.bytes,
					run_id: ctx.state.runId,
				},
			};
		},
		onFailure: (ctx) =>
			copyPlan(ctx).jobs > 1
				? `The target's public may hold a partial copy, recorded as run ${ctx.state.runId ?? "(none)"} in migrate_to_supabase.runs; a rerun clears it first (type the database name, or --yes --confirm ${ctx.target.direct.database}), then copies again. Nothing in .env changed.`
				: "pg_restore ran in one transaction, so the target's public is as it was before this step. Nothing in .env changed.",
	},
	{
		title: "Reset sequences past the copied values",
		kind: "change",
		skip: skipWhenCopied,
		plan: () => [
			"select setval('public.<sequence>', greatest(max(<owning column>), <the source's last_value>), true);   -- for each sequence in public",
		],
		async run(ctx) {
			const srcValues = await sequenceValues(
				ctx.state.snapshotDb as pg.Client,
				SCHEMA,
			);
			const resets = await resetSequences(await ctx.db(), srcValues, SCHEMA);
			ctx.state.sequences = resets;
			if (resets.length)
				ctx.log(
					table(
						resets.map((r) => ({
							sequence: r.sequence,
							column: r.column,
							value: r.after,
						})),
					),
				);
			return {
				summary: resets.length
					? `${resets.length} sequence(s)`
					: "no sequences in public (the app's ids are cuid() text)",
			};
		},
		onFailure: () =>
			"The copy is on the target; each sequence is set or not yet (setting one again is harmless). .env was not changed.",
	},
	{
		title:
			"Verify: every table's row count and row checksum, _prisma_migrations identical, Prisma validation",
		skip: (ctx) => (ctx.dryRun ? "nothing was copied (dry run)" : false),
		async run(ctx) {
			const source = ctx.state.source as Connection;
			const targetDb = await ctx.db();
			const targetTables = await listTables(targetDb, SCHEMA);
			const srcTables = ctx.state.tables;
			const extra = targetTables.filter((t) => !srcTables.includes(t));
			const started = performance.now();
			// Prisma's validation (history and drift) runs while the rows are compared.
			const validation = validateTarget(ctx);
			validation.catch(() => {});
			const [s, t] = await Promise.all([
				ctx.state.sourceSums ?? sourceChecksums(ctx),
				tableChecksums(
					ctx.target.direct,
					srcTables.filter((x) => targetTables.includes(x)),
					{ jobs: checksumJobs(ctx), signal: ctx.signal },
				),
			]);
			ctx.state.sums = { source: s, target: t };
			const rows = srcTables.map((name) => ({
				table: name,
				"rows (local)": s[name]?.rows,
				"rows (Supabase)": t[name]?.rows ?? "missing",
				checksum: !t[name]
					? "missing"
					: s[name].checksum === t[name].checksum &&
							s[name].rows === t[name].rows
						? "equal"
						: "DIFFERENT",
			}));
			ctx.log(table(rows));
			const total = srcTables.reduce((n, x) => n + (s[x]?.rows ?? 0), 0);
			ctx.log(
				`(${total.toLocaleString("en-US")} rows compared; ${formatDuration(performance.now() - started)} in this step)`,
			);
			// _prisma_migrations row for row, in order.
			const ordered = `select count(*) as n, coalesce(md5(string_agg(t::text, E'\\n' order by t.id)), '') as h from public._prisma_migrations t`;
			const srcMig = await withSettings(
				ctx.state.snapshotDb ?? null,
				source,
				ordered,
			);
			const tgtMig = await withSettings(null, ctx.target.direct, ordered);
			const migrationsSame = srcMig.n === tgtMig.n && srcMig.h === tgtMig.h;
			ctx.log(
				`_prisma_migrations: ${srcMig.n} rows locally, ${tgtMig.n} on Supabase, ${migrationsSame ? "identical" : "DIFFERENT"}`,
			);
			const bad = rows
				.filter((r) => r.checksum !== "equal")
				.map((r) => r.table);
			if (bad.length || extra.length || !migrationsSame) {
				const resumed = ctx.state.mode === "resume";
				throw new RunbookError(
					`The copy does not match the source: ${[
						bad.length ? `rows differ in ${bad.join(", ")}` : "",
						extra.length
							? `the target has extra tables ${extra.join(", ")}`
							: "",
						!migrationsSame ? "_prisma_migrations differs" : "",
					]
						.filter(Boolean)
						.join(
							"; ",
						)}.${resumed ? " The local database has probably changed since that copy was made." : ""}`,
					EXIT.failed,
					resumed
						? "Stop the app's writes to the local database, then rerun with --restart to copy again."
						: "Make sure nothing else writes to the target's public schema, then rerun (the runbook clears its own copy first).",
				);
			}
			const runId = ctx.state.runId ?? ctx.state.previous?.run_id;
			if (runId) await setPhase(targetDb, runId, "verified", t);
			await ctx.state.snapshotDb?.query("commit").catch(() => {});
			// The rows are equal; now the schema as Prisma sees it.
			const v = await validation;
			if (v.problems.length) {
				for (const p of v.problems) ctx.warn(p);
				throw new RunbookError(
					`The target does not validate: ${v.problems.length} problem(s), listed above.`,
					EXIT.failed,
					"The rows are copied and equal; .env was not changed. Fix the schema problem (npx tsx runbooks/validate.ts against the local database shows the same), then rerun.",
				);
			}
			ctx.log(`Prisma: latest migration ${v.latest}, no drift`);
			if (v.exposed.length) {
				ctx.warn(
					`${v.exposed.length} table(s) in public have row level security off while the API role anon may read them (${v.exposed.slice(0, 4).join(", ")}${v.exposed.length > 4 ? ", ..." : ""}): Supabase's Data API would serve them to anyone holding the anon key. Enable RLS (alter table ... enable row level security) or revoke anon's grants before publishing the API keys.`,
				);
			}
			return {
				status: v.exposed.length ? "warning" : "ok",
				summary: `${srcTables.length} tables equal, ${total.toLocaleString("en-US")} rows; migrations identical; no drift`,
				data: {
					tables: Object.fromEntries(
						srcTables.map((x) => [x, { local: s[x], supabase: t[x] }]),
					),
					latest_migration: v.latest,
					rls_off_readable_by_anon: v.exposed,
				},
			};
		},
		onFailure: () =>
			"The copy stays on the target (recorded in migrate_to_supabase.runs); .env was not changed. A rerun clears this runbook's copy and copies again when it was not verified.",
		resume: (ctx) =>
			rerunCommand("runbooks/migrate-to-supabase.ts", {
				add: ctx.state.mode === "resume" ? ["--restart"] : [],
			}),
	},
	{
		title:
			"Switch .env to the remote profile (DATABASE_URL = pooler, DIRECT_URL = direct)",
		kind: "write",
		skip: (ctx) =>
			ctx.flags["no-switch"]
				? "--no-switch: .env left as it is (switch later with ./runbooks/switch-db-env.ts remote)"
				: ctx.state.switchPlan?.unchanged
					? ".env already points at the remote profile"
					: false,
		plan: (ctx) =>
			ctx.state.switchPlan
				? [
						`cp ${ctx.state.switchPlan.file.path} ${ctx.state.switchPlan.file.path}.backup-<UTC time>   (mode 0600)`,
						...describeSwitch(ctx.state.switchPlan),
					]
				: [],
		async run(ctx) {
			const plan = ctx.state.switchPlan as SwitchPlan;
			const ends = await probeProfile(plan.profile);
			for (const e of ends) ctx.log(describeEnd(e));
			const down = ends.filter((e) => !e.ok);
			if (down.length)
				throw refusal(
					`The remote profile does not answer (${down.map((e) => e.key).join(", ")}): .env was not changed.`,
					"Once it answers: ./runbooks/switch-db-env.ts remote",
				);
			const backup = applySwitch(plan);
			ctx.state.backup = backup;
			ctx.log(`Previous .env kept as ${backup}`);
			return {
				summary:
					"the app now uses Supabase (back: ./runbooks/switch-db-env.ts local)",
				data: { backup },
			};
		},
		onFailure: () =>
			"The data is on Supabase and verified; .env was not changed (./runbooks/switch-db-env.ts remote switches it alone).",
	},
	{
		title: "Run VERIFY_CMD against Supabase",
		kind: "write",
		skip: (ctx) =>
			ctx.env.VERIFY_CMD?.trim()
				? false
				: "VERIFY_CMD is not set: check the app yourself against the new DATABASE_URL (the seed's npm run build && npm run dev)",
		plan: (ctx) => [
			`${ctx.env.VERIFY_CMD}   (with DATABASE_URL/DIRECT_URL of the remote profile)`,
		],
		async run(ctx) {
			const t = ctx.target;
			const run = await runHook("VERIFY_CMD", {
				env: { ...ctx.env, DATABASE_URL: t.app.url, DIRECT_URL: t.direct.url },
				signal: ctx.signal,
				log: (l) => ctx.log(l),
			});
			if (run && run.outcome !== "passed")
				throw new RunbookError(
					`VERIFY_CMD failed: ${failureReason({ exitCode: run.exitCode ?? null, stdout: run.output })}.`,
				);
			return { summary: `passed in ${formatDuration(run?.durationMs ?? 0)}` };
		},
		onFailure: (ctx) =>
			`The data on Supabase is verified${ctx.flags["no-switch"] ? "" : " and .env points at it"}; a rerun does not copy again. If the app is broken, go back first with ./runbooks/switch-db-env.ts local and fix it.`,
	},
];

const checksumJobs = (ctx: Context<State>) => Math.max(2, copyPlan(ctx).jobs);

/** The source's checksums, in the copy's snapshot when there is one. */
function sourceChecksums(ctx: Context<State>) {
	return tableChecksums(ctx.state.source as Connection, ctx.state.tables, {
		jobs: checksumJobs(ctx),
		snapshot: ctx.state.snapshot,
		signal: ctx.signal,
	});
}

/** Prisma's view of the target: migration history and drift; plus tables the API would expose. */
async function validateTarget(ctx: Context<State>) {
	const history = await withClient(ctx.target.direct, (db) => readHistory(db));
	const problems = history.issues.map(
		(i) => `migration ${i.migration}: ${i.detail}`,
	);
	// The database against what prisma/migrations builds (schema.prisma against the migrations is a
	// property of the repository, the same on both sides: validate.ts checks it).
	const drift = await databaseDrift(ctx.target, ctx.env, ctx.signal);
	for (const sql of drift)
		problems.push(`${explainDriftStatement(sql)}; to undo: ${sql}`);
	const exposed = await withClient(ctx.target.direct, apiExposedTables);
	return { problems, latest: history.latestApplied, exposed };
}

/** One row of `sql`, read under the checksum output settings (in the snapshot when given). */
async function withSettings(
	snapshotDb: pg.Client | null,
	conn: Connection,
	sql: string,
): Promise<{ n: string; h: string }> {
	const run = async (db: pg.Client) => {
		for (const s of CHECKSUM_SETTINGS) await db.query(s);
		const { rows } = await db.query<{ n: string; h: string }>(sql);
		return rows[0];
	};
	if (snapshotDb) return run(snapshotDb);
	return withClient(conn, run, "runbook:migrate-to-supabase");
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

/** --interactive: ask before every step that the runner would not ask about anyway. */
const withQuestions = (list: Step<State>[]): Step<State>[] =>
	list.map((step, i) => ({
		...step,
		async run(ctx) {
			const kind = step.kind ?? "read";
			if (
				ctx.flags.interactive &&
				!ctx.dryRun &&
				(kind === "read" || kind === "write")
			)
				await ctx.confirm(`Run step ${i + 1}, "${step.title}"?`);
			return step.run(ctx);
		},
	}));

await runRunbook<State>({
	name: "migrate-to-supabase",
	summary:
		"Copy the local Face Swap database (public and _prisma_migrations) into a Supabase project, verify it row for row, and switch .env to it.",
	description:
		"Source: LOCAL_DATABASE_URL (or DATABASE_URL when unset). Target: REMOTE_DIRECT_URL, the project's direct\n" +
		"connection (never the pooler). Only the app's schema is copied, without owners or grants; the platform's\n" +
		"schemas (auth, storage, extensions, graphql, realtime, ...) and roles are never touched; extensions the app\n" +
		"uses are created in the extensions schema. The copy is verified (row counts and checksums of every table,\n" +
		"_prisma_migrations identical, Prisma validation) before .env is switched to the remote profile.\n" +
		"A rerun never doubles data: it continues after a verified copy, clears its own partial copy and starts\n" +
		"over after a failed one (recorded in the target's migrate_to_supabase.runs), and refuses a public schema\n" +
		"holding anything else (exit 3). Stop the app's writes to the local database first.",
	flags: {
		interactive: {
			type: "boolean",
			description:
				"Ask before every step (change steps always ask unless --yes).",
		},
		jobs: {
			type: "number",
			value: "<n>",
			description:
				"1: one pg_dump | pg_restore stream in a single transaction (all or nothing; the default below 512 MB). n > 1 (default for bigger databases: 2 to 4, by cores): the rows of n tables streamed at a time (psql COPY pipes in one snapshot), each table's indexes built as soon as its rows are in (faster on big databases; a failure leaves a partial copy that a rerun clears).",
		},
		"maintenance-work-mem": {
			type: "string",
			value: "<size>",
			default: "256MB",
			description:
				"Memory for each index build on the target (with --jobs n, n builds at once): lower it on the smallest Supabase instances, raise it on big ones.",
		},
		"work-dir": {
			type: "string",
			value: "<dir>",
			description:
				"Where the small schema-only archive goes with --jobs > 1 (default: the OS temp dir).",
		},
		restart: {
			type: "boolean",
			description:
				"Clear a verified copy made by an earlier run and copy again (e.g. the local data changed).",
		},
		"no-switch": {
			type: "boolean",
			description: "Copy and verify only; leave .env as it is.",
		},
	},
	env: {
		...PROFILE_ENV,
		VERIFY_CMD:
			'Shell command run at the end against Supabase, e.g. "npm run build" (optional).',
		PG_BIN_DIR:
			"Directory of pg_dump/pg_restore when not the newest installed.",
	},
	examples: [
		"npx tsx runbooks/migrate-to-supabase.ts --dry-run",
		"npx tsx runbooks/migrate-to-supabase.ts --interactive",
		"npx tsx runbooks/migrate-to-supabase.ts --yes",
		"npx tsx runbooks/migrate-to-supabase.ts --jobs 4 --work-dir /var/tmp --yes",
	],
	// The run lock is held on the target (REMOTE_DIRECT_URL) and on the source: the copy is verified
	// row for row against the source, so no runbook may change the source while it runs (a deploy or
	// backfill there would make the copy differ or the verification fail), and a second
	// migrate-to-supabase, or switch-db-env of the same .env (which locks the profile it switches to),
	// refuses instead of racing this run's final switch of .env.
	exclusive: true,
	alsoLock: ({ env, flags }) => {
		const source = sourceOf(env, flags);
		const conn = parseConnection(source.url, source.key);
		// A pooled source is refused by step 1 with its own advice.
		return conn.pooled ? [] : [conn];
	},
	resolveTarget: ({ env, flags }) => {
		sourceOf(env, flags);
		memoryFor(flags);
		return remoteTarget(env);
	},
	state: () => ({
		extensions: [],
		toCreate: [],
		leftovers: [],
		tables: [],
		sequences: [],
	}),
	steps: withQuestions(steps),
	summarize: (ctx) => ({
		mode: ctx.state.mode ?? null,
		source: ctx.state.source?.display ?? null,
		run_id: ctx.state.runId ?? ctx.state.previous?.run_id ?? null,
		copy_ms: ctx.state.copy?.durationMs ?? null,
		tables: ctx.state.sums
			? Object.fromEntries(
					Object.entries(ctx.state.sums.source).map(([k, v]) => [
						k,
						{
							rows: v.rows,
							checksum: v.checksum,
							equal: ctx.state.sums?.target[k]?.checksum === v.checksum,
						},
					]),
				)
			: null,
		env_backup: ctx.state.backup ?? null,
	}),
});
