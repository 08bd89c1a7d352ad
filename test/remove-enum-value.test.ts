// remove-enum-value.ts on generated_videos.status (10,000 rows; the 200,000 are for the
// bench): refused while in use without --replace-with (exit 3, nothing changed), then done online
// with --replace-with under a writer every 20 ms; Prisma's history, drift and schema.prisma follow.
// Views that read the column are created again over the new type; one that names the value refuses.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as h from "./support/harness.ts";
import { deployOwnMigration } from "./support/migration-fixtures.ts";

let repo: string;
let url: string;

beforeAll(async () => {
	repo = h.copyRepository();
	url = await h.createSeededDatabase("enumvalue", 2000);
});
afterAll(async () => {
	await h.dropDatabase(url);
});

const opts = () => ({
	env: {
		DATABASE_URL: url,
		RUNBOOK_AUDIT_LOG: join(h.scratchDir(), "a.jsonl"),
	},
	root: repo,
});
const query = async <T extends pg.QueryResultRow>(text: string) =>
	h.admin(async (db) => (await db.query<T>(text)).rows, url);
const folders = () => readdirSync(join(repo, "prisma", "migrations"));
const enumBlock = () =>
	/enum VideoStatus \{[^}]*\}/.exec(
		readFileSync(join(repo, "prisma", "schema.prisma"), "utf8"),
	)?.[0];
const labels = async () =>
	(
		await query<{ v: string }>(
			`select unnest(enum_range(null::"VideoStatus"))::text as v`,
		)
	).map((r) => r.v);
const REMOVE = ["--enum", "VideoStatus", "--value", "PROCESSING"];

describe("remove-enum-value.ts", () => {
	it("refuses a value still in use without --replace-with: exit 3, nothing changed", async () => {
		const [{ n }] = await query<{ n: string }>(
			`select count(*) as n from generated_videos where status = 'PROCESSING'`,
		);
		expect(Number(n)).toBeGreaterThan(0);
		const before = { folders: folders(), block: enumBlock() };
		const run = await h.runRunbook(
			"remove-enum-value",
			[...REMOVE, "--yes", "--confirm", h.dbName(url)],
			opts(),
		);
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stdout + run.stderr).toContain(
			`${Number(n).toLocaleString("en-US")} row(s) still hold VideoStatus.PROCESSING: generated_videos.status`,
		);
		expect(folders()).toEqual(before.folders);
		expect(enumBlock()).toBe(before.block);
		expect(await labels()).toContain("PROCESSING");
	});

	it("refuses while a view names the value (exit 3, nothing changed)", async () => {
		await query(
			"CREATE VIEW processing_videos AS SELECT id FROM generated_videos WHERE status = 'PROCESSING'",
		);
		const before = { folders: folders(), block: enumBlock() };
		const run = await h.runRunbook(
			"remove-enum-value",
			[
				...REMOVE,
				"--replace-with",
				"PENDING",
				"--yes",
				"--confirm",
				h.dbName(url),
			],
			opts(),
		);
		await query("DROP VIEW processing_videos");
		expect(run.code, run.stdout + run.stderr).toBe(3);
		expect(run.stdout + run.stderr).toContain(
			"View processing_videos names PROCESSING. Nothing was changed.",
		);
		expect(folders()).toEqual(before.folders);
		expect(enumBlock()).toBe(before.block);
		const [{ n }] = await query<{ n: string }>(
			`select count(*) as n from generated_videos where status = 'PROCESSING'`,
		);
		expect(Number(n)).toBeGreaterThan(0);
	});

	it("moves the rows and removes the value online under a writer, as Prisma migrations", async () => {
		// A view reading the column, naming another value of the type: created again over the new type.
		await deployOwnMigration(
			repo,
			url,
			"20250101000000_failed_videos_view",
			"CREATE VIEW failed_videos AS SELECT id, status FROM generated_videos WHERE status = 'FAILED';\n",
		);

		const [{ n }] = await query<{ n: string }>(
			`select count(*) filter (where status in ('PROCESSING', 'PENDING')) as n from generated_videos`,
		);
		const writer = new pg.Client({ connectionString: url });
		writer.on("error", () => {});
		await writer.connect();
		let stop = false;
		let worst = 0;
		const errors: string[] = [];
		const ids = (
			await writer.query<{ id: string }>(
				`select id from generated_videos where status = 'FAILED' order by id limit 500`,
			)
		).rows.map((r) => r.id);
		const writing = (async () => {
			for (let i = 0; !stop; i++) {
				const t0 = performance.now();
				await writer
					.query(
						"update generated_videos set progress = (progress + 1) % 100, status = 'COMPLETED' where id = $1",
						[ids[i % ids.length]],
					)
					.catch((err) => errors.push((err as Error).message));
				worst = Math.max(worst, performance.now() - t0);
				await new Promise((r) => setTimeout(r, 20));
			}
		})();
		const run = await h.runRunbook(
			"remove-enum-value",
			[
				...REMOVE,
				"--replace-with",
				"PENDING",
				"--small-table-mb",
				"0",
				"--yes",
				"--confirm",
				h.dbName(url),
				"--json",
			],
			opts(),
		);
		stop = true;
		await writing;
		await writer.end();
		expect(run.code, run.stdout + run.stderr).toBe(0);
		expect(JSON.parse(run.stdout).healthy).toBe(true);
		expect(errors).toEqual([]);
		expect(worst).toBeLessThan(1000);
		expect(await labels()).toEqual(["PENDING", "COMPLETED", "FAILED"]);
		const [{ pending }] = await query<{ pending: string }>(
			`select count(*) as pending from generated_videos where status = 'PENDING'`,
		);
		expect(pending).toBe(n);
		expect(enumBlock()).not.toContain("PROCESSING");
		expect(
			folders().filter((f) =>
				/videostatus_without_processing|status_to_videostatus/i.test(f),
			).length,
		).toBeGreaterThanOrEqual(4);
		const [view] = await query<{ def: string; n: string; failed: string }>(
			`select pg_get_viewdef('failed_videos'::regclass) as def, (select count(*) from failed_videos) as n,
			        (select count(*) from generated_videos where status = 'FAILED') as failed`,
		);
		expect(view.def).toContain(`'FAILED'::"VideoStatus"`);
		expect(Number(view.n)).toBeGreaterThan(0);
		expect(view.n).toBe(view.failed);
		const v = await h.runRunbook("validate", [], opts());
		expect(v.code, v.stdout + v.stderr).toBe(0);
	}, 900_000);
});
