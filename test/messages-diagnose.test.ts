// The words of troubleshoot, monitor and db-health, from typed results: pure functions, no database.

import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Where } from "../lib/diagnose/diagnosis.ts";
import type { LockFindings } from "../lib/diagnose/locks.ts";
import * as say from "../lib/messages/diagnose.ts";
import * as health from "../lib/messages/health.ts";
import * as monitor from "../lib/messages/monitor.ts";
import type { AppliedRow, History } from "../lib/migrations/history.ts";
import type { ActivitySnapshot, BlockNode } from "../lib/pg/blocking-tree.ts";
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

/** pid 4711, idle in a transaction, blocks the migration pid 4712 (session()). */
const chain = () =>
	node({
		blocks: [
			node({
				pid: 4712,
				application: "prisma-migrate",
				state: "active",
				waitingFor: "AccessExclusiveLock on table purchases",
				waitingMs: 3000,
				blockedBy: [4711],
				holds: [],
				query: session().query,
			}),
		],
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
		const root = chain();
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

describe("monitor's view", () => {
	const waiting = session();
	const snapshot: ActivitySnapshot = {
		at: NOW.toISOString(),
		database: "faceswap",
		ownPid: 1,
		sessions: [
			session({
				pid: 4711,
				state: "idle in transaction",
				blockedBy: [],
				waitingFor: null,
				waitEventType: "Client",
				waitEvent: "ClientRead",
				query: "select * from purchases limit 1",
			}),
			waiting,
		],
		tree: [chain()],
		connections: {
			used: 7,
			max: 100,
			reserved: 3,
			here: { active: 1, "idle in transaction": 1 },
		},
	};
	const view = { all: false, thresholdMs: 60_000 };

	it("the screen, the log lines and the verdict of one snapshot", () => {
		expect(monitor.screenOf(snapshot, view)).toMatchInlineSnapshot(`
			[
			  "faceswap: 1 active, 1 idle in transaction; 1 waiting for a lock; connections 7 of 97 usable (max_connections 100)",
			  "",
			  "Blocking chains (who blocks whom):",
			  "  pid 4711 app (report-export)  idle in transaction for 1m04s, transaction open 1m05s",
			  "  │  holds AccessShareLock on purchases",
			  "  │  select * from purchases limit 1",
			  "  └─ pid 4712 app (prisma-migrate)  waits 3.0s for AccessExclusiveLock on table purchases",
			  "        alter table purchases add column "note" text",
			  "  To end this chain: npx tsx runbooks/monitor.ts --terminate 4711   (it is idle in a transaction: cancelling stops nothing and releases no lock; only terminating the session ends the transaction)",
			  "",
			  "Sessions of this database that are not idle (--all lists every session):",
			  "  pid   user  application     state                in state  transaction  wait               blocked by  query
			  ----  ----  --------------  -------------------  --------  -----------  -----------------  ----------  --------------------------------------------
			  4711  app   prisma-migrate  idle in transaction  3.0s      3.0s         Client:ClientRead              select * from purchases limit 1
			  4712  app   prisma-migrate  active               3.0s      3.0s         Lock:relation      4711        alter table purchases add column "note" text",
			]
		`);
		expect(
			monitor.logLines(snapshot, { ...view, thresholdMs: 1000 }),
		).toMatchInlineSnapshot(`
			[
			  "faceswap: 1 active, 1 idle in transaction; 1 waiting for a lock; connections 7 of 97 usable (max_connections 100)",
			  "  pid 4712 waits 3.0s for AccessExclusiveLock on table purchases, behind 4711 (root: idle in transaction)  BLOCKED OVER THRESHOLD",
			]
		`);
		expect([
			monitor.snapshotResult(snapshot, view, false),
			monitor.snapshotResult(snapshot, { ...view, thresholdMs: 1000 }, false),
			monitor.snapshotResult(snapshot, { ...view, thresholdMs: 1000 }, true),
		]).toMatchInlineSnapshot(`
			[
			  {
			    "status": "warning",
			    "summary": "2 session(s) listed, 1 waiting for a lock",
			  },
			  {
			    "status": "problem",
			    "summary": "1 session(s) blocked over 1.0s: pid 4712",
			  },
			  {
			    "status": "warning",
			    "summary": "1 session(s) blocked over 1.0s: pid 4712",
			  },
			]
		`);
	});

	it("after a cancel or terminate, and over a --watch", () => {
		const before = session({
			pid: 4711,
			state: "idle in transaction",
			xactAgeMs: 5000,
		});
		expect([
			monitor.signalled("cancel", { before, after: before }),
			monitor.signalled("terminate", { before, after: null }),
			monitor.watchSummary(
				{ refreshes: 5, elapsedMs: 10_000, interrupted: true },
				2,
				1000,
			),
			monitor.signalPlan(
				before,
				4711,
				"terminate",
				"select pg_terminate_backend(4711);",
			),
		]).toMatchInlineSnapshot(`
			[
			  {
			    "after": "now idle in transaction",
			    "summary": "cancelled pid 4711 (now idle in transaction); its transaction is still open: npx tsx runbooks/monitor.ts --terminate 4711",
			    "warning": true,
			  },
			  {
			    "after": "gone",
			    "summary": "terminated pid 4711 (gone)",
			    "warning": false,
			  },
			  "5 refreshes over 10.0s (stopped by Ctrl-C); 2 of them showed a session blocked over 1.0s",
			  [
			    "-- pid 4711, user app, application prisma-migrate, idle in transaction for 3.0s, transaction open 5.0s: alter table purchases add column "note" text",
			    "-- its open transaction is rolled back and its client gets a connection error",
			    "select pg_terminate_backend(4711);",
			  ],
			]
		`);
	});
});

describe("db-health's findings and tables", () => {
	it("sizes, open transactions, replication and connections", () => {
		const t = {
			schema: "public",
			name: "generated_videos",
			estimatedRows: 5000,
			tableBytes: 1_048_576,
			indexBytes: 262_144,
			toastBytes: 0,
			totalBytes: 1_310_720,
			liveRows: 5000,
			deadRows: 25,
			deadShare: 0.005,
			lastVacuum: null,
			lastAutovacuum: new Date(NOW.getTime() - 3_600_000).toISOString(),
			lastAnalyze: null,
			lastAutoanalyze: null,
			modifiedSinceAnalyze: 0,
		};
		const d = {
			name: "faceswap",
			bytes: 9_000_000,
			tables: 1,
			version: "15.8",
			inRecovery: false,
		};
		expect(health.sizeLines(d, [t], 3, NOW.getTime())).toMatchInlineSnapshot(`
			[
			  "faceswap: 8.6 MB in 1 table (PostgreSQL 15.8)",
			  "Largest tables (1 of 3; --top 0 lists all):",
			  "  table             rows (est.)  table   indexes  toast  total   dead  vacuumed    analyzed
			  ----------------  -----------  ------  -------  -----  ------  ----  ----------  --------
			  generated_videos  5,000        1.0 MB  256 kB   0 B    1.3 MB  0.5%  60m00s ago  never",
			]
		`);
		expect(
			health.findingText({
				check: "idle_in_transaction",
				severity: "danger",
				subject: "pid 4711",
				message: "pid 4711 has sat idle in a transaction for 2min",
				hint: "npx tsx runbooks/monitor.ts --terminate 4711",
			}),
		).toMatchInlineSnapshot(`
			"DANGER: pid 4711 has sat idle in a transaction for 2min.
			npx tsx runbooks/monitor.ts --terminate 4711"
		`);
		expect(
			health.transactionLines({
				sessions: [session({ pid: 4711, state: "idle in transaction" })],
				prepared: [{ gid: "tx1", owner: "app", ageMs: 120_000 }],
			}),
		).toMatchInlineSnapshot(`
			[
			  "pid 4711, user app, application prisma-migrate, idle in transaction for 3.0s, transaction open 3.0s: alter table purchases add column "note" text",
			  "prepared transaction "tx1" (owner app), waiting 2m00s",
			]
		`);
		expect(
			health.replicationLines({
				inRecovery: false,
				slots: [
					{
						name: "s1",
						type: "logical",
						database: "faceswap",
						active: false,
						activePid: null,
						walStatus: "reserved",
						retainedBytes: 2_097_152,
						lagBytes: null,
					},
				],
				standbys: [],
			}),
		).toMatchInlineSnapshot(`
			[
			  "  slot  type     active  wal_status  WAL retained  consumer behind
			  ----  -------  ------  ----------  ------------  ---------------
			  s1    logical  NO      reserved    2.0 MB",
			  "No standbys connected.",
			]
		`);
		expect(
			health.connectionLine({
				used: 7,
				max: 100,
				reserved: 3,
				here: { active: 2 },
			}),
		).toMatchInlineSnapshot(
			`"7 client connections of 97 usable (max_connections 100, 3 reserved for superusers); this database, besides this check: 2 active"`,
		);
	});
});
