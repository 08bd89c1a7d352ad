// remove-enum-value.ts on generated_videos.status (10,000 rows; the 200,000 are for the
// bench): refused while in use without --replace-with (exit 3, nothing changed), then done online
// with --replace-with under a writer every 20 ms; Prisma's history, drift and schema.prisma follow.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as h from "./support/harness.ts";

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

	it("moves the rows and removes the value online under a writer, as Prisma migrations", async () => {
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
		const v = await h.runRunbook("validate", [], opts());
		expect(v.code, v.stdout + v.stderr).toBe(0);
	}, 900_000);
});
