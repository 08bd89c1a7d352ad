// The words of troubleshoot, monitor and db-health, from typed results: pure functions, no database.

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Where } from "../lib/diagnose/diagnosis.ts";
import type { LockFindings } from "../lib/diagnose/locks.ts";
import * as say from "../lib/messages/diagnose.ts";
import type { AppliedRow, History } from "../lib/migrations/history.ts";
import type { BlockNode } from "../lib/pg/blocking-tree.ts";
import type { SessionDetail } from "../lib/pg/sessions.ts";

const NOW = new Date("2026-01-02T03:04:05Z");
beforeAll(() => {
	vi.useFakeTimers();
	vi.setSystemTime(NOW);
});
afterAll(() => {
	vi.useRealTimers();
});

const where: Where = {
	migrationsDir: "prisma/migrations",
	resettable: true,
	confirmFlags: "--yes --confirm faceswap",
};

const row = (over: Partial<AppliedRow> = {}): AppliedRow => ({
	id: "0b6e",
	migration_name: "20250101000000_add_user_tier",
	checksum: "abc",
	started_at: new Date(NOW.getTime() - 90_000),
	finished_at: null,
	rolled_back_at: null,
	logs: null,
	applied_steps_count: 0,
	...over,
});

const history = (over: Partial<History> = {}): History => ({
	local: [],
	applied: [],
	tableMissing: false,
	issues: [],
	pending: [],
	latestApplied: "20241230000000_comprehensive_schema",
	...over,
});

const node = (over: Partial<BlockNode> = {}): BlockNode => ({
	pid: 4711,
	database: "faceswap",
	user: "app",
	application: "report-export",
	state: "idle in transaction",
	query: "select * from purchases limit 1",
	xactAgeMs: 65_000,
	stateAgeMs: 64_000,
	waitingFor: null,
	waitingMs: null,
	blockedBy: [],
	holds: ["AccessShareLock on purchases"],
	blocks: [],
	...over,
});

const session = (over: Partial<SessionDetail> = {}): SessionDetail => ({
	pid: 4712,
	database: "faceswap",
	user: "app",
	application: "prisma-migrate",
	client: null,
	backendType: "client backend",
	state: "active",
	waitEventType: "Lock",
	waitEvent: "relation",
	xactStart: null,
	queryStart: null,
	xactAgeMs: 3000,
	queryAgeMs: 3000,
	stateAgeMs: 3000,
	query: 'alter table purchases add column "note" text',
	blockedBy: [4711],
	waitingFor: {
		locktype: "relation",
		mode: "AccessExclusiveLock",
		relation: "purchases",
		description: "AccessExclusiveLock on table purchases",
		waitingMs: 3000,
		prismaMigrateLock: false,
	},
	here: true,
	...over,
});

describe("troubleshoot's diagnoses", () => {
	it("a failed migration: its logs without the backtrace, and the commands that resolve it", () => {
		const failed = row({
			logs: "Database error code: 40P01\n\nERROR: deadlock detected\nDETAIL: Process 4242 waits\n   0: sql_schema_connector::apply",
		});
		expect(
			say.historyDiagnoses(where, history(), [failed], []),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "# If it changed nothing (PostgreSQL rolled its transaction back) or you undid what it did, fix",
			      "# prisma/migrations/20250101000000_add_user_tier/migration.sql (or the data it tripped on), then:",
			      "npx tsx runbooks/troubleshoot.ts --resolve-rolled-back 20250101000000_add_user_tier",
			      "#   = UPDATE public._prisma_migrations SET rolled_back_at = now() WHERE migration_name = '20250101000000_add_user_tier' AND finished_at IS NULL AND rolled_back_at IS NULL;",
			      "#   then deploy again: the next \`migrate deploy\` runs it from the start (npx tsx runbooks/deploy-production.ts).",
			      "# If you completed its changes by hand instead:",
			      "npx tsx runbooks/troubleshoot.ts --resolve-applied 20250101000000_add_user_tier",
			      "# Same through Prisma's CLI (native engine only): PRISMA_ENGINE=native npx prisma migrate resolve --rolled-back 20250101000000_add_user_tier --config prisma/prisma.config.ts",
			      "# Local database only, dropping all data: npx tsx runbooks/troubleshoot.ts --reset",
			    ],
			    "detail": [
			      "started 2026-01-02T03:02:35.000Z (1m30s ago), 0 step(s) recorded",
			      "Its logs in _prisma_migrations:",
			      "  | Database error code: 40P01",
			      "  | ",
			      "  | ERROR: deadlock detected",
			      "  | DETAIL: Process 4242 waits",
			      "  | (engine backtrace left out)",
			      "Until it is resolved, \`prisma migrate deploy\` refuses to apply anything (P3009).",
			      "With PostgreSQL a migration.sql runs in one transaction, so a failure normally leaves nothing behind;",
			      "statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) or an explicit COMMIT can leave part of it:",
			      "the drift check shows what is in the database beyond the applied migrations.",
			    ],
			    "kind": "failed_migration",
			    "migration": "20250101000000_add_user_tier",
			    "problem": true,
			    "title": "Migration 20250101000000_add_user_tier failed: ERROR: deadlock detected",
			  },
			]
		`);
	});

	it("a migration that runs now, a missing table, changed files and pending ones", () => {
		expect(
			say.historyDiagnoses(where, history(), [row()], [99]),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "npx tsx runbooks/monitor.ts --watch 2",
			    ],
			    "detail": [
			      "started 2026-01-02T03:02:35.000Z (1m30s ago), 0 step(s) recorded",
			      "If it seems stuck, the lock diagnosis below shows what it waits for.",
			    ],
			    "kind": "running_migration",
			    "migration": "20250101000000_add_user_tier",
			    "problem": false,
			    "title": "Migration 20250101000000_add_user_tier is running now (pid 99 holds Prisma Migrate's lock)",
			  },
			]
		`);
		expect(
			say.historyDiagnoses(where, history({ tableMissing: true }), [], []),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "npx tsx runbooks/deploy-production.ts   # or, on a local database: npx tsx runbooks/dev-migrate.ts",
			    ],
			    "detail": [
			      "0 migrations wait in prisma/migrations.",
			    ],
			    "kind": "history",
			    "problem": false,
			    "title": "No _prisma_migrations table: no migration was ever deployed to this database",
			  },
			]
		`);
		const h = history({
			issues: [
				{
					kind: "checksum_mismatch",
					migration: "20240101000000_init",
					detail: "changed after it was applied",
				},
			],
			pending: [
				{
					name: "20250101000000_add_user_tier",
					sql: "",
					checksum: "",
					path: "",
				},
			],
		});
		expect(
			say.historyDiagnoses({ ...where, resettable: false }, h, [], []),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "git log -p -- prisma/migrations/20240101000000_init/migration.sql   # who changed it, and how",
			      "# Restore the file as it was applied; put further changes in a new migration (npx tsx runbooks/dev-migrate.ts).",
			    ],
			    "detail": [],
			    "kind": "history",
			    "migration": "20240101000000_init",
			    "problem": true,
			    "title": "Migration 20240101000000_init: changed after it was applied",
			  },
			  {
			    "commands": [
			      "npx tsx runbooks/deploy-production.ts",
			    ],
			    "detail": [],
			    "kind": "history",
			    "problem": false,
			    "title": "1 migration(s) not yet applied: 20250101000000_add_user_tier",
			  },
			]
		`);
	});

	it("a migration hanging behind an idle transaction, and one busy with DDL", () => {
		const waiting = session();
		const root = node({
			blocks: [
				node({
					pid: 4712,
					application: "prisma-migrate",
					state: "active",
					waitingFor: "AccessExclusiveLock on table purchases",
					waitingMs: 3000,
					blockedBy: [4711],
					holds: [],
					query: waiting.query,
				}),
			],
		});
		const found: LockFindings = {
			waiting: [waiting],
			chains: [{ root, stuck: [waiting], longestMs: 3000 }],
			roots: [root],
			running: [
				session({
					pid: 4713,
					waitEventType: null,
					waitEvent: null,
					blockedBy: [],
					waitingFor: null,
					query: "create index concurrently x on users (name)",
				}),
			],
		};
		expect(say.lockDiagnoses(found, where)).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "npx tsx runbooks/troubleshoot.ts --terminate-blocker --yes --confirm faceswap   # = select pg_terminate_backend(4711); (rolls back its transaction)",
			      "# or stop the migration instead: select pg_cancel_backend(4712);   (pid 4712, the migration)",
			      "npx tsx runbooks/monitor.ts --watch 2   # watch the chain",
			    ],
			    "detail": [
			      "pid 4711 app (report-export)  idle in transaction for 1m04s, transaction open 1m05s",
			      "│  holds AccessShareLock on purchases",
			      "│  select * from purchases limit 1",
			      "└─ pid 4712 app (prisma-migrate)  waits 3.0s for AccessExclusiveLock on table purchases",
			      "      alter table purchases add column "note" text",
			      "While the migration waits for its lock, every later query on that table queues behind it.",
			      "The blocker: pid 4711, user app, application report-export, idle in transaction for 1m04s, transaction open 1m05s: select * from purchases limit 1",
			      "A cancel would not help: it is idle in a transaction: cancelling stops nothing and releases no lock; only terminating the session ends the transaction.",
			    ],
			    "kind": "hanging_migration",
			    "problem": true,
			    "title": "Migration session pid 4712 has waited 3.0s for AccessExclusiveLock on table purchases, held by pid 4711 (idle in transaction)",
			  },
			  {
			    "commands": [
			      "npx tsx runbooks/monitor.ts --watch 2",
			    ],
			    "detail": [
			      "wait event: none (working)",
			    ],
			    "kind": "running_migration",
			    "problem": false,
			    "title": "pid 4713 is running DDL for 3.0s and waits for no lock: create index concurrently x on users (name)",
			  },
			]
		`);
	});

	it("drift, schema drift and a NOT NULL column without a default", () => {
		expect(
			say.driftDiagnoses(
				{
					against: ["a", "b"],
					databaseVsMigrations: [
						'ALTER TABLE "public"."users" DROP COLUMN "nickname";',
					],
				},
				["20250101000000_add_user_tier"],
				where,
			),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "# If the change belongs in the app: put it in prisma/schema.prisma and write its migration,",
			      "npx tsx runbooks/dev-migrate.ts --name <name> --create-only",
			      "# then record that migration as applied here, since the change is already in this database:",
			      "npx tsx runbooks/troubleshoot.ts --resolve-applied <that migration's folder name>",
			      "# If it was a mistake: take a backup, then undo it with the SQL above:",
			      "npx tsx runbooks/backup.ts",
			      "# Local database only, dropping all data and reapplying every migration:",
			      "npx tsx runbooks/troubleshoot.ts --reset",
			    ],
			    "detail": [
			      "- column users.nickname exists in the database but in no migration",
			      "Part of it may be what 20250101000000_add_user_tier left behind before failing: compare with its migration.sql.",
			      "SQL that would take the database back to what its applied migrations build:",
			      "  ALTER TABLE "public"."users" DROP COLUMN "nickname";",
			    ],
			    "kind": "drift",
			    "problem": true,
			    "title": "Drift: the database differs from its 2 applied migrations (1 change(s))",
			  },
			]
		`);
		expect(
			say.driftDiagnoses({ against: [], databaseVsMigrations: [] }, [], where),
		).toEqual([]);
		expect(
			say.schemaDriftDiagnoses(['ALTER TABLE "users" ADD COLUMN "tier" TEXT;']),
		).toMatchInlineSnapshot(`
			[
			  {
			    "commands": [
			      "npx tsx runbooks/dev-migrate.ts --name <name>   # writes (and locally applies) the migration",
			    ],
			    "detail": [
			      "  ALTER TABLE "users" ADD COLUMN "tier" TEXT;",
			    ],
			    "kind": "schema_drift",
			    "problem": true,
			    "title": "prisma/schema.prisma has 1 change(s) no migration holds",
			  },
			]
		`);
		expect(
			say.requiredFieldDiagnosis({
				source: "failed migration 20250101000000_add_user_tier",
				table: "public.users",
				column: "tier",
				statement: 'ALTER TABLE "users" ADD COLUMN "tier" TEXT NOT NULL',
				tableHasRows: true,
			}),
		).toMatchInlineSnapshot(`
			{
			  "commands": [
			    "npx tsx runbooks/add-required-field.ts --table users --column tier --type text --backfill '<value for existing rows, e.g. a constant or an expression of the row>' --dry-run",
			    "# or --default '<constant>' instead of --backfill, when every row may keep the same value",
			    "npx tsx runbooks/troubleshoot.ts --resolve-rolled-back 20250101000000_add_user_tier   # first, to clear the failure",
			  ],
			  "detail": [
			    "ALTER TABLE "users" ADD COLUMN "tier" TEXT NOT NULL",
			    "Add it as optional, backfill it in batches, then make it required: add-required-field does all three.",
			  ],
			  "kind": "required_field",
			  "problem": true,
			  "title": "failed migration 20250101000000_add_user_tier: required column users.tier without a default on a table with rows: it fails (existing rows have no value)",
			}
		`);
	});

	it("plans, choices and one-line summaries", () => {
		expect(
			say.resolvePlanLines(
				{
					kind: "rolled-back",
					migration: "m1",
					sql: [
						"UPDATE public._prisma_migrations SET rolled_back_at = now() WHERE id = 'x';",
					],
					failedRows: [],
					nativeCommand: "npx prisma migrate resolve --rolled-back m1",
				},
				false,
			),
		).toMatchInlineSnapshot(`
			[
			  "BEGIN;",
			  "SELECT pg_try_advisory_xact_lock(72707369);  -- Prisma Migrate's lock: refuses while a migration runs",
			  "UPDATE public._prisma_migrations SET rolled_back_at = now() WHERE id = 'x';",
			  "COMMIT;",
			  "-- the same as: npx prisma migrate resolve --rolled-back m1 (native engine only)",
			]
		`);
		expect(say.signalPlanLines([node()], "terminate")).toMatchInlineSnapshot(`
			[
			  "-- pid 4711, user app, application report-export, idle in transaction for 1m04s, transaction open 1m05s: select * from purchases limit 1",
			  "select pg_terminate_backend(4711);",
			]
		`);
		expect([
			say.describeAction(null),
			say.describeAction({ kind: "applied", migration: "m1" }),
			say.requested({ kind: "reset" }),
			say.noMigrationWaits(2),
			say.checkedSources([]),
			say.conclusion(0, 1),
			say.driftSkip({ skipDrift: false, tableMissing: false, busy: true }),
			say.typeOf('ALTER TABLE "users" ADD COLUMN "tier" VARCHAR(20) NOT NULL'),
			say.oneLineOf(
				'Applying migration\nERROR: column "tier" of relation "users" contains null values',
			),
		]).toMatchInlineSnapshot(`
			[
			  "none",
			  "mark m1 applied",
			  "requested: reset the local database (after the diagnosis)",
			  "no migration waits; 2 other session(s) wait for locks (npx tsx runbooks/monitor.ts)",
			  "Checked: nothing pending, failed or unmigrated.",
			  "resolved; nothing else found",
			  "a migration is running or waiting for a lock, and Prisma's introspection would queue behind its lock; rerun once it is resolved",
			  "varchar(20)",
			  "ERROR: column "tier" of relation "users" contains null values",
			]
		`);
	});
});
