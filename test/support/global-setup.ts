// Starts one PostgreSQL server for the whole run; each test file creates its own database on it.

import type { TestProject } from "vitest/node";
import { type PgServer, startPostgres } from "./postgres.ts";

let server: PgServer | undefined;

export async function setup(project: TestProject): Promise<void> {
	server = await startPostgres();
	process.stderr.write(`test PostgreSQL: ${server.kind}\n`);
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
