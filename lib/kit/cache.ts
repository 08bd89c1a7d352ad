// A small on-disk cache for results that depend on files alone (Prisma's diffs and formatting of
// given files, the catalog fingerprint of given migrations): one JSON file per key under
// node_modules/.cache, written by rename so a killed run never leaves half an entry. A cache that
// cannot be read or written is no cache: the caller computes the value again. RUNBOOK_NO_CACHE=1
// reads nothing from it (every value is computed afresh, and kept).

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CACHE_DIR = join(
	fileURLToPath(new URL("../..", import.meta.url)),
	"node_modules",
	".cache",
	"faceswap-runbooks",
);

/** A cached value by key, or undefined (always, with RUNBOOK_NO_CACHE=1). */
export function cacheGet<T>(key: string): T | undefined {
	if (process.env.RUNBOOK_NO_CACHE === "1") return undefined;
	try {
		return JSON.parse(readFileSync(join(CACHE_DIR, `${key}.json`), "utf8"));
	} catch {
		return undefined;
	}
}

export function cachePut(key: string, value: unknown): void {
	try {
		mkdirSync(CACHE_DIR, { recursive: true });
		const file = join(CACHE_DIR, `${key}.json`);
		const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
		writeFileSync(tmp, JSON.stringify(value));
		renameSync(tmp, file);
	} catch {
		// read-only checkout: every run computes it again
	}
}

export const hashOf = (...parts: string[]): string =>
	createHash("sha256").update(parts.join("\0")).digest("hex");

/**
 * The value for `name` and these inputs: from the cache, else computed and kept. A computation
 * that gives undefined (it failed) is not kept, so the next run tries again.
 */
export async function cached<T>(
	name: string,
	inputs: string[],
	compute: () => Promise<T | undefined>,
): Promise<T | undefined> {
	const key = `${name}-${hashOf(...inputs)}`;
	const hit = cacheGet<T>(key);
	if (hit !== undefined) return hit;
	const value = await compute();
	if (value !== undefined) cachePut(key, value);
	return value;
}
