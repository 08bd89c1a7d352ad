// The contract every runbook keeps (../shared/runbook-conventions.md): --help without a database,
// usage errors with exit 2, and --dry-run changing nothing: not the database, not files.

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { columnFlags, PROCESSING_TO_PENDING } from "./support/field-flags.ts";
import {
	createDatabase,
	createSeededDatabase,
	dropDatabase,
	ROOT,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { snapshotDatabase, snapshotFiles } from "./support/snapshot.ts";

/** Arguments that make each runbook's dry run meaningful. Every runbook must be listed. */
const DRY_RUN_ARGS: Record<string, string[]> = {
	validate: [],
	"change-column-type": columnFlags(
		"generated_videos",
		"processing_ms",
		"bigint",
	),
	"remove-enum-value": PROCESSING_TO_PENDING,
	"dev-migrate": ["--name", "dry_run_check"],
	"db-health": [],
	monitor: [],
	troubleshoot: ["--reset", "--skip-drift"],
	"switch-db-env": ["status"],
	"migrate-to-supabase": ["--no-switch"],
	backfill: [
		"--table",
		"generated_videos",
		"--set",
		"quality = '1080p'",
		"--where",
		"quality = '720p'",
	],
	"add-required-field": [
		...columnFlags("generated_videos", "dry_run_col", "text"),
		"--backfill",
		"'x' || id",
	],
	// With no backup in BACKUP_DIR the dry run says so (a real run would refuse) and exits 0.
	"emergency-rollback": [],
	backup: ["create", "--keep", "3"],
	// Nothing pending on the fixture: the preflight runs and says so.
	"deploy-production": [],
};

/** Extra environment for a runbook's dry run: `spare` is a second, empty database. */
const DRY_RUN_ENV: Record<
	string,
	(url: string, spare: string) => Record<string, string>
> = {
	"migrate-to-supabase": (_url, spare) => ({ REMOTE_DIRECT_URL: spare }),
};

const runbooks = readdirSync(join(ROOT, "runbooks"))
	.filter((f) => f.endsWith(".ts"))
	.map((f) => f.replace(/\.ts$/, ""))
	.sort();

let url: string;
let spare: string;

beforeAll(async () => {
	url = await createSeededDatabase("conventions", 200);
	spare = await createDatabase("conventions_spare");
});

afterAll(async () => {
	await dropDatabase(url);
	await dropDatabase(spare);
});

describe.each(runbooks)("runbooks/%s.ts", (name) => {
	it("answers --help without a database", async () => {
		const run = await runRunbook(name, ["--help"], {
			env: { DATABASE_URL: undefined },
		});
		expect(run.code, run.stderr).toBe(0);
		for (const part of [
			"Usage:",
			"Steps:",
			"Flags:",
			"Environment:",
			"Examples:",
			"--dry-run",
			"DATABASE_URL",
			"--dotenv <path>",
		]) {
			expect(run.stdout).toContain(part);
		}
		// One syntax for every time flag: none takes <seconds> or <ms>, and none is named for a unit.
		const flagLines = run.stdout.split("\nFlags:\n")[1].split("\n\n")[0];
		expect(flagLines).not.toMatch(
			/<(seconds|s|ms|minutes)>|--[a-z-]+-(ms|seconds)\b/,
		);
	});

	it("rejects an unknown flag and a missing DATABASE_URL with exit 2", async () => {
		const unknown = await runRunbook(name, ["--no-such-flag"], {
			env: { DATABASE_URL: url },
		});
		expect(unknown.code).toBe(2);
		expect(unknown.stderr).toContain("Unknown flag --no-such-flag.");
		const noUrl = await runRunbook(
			name,
			[...(DRY_RUN_ARGS[name] ?? []), "--dry-run"],
			{
				env: { DATABASE_URL: undefined },
				cwd: scratchDir(),
			},
		);
		expect(noUrl.code).toBe(2);
		expect(noUrl.stderr).toContain("DATABASE_URL is not set.");
	});

	it("changes nothing under --dry-run", async () => {
		expect(DRY_RUN_ARGS[name], `add ${name} to DRY_RUN_ARGS`).toBeDefined();
		const audit = join(scratchDir(), "audit.jsonl");
		const watched = [
			join(ROOT, "prisma"),
			join(ROOT, ".env"),
			join(ROOT, "backups"),
		];
		const filesBefore = snapshotFiles(watched);
		const dbBefore = await snapshotDatabase(url);
		const spareBefore = await snapshotDatabase(spare);
		const run = await runRunbook(name, [...DRY_RUN_ARGS[name], "--dry-run"], {
			env: {
				DATABASE_URL: url,
				RUNBOOK_AUDIT_LOG: audit,
				...(DRY_RUN_ENV[name]?.(url, spare) ?? {}),
			},
		});
		expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
		expect(run.stdout).toContain("dry run");
		expect(await snapshotDatabase(url)).toEqual(dbBefore);
		expect(await snapshotDatabase(spare)).toEqual(spareBefore);
		expect(snapshotFiles(watched)).toEqual(filesBefore);
		expect(existsSync(audit)).toBe(false);
	});
});
