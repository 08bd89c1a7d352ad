// Reading migration SQL with PostgreSQL's parser, and the words each squawk rule prints. No
// database: squawk and libpg_query run on their own.

import { describe, expect, it } from "vitest";
import {
	EXCLUDED_RULES,
	explain,
	lintSql,
	SQUAWK_RULES,
} from "../lib/migrations/lint.ts";
import {
	commitsAsOne,
	concurrentIndexBuilds,
	hasTransactionControl,
	readSql,
	tablesTouched,
} from "../lib/migrations/sql.ts";

describe("migration SQL read by libpg_query", () => {
	it("names tables exactly as PostgreSQL resolves them: quoted mixed case, schemas, spaces, quotes", () => {
		const sql = `-- CreateTable
CREATE TABLE "Recipient" ("id" TEXT NOT NULL, "u" TEXT REFERENCES "User"("id"));
ALTER TABLE "billing"."Audit Log" ADD CONSTRAINT "f" FOREIGN KEY ("a") REFERENCES "My ""T"("id");
UPDATE users SET note = 'ALTER TABLE "Decoy" ADD x; DROP TABLE "Other"';
DO $$ BEGIN ALTER TABLE "Hidden" ADD COLUMN y int; END $$;
ALTER TABLE "Recipient" ADD COLUMN "v" TEXT;
`;
		expect(tablesTouched(sql)).toEqual([
			'public."User"',
			'billing."Audit Log"',
			'public."My ""T"',
			"public.users",
		]);
		const stmts = readSql(sql);
		expect(stmts.map((s) => [s.kind, s.startLine])).toEqual([
			["CreateStmt", 2],
			["AlterTableStmt", 3],
			["UpdateStmt", 4],
			["DoStmt", 5],
			["AlterTableStmt", 6],
		]);
	});

	it("tells transaction control, Prisma's BEGIN ... COMMIT pattern and lone concurrent builds apart", () => {
		expect(hasTransactionControl("SELECT 'BEGIN; COMMIT';")).toBe(false);
		expect(hasTransactionControl("BEGIN;\nSELECT 1;\nCOMMIT;")).toBe(true);
		expect(
			commitsAsOne("ALTER TYPE x RENAME TO y;\nBEGIN;\nSELECT 1;\nCOMMIT;"),
		).toBe(true);
		expect(commitsAsOne("BEGIN;\nSELECT 1;\nCOMMIT;\nSELECT 2;")).toBe(false);
		expect(
			concurrentIndexBuilds('CREATE INDEX CONCURRENTLY "a_idx" ON "A" ("b");'),
		).toEqual([{ index: "a_idx", table: { schema: null, name: "A" } }]);
		expect(
			concurrentIndexBuilds('CREATE INDEX "a_idx" ON "A" ("b");'),
		).toBeNull();
	});
});

describe("squawk rules", () => {
	it("every rule the runbooks can print has a title, a Why and an Instead in the seed's terms", () => {
		const shown = SQUAWK_RULES.filter((r) => !EXCLUDED_RULES.includes(r));
		expect(shown.length).toBeGreaterThan(20);
		for (const rule of shown) {
			const e = explain(rule);
			expect(e, rule).toBeDefined();
			expect(e?.title.trim(), rule).not.toBe("");
			expect(e?.why.trim(), rule).not.toBe("");
			expect(e?.instead.trim(), rule).not.toBe("");
		}
	});

	it("squawk reports no rule outside that list (every rule triggered once)", async () => {
		const sql = `CREATE INDEX "a_idx" ON "t" ("a");
DROP INDEX "a_idx";
ALTER TABLE "t" ADD CONSTRAINT "c" CHECK (a > 0);
ALTER TABLE "t" ADD CONSTRAINT "f" FOREIGN KEY ("a") REFERENCES "u"("id");
ALTER TABLE "t" ALTER COLUMN "a" SET DATA TYPE TEXT;
ALTER TABLE "t" ALTER COLUMN "a" SET NOT NULL;
ALTER TABLE "t" ADD COLUMN "id2" SERIAL PRIMARY KEY;
ALTER TABLE "t" RENAME COLUMN "a" TO "b";
ALTER TABLE "t" RENAME TO "t2";
ALTER TABLE "t" ADD CONSTRAINT "uq" UNIQUE ("a");
DROP DATABASE x;
CREATE TABLE "z" ("id" INT PRIMARY KEY, "c" CHAR(10), "ts" TIMESTAMP, "s" SMALLINT);
ALTER TABLE "t" DROP COLUMN "a";
DROP TABLE "t";
ALTER TABLE "t" ALTER COLUMN "a" DROP NOT NULL;
ALTER TABLE "t" ADD COLUMN "r" TEXT NOT NULL;
CREATE DOMAIN dd AS int CHECK (VALUE > 0);
ALTER DOMAIN dd ADD CONSTRAINT x CHECK (VALUE > 1);
TRUNCATE "t" CASCADE;
ALTER TABLE "t" ADD CONSTRAINT "a_name_that_is_much_longer_than_sixty_three_bytes_which_postgres_cuts" CHECK (a > 1) NOT VALID;
CREATE INDEX CONCURRENTLY "b_idx" ON "t" ("a");
BEGIN;
`;
		const r = await lintSql(sql, "all.sql");
		const rules = [...new Set(r.findings.map((f) => f.rule))];
		expect(rules.length).toBeGreaterThan(20);
		for (const rule of rules) expect(SQUAWK_RULES, rule).toContain(rule);
		for (const f of r.findings) expect(f.instead.trim(), f.rule).not.toBe("");
		expect(rules).toContain("ban-drop-not-null");
		expect(rules).toContain("identifier-too-long");
	});
});
