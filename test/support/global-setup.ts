// Starts one PostgreSQL server for the whole run; each test file creates its own database on it.

import type { TestProject } from "vitest/node";
import { type PgServer, startPostgres } from "./postgres.ts";

let server: PgServer | undefined;

export async function setup(project: TestProject): Promise<void> {
	server = await startPostgres();
	process.stderr.write(`test PostgreSQL: ${server.description}\n`);
	if (server.kind !== "local")
		// It needs a second server whose bootstrap superuser is supabase_admin, with pgbouncer.
		process.stderr.write(
			"test PostgreSQL: the Supabase stand-in (test/support/supabase.ts) stays a local cluster\n",
		);
	project.provide("adminUrl", server.adminUrl);
}

export async function teardown(): Promise<void> {
	await server?.stop();
}

declare module "vitest" {
	export interface ProvidedContext {
		adminUrl: string;
	}
}
