// What dev-migrate tells the operator: refusals, results, and what a stopped step left.

import type { MigrationIssue } from "../migrations/history.ts";

export const failedMigration = (failed: MigrationIssue) => ({
	message: `Migration ${failed.migration} failed on this database; fix that first.`,
	hint: "See `npx tsx runbooks/validate.ts`; on a local database a reset is often simplest: npx prisma migrate reset --config prisma/prisma.config.ts",
});

export const STOPPED = {
	pending:
		"Each pending migration runs in its own transaction: the ones Prisma finished are applied and recorded, the one it was running is not (npx tsx runbooks/validate.ts shows which).",
	generate: (dir: string) =>
		`No migration was applied. ${dir} may hold the new migration's folder: remove it if it has no migration.sql.`,
	apply: (dir: string) =>
		`The migration's transaction was rolled back and ${dir} is kept; Prisma recorded it as failed.\n` +
		`Fix prisma/schema.prisma, then: rm -r ${dir} && npx prisma migrate reset --config prisma/prisma.config.ts (local data is lost), before resuming.`,
};

export const lintSummary = (unsafe: number) =>
	unsafe
		? `${unsafe} unsafe change(s): fine on your laptop, but deploy-production refuses them unless allowed (--allow <rule>)`
		: "no unsafe statements";

export const wouldWrite = (script: string, statements: number) =>
	statements
		? `-- SQL it would write:\n${script.trim()}`
		: "-- schema.prisma has no change to migrate";

export const SKIPPED = {
	createOnly:
		"--create-only: edit the SQL, then rerun without --create-only to apply it",
	studio: "pass --studio to browse the data",
};

export const status = (upToDate: boolean) =>
	upToDate ? "database schema is up to date" : "migrations remain to apply";
