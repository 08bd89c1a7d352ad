// Client tools older than the server, for real: a container of PostgreSQL 17 (Debian trixie's
// packages, built by `test/support/build-postgres-image.sh --pg 17`) against this host's
// PostgreSQL 15 client tools (Debian bookworm). backup.ts and deploy-production.ts (its pre-deploy
// backup) refuse with exit 3 before dumping or migrating anything, naming both versions.
// Runs under `npm run test:containers` only: it needs a Docker engine.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findTool, type Tool } from "../lib/pg/client-tools.ts";
import {
	admin,
	dbName,
	runPrismaCli,
	runRunbook,
	scratchDir,
	urlFor,
} from "./support/harness.ts";
import {
	ADD_RATING_SQL,
	migrationsWith,
	repoMigrationNames,
} from "./support/migration-fixtures.ts";
import { type PgServer, startContainer } from "./support/postgres.ts";

const NEWER = 17;
let server: PgServer;
let url: string;
let pgDump: Tool;

beforeAll(async () => {
	pgDump = await findTool("pg_dump");
	server = await startContainer({ image: `runbooks-postgres:${NEWER}` });
	url = urlFor("app", server.adminUrl);
	await admin((db) => db.query("create database app"), server.adminUrl);
});

afterAll(async () => {
	await server?.stop();
});

function setup() {
	const dir = scratchDir();
	return {
		DATABASE_URL: url,
		RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"),
		BACKUP_DIR: join(dir, "backups"),
	};
}

describe(`a PostgreSQL ${NEWER} server in a container, PostgreSQL 15 client tools on the host`, () => {
	it("the premise: the server really is newer than the host's pg_dump", async () => {
		const version = await admin(
			async (db) => (await db.query("show server_version_num")).rows[0],
			url,
		);
		expect(Math.floor(Number(version.server_version_num) / 10000)).toBe(NEWER);
		expect(pgDump.major).toBeLessThan(NEWER);
	});

	it("backup refuses (exit 3) naming both versions, and writes nothing", async () => {
		const env = setup();
		const run = await runRunbook("backup", [], { env });
		expect(run.code, run.stderr).toBe(3);
		expect(run.stderr).toContain(
			`pg_dump ${pgDump.version} (${pgDump.path}) is older than the server (PostgreSQL ${NEWER}).`,
		);
		expect(run.stderr).toContain(
			`Install the PostgreSQL ${NEWER} client tools (or newer)`,
		);
		expect(existsSync(env.BACKUP_DIR)).toBe(false);
	});

	it("deploy-production refuses at its pre-deploy backup, before the pending migration is applied", async () => {
		// The app's schema on the newer server, and one pending migration to deploy.
		const migrated = await runPrismaCli(["migrate", "deploy"], url);
		expect(migrated.code, migrated.stderr).toBe(0);
		const applied = repoMigrationNames().length;
		const env = {
			...setup(),
			PRISMA_MIGRATIONS_DIR: migrationsWith({
				"20250102000000_add_rating": ADD_RATING_SQL,
			}),
		};
		const run = await runRunbook(
			"deploy-production",
			["--yes", "--confirm", dbName(url)],
			{ env },
		);
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stderr).toContain(
			`pg_dump ${pgDump.version} (${pgDump.path}) is older than the server (PostgreSQL ${NEWER}).`,
		);
		expect(existsSync(env.BACKUP_DIR)).toBe(false);
		const after = await admin(async (db) => {
			const rows = await db.query(
				"select count(*)::int as n from _prisma_migrations",
			);
			const rating = await db.query(
				"select 1 from information_schema.columns where table_name = 'generated_videos' and column_name = 'rating'",
			);
			return { migrations: rows.rows[0].n, rating: rating.rowCount };
		}, url);
		expect(after).toEqual({ migrations: applied, rating: 0 });
	});
});
