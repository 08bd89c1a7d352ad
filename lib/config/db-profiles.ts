// Database profiles: named pairs of connection strings kept in .env (LOCAL_DATABASE_URL with an
// optional LOCAL_DIRECT_URL; REMOTE_DATABASE_URL, the pooler, with REMOTE_DIRECT_URL), which of
// them DATABASE_URL/DIRECT_URL currently point at, whether each end answers, and switching .env
// from one to the other (lib/config/env-file.ts does the careful rewrite).

import { plainError, refusal, usageError } from "../kit/errors.ts";
import { connect } from "../pg/db.ts";
import {
	type Connection,
	isLocalHost,
	parseConnection,
	type Target,
} from "../pg/target.ts";
import {
	type EnvFile,
	readEnvFile,
	replaceEnvFile,
	rewriteUrls,
	type UrlChange,
} from "./env-file.ts";

export type ProfileName = "local" | "remote";
export const PROFILE_NAMES: readonly ProfileName[] = ["local", "remote"];

export const PROFILE_KEYS: Record<
	ProfileName,
	{ app: string; direct: string }
> = {
	local: { app: "LOCAL_DATABASE_URL", direct: "LOCAL_DIRECT_URL" },
	remote: { app: "REMOTE_DATABASE_URL", direct: "REMOTE_DIRECT_URL" },
};

export const PROFILE_ENV: Record<string, string> = {
	LOCAL_DATABASE_URL:
		"The local profile: the app's DATABASE_URL for local PostgreSQL (in .env).",
	LOCAL_DIRECT_URL:
		"Optional: the local profile's DIRECT_URL (default: none, or LOCAL_DATABASE_URL where .env already has a DIRECT_URL line).",
	REMOTE_DATABASE_URL:
		"The remote profile's DATABASE_URL: the transaction pooler (Supabase: port 6543, with ?pgbouncer=true).",
	REMOTE_DIRECT_URL:
		"The remote profile's DIRECT_URL: the direct connection (Supabase: port 5432), for migrations, dumps and restores.",
};

type Values = Record<string, string | undefined>;

export interface Profile {
	name: ProfileName;
	appKey: string;
	directKey: string;
	/** What the app uses (DATABASE_URL). */
	app: Connection;
	/** The direct connection (DIRECT_URL), or null when the profile has none. */
	direct: Connection | null;
}

const nonEmpty = (v: string | undefined) => (v?.trim() ? v.trim() : undefined);

/** A pooled URL must not carry dumps, restores or migrations: the refusal names the fix. */
export function pooledDirectRefusal(key: string, conn: Connection) {
	return refusal(
		`${key} (${conn.display}) goes through a transaction pooler (pgbouncer=true or port 6543), but dumps, restores and migrations need a direct connection. Nothing was changed.`,
		`Set ${key} to the direct URL (Supabase: db.<project-ref>.supabase.co, port 5432, without pgbouncer=true); it becomes DIRECT_URL. Keep the pooler in ${key.replace("DIRECT", "DATABASE")} for the app.`,
	);
}

/** The profile as configured, or null when its DATABASE_URL key is unset. */
export function readProfile(env: Values, name: ProfileName): Profile | null {
	const keys = PROFILE_KEYS[name];
	const appUrl = nonEmpty(env[keys.app]);
	if (!appUrl) return null;
	const directUrl = nonEmpty(env[keys.direct]);
	return {
		name,
		appKey: keys.app,
		directKey: keys.direct,
		app: parseConnection(appUrl, keys.app),
		direct: directUrl ? parseConnection(directUrl, keys.direct) : null,
	};
}

/** The profile, complete enough to switch to: exit 2 when unset, 3 when its direct URL is a pooler. */
export function requireProfile(env: Values, name: ProfileName): Profile {
	const keys = PROFILE_KEYS[name];
	const p = readProfile(env, name);
	if (!p) {
		throw usageError(
			`${keys.app} is not set.`,
			`Add the ${name} profile to .env (see .env.example): ${keys.app}${name === "remote" ? ` (the pooler) and ${keys.direct} (the direct connection)` : ` (and optionally ${keys.direct})`}.`,
		);
	}
	if (p.direct?.pooled) throw pooledDirectRefusal(p.directKey, p.direct);
	if (!p.direct && p.app.pooled) {
		throw usageError(
			`${keys.direct} is not set, and ${keys.app} (${p.app.display}) goes through a pooler.`,
			`Set ${keys.direct} to the direct connection (Supabase: port 5432): Prisma migrations and the runbooks' dumps need it as DIRECT_URL.`,
		);
	}
	return p;
}

/** The profile as a runbook target: the app through its pooler, dumps and migrations direct. */
export function profileTarget(p: Profile, env: Values): Target {
	const direct = p.direct ?? p.app;
	return {
		app: p.app,
		direct,
		isLocal: isLocalHost(direct.host),
		isProduction: (env.RUNBOOK_ENV ?? "").toLowerCase() === "production",
	};
}

/** The values DATABASE_URL/DIRECT_URL take under a profile (DIRECT_URL null: none). */
export function profileUrls(p: Profile): {
	databaseUrl: string;
	directUrl: string | null;
} {
	return { databaseUrl: p.app.url, directUrl: p.direct?.url ?? null };
}

/** Which profile a DATABASE_URL value belongs to. */
export function matchProfile(
	url: string | undefined,
	env: Values,
): ProfileName | null {
	if (!nonEmpty(url)) return null;
	for (const name of PROFILE_NAMES) {
		if (nonEmpty(env[PROFILE_KEYS[name].app]) === url?.trim()) return name;
	}
	return null;
}

export interface EndStatus {
	/** The key it was read from, e.g. REMOTE_DATABASE_URL or DATABASE_URL. */
	key: string;
	display: string;
	pooled: boolean;
	ok: boolean;
	ms: number;
	version?: string;
	error?: string;
	hint?: string;
}

/** Connects and runs `select 1` (through a pooler too), with the server's version. */
export async function probeEnd(
	conn: Connection,
	key: string,
): Promise<EndStatus> {
	const started = performance.now();
	const base = { key, display: conn.display, pooled: conn.pooled };
	try {
		const db = await connect(conn, "runbook:probe");
		try {
			await db.query("select 1");
			const { rows } = await db.query<{ v: string }>(
				"select current_setting('server_version') as v",
			);
			return {
				...base,
				ok: true,
				ms: Math.round(performance.now() - started),
				version: rows[0].v,
			};
		} finally {
			await db.end().catch(() => {});
		}
	} catch (err) {
		const e = plainError(err, conn.display);
		return {
			...base,
			ok: false,
			ms: Math.round(performance.now() - started),
			error: e.message,
			hint: e.hint,
		};
	}
}

/** Probes the profile's app URL and direct URL at once. */
export async function probeProfile(p: Profile): Promise<EndStatus[]> {
	return Promise.all([
		probeEnd(p.app, p.appKey),
		...(p.direct ? [probeEnd(p.direct, p.directKey)] : []),
	]);
}

export function describeEnd(e: EndStatus): string {
	const what = `${e.key} ${e.display}${e.pooled ? " (pooler)" : ""}`;
	return e.ok
		? `${what}: answers (PostgreSQL ${e.version}, ${e.ms} ms)`
		: `${what}: does not answer: ${e.error}`;
}

export interface SwitchPlan {
	profile: Profile;
	file: EnvFile;
	/** The file's new text. */
	text: string;
	changes: UrlChange[];
	/** Nothing to change: .env already points at this profile. */
	unchanged: boolean;
	/**
	 * Current values in .env that match no profile: the switch would drop them from .env (they stay
	 * in the backup), and switching back could not restore them.
	 */
	unrecorded: string[];
}

export function planSwitch(
	file: EnvFile,
	env: Values,
	profile: Profile,
): SwitchPlan {
	const { databaseUrl, directUrl } = profileUrls(profile);
	const { text, changes } = rewriteUrls(file.text, databaseUrl, directUrl);
	const known = new Set<string>();
	for (const name of PROFILE_NAMES) {
		for (const key of [PROFILE_KEYS[name].app, PROFILE_KEYS[name].direct]) {
			const v = nonEmpty(env[key]);
			if (v) known.add(v);
		}
	}
	const unrecorded: string[] = [];
	for (const key of ["DATABASE_URL", "DIRECT_URL"] as const) {
		const v = nonEmpty(file.values[key]);
		if (v && !known.has(v)) {
			let display = "a value that is not a connection string";
			try {
				display = parseConnection(v, key).display;
			} catch {
				// shown generically
			}
			unrecorded.push(`${key} (${display})`);
		}
	}
	return {
		profile,
		file,
		text,
		changes,
		unchanged: text === file.text,
		unrecorded,
	};
}

/** The changes as the operator reads them: which key takes which profile's value, masked. */
export function describeSwitch(plan: SwitchPlan): string[] {
	const p = plan.profile;
	return plan.changes.map((c) => {
		if (c.action === "removed")
			return `${c.key}: remove the line switch-db-env added (the ${p.name} profile has no ${p.directKey})`;
		const source =
			c.key === "DATABASE_URL"
				? `${p.appKey} (${p.app.display}${p.app.pooled ? ", pooler" : ""})`
				: p.direct
					? `${p.directKey} (${p.direct.display})`
					: `${p.appKey} (${p.app.display}; the ${p.name} profile has no ${p.directKey})`;
		const verb =
			c.action === "unchanged"
				? "already"
				: c.action === "added"
					? "add, ="
					: "set to";
		return `${c.key}: ${verb} ${source}`;
	});
}

/** Reads the file and plans the switch: the whole preflight, no change. */
export function prepareSwitch(
	path: string,
	env: Values,
	name: ProfileName,
): SwitchPlan {
	return planSwitch(readEnvFile(path), env, requireProfile(env, name));
}

/** Writes the switch (atomically, with a 0600 backup); returns the backup's path. */
export function applySwitch(plan: SwitchPlan): string | null {
	if (plan.unchanged) return null;
	return replaceEnvFile(plan.file, plan.text);
}

/** Process environment variables that override .env for anything started from this shell. */
export function shellOverrides(): string[] {
	return ["DATABASE_URL", "DIRECT_URL"].filter((k) => nonEmpty(process.env[k]));
}
