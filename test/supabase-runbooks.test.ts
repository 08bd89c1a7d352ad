// Every other runbook on a database built the way Supabase builds its own (test/support/supabase.ts),
// as the project's non-superuser postgres: DATABASE_URL the pgbouncer pooler in transaction mode,
// DIRECT_URL the direct connection. Each must do its job there without touching the platform
// (schemas, roles, event triggers, publication, default privileges).

import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyRepository, runRunbook, scratchDir } from "./support/harness.ts";
import { snapshotDatabase } from "./support/snapshot.ts";
import {
	type CliOptions,
	cliArgs,
	deployAndSeed,
	newAuditLog,
	query,
	type RunResult,
	type SupabaseFixture,
	snapshotPlatform,
	startSupabase,
} from "./support/supabase-suite.ts";

let sb: SupabaseFixture;
let repo: string;
let audit: string;
let platformBefore: Record<string, string>;

const env = (extra: Record<string, string> = {}) => ({
	DATABASE_URL: sb.poolerUrl,
	DIRECT_URL: sb.directUrl,
	RUNBOOK_AUDIT_LOG: audit,
	BACKUP_DIR: join(scratchDir(), "backups"),
	RUNBOOK_PROGRESS_INTERVAL_MS: "200",
	...extra,
});

const out = (r: RunResult) => `exit ${r.code}\n${r.stdout}\n${r.stderr}`;

const run = (name: string, args: string[], extra?: Record<string, string>) =>
	runRunbook(name, args, { env: env(extra), root: repo });

/**
 * Runs `name` on generated_videos with `options` and --yes, expecting exit 0; then `sql` on the
 * database, as the admin.
 */
async function runOnVideosThenQuery(
	name: string,
	options: CliOptions,
	sql: string,
) {
	const r = await run(
		name,
		cliArgs({ table: "generated_videos", ...options, yes: true }),
	);
	expect(r.code, out(r)).toBe(0);
	return query(sb.adminUrl, sql);
}

beforeAll(async () => {
	sb = await startSupabase();
	await deployAndSeed(sb.directUrl, 200);
	repo = copyRepository();
	audit = newAuditLog();
	platformBefore = await snapshotPlatform(sb.adminUrl);
}, 180_000);

afterAll(async () => {
	await sb?.stop();
});

describe("the runbooks on Supabase as postgres", () => {
	it("validate: exit 0, history and schema consistent", async () => {
		const r = await run("validate", ["--json"]);
		expect(r.code, out(r)).toBe(0);
		expect(JSON.parse(r.stdout).ok).toBe(true);
	});

	it("db-health: exit 0, reads the app's tables and the server's settings", async () => {
		const r = await run("db-health", ["--json"]);
		expect(r.code, out(r)).toBe(0);
		expect(r.stdout).toContain("generated_videos");
	});

	it("monitor --once: exit 0", async () => {
		const r = await run("monitor", ["--once", "--json"]);
		expect(r.code, out(r)).toBe(0);
	});

	it("troubleshoot: exit 0, nothing to resolve", async () => {
		const r = await run("troubleshoot", ["--json"]);
		expect(r.code, out(r)).toBe(0);
	});

	it("deploy-production with nothing to deploy: exit 0, a verified backup of the app's objects", async () => {
		const r = await run(
			"deploy-production",
			cliArgs({ yes: true, confirm: "postgres", "monitor-seconds": "0" }),
		);
		expect(r.code, out(r)).toBe(0);
	});

	it("add-required-field: exit 0, the column added, filled and NOT NULL through migrations", async () => {
		const col = await runOnVideosThenQuery(
			"add-required-field",
			{
				column: "thumbnail_path",
				type: "text",
				backfill: "'thumbs/' || id || '.jpg'",
			},
			"select attnotnull from pg_attribute where attrelid = 'public.generated_videos'::regclass and attname = 'thumbnail_path'",
		);
		expect(col.rows).toEqual([{ attnotnull: true }]);
	});

	it("backfill: exit 0, every matching row set, in batches", async () => {
		const left = await runOnVideosThenQuery(
			"backfill",
			{
				set: "output_path = 'out/' || id || '.mp4'",
				where: "output_path IS NULL",
			},
			"select count(*)::int as n from generated_videos where output_path is null",
		);
		expect(left.rows[0].n).toBe(0);
	});

	it("dev-migrate: refused (exit 3) for the project's address and when marked production; nothing changed", async () => {
		const before = await snapshotDatabase(sb.adminUrl);
		const remote = new URL(sb.directUrl);
		remote.hostname = "db.faceswap-project.supabase.co";
		const byAddress = await run("dev-migrate", ["--name", "x", "--yes"], {
			DATABASE_URL: remote.toString(),
			DIRECT_URL: remote.toString(),
		});
		expect(byAddress.code, out(byAddress)).toBe(3);
		expect(byAddress.stderr).toContain("is not a local host");
		const marked = await run("dev-migrate", ["--name", "x", "--yes"], {
			RUNBOOK_ENV: "production",
		});
		expect(marked.code, out(marked)).toBe(3);
		expect(marked.stderr).toContain("marked production");
		expect(await snapshotDatabase(sb.adminUrl)).toEqual(before);
	});

	it("left the platform as it was", async () => {
		expect(await snapshotPlatform(sb.adminUrl)).toEqual(platformBefore);
	});
});
