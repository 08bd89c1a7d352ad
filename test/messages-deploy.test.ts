// The words of a deploy, from typed results: pure functions, snapshot-tested (no database).

import { describe, expect, it } from "vitest";
import {
	applyPlan,
	deployConfirmation,
	deployEventLines,
	deployFailure,
	deploySummary,
	stateAfterFailure,
	unfinishedAdvice,
} from "../lib/messages/deploy.ts";
import type { DeployOutcome } from "../lib/migrations/deploy.ts";

const s = {
	lockTimeoutMs: 5000,
	statementTimeoutMs: 300_000,
	retries: 5,
	concurrentTimeoutMs: 600_000,
};
const blocker = {
	pid: 42,
	application: "nightly-report",
	user: "app",
	state: "idle in transaction",
	table: "users",
	query: "select 1",
	xactAgeS: 90,
	queryAgeS: 90,
} as never;
const failed = (f: Partial<NonNullable<DeployOutcome["failure"]>>) =>
	({
		ok: false,
		applied: ["20240101000000_a"],
		attempts: [{ no: 1, blockers: [] }],
		failure: {
			migration: "20240102000000_b",
			error: "boom",
			lockTimeout: false,
			statementTimeout: false,
			markedRolledBack: false,
			invalidIndexes: [],
			partial: false,
			...f,
		},
	}) as unknown as DeployOutcome;

describe("lib/messages/deploy.ts", () => {
	it("advises on an unfinished migration by what the database holds", () => {
		const m = "20240102000000_b";
		expect([
			unfinishedAdvice(m, { kind: "applied" }),
			unfinishedAdvice(m, { kind: "rolled-back" }),
			unfinishedAdvice(m, { kind: "unknown" }),
			unfinishedAdvice(m, {
				kind: "concurrent",
				running: null,
				valid: [],
				invalid: ['"public"."x_idx"'],
				builds: 1,
			}),
		]).toMatchInlineSnapshot(`
			[
			  "Its changes are all in the database: it committed, but its process ended before Prisma recorded it. Mark it applied, then rerun the deploy:
			  npx tsx runbooks/troubleshoot.ts --resolve-applied 20240102000000_b",
			  "None of its changes are in the database (PostgreSQL rolled its transaction back). Fix it if it failed, mark it rolled back, then rerun the deploy:
			  UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '20240102000000_b' AND finished_at IS NULL AND rolled_back_at IS NULL;
			  (or: npx tsx runbooks/troubleshoot.ts --resolve-rolled-back 20240102000000_b)",
			  "The database matches neither the migrations with it nor without it: see what it left with npx tsx runbooks/troubleshoot.ts, and resolve it by hand.",
			  "Its CREATE INDEX CONCURRENTLY was interrupted and left "public"."x_idx" INVALID in the database (the rest of it is not there). Drop it, mark the migration rolled back, then rerun the deploy:
			  DROP INDEX CONCURRENTLY IF EXISTS "public"."x_idx";
			  UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '20240102000000_b' AND finished_at IS NULL AND rolled_back_at IS NULL;",
			]
		`);
	});

	it("says what a failed or interrupted deploy left, and the way back", () => {
		const pending = [
			"20240101000000_a",
			"20240102000000_b",
			"20240103000000_c",
		];
		const rollback = "npx tsx runbooks/emergency-rollback.ts --backup b1";
		expect([
			stateAfterFailure({
				pending,
				deploy: failed({}),
				applying: false,
				rollback,
			}),
			stateAfterFailure({
				pending,
				deploy: failed({
					markedRolledBack: true,
					invalidIndexes: [{ index: "x_idx", dropped: true }],
				}),
				applying: false,
				rollback,
			}),
			stateAfterFailure({
				pending,
				interrupted: {
					migration: "20240102000000_b",
					applied: [],
					markedRolledBack: false,
					leftSessions: 1,
					invalidIndexes: [],
				},
				applying: true,
				rollback: null,
			}),
			stateAfterFailure({ pending, applying: true, rollback: null }),
			stateAfterFailure({ pending, applying: false, rollback }),
		]).toMatchInlineSnapshot(`
			[
			  "Applied by this deploy: 20240101000000_a.
			Failed: 20240102000000_b. PostgreSQL rolled its transaction back, so none of it is in the database; _prisma_migrations records it as failed, and deploys refuse until it is resolved: fix the migration, then mark it rolled back:
			  UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '20240102000000_b' AND finished_at IS NULL AND rolled_back_at IS NULL;
			Not applied: 20240103000000_c.
			To restore the database as it was before this deploy (pre-deploy backup): npx tsx runbooks/emergency-rollback.ts --backup b1",
			  "Applied by this deploy: 20240101000000_a.
			Failed: 20240102000000_b. CREATE INDEX CONCURRENTLY runs outside a transaction: the INVALID index it left (x_idx) was dropped, so none of it is in the database; it is marked rolled back in _prisma_migrations, so the next deploy applies it again.
			Not applied: 20240103000000_c.
			To restore the database as it was before this deploy (pre-deploy backup): npx tsx runbooks/emergency-rollback.ts --backup b1",
			  "Applied by this deploy before the interrupt: none.
			20240102000000_b was running and is recorded as unfinished in _prisma_migrations (its session was still there; it ends at the lock or statement timeout). Once npx tsx runbooks/monitor.ts shows no "runbook:deploy-production:prisma" session, it was rolled back: mark it so:
			  UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '20240102000000_b' AND finished_at IS NULL AND rolled_back_at IS NULL;",
			  "The deploy was stopped while prisma migrate deploy ran: a migration in progress was rolled back by PostgreSQL when its session ended.
			Check with: npx tsx runbooks/validate.ts (a migration shown as failed/unfinished was not applied; mark it rolled back before resuming:
			  UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = '<migration>' AND finished_at IS NULL AND rolled_back_at IS NULL;)",
			  "All 3 pending migration(s) are applied: 20240101000000_a, 20240102000000_b, 20240103000000_c.
			To restore the database as it was before this deploy (pre-deploy backup): npx tsx runbooks/emergency-rollback.ts --backup b1",
			]
		`);
	});

	it("prints the apply step's events, one line per index build phase", () => {
		const lines = (e: Parameters<typeof deployEventLines>[0], last = "") =>
			deployEventLines(e, s, () => true, last);
		expect([
			lines({ type: "attempt", no: 1, of: 6 }),
			lines({ type: "waiting", no: 1, blockers: [blocker] }),
			lines({ type: "blocked", no: 1, migration: null, blockers: [] }),
			lines({
				type: "index-progress",
				no: 1,
				phase: "waiting for old snapshots",
				done: 0,
				total: 0,
			}),
			lines(
				{ type: "index-progress", no: 1, phase: "same", done: 0, total: 0 },
				"same",
			),
			lines({
				type: "invalid-index",
				index: { index: "x_idx", dropped: true },
			}),
			lines({ type: "rolled-back", migration: "20240102000000_b" }),
			lines({ type: "retry", no: 1, delayMs: 2000 }),
		]).toMatchInlineSnapshot(`
			[
			  [
			    {
			      "text": "attempt 1/6: migrate deploy",
			    },
			  ],
			  [
			    {
			      "text": "waiting up to 5s for a lock on users held by pid 42 ("nightly-report")",
			    },
			  ],
			  [
			    {
			      "text": "null waited 10min (--concurrent-timeout) for older transactions to end and gave up; its waits held up no other query.",
			      "warn": true,
			    },
			    {
			      "text": "the blocker ended before it could be identified",
			      "warn": true,
			    },
			  ],
			  [
			    {
			      "text": "CREATE INDEX CONCURRENTLY: waiting for old snapshots",
			    },
			  ],
			  [],
			  [
			    {
			      "text": "the interrupted CREATE INDEX CONCURRENTLY left x_idx INVALID; dropped it (DROP INDEX CONCURRENTLY IF EXISTS x_idx)",
			      "warn": true,
			    },
			  ],
			  [
			    {
			      "text": "marked 20240102000000_b rolled back in _prisma_migrations (its build ran outside a transaction; nothing of it is left once its INVALID index is gone)",
			    },
			  ],
			  [
			    {
			      "text": "retrying in 2s",
			    },
			  ],
			]
		`);
	});

	it("plans, confirms, fails and sums up", () => {
		const pending = [{ name: "20240102000000_b", sql: "SELECT 1;\n" }];
		expect({
			plan: applyPlan(s, pending, true),
			confirm: deployConfirmation({
				target: "app@db:5432/faceswap",
				production: true,
				pending: ["20240102000000_b"],
				backupId: "b1",
				s,
			}),
			lockTimeout: deployFailure(failed({ lockTimeout: true }), s),
			statementTimeout: deployFailure(failed({ statementTimeout: true }), s),
			summary: deploySummary({
				pending: ["20240102000000_b"],
				dryRun: false,
				applied: ["20240102000000_b"],
				rollback: "npx tsx runbooks/emergency-rollback.ts --backup b1",
			}),
			dryRun: deploySummary({
				pending: ["20240102000000_b"],
				dryRun: true,
				applied: [],
				rollback: null,
			}),
		}).toMatchInlineSnapshot(`
			{
			  "confirm": {
			    "lines": [
			      "target:  app@db:5432/faceswap [production]",
			      "migrations to apply (1):",
			      "  20240102000000_b",
			      "backup:  b1 (verified)",
			      "each statement: lock_timeout 5s, statement_timeout 5min; up to 5 retries",
			    ],
			    "question": "Deploy 1 migration(s) to app@db:5432/faceswap?",
			  },
			  "dryRun": {
			    "lines": [],
			    "summary": "dry run: would back up, then apply 1 migration(s): 20240102000000_b",
			  },
			  "lockTimeout": {
			    "hint": undefined,
			    "message": "20240102000000_b could not get its lock in 1 attempt(s) (lock_timeout 5s).",
			  },
			  "plan": [
			    "RUNBOOK_LOCK_TIMEOUT=5000 RUNBOOK_STATEMENT_TIMEOUT=300000 RUNBOOK_CONCURRENT_TIMEOUT=600000 npx prisma migrate deploy --config prisma/prisma.config.ts",
			    "-- every engine session: SET lock_timeout = 5s, statement_timeout = 5min",
			    "-- after a lock timeout: mark the migration rolled back in _prisma_migrations, retry (up to 5, waiting 1s, 2s, 4s ...)",
			    "-- 20240102000000_b/migration.sql:",
			    "SELECT 1;",
			  ],
			  "statementTimeout": {
			    "hint": "If the migration is expected to take longer, rerun with a larger --statement-timeout.",
			    "message": "20240102000000_b ran longer than the statement timeout (5min): boom.",
			  },
			  "summary": {
			    "lines": [
			      "applied: 20240102000000_b",
			      "backup:  undefined",
			      "if the app misbehaves, restore the pre-deploy backup with:
			  npx tsx runbooks/emergency-rollback.ts --backup b1",
			    ],
			    "summary": "deployed 1 migration(s); rollback: npx tsx runbooks/emergency-rollback.ts --backup b1",
			  },
			}
		`);
	});
});
