// migrate-to-supabase's two ends and its flags: the local source, the Supabase target (its direct
// connection, never the pooler), and how the copy runs (streams, index memory, work dir).

import { availableParallelism, tmpdir } from "node:os";
import { pooledDirectRefusal } from "../config/db-profiles.ts";
import type { CopyPlan } from "../data/schema-copy.ts";
import type { FlagValues } from "../kit/cli.ts";
import { usageError } from "../kit/errors.ts";
import {
	type Connection,
	makeTarget,
	parseConnection,
	type Target,
} from "../pg/target.ts";

type Env = Record<string, string | undefined>;

export const SCHEMA = "public";

/** The local database: LOCAL_DIRECT_URL/LOCAL_DATABASE_URL, else DIRECT_URL/DATABASE_URL. */
export function sourceOf(
	env: Env,
	flags: FlagValues,
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
export function remoteTarget(env: Env): Target {
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
	// Both parsed above under their own names, so that an error names the right one.
	return { ...makeTarget(directUrl, undefined, env), app };
}

/** --maintenance-work-mem, checked: a size PostgreSQL reads (e.g. 256MB, 1GB). */
export function parseMemory(flags: FlagValues): string {
	const v = String(flags["maintenance-work-mem"] ?? "256MB").trim();
	if (!/^\d+\s*(kB|MB|GB)$/.test(v))
		throw usageError(
			`--maintenance-work-mem must be a size such as 256MB or 1GB, not "${v}".`,
		);
	return v.replace(/\s+/g, "");
}

export interface MoveSettings {
	source: Connection;
	sourceKey: string;
	/** --jobs as given; the default depends on the source's size (see copyPlan). */
	jobs?: number;
	maintenanceWorkMem: string;
	workDir: string;
	restart: boolean;
	noSwitch: boolean;
	interactive: boolean;
}

export function moveSettings(env: Env, flags: FlagValues): MoveSettings {
	const { url, key } = sourceOf(env, flags);
	return {
		source: parseConnection(url, key),
		sourceKey: key,
		jobs:
			flags.jobs === undefined
				? undefined
				: Math.max(1, Math.floor(Number(flags.jobs))),
		maintenanceWorkMem: parseMemory(flags),
		workDir: (flags["work-dir"] as string | undefined) ?? tmpdir(),
		restart: Boolean(flags.restart),
		noSwitch: Boolean(flags["no-switch"]),
		interactive: Boolean(flags.interactive),
	};
}

/** Databases from this size on are copied in parallel streams unless --jobs says otherwise. */
const PARALLEL_FROM_BYTES = 512 * 1024 * 1024;

/** --jobs, or: one atomic stream for small databases, parallel streams (2 to 4) for big ones. */
export function copyPlan(
	s: MoveSettings,
	sourceBytes: number,
	snapshot: string | undefined,
): CopyPlan {
	const jobs =
		s.jobs ??
		(sourceBytes < PARALLEL_FROM_BYTES
			? 1
			: Math.min(4, Math.max(2, availableParallelism())));
	return {
		schema: SCHEMA,
		jobs,
		maintenanceWorkMem: s.maintenanceWorkMem,
		workDir: s.workDir,
		snapshot,
	};
}
