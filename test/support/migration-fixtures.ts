// Migration histories for deploy tests: a database some migrations behind the repository (with
// realistic data in it), and temporary migrations folders holding the repository's migrations
// plus extra ones (PRISMA_MIGRATIONS_DIR), e.g. an unsafe or a failing migration.

import {
	cpSync,
	mkdirSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
	admin,
	dbName,
	dropDatabase,
	ROOT,
	runPrismaCli,
	urlFor,
} from "./harness.ts";

/** Two additive migrations as Prisma writes them (a nullable column; a new table): rollback cases. */
export const ADD_RATING_SQL = `-- AlterTable
ALTER TABLE "generated_videos" ADD COLUMN "rating" INTEGER;
`;
export const ADD_PREFERENCES_SQL = `-- CreateTable
CREATE TABLE "user_preferences" (
    "id" TEXT NOT NULL,
    "user_id" TEXT NOT NULL,
    "theme" TEXT NOT NULL DEFAULT 'light',
    CONSTRAINT "user_preferences_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE UNIQUE INDEX "user_preferences_user_id_key" ON "user_preferences"("user_id");

-- AddForeignKey
ALTER TABLE "user_preferences" ADD CONSTRAINT "user_preferences_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
`;

export const REPO_MIGRATIONS = join(ROOT, "prisma", "migrations");

export function repoMigrationNames(): string[] {
	return readdirSync(REPO_MIGRATIONS, { withFileTypes: true })
		.filter((d) => d.isDirectory())
		.map((d) => d.name)
		.sort();
}

/** A copy of prisma/migrations plus extra migrations (folder name -> migration.sql). */
export function migrationsWith(extra: Record<string, string>): string {
	const dir = join(
		mkdtempSync(join(tmpdir(), "runbook-migrations-")),
		"migrations",
	);
	cpSync(REPO_MIGRATIONS, dir, { recursive: true });
	for (const [name, sql] of Object.entries(extra)) {
		mkdirSync(join(dir, name));
		writeFileSync(join(dir, name, "migration.sql"), sql);
	}
	return dir;
}

/**
 * The SQL that undoes what Prisma generated for a migration that only adds indexes, columns and
 * enum types (as the repository's last two do): drop them, newest first.
 */
export function undoSql(migrationSql: string): string[] {
	const out: string[] = [];
	for (const m of migrationSql.matchAll(/CREATE (?:UNIQUE )?INDEX ("[^"]+")/g))
		out.push(`DROP INDEX ${m[1]}`);
	for (const block of migrationSql.matchAll(/ALTER TABLE ("[^"]+")([^;]*);/g)) {
		for (const c of block[2].matchAll(/ADD COLUMN\s+("[^"]+")/g))
			out.push(`ALTER TABLE ${block[1]} DROP COLUMN ${c[1]}`);
	}
	for (const m of migrationSql.matchAll(/CREATE TYPE ("[^"]+")/g))
		out.push(`DROP TYPE ${m[1]}`);
	return out;
}

/**
 * Takes a fully migrated (and seeded) database back by its last `count` migrations, keeping its
 * data: their objects are dropped and their rows removed from _prisma_migrations.
 */
export async function rewind(url: string, count: number): Promise<string[]> {
	const names = repoMigrationNames().slice(-count);
	await admin(async (db) => {
		await db.query("begin");
		for (const name of [...names].reverse()) {
			for (const sql of undoSql(
				readFileSync(join(REPO_MIGRATIONS, name, "migration.sql"), "utf8"),
			))
				await db.query(sql);
			await db.query(
				"delete from _prisma_migrations where migration_name = $1",
				[name],
			);
		}
		await db.query("commit");
	}, url);
	return names;
}

/** A copy of a database (CREATE DATABASE ... TEMPLATE: a file copy; the source must have no sessions). */
export async function cloneDatabase(
	sourceUrl: string,
	prefix: string,
): Promise<string> {
	const source = dbName(sourceUrl);
	const name = `${prefix}_${Math.random().toString(16).slice(2, 10)}`;
	await admin((db) =>
		db.query(`create database "${name}" template "${source}"`),
	);
	return urlFor(name);
}

/** The databases a test file clones, dropped together in its afterAll. */
export function scratchDatabases() {
	const made: string[] = [];
	return {
		/** Drops `url` with the others at the end. */
		track(url: string): string {
			made.push(url);
			return url;
		},
		async clone(sourceUrl: string, prefix: string): Promise<string> {
			return this.track(await cloneDatabase(sourceUrl, prefix));
		},
		async dropAll(): Promise<void> {
			for (const url of made.splice(0)) await dropDatabase(url).catch(() => {});
		},
	};
}

/**
 * Deploys a migrations folder holding ADD_RATING_SQL and ADD_PREFERENCES_SQL, then writes to what
 * they added (ratings of completed videos, 40 users' preferences): data a down rollback drops.
 */
export async function deployRatingsAndUse(
	url: string,
	migrationsDir: string,
): Promise<void> {
	const deploy = await runPrismaCli(["migrate", "deploy"], url, {
		PRISMA_MIGRATIONS_DIR: migrationsDir,
	});
	if (deploy.code !== 0)
		throw new Error(`prisma migrate deploy failed:\n${deploy.stderr}`);
	await admin(async (c) => {
		await c.query(
			"update generated_videos set rating = 1 + length(id) % 5 where status = 'COMPLETED'",
		);
		await c.query(
			"insert into user_preferences (id, user_id, theme) select 'pref-' || id, id, 'dark' from users order by id limit 40",
		);
	}, url);
}

/** A team's own migration, written into the checkout copy `repo` and deployed by Prisma to `url`. */
export async function deployOwnMigration(
	repo: string,
	url: string,
	name: string,
	sql: string,
): Promise<void> {
	const migrations = join(repo, "prisma", "migrations");
	mkdirSync(join(migrations, name));
	writeFileSync(join(migrations, name, "migration.sql"), sql);
	const run = await runPrismaCli(["migrate", "deploy"], url, {
		PRISMA_MIGRATIONS_DIR: migrations,
	});
	if (run.code !== 0)
		throw new Error(`prisma migrate deploy failed:\n${run.stderr}`);
}
