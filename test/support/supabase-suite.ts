// What the Supabase family of tests (migrate-to-supabase, faults-supabase, supabase-runbooks,
// switch-db-env, concurrency, dev-migrate) and `npm run demo` repeat: a database migrated and
// seeded, the app's .env with both profiles in a temporary directory, queries run as the admin,
// runbook arguments, and the seed's UserPreferences model.

import { mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { seedFaceSwap } from "./fixtures.ts";
import {
	admin,
	adminUrl,
	createDatabase,
	type RunResult,
	runPrismaCli,
	scratchDir,
} from "./harness.ts";
import { type SupabaseFixture, startSupabase } from "./supabase.ts";

export type { RunResult } from "./harness.ts";
export {
	type SupabaseFixture,
	snapshotPlatform,
	startSupabase,
} from "./supabase.ts";

/** The Supabase-shaped server and a new, empty database on the test server (the app's local one). */
export const startSupabaseWithLocal = (
	prefix: string,
): Promise<[SupabaseFixture, string]> =>
	Promise.all([startSupabase(), createDatabase(prefix)]);

/** Brings `url` to the repository's schema (prisma migrate deploy), then seeds Face Swap data. */
export async function deployAndSeed(url: string, users: number): Promise<void> {
	const deploy = await runPrismaCli(["migrate", "deploy"], url);
	expect(deploy.code, deploy.stderr).toBe(0);
	await seedFaceSwap(url, { users });
}

/**
 * The local database a move to Supabase copies: migrated, seeded, and with pg_trgm, an extension
 * the Supabase project lacks (the move creates it in `extensions`).
 */
export async function prepareMoveSource(
	src: string,
	users: number,
): Promise<void> {
	await deployAndSeed(src, users);
	await admin((db) => db.query("create extension pg_trgm"), src);
}

/** The path of an audit log in a new scratch directory. */
export const newAuditLog = () => join(scratchDir(), "audit.jsonl");

/** A query run as the test server's admin (or the user `url` names) on `url`. */
export const query = (url: string, sql: string) =>
	admin((db) => db.query(sql), url);

/** The passwords no runbook output may show: the Supabase project's and the test server's. */
const secretsOf = (sb: SupabaseFixture) => [
	sb.password,
	new URL(adminUrl()).password,
];

/**
 * Neither password in what a run printed (nor, with `childArgv`, in the command lines of the
 * processes it started).
 */
export function expectNoSecrets(
	r: RunResult,
	sb: SupabaseFixture,
	{ childArgv = false } = {},
): void {
	for (const s of secretsOf(sb)) {
		expect(r.stdout).not.toContain(s);
		expect(r.stderr).not.toContain(s);
		if (childArgv)
			for (const argv of r.childArgv) expect(argv).not.toContain(s);
	}
}

/**
 * An app's .env on the local database with both profiles, the remote one the Supabase project
 * (its pooler for the app, its direct URL for migrations); `heading` is a comment above them.
 */
export function profilesEnv(
	local: string,
	sb: Pick<SupabaseFixture, "poolerUrl" | "directUrl">,
	heading?: string,
): string {
	return [
		"# Face Swap",
		`DATABASE_URL="${local}"`,
		"NEXTAUTH_URL=http://localhost:3000",
		"",
		...(heading ? [heading] : []),
		`LOCAL_DATABASE_URL="${local}"`,
		`REMOTE_DATABASE_URL="${sb.poolerUrl}"`,
		`REMOTE_DIRECT_URL="${sb.directUrl}"`,
		"",
	].join("\n");
}

/** A new, empty temporary directory, its name starting with `prefix`. */
export const tempDir = (prefix: string) => mkdtempSync(join(tmpdir(), prefix));

/** A new temporary directory (named from `prefix`) holding `.env` with `text`. */
export function envDir(
	prefix: string,
	text: string,
	mode = 0o640,
): { dir: string; file: string } {
	const dir = tempDir(prefix);
	const file = join(dir, ".env");
	writeFileSync(file, text, { mode });
	return { dir, file };
}

/** The backups of .env a switch left in `dir`. */
export const envBackupsIn = (dir: string) =>
	readdirSync(dir).filter((f) => f.startsWith(".env.backup-"));

/** A runbook's options, in order: a value, or true for a flag without one. */
export type CliOptions = Record<string, string | true>;

/** A runbook's arguments from its options: `{ table: "t", yes: true }` gives `["--table", "t", "--yes"]`. */
export function cliArgs(options: CliOptions): string[] {
	return Object.entries(options).flatMap(([name, value]) =>
		value === true ? [`--${name}`] : [`--${name}`, value],
	);
}

/** The seed's UserPreferences model, appended to prisma/schema.prisma after the relation below. */
export const USER_PREFERENCES_MODEL = `
model UserPreferences {
  id            String  @id @default(cuid())
  userId        String  @unique
  theme         String  @default("light")
  language      String  @default("en")
  notifications Boolean @default(true)

  user User @relation(fields: [userId], references: [id], onDelete: Cascade)

  @@map("user_preferences")
}
`;

/** schema.prisma with the User model's `preferences UserPreferences?` relation added. */
export const withPreferencesRelation = (schema: string) =>
	schema.replace(
		"  purchases       Purchase[]\n\n  @@index([role])",
		"  purchases       Purchase[]\n  preferences     UserPreferences?\n\n  @@index([role])",
	);
