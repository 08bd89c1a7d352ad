/**
 * Prisma CLI config. The runbooks pass it explicitly (`--config prisma/prisma.config.ts`); plain
 * `npx prisma <command>` from the repository root finds it through .config/prisma.ts. Paths below
 * are made absolute from this file's directory, so both ways read the same files.
 *
 * PRISMA_ENGINE selects the schema engine:
 *   wasm   (default) Prisma's WebAssembly schema engine driven through @prisma/adapter-pg
 *          (lib/migrations/prisma-adapter.ts); needs no engine download, works offline.
 *   native Prisma's classic schema-engine binary (downloaded by Prisma on first use).
 *
 * Connection: DIRECT_URL if set, else DATABASE_URL. Migrations must use the direct,
 * non-pooled connection. No .env loading here: callers pass the environment explicitly.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "prisma/config";
import {
	createMigrationAdapter,
	sessionSettingsFromEnv,
	unrefSchemaEngineTimers,
} from "../lib/migrations/prisma-adapter.js";

// Fail here with a clear message: without a URL, schema.prisma's env("DATABASE_URL") /
// env("DIRECT_URL") do not resolve, the CLI then cannot read the schema's generator,
// assumes the native query engine and tries to download it ("request to
// https://binaries.prisma.sh/... failed" offline), whatever the command.
const url = process.env.DIRECT_URL || process.env.DATABASE_URL;
if (!url) {
	throw new Error(
		"prisma/prisma.config.ts: set DATABASE_URL (and DIRECT_URL when DATABASE_URL goes through a pooler)",
	);
}
// Both env() calls in schema.prisma must resolve (values unused by the wasm engine; this
// changes only this CLI process's environment). Without a pooler the two URLs are the same.
process.env.DIRECT_URL ||= url;
process.env.DATABASE_URL ||= url;

const engine = process.env.PRISMA_ENGINE || "wasm";
if (engine !== "wasm" && engine !== "native") {
	throw new Error(
		`prisma/prisma.config.ts: PRISMA_ENGINE must be "wasm" or "native", got "${engine}"`,
	);
}

// PRISMA_MIGRATIONS_DIR: another migrations folder (lib/migrations/prisma-cli.ts passes it absolute; a
// relative one is read from this file's directory).
const here = dirname(fileURLToPath(import.meta.url));
const paths = {
	schema: join(here, "schema.prisma"),
	migrations: {
		path: resolve(here, process.env.PRISMA_MIGRATIONS_DIR || "migrations"),
	},
};

// Session settings for every connection the engine opens (set by runbooks, e.g. deploy-production):
// RUNBOOK_LOCK_TIMEOUT / RUNBOOK_STATEMENT_TIMEOUT in milliseconds, RUNBOOK_APPLICATION_NAME.
const session = sessionSettingsFromEnv(process.env);

export default engine === "native"
	? defineConfig({
			...paths,
			engine: "classic",
			datasource: {
				url,
				...(process.env.SHADOW_DATABASE_URL
					? { shadowDatabaseUrl: process.env.SHADOW_DATABASE_URL }
					: {}),
			},
		})
	: defineConfig({
			...paths,
			experimental: { adapter: true },
			engine: "js",
			adapter: async () => {
				unrefSchemaEngineTimers();
				return createMigrationAdapter(url, session);
			},
		});
