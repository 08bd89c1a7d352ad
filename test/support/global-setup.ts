// Starts one PostgreSQL server for the whole run (each test file creates its own database on it)
// and builds the runbooks' bundles the tests start (test/support/runbook-bundle.ts).

import type { TestProject } from "vitest/node";
import { ROOT } from "./field-checkout.ts";
import { type PgServer, startPostgres } from "./postgres.ts";
import { BUNDLE_DIR, buildRunbookBundles } from "./runbook-bundle.ts";

let server: PgServer | undefined;

export async function setup(project: TestProject): Promise<void> {
	const [started] = await Promise.all([
		startPostgres(),
		buildRunbookBundles(ROOT),
	]);
	server = started;
	process.stderr.write(`test PostgreSQL: ${server.description}\n`);
	process.stderr.write(
		process.env.TEST_RUNBOOKS === "tsx"
			? "test runbooks: through tsx's CLI (TEST_RUNBOOKS=tsx)\n"
			: `test runbooks: bundles in ${BUNDLE_DIR} (TEST_RUNBOOKS=tsx runs them through tsx)\n`,
	);
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
