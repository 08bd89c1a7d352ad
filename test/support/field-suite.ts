// The fixture the tests of the schema-change runbooks share (add-required-field.test.ts,
// change-column-type.test.ts): a copy of the checkout, since these runbooks write migration folders
// and prisma/schema.prisma, and a seeded database, both made before the file's tests; a writer
// that keeps changing generated_videos while a runbook works on it.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll } from "vitest";
import { columnFlags, THUMBNAIL_FIELD } from "./field-flags.ts";
import {
	admin,
	copyRepository,
	createSeededDatabase,
	dropDatabase,
	type RunOptions,
	runRunbook,
	scratchDir,
} from "./harness.ts";

export { columnFlags, THUMBNAIL_FIELD };

/**
 * The checkout copy (repo) and the database of `users` seeded users (url) one test file works on,
 * made in beforeAll and the database dropped in afterAll; read their fields inside tests only.
 */
export function schemaChangeSuite(prefix: string, users: number) {
	const suite = {
		repo: "",
		url: "",
		audit: "",
		env: () => ({
			DATABASE_URL: suite.url,
			RUNBOOK_AUDIT_LOG: suite.audit,
			RUNBOOK_PROGRESS_INTERVAL_MS: "200",
		}),
		/** Runs a runbook of the checkout copy with env(); `opts` adds to or overrides that. */
		runbook: (name: string, args: string[], opts: RunOptions = {}) =>
			runRunbook(name, args, { env: suite.env(), root: suite.repo, ...opts }),
		sql: <T extends pg.QueryResultRow = Record<string, unknown>>(
			text: string,
			values: unknown[] = [],
		) => admin(async (db) => (await db.query<T>(text, values)).rows, suite.url),
		/** The migration folders in the copy's prisma/migrations. */
		migrations: () =>
			readdirSync(join(suite.repo, "prisma", "migrations")).filter((d) =>
				/^\d{14}_/.test(d),
			),
		schema: () =>
			readFileSync(join(suite.repo, "prisma", "schema.prisma"), "utf8"),
		/** A column of generated_videos: its type and whether it is NOT NULL (undefined: no such column). */
		column: async (name: string) =>
			(
				await suite.sql<{ type: string; notnull: boolean }>(
					`select format_type(atttypid, atttypmod) as type, attnotnull as notnull from pg_attribute
					  where attrelid = 'generated_videos'::regclass and attname = $1 and not attisdropped`,
					[name],
				)
			)[0],
	};
	beforeAll(async () => {
		suite.repo = copyRepository();
		suite.url = await createSeededDatabase(prefix, users);
		suite.audit = join(scratchDir(), "audit.jsonl");
	});
	afterAll(async () => {
		await dropDatabase(suite.url);
	});
	return suite;
}

/**
 * A client writing to generated_videos in a loop until stopped: every tenth write is `insert`, the
 * others a single-row update, each on a row of those `pickIds` selects, with `pauseMs` between.
 * stop() returns its worst wait (ms), how many writes succeeded and the errors of the others.
 */
export async function startWriter(
	url: string,
	opts: {
		pickIds: string;
		pauseMs: number;
		insert: (writer: pg.Client, id: string) => Promise<unknown>;
	},
) {
	const writer = new pg.Client({ connectionString: url });
	await writer.connect();
	const ids = (await writer.query<{ id: string }>(opts.pickIds)).rows.map(
		(r) => r.id,
	);
	let stop = false;
	let worst = 0;
	let ops = 0;
	const errors: string[] = [];
	const done = (async () => {
		for (let i = 0; !stop; i++) {
			const t0 = performance.now();
			try {
				if (i % 10 === 0) await opts.insert(writer, ids[i % ids.length]);
				else
					await writer.query(
						"update generated_videos set progress = (progress + 1) % 100, updated_at = now() where id = $1",
						[ids[i % ids.length]],
					);
				ops++;
			} catch (err) {
				errors.push((err as Error).message);
			}
			worst = Math.max(worst, performance.now() - t0);
			await new Promise((r) => setTimeout(r, opts.pauseMs));
		}
	})();
	return {
		async stop() {
			stop = true;
			await done;
			await writer.end();
			return { worst, ops, errors };
		},
	};
}
