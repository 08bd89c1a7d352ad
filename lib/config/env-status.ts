// Where .env stands (switch-db-env status): which profile DATABASE_URL points at, each profile's
// connections masked, and whether every distinct URL answers.

import {
	describeEnd,
	type EndStatus,
	matchProfile,
	PROFILE_KEYS,
	PROFILE_NAMES,
	type ProfileName,
	probeEnd,
	readProfile,
} from "../config/db-profiles.ts";
import { parseConnection } from "../pg/target.ts";
import { readEnvFile } from "./env-file.ts";

type Values = Record<string, string | undefined>;

/** .env's values, or null when the file cannot be read (the caller shows the process environment). */
export function envValues(path: string): Values | null {
	try {
		return { ...readEnvFile(path).values };
	} catch {
		return null;
	}
}

/** A connection string shown as user@host:port/db, or why it cannot be. */
export function showConnection(value: string | undefined, key: string): string {
	if (!value?.trim()) return "not set";
	try {
		const c = parseConnection(value.trim(), key);
		return `${c.display}${c.pooled ? " (pooler)" : ""}`;
	} catch {
		return "set, but not a valid PostgreSQL connection string";
	}
}

/** The lines status prints: DATABASE_URL and DIRECT_URL, then each profile. */
export function statusLines(values: Values, env: Values): string[] {
	const lines = ["DATABASE_URL", "DIRECT_URL"].map(
		(key) => `${key.padEnd(12)} ${showConnection(values[key], key)}`,
	);
	for (const name of PROFILE_NAMES) {
		const p = readProfile(env, name);
		lines.push(
			`${name.padEnd(12)} ${p ? `${p.appKey} ${p.app.display}${p.app.pooled ? " (pooler)" : ""}${p.direct ? `, ${p.directKey} ${p.direct.display}` : ""}` : `not configured (${PROFILE_KEYS[name].app} is not set)`}`,
		);
	}
	return lines;
}

export const activeProfile = (
	values: Values,
	env: Values,
): ProfileName | null => matchProfile(values.DATABASE_URL, env);

/** Each distinct URL of .env and the profiles probed once, labelled with every key that holds it. */
async function probeAll(values: Values, env: Values): Promise<EndStatus[]> {
	const byUrl = new Map<string, string[]>();
	const add = (key: string, url: string | undefined) => {
		if (!url?.trim()) return;
		byUrl.set(url.trim(), [...(byUrl.get(url.trim()) ?? []), key]);
	};
	add("DATABASE_URL", values.DATABASE_URL);
	add("DIRECT_URL", values.DIRECT_URL);
	for (const name of PROFILE_NAMES) {
		const p = readProfile(env, name);
		if (!p) continue;
		add(p.appKey, p.app.url);
		if (p.direct) add(p.directKey, p.direct.url);
	}
	return Promise.all(
		[...byUrl.entries()].map(async ([url, keys]) => {
			let conn: ReturnType<typeof parseConnection>;
			try {
				conn = parseConnection(url, keys[0]);
			} catch (err) {
				return {
					key: keys.join(" = "),
					display: "(invalid)",
					pooled: false,
					ok: false,
					ms: 0,
					error: (err as Error).message,
				} satisfies EndStatus;
			}
			return probeEnd(conn, keys.join(" = "));
		}),
	);
}

/**
 * Probes every end of .env (or the process environment) and the profiles, logging each (a warning
 * for the app's own when down); `down`: the app's own does not answer.
 */
export async function probeStatus(
	path: string,
	env: Values,
	out: { log(text: string): void; warn(text: string): void },
): Promise<{ ends: EndStatus[]; down: boolean }> {
	const ends = await probeAll(envValues(path) ?? env, env);
	const log = (t: string) => out.log(t);
	const warn = (t: string) => out.warn(t);
	let activeDown = false;
	for (const e of ends) {
		const active = /\b(DATABASE_URL|DIRECT_URL)\b/.test(
			e.key.replace(/(LOCAL|REMOTE)_(DATABASE|DIRECT)_URL/g, ""),
		);
		if (e.ok) log(describeEnd(e));
		else if (active) {
			activeDown = true;
			warn(describeEnd(e));
		} else log(`${describeEnd(e)} (not the active profile)`);
	}
	return { ends, down: activeDown };
}
