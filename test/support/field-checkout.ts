// What both the vitest suite (test/support/harness.ts) and the benchmarks (test/bench/) need to run
// the project's own tools: the checkout's root, the tsx and Prisma CLIs, a copy of the checkout,
// and one PostgreSQL connection for one piece of work. No vitest here: the benchmarks run under tsx.

import { cpSync, existsSync, mkdtempSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { BUNDLE_DIR } from "./runbook-bundle.ts";

export const ROOT = new URL("../..", import.meta.url).pathname;
export const tsxCli = createRequire(import.meta.url).resolve("tsx/cli");
const prismaPackage = createRequire(import.meta.url).resolve(
	"prisma/package.json",
);
export const prismaCli = join(prismaPackage, "..", "build", "index.js");

/** What a copy of the checkout holds (node_modules is linked, not copied). */
export const CHECKOUT = [
	"package.json",
	"tsconfig.json",
	"runbooks",
	"lib",
	"prisma",
	".config",
];

/** A copy of the checkout in a new temporary directory named `prefix…`; returns its path. */
export function copyCheckout(prefix: string, entries = CHECKOUT): string {
	const dir = mkdtempSync(join(tmpdir(), prefix));
	for (const entry of entries)
		cpSync(join(ROOT, entry), join(dir, entry), { recursive: true });
	// The suite's bundles of the runbooks, which find the checkout from where they lie.
	if (entries.includes("runbooks") && existsSync(join(ROOT, BUNDLE_DIR)))
		cpSync(join(ROOT, BUNDLE_DIR), join(dir, BUNDLE_DIR), { recursive: true });
	symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
	return dir;
}

/** Runs `fn` on a new connection to `url`, closed afterwards whatever happens. */
export async function withClient<T>(
	url: string,
	fn: (db: pg.Client) => Promise<T>,
): Promise<T> {
	const db = new pg.Client({ connectionString: url });
	await db.connect();
	try {
		return await fn(db);
	} finally {
		await db.end();
	}
}
