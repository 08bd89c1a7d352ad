// Step 1 of restore mode and --rehearse: the backup to roll back to (the newest verified pre-deploy
// backup of the target, or the one named), the database's current state next to it, and the
// migrations the restore takes out. --put-back: the restored backup and the safety backup.

import {
	type BackupEntry,
	backupDir,
	findBackup,
	listBackups,
	verifyBackup,
} from "../backup/archive.ts";
import { listTables } from "../backup/row-checksums.ts";
import { describeScope, scopeOf } from "../backup/scope.ts";
import type { Env } from "../config/env.ts";
import { refusal, usageError } from "../kit/errors.ts";
import * as say from "../messages/rollback.ts";
import { type History, readHistory } from "../migrations/history.ts";
import { migrationsDir } from "../migrations/prisma-cli.ts";
import { countTables, databaseSize } from "../pg/catalog.ts";
import { findTool } from "../pg/client-tools.ts";
import { type Db, serverVersion } from "../pg/db.ts";
import { checkGitRevert } from "./git-step.ts";
import type { Chosen, Tools } from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

/** Above this size the current state's row counts are estimates (an exact count reads every table). */
const EXACT_COUNT_LIMIT = 1024 ** 3;

/** What every mode's step 1 reads first. */
export type Start = Pick<Chosen, "serverMajor" | "history" | "applied">;

export interface Current {
	latest: string | null;
	applied: string[];
	counts: Record<string, number>;
	exact: boolean;
	bytes: number;
}

/** The finished, not rolled back migrations of _prisma_migrations, in name order. */
export const finishedNames = (h: History) =>
	h.applied
		.filter((r) => r.finished_at && !r.rolled_back_at)
		.map((r) => r.migration_name)
		.filter((n, i, a) => a.indexOf(n) === i)
		.sort();

/** Migrations newer than the backup's latest one: what a restore takes out. */
export function newerThan(names: string[], latest: string | null): string[] {
	return names.filter((n) => latest === null || n > latest);
}

const usable = (e: BackupEntry) =>
	e.archivePresent &&
	Boolean(e.manifest.verified_at) &&
	!e.manifest.verify_error;

export type Proposal =
	| { entry: BackupEntry; note?: string }
	| { none: string; hint: string };

/**
 * The newest verified pre-deploy backup of this target (for --rehearse, the newest verified backup
 * of any kind: every backup should prove it restores), or the reason there is none.
 */
export function proposeBackup(
	env: Env,
	display: string,
	database: string,
	anyKind: boolean,
): Proposal {
	const fits = (e: BackupEntry) => anyKind || e.manifest.kind === "pre-deploy";
	const all = listBackups(env);
	let mine = all.filter((e) => e.manifest.target === display);
	let note: string | undefined;
	if (mine.length === 0) {
		mine = all.filter((e) => e.manifest.database === database);
		if (mine.length) note = say.otherAddress(display, database, mine);
	}
	const pick = mine.find((e) => fits(e) && usable(e));
	const newer = mine.filter(
		(e) =>
			fits(e) &&
			!usable(e) &&
			(!pick || e.manifest.created_at > pick.manifest.created_at),
	);
	if (pick && newer.length)
		note = [note, say.passedOver(anyKind, newer)].filter(Boolean).join("; ");
	if (pick) return { entry: pick, note };
	return say.noBackup(anyKind, display, backupDir(env), mine, usable);
}

/** Every table's row count now (estimates above EXACT_COUNT_LIMIT), with the tables the backup has. */
async function readCurrent(
	db: Db,
	h: History,
	applied: string[],
	backupTables: string[],
): Promise<Current> {
	const bytes = await databaseSize(db);
	const exact = bytes < EXACT_COUNT_LIMIT;
	const keys = [...new Set([...backupTables, ...(await listTables(db))])];
	const counted = await countTables(db, keys, { estimate: !exact });
	const counts = Object.fromEntries(
		Object.entries(counted).filter(([, n]) => n !== null),
	) as Record<string, number>;
	return { latest: h.latestApplied, applied, counts, exact, bytes };
}

/** Restore mode and --rehearse: the backup, next to the database now. */
export async function chooseBackup(ctx: RollbackCtx, start: Start) {
	const s = ctx.settings;
	const { history: h, applied } = start;
	const none = { repository: null, files: [], reverted: [] };
	let entry: BackupEntry;
	if (s.backupId) {
		entry = findBackup(ctx.env, s.backupId);
		if (entry.manifest.target !== ctx.target.direct.display)
			ctx.warn(say.madeOfAnother(entry.manifest, ctx.target.direct.display));
	} else {
		const t = ctx.target.direct;
		const p = proposeBackup(
			ctx.env,
			t.display,
			t.database,
			s.mode === "rehearse",
		);
		if ("none" in p) {
			if (!ctx.dryRun) throw refusal(`${p.none} Nothing was changed.`, p.hint);
			ctx.warn(`${p.none} A real run would refuse (exit 3).`);
			ctx.log(p.hint);
			const nothing = `no verified ${s.mode === "rehearse" ? "" : "pre-deploy "}backup`;
			const value: Chosen = { ...start, nothing, later: [], git: none };
			return {
				status: "warning" as const,
				summary: "no backup to restore: nothing to plan",
				value,
			};
		}
		entry = p.entry;
		if (p.note) ctx.warn(p.note);
		if (s.mode === "rehearse") ctx.log(say.rehearsing(entry.manifest));
	}
	const m = entry.manifest;
	const scope = scopeOf(m);
	if (scope.kind === "app" && s.mode === "restore" && s.method === "swap")
		throw usageError(
			say.swapOfAppScope(m.id, describeScope(scope)),
			"Use --method transaction (the default), which replaces the app's schemas only.",
		);
	if (!entry.archivePresent)
		ctx.warn(`the archive ${m.archive} is missing from ${backupDir(ctx.env)}`);
	const db = await ctx.db();
	const current = await readCurrent(db, h, applied, Object.keys(m.row_counts));
	for (const line of say.comparison(m, current)) ctx.log(line);
	const later = newerThan(applied, m.latest_migration);
	const local = new Set(h.local.map((x) => x.name));
	const localNames = h.local.map((x) => x.name);
	const toRevert = [
		...new Set([...later, ...newerThan(localNames, m.latest_migration)]),
	]
		.filter((n) => local.has(n))
		.sort();
	const git = await checkGitRevert(ctx, toRevert);
	if (later.length)
		ctx.log(
			`migrations applied since the backup, which the restore takes out: ${later.join(", ")}`,
		);
	const value: Chosen = { ...start, backup: entry, later, git };
	return {
		summary: say.chosenSummary(m),
		data: { backup: m, current, later },
		value,
	};
}

/** --put-back: the restored backup and the safety backup that holds the newer rows. */
export function choosePutBack(ctx: RollbackCtx, start: Start) {
	const backup = findBackup(ctx.env, ctx.settings.backupId as string);
	const safety = findBackup(ctx.env, ctx.settings.putBackId as string);
	if (safety.manifest.created_at <= backup.manifest.created_at)
		throw usageError(
			say.putBackTooOld(safety.manifest.id, backup.manifest.id),
			"Name the safety backup the rollback took (its id is in the rollback's output and in npx tsx runbooks/backup.ts list).",
		);
	ctx.log(
		say.putBackBetween(
			backup.manifest,
			safety.manifest,
			ctx.target.direct.display,
		),
	);
	const value: Chosen = {
		...start,
		backup,
		safetyEntry: safety,
		later: [],
		git: { repository: null, files: [], reverted: [] },
	};
	return {
		summary: `put back the rows ${safety.manifest.id} holds that ${backup.manifest.id} does not`,
		value,
	};
}

/** Verifies a backup's archive (sha256, pg_restore --list); a bad one is refused before any change. */
export async function verifyOrRefuse(ctx: RollbackCtx, entry: BackupEntry) {
	const r = await verifyBackup(entry, ctx.env, ctx.signal, {
		record: !ctx.dryRun,
	});
	ctx.log(say.verifiedLine(r));
	if (!r.ok) {
		for (const p of r.problems) ctx.warn(p);
		throw refusal(
			`The backup ${r.manifest.id} failed verification: ${r.problems[0]}. It cannot be trusted, so nothing was changed.`,
			"Pick another backup (npx tsx runbooks/backup.ts list; then --backup <id>).",
		);
	}
	return r;
}

/** Step 1, every mode: the server's version and the migration history. */
export async function readStart(ctx: RollbackCtx): Promise<Start> {
	const db = await ctx.db();
	const { major } = await serverVersion(db);
	const history = await readHistory(db, migrationsDir(ctx.env));
	return { serverMajor: major, history, applied: finishedNames(history) };
}

/** Step 2: the chosen backup (and --put-back's safety backup) verified; the client tools found. */
export async function verifyChosen(ctx: RollbackCtx) {
	const { backup, safetyEntry, serverMajor } = ctx.result<Chosen>("choose");
	if (safetyEntry) await verifyOrRefuse(ctx, safetyEntry);
	const r = await verifyOrRefuse(ctx, backup as BackupEntry);
	const env = { ...process.env, ...ctx.env };
	const tools: Tools = {
		pgRestore: await findTool("pg_restore", serverMajor, env),
		psql: await findTool("psql", serverMajor, env),
	};
	ctx.log(`pg_restore ${tools.pgRestore.version}, psql ${tools.psql.version}`);
	return {
		summary: `${r.manifest.id}: sha256 matches, pg_restore reads it (${r.tocEntries} entries)`,
		value: tools,
	};
}
