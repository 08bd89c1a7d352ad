// Restoring the chosen backup: over the target atomically (one transaction, retried after a lock
// timeout; or a swap of databases), or, for --rehearse, into a scratch database that is dropped.

import type { BackupManifest } from "../backup/archive.ts";
import { backupDir } from "../backup/archive.ts";
import {
	createScratchDatabase,
	describeSwapRestore,
	describeTransactionRestore,
	dropDatabase,
	leftoverDatabases,
	restoreBySwap,
	restoreInTransaction,
	restoreIntoDatabase,
	type ScopedRestore,
	scopedRestore,
	scratchName,
} from "../backup/restore.ts";
import { scopeOf } from "../backup/scope.ts";
import { RunbookError } from "../kit/errors.ts";
import { formatDuration, formatMs } from "../kit/format.ts";
import { startProgress } from "../kit/progress.ts";
import { acquireRunLock } from "../kit/run-lock.ts";
import { fmt, restorePhaseNote } from "../messages/rollback.ts";
import { connect, type Db, quoteIdent } from "../pg/db.ts";
import { type Connection, withDatabase } from "../pg/target.ts";
import { type Chosen, midway, type Restored, type Tools } from "./results.ts";
import { terminateOthers } from "./sessions.ts";
import { NAME, type RollbackCtx } from "./settings.ts";

export const sum = (counts: Record<string, number>) =>
	Object.values(counts).reduce((a, b) => a + b, 0);

/** What the restore and rehearse steps work from: the chosen backup, its archive, the tools. */
function inputs(ctx: RollbackCtx) {
	const chosen = ctx.result<Chosen>("choose");
	const m = chosen.backup?.manifest as BackupManifest;
	return {
		s: ctx.settings,
		m,
		archive: `${backupDir(ctx.env)}/${m.archive}`,
		tools: ctx.result<Tools>("verify-backup"),
	};
}

/** What a restore in one transaction is given, over the target or a scratch database. */
function transactionOptions(
	ctx: RollbackCtx,
	scope: ScopedRestore | undefined,
) {
	const { s, m, archive, tools } = inputs(ctx);
	const { env, signal } = ctx;
	return {
		archive,
		format: m.format,
		...tools,
		lockTimeoutMs: s.lockTimeoutMs,
		totalRows: sum(m.row_counts),
		env,
		signal,
		scope,
	};
}

/** The app's schemas when the chosen backup holds the app's objects only. */
function appSchemas(m: BackupManifest) {
	const scope = scopeOf(m ?? {});
	return scope.kind === "app" ? scope.schemas : undefined;
}

/** For a backup of the app's objects only, how to restore it into `conn`'s database (lib/backup/scope.ts). */
async function scopeFor(ctx: RollbackCtx, conn: Connection) {
	const { m, archive, tools } = inputs(ctx);
	const scope = await scopedRestore(conn, m, archive, tools.pgRestore, ctx.env);
	if (scope) ctx.defer(() => scope.dispose());
	return scope;
}

/** Drops the scratch databases an interrupted swap restore or rehearsal left behind. */
async function dropLeftovers(
	ctx: RollbackCtx,
	db: Db,
	kind: "restore" | "rehearse",
) {
	for (const name of await leftoverDatabases(
		db,
		ctx.target.direct.database,
		kind,
	)) {
		await dropDatabase(db, name);
		ctx.log(
			`dropped ${name}, left by an interrupted ${kind === "restore" ? "swap restore" : "rehearsal"}`,
		);
	}
}

/** The target's connection: the runner's, or after a swap (which ends every session) a new one. */
export async function targetDb(ctx: RollbackCtx): Promise<Db> {
	if (!(ctx.has("restore") && ctx.result<Restored>("restore").swapped))
		return ctx.db();
	const client = await connect(ctx.target.direct, `runbook:${NAME}`);
	ctx.defer(() => client.end().catch(() => {}));
	return client;
}

export function restorePlan(ctx: RollbackCtx): string[] {
	const { s, m, archive } = inputs(ctx);
	return s.method === "swap"
		? describeSwapRestore(ctx.target.direct, archive, s.jobs, s.maintenanceDb)
		: describeTransactionRestore(
				ctx.target.direct,
				archive,
				s.lockTimeoutMs,
				appSchemas(m),
			);
}

/** Restores over the target: a swap, or one transaction retried after a lock timeout. */
export async function restoreTarget(ctx: RollbackCtx) {
	const { s, m, archive, tools } = inputs(ctx);
	const db = await ctx.db();
	await dropLeftovers(ctx, db, "restore");
	const total = sum(m.row_counts);
	const onPhase = (p: string) => {
		midway.restorePhase = p;
	};
	if (s.method === "swap") {
		const out = await restoreBySwap(ctx.target.direct, {
			archive,
			format: m.format,
			...tools,
			lockTimeoutMs: s.lockTimeoutMs,
			env: ctx.env,
			signal: ctx.signal,
			jobs: s.jobs,
			maintenanceDb: s.maintenanceDb,
			onPhase: (p) => {
				onPhase(p);
				ctx.log(p);
			},
		});
		ctx.log(
			`pg_restore --jobs ${s.jobs} took ${formatDuration(out.restoreMs)}, the rename ${formatDuration(out.swapMs)}`,
		);
		ctx.log(
			`the previous database is kept as ${out.oldDatabase}; drop it when satisfied: DROP DATABASE ${quoteIdent(out.oldDatabase)};`,
		);
		try {
			const lock = await acquireRunLock(ctx.target.direct, NAME);
			ctx.defer(() => lock.release());
		} catch (err) {
			ctx.warn(
				`the run lock could not be taken again on the new database: ${(err as Error).message}`,
			);
		}
		const value: Restored = {
			method: "swap",
			durationMs: out.durationMs,
			rows: total,
			attempts: 1,
			oldDatabase: out.oldDatabase,
			swapped: true,
		};
		return {
			summary: `swapped in ${m.id} in ${formatDuration(out.durationMs)}; previous database kept as ${out.oldDatabase}`,
			value,
		};
	}
	const scope = await scopeFor(ctx, ctx.target.direct);
	for (let attempt = 1; ; attempt++) {
		const progress = startProgress({ unit: "rows", total, estimated: false });
		try {
			const out = await restoreInTransaction(ctx.target.direct, {
				...transactionOptions(ctx, scope),
				onProgress: (rows, t) =>
					progress.update(rows, t ? `loading ${t}` : undefined),
				onPhase: (p) => {
					onPhase(p);
					progress.note(
						restorePhaseNote(
							p,
							scope?.schemas,
							formatMs(s.lockTimeoutMs),
							m.id,
							total,
						),
					);
				},
			});
			progress.update(out.rows);
			progress.stop();
			const value: Restored = {
				method: "transaction",
				durationMs: out.durationMs,
				rows: out.rows,
				attempts: attempt,
				swapped: false,
			};
			return {
				summary: `restored ${m.id} in ${formatDuration(out.durationMs)} (${fmt(out.rows)} rows), in one transaction`,
				value,
			};
		} catch (err) {
			progress.stop();
			const lockTimeout =
				err instanceof RunbookError && /lock/i.test(err.hint ?? "");
			if (!lockTimeout || attempt > s.retries) throw err;
			ctx.warn(
				`attempt ${attempt}: another session held a lock (rolled back, nothing changed); terminating the sessions again`,
			);
			await terminateOthers(ctx, db);
		}
	}
}

export function rehearsePlan(ctx: RollbackCtx): string[] {
	const { s, m, archive } = inputs(ctx);
	const scratch = scratchName(ctx.target.direct.database, "rehearse");
	const conn = withDatabase(ctx.target.direct, scratch);
	return [
		`CREATE DATABASE ${quoteIdent(scratch)} TEMPLATE template0;`,
		...(s.method === "swap"
			? [`pg_restore --jobs=${s.jobs} --dbname=${scratch} ${archive}`]
			: describeTransactionRestore(
					conn,
					archive,
					s.lockTimeoutMs,
					appSchemas(m),
				)),
		"-- verified as the real restore is, then:",
		`DROP DATABASE ${quoteIdent(scratch)} WITH (FORCE);`,
	];
}

/** --rehearse: the backup restored into a scratch database, timed; dropped at the end of the run. */
export async function rehearseRestore(ctx: RollbackCtx) {
	const { s, m, archive, tools } = inputs(ctx);
	const db = await ctx.db();
	await dropLeftovers(ctx, db, "rehearse");
	const scratch = scratchName(ctx.target.direct.database, "rehearse");
	await createScratchDatabase(db, scratch, ctx.target.direct.database);
	midway.scratch = scratch;
	// Dropped by the verify step; this covers a run that stops before it (drop ... if exists).
	ctx.defer(async () => {
		await dropDatabase(await ctx.db(), scratch).catch(() => {});
	});
	ctx.log(`created ${scratch}`);
	const conn = withDatabase(ctx.target.direct, scratch);
	const scope = await scopeFor(ctx, conn);
	const total = sum(m.row_counts);
	const progress = startProgress({ unit: "rows", total });
	try {
		const out =
			s.method === "swap"
				? await restoreIntoDatabase(conn, {
						archive,
						pgRestore: tools.pgRestore,
						env: ctx.env,
						signal: ctx.signal,
						jobs: s.jobs,
						scope,
					})
				: await restoreInTransaction(conn, {
						...transactionOptions(ctx, scope),
						onProgress: (rows, t) => progress.update(rows, t ?? undefined),
					});
		const value: Restored = {
			method: s.method,
			durationMs: out.durationMs,
			rows: total,
			attempts: 1,
			swapped: false,
			scratch,
		};
		return {
			summary: `restored ${m.id} into ${scratch} in ${formatDuration(out.durationMs)} (--method ${s.method})`,
			value,
		};
	} finally {
		progress.stop();
	}
}
