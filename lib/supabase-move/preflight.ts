// The checks before migrate-to-supabase copies anything: the source is a clean Prisma database on
// a direct connection, the target lets the copy in, the extensions exist there, the target's
// public is empty or holds this runbook's own copy, and the final .env switch cannot refuse.
// Each throws a refusal (exit 3, nothing changed) or returns what later steps need.

import { listTables } from "../backup/row-checksums.ts";
import {
	describeEnd,
	pooledDirectRefusal,
	prepareSwitch,
	probeEnd,
	readProfile,
	type SwitchPlan,
} from "../config/db-profiles.ts";
import { envFilePath } from "../config/env-file.ts";
import {
	type CopyTools,
	type ExtensionUse,
	extensionsUsed,
	type SchemaObject,
	schemaObjects,
} from "../data/schema-copy.ts";
import { refusal, usageError } from "../kit/errors.ts";
import { formatBytes } from "../kit/format.ts";
import {
	type Advice,
	type CopyMode,
	cannotCreate,
	copyOfAnother,
	extensionLine,
	extensionsMoved,
	extensionsUnavailable,
	modeReason,
	notSupabase,
	olderTarget,
	otherSchema,
	poolerDown,
	publicNotEmpty,
	remoteProfileMissing,
	sameDatabase,
	sourceHistoryDirty,
	sourcePooled,
	sourceUnmigrated,
	unrecordedEnv,
} from "../messages/supabase.ts";
import { readHistory } from "../migrations/history.ts";
import { databaseSize } from "../pg/catalog.ts";
import { findTool } from "../pg/client-tools.ts";
import { type Db, serverVersion, withClient } from "../pg/db.ts";
import {
	EXTENSIONS_SCHEMA,
	latestRun,
	type PlatformShape,
	type RunRecord,
	readPlatformShape,
} from "../pg/supabase.ts";
import type { Connection, Target } from "../pg/target.ts";
import { CopyRun } from "./copy-run.ts";
import { type MoveSettings, SCHEMA } from "./settings.ts";

type Log = (text: string) => void;
type Env = Record<string, string | undefined>;

const refuse = (a: Advice) => refusal(a.message, a.hint);

/** The local database as the copy sees it. */
export interface SourceFacts {
	major: number;
	tables: string[];
	bytes: number;
	extensions: ExtensionUse[];
}

/**
 * Refuses a pooled source, a source that is the target, or one whose Prisma history is missing or
 * not clean; logs what the source holds; warns of schemas besides public (not copied).
 */
export async function checkSource(
	source: Connection,
	key: string,
	target: Connection,
	log: Log,
	warnings: string[],
): Promise<SourceFacts> {
	if (source.pooled) {
		throw key.includes("DIRECT")
			? pooledDirectRefusal(key, source)
			: refuse(sourcePooled(key, source.display));
	}
	if (
		source.host === target.host &&
		source.port === target.port &&
		source.database === target.database
	)
		throw refuse(sameDatabase(key, target.display));
	const src = await withClient(
		source,
		async (db) => ({
			version: await serverVersion(db),
			history: await readHistory(db),
			tables: await listTables(db, SCHEMA),
			bytes: await databaseSize(db),
			extensions: await extensionsUsed(db, SCHEMA),
			others: await otherSchemas(db),
		}),
		"runbook:migrate-to-supabase",
	);
	log(
		`Source (${key}): ${source.display}, PostgreSQL ${src.version.text}, ${src.tables.length} tables in public, ${formatBytes(src.bytes)}`,
	);
	if (src.history.tableMissing) throw refuse(sourceUnmigrated);
	if (src.history.issues.length)
		throw refuse(sourceHistoryDirty(src.history.issues));
	for (const o of src.others) warnings.push(otherSchema(o.s, o.n));
	const { tables, bytes, extensions } = src;
	return { major: src.version.major, tables, bytes, extensions };
}

/** Schemas other than public that hold tables, with how many. */
async function otherSchemas(db: Db) {
	const { rows } = await db.query<{ s: string; n: string }>(
		`select n.nspname as s, count(*) as n from pg_class c join pg_namespace n on n.oid = c.relnamespace
              where c.relkind in ('r', 'p') and n.nspname not in ('public', 'pg_catalog', 'information_schema')
                and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%' group by 1 order by 1`,
	);
	return rows;
}

/**
 * Refuses a target role that may not create the copy or its record; warns when the target is not
 * Supabase-shaped or older than the source; finds client tools new enough for both servers.
 */
export async function checkTarget(
	db: Db,
	target: Connection,
	sourceMajor: number,
	env: Env,
	log: Log,
	warnings: string[],
): Promise<{ major: number; shape: PlatformShape; tools: CopyTools }> {
	const tv = await serverVersion(db);
	const shape = await readPlatformShape(db);
	log(
		`Target (REMOTE_DIRECT_URL): ${target.display}, PostgreSQL ${tv.text}, connected as ${shape.user}${shape.superuser ? " (superuser)" : ""}`,
	);
	if (!shape.looksLikeSupabase) warnings.push(notSupabase(shape));
	if (!shape.canCreateInPublic || !shape.canCreateSchema)
		throw refuse(cannotCreate(shape));
	if (tv.major < sourceMajor) warnings.push(olderTarget(tv.major, sourceMajor));
	const major = Math.max(sourceMajor, tv.major);
	const tools = {
		pgDump: await findTool("pg_dump", major, env),
		pgRestore: await findTool("pg_restore", major, env),
		psql: await findTool("psql", major, env),
	};
	log(
		`Client tools: pg_dump ${tools.pgDump.version}, pg_restore ${tools.pgRestore.version} (servers: ${sourceMajor} and ${tv.major})`,
	);
	return { major: tv.major, shape, tools };
}

/**
 * The extensions to create in the target's extensions schema. Refuses one the target cannot
 * install, or one that would land in another schema while copied objects name it by schema.
 */
export async function checkExtensions(
	db: Db,
	used: ExtensionUse[],
	log: Log,
): Promise<string[]> {
	if (!used.length) return [];
	const { rows } = await db.query<{
		name: string;
		installed: string | null;
		schema: string | null;
	}>(
		`select a.name, a.installed_version as installed, n.nspname as schema
             from pg_available_extensions a
             left join pg_extension e on e.extname = a.name
             left join pg_namespace n on n.oid = e.extnamespace
            where a.name = any($1)`,
		[used.map((e) => e.name)],
	);
	const avail = new Map(rows.map((r) => [r.name, r]));
	const missing = used.filter((e) => !avail.has(e.name));
	if (missing.length)
		throw refuse(extensionsUnavailable(missing.map((e) => e.name)));
	const moved = used
		.map((e) => ({
			...e,
			where: avail.get(e.name)?.schema ?? EXTENSIONS_SCHEMA,
		}))
		.filter((e) => e.dependents.length && e.schema !== e.where);
	if (moved.length) throw refuse(extensionsMoved(moved));
	for (const e of used)
		log(extensionLine(e.name, avail.get(e.name), EXTENSIONS_SCHEMA));
	return used.filter((e) => !avail.get(e.name)?.installed).map((e) => e.name);
}

/** What this run does with the target's public, from what it holds and this runbook's record. */
export interface CopyStart {
	mode: CopyMode;
	previous: RunRecord | null;
	/** What a restart clears first. */
	leftovers: SchemaObject[];
}

/**
 * fresh (public empty), resume (this source's verified copy is there; --restart copies again) or
 * restart (this runbook's partial copy is there). Refuses anything else in public.
 */
export async function chooseStart(
	db: Db,
	source: string,
	restart: boolean,
	log: Log,
): Promise<CopyStart> {
	const objects = await schemaObjects(db, SCHEMA);
	const previous = await latestRun(db);
	let mode: CopyMode;
	if (objects.length === 0) mode = "fresh";
	else if (!previous) throw refuse(publicNotEmpty(objects));
	else if (previous.source !== source)
		throw refuse(copyOfAnother(previous, source));
	else if (previous.phase === "verified" && !restart) mode = "resume";
	else mode = "restart";
	log(modeReason(mode, previous, objects.length));
	return { mode, previous, leftovers: mode === "restart" ? objects : [] };
}

/**
 * The .env switch at the end, checked now so that it cannot refuse after the copy: the remote
 * profile exists, .env holds nothing a switch would lose, and the app's pooler answers.
 */
export async function checkSwitch(
	env: Env,
	dotenv: string | undefined,
	app: Connection,
	log: Log,
): Promise<SwitchPlan> {
	if (!readProfile(env, "remote"))
		throw usageError(remoteProfileMissing.message, remoteProfileMissing.hint);
	const plan = prepareSwitch(envFilePath(dotenv), env, "remote");
	if (plan.unrecorded.length && !plan.unchanged)
		throw refuse(unrecordedEnv(plan.unrecorded));
	const pooler = await probeEnd(app, "REMOTE_DATABASE_URL");
	log(describeEnd(pooler));
	if (!pooler.ok) throw refuse(poolerDown(pooler.hint));
	return plan;
}

/** What step 1 hands forward: both ends checked, the extensions to create, how the copy starts. */
export interface Checked {
	source: SourceFacts;
	targetMajor: number;
	tools: CopyTools;
	toCreate: string[];
	start: CopyStart;
	/** The .env switch at the end (absent with --no-switch). */
	switchPlan?: SwitchPlan;
	run: CopyRun;
	/** Warnings for the operator (printed after the checks). */
	warnings: string[];
}

/** Step 1 of migrate-to-supabase: every check above, in order, logging as it goes. */
export async function checkBothEnds(
	s: MoveSettings,
	target: Target,
	db: Db,
	env: Env,
	dotenv: string | undefined,
	log: Log,
): Promise<Checked> {
	const warnings: string[] = [];
	const direct = target.direct;
	const source = await checkSource(
		s.source,
		s.sourceKey,
		direct,
		log,
		warnings,
	);
	const tgt = await checkTarget(db, direct, source.major, env, log, warnings);
	const toCreate = await checkExtensions(db, source.extensions, log);
	const start = await chooseStart(db, s.source.display, s.restart, log);
	const switchPlan = s.noSwitch
		? undefined
		: await checkSwitch(env, dotenv, target.app, log);
	return {
		source,
		targetMajor: tgt.major,
		tools: tgt.tools,
		toCreate,
		start,
		switchPlan,
		run: new CopyRun(s.source, source.tables),
		warnings,
	};
}
