#!/usr/bin/env -S npx tsx --

// The seed's "Migration Troubleshooting", done right. Diagnoses the target and walks the operator
// through the common issues, each with the exact commands that resolve it:
// - a failed or unfinished migration in _prisma_migrations (its logs; mark it rolled back or applied,
//   with Prisma's own semantics, on either schema engine),
// - a migration hanging on a lock (who holds it, from pg_blocking_pids; cancel or terminate the blocker),
// - drift between the database and its applied migrations (Prisma's migrate diff, as SQL),
// - a NOT NULL column added without a default (points to add-required-field),
// and, on a local database only, reset. Nothing changes without confirmation.

import type { Choice } from "../lib/kit/confirm.ts";
import { RunbookError, refusal, usageError } from "../lib/kit/errors.ts";
import { formatDuration, style } from "../lib/kit/output.ts";
import { acquireRunLock } from "../lib/kit/run-lock.ts";
import {
	type Context,
	runRunbook,
	type StepResult,
} from "../lib/kit/runner.ts";
import { renderTree, sessionLine } from "../lib/messages/sessions.ts";
import {
	databaseDriftAgainst,
	explainDrift,
	schemaDrift,
} from "../lib/migrations/drift.ts";
import {
	type AppliedRow,
	type History,
	readHistory,
	readLocalMigrations,
} from "../lib/migrations/history.ts";
import { lintSql } from "../lib/migrations/lint.ts";
import {
	displayPath,
	migrationsDir,
	prismaCommand,
	prismaErrorText,
	runPrisma,
} from "../lib/migrations/prisma-cli.ts";
import {
	applyResolve,
	planApplied,
	planRolledBack,
	type ResolveKind,
	type ResolvePlan,
	resolveArgs,
} from "../lib/migrations/resolve.ts";
import { qualifiedName } from "../lib/migrations/sql.ts";
import {
	type ActivitySnapshot,
	type BlockNode,
	flattenTree,
	readActivity,
} from "../lib/pg/blocking-tree.ts";
import type { Db } from "../lib/pg/db.ts";
import {
	migrationSessions,
	prismaLockHolders,
	type SessionDetail,
} from "../lib/pg/sessions.ts";
import {
	cancelEffect,
	type SignalKind,
	signalSession,
	signalSql,
} from "../lib/pg/signal.ts";

type Action =
	| { kind: "rolled-back" | "applied"; migration: string }
	| { kind: "cancel-blocker" | "terminate-blocker" | "reset" };

type DiagnosisKind =
	| "failed_migration"
	| "unfinished_migration"
	| "running_migration"
	| "history"
	| "hanging_migration"
	| "drift"
	| "schema_drift"
	| "required_field";

interface Diagnosis {
	kind: DiagnosisKind;
	/** One sentence. */
	title: string;
	detail: string[];
	/** The exact commands that resolve it, in the order to run them. */
	commands: string[];
	/** A problem (exit 1) until resolved; otherwise information. */
	problem: boolean;
	migration?: string;
}

interface RequiredField {
	source: string;
	table: string | null;
	column: string | null;
	statement: string;
	tableHasRows: boolean | null;
}

interface State {
	action: Action | null;
	history?: History;
	/** Rows of _prisma_migrations with neither finished_at nor rolled_back_at. */
	unfinished: AppliedRow[];
	prismaLockHolders: number[];
	activity?: ActivitySnapshot;
	/** Migration sessions waiting for a lock, and the roots of their chains. */
	waitingMigrations: SessionDetail[];
	blockers: BlockNode[];
	drift: {
		checked: boolean;
		databaseVsMigrations: string[];
		migrationsVsSchema: string[];
		against: string[];
	};
	required: RequiredField[];
	diagnoses: Diagnosis[];
	plan?: ResolvePlan;
	done: string[];
	remaining: Diagnosis[];
}

type Ctx = Context<State>;

const TROUBLESHOOT = "npx tsx runbooks/troubleshoot.ts";
const RESET_ARGS = ["migrate", "reset", "--force", "--skip-generate"];
const MIGRATIONS_TABLE = "public._prisma_migrations";

const useNative = (ctx: Ctx) =>
	Boolean(ctx.flags["engine-native"]) ||
	(ctx.env.PRISMA_ENGINE ?? "") === "native";
const q = (name: string) =>
	/^[\w.-]+$/.test(name) ? name : `'${name.replace(/'/g, "'\\''")}'`;
const confirmFlags = (ctx: Ctx) =>
	`--yes --confirm ${q(ctx.target.direct.database)}`;

function actionFromFlags(ctx: Ctx): Action | null {
	const f = ctx.flags;
	const chosen: Action[] = [];
	if (f["resolve-rolled-back"] !== undefined)
		chosen.push({
			kind: "rolled-back",
			migration: String(f["resolve-rolled-back"]),
		});
	if (f["resolve-applied"] !== undefined)
		chosen.push({ kind: "applied", migration: String(f["resolve-applied"]) });
	if (f["cancel-blocker"]) chosen.push({ kind: "cancel-blocker" });
	if (f["terminate-blocker"]) chosen.push({ kind: "terminate-blocker" });
	if (f.reset) chosen.push({ kind: "reset" });
	if (chosen.length > 1) {
		throw usageError(
			"Pass one action at a time: --resolve-rolled-back, --resolve-applied, --cancel-blocker, --terminate-blocker or --reset.",
		);
	}
	return chosen[0] ?? null;
}

/** Reset is for local development databases only. */
function refuseReset(ctx: Ctx): void {
	if (ctx.target.isProduction) {
		throw refusal(
			"Reset drops every table and all data: refused because the target is marked production (RUNBOOK_ENV=production). Nothing was changed.",
			"Resolve the migration instead (--resolve-rolled-back / --resolve-applied), or restore a backup with the restore runbook.",
		);
	}
	if (!ctx.target.isLocal) {
		throw refusal(
			`Reset drops every table and all data: refused because ${ctx.target.direct.display} is not a local database. Nothing was changed.`,
			"Reset only runs against localhost, 127.0.0.0/8, ::1 or a unix socket. Resolve the migration instead.",
		);
	}
}

function describeAction(a: Action | null): string {
	if (!a) return "none";
	switch (a.kind) {
		case "rolled-back":
			return `mark ${a.migration} rolled back`;
		case "applied":
			return `mark ${a.migration} applied`;
		case "cancel-blocker":
			return "cancel the statement blocking the migration";
		case "terminate-blocker":
			return "terminate the session blocking the migration";
		case "reset":
			return "reset the local database";
	}
}

function printDiagnosis(ctx: Ctx, d: Diagnosis): void {
	(d.problem ? ctx.warn : ctx.log)(d.title);
	for (const l of d.detail) ctx.log(`  ${l}`);
	if (d.commands.length) {
		ctx.log("  Commands:");
		for (const c of d.commands) ctx.log(`    ${c}`);
	}
}

function conclude(
	ctx: Ctx,
	found: Diagnosis[],
	ok: string,
	data?: unknown,
): StepResult {
	ctx.state.diagnoses.push(...found);
	for (const d of found) printDiagnosis(ctx, d);
	const problems = found.filter((d) => d.problem);
	return {
		// The verdict comes at the end (after any resolution): here a problem is a warning.
		status: problems.length ? "warning" : "ok",
		summary: problems.length
			? problems.map((d) => d.title).join("; ")
			: found.length
				? found.map((d) => d.title).join("; ")
				: ok,
		data: data ?? found,
	};
}

// --- history -----------------------------------------------------------------------------------

function resolveCommands(ctx: Ctx, migration: string): string[] {
	return [
		`# If it changed nothing (PostgreSQL rolled its transaction back) or you undid what it did, fix`,
		`# prisma/migrations/${migration}/migration.sql (or the data it tripped on), then:`,
		`${TROUBLESHOOT} --resolve-rolled-back ${migration}`,
		`#   = UPDATE ${MIGRATIONS_TABLE} SET rolled_back_at = now() WHERE migration_name = '${migration}' AND finished_at IS NULL AND rolled_back_at IS NULL;`,
		"#   then deploy again: the next `migrate deploy` runs it from the start (npx tsx runbooks/deploy-production.ts).",
		"# If you completed its changes by hand instead:",
		`${TROUBLESHOOT} --resolve-applied ${migration}`,
		`# Same through Prisma's CLI (native engine only): PRISMA_ENGINE=native ${prismaCommand(resolveArgs("rolled-back", migration))}`,
		...(ctx.target.isLocal && !ctx.target.isProduction
			? [`# Local database only, dropping all data: ${TROUBLESHOOT} --reset`]
			: []),
	];
}

function historyDiagnoses(
	ctx: Ctx,
	h: History,
	unfinished: AppliedRow[],
	holders: number[],
): Diagnosis[] {
	const out: Diagnosis[] = [];
	if (h.tableMissing) {
		out.push({
			kind: "history",
			title:
				"No _prisma_migrations table: no migration was ever deployed to this database",
			detail: [
				`${h.local.length} migrations wait in ${displayPath(migrationsDir(ctx.env))}.`,
			],
			commands: [
				"npx tsx runbooks/deploy-production.ts   # or, on a local database: npx tsx runbooks/dev-migrate.ts",
			],
			problem: false,
		});
		return out;
	}
	for (const row of unfinished) {
		const logs = (row.logs ?? "").trim();
		const when = `started ${row.started_at.toISOString()} (${formatDuration(Date.now() - row.started_at.getTime())} ago), ${row.applied_steps_count} step(s) recorded`;
		if (!logs && holders.length) {
			out.push({
				kind: "running_migration",
				title: `Migration ${row.migration_name} is running now (pid ${holders.join(", ")} holds Prisma Migrate's lock)`,
				detail: [
					when,
					"If it seems stuck, the lock diagnosis below shows what it waits for.",
				],
				commands: ["npx tsx runbooks/monitor.ts --watch 2"],
				problem: false,
				migration: row.migration_name,
			});
			continue;
		}
		out.push({
			kind: logs ? "failed_migration" : "unfinished_migration",
			title: logs
				? `Migration ${row.migration_name} failed: ${oneLineOf(logs)}`
				: `Migration ${row.migration_name} started but never finished, and nothing runs it now (its process died or was killed)`,
			detail: [
				when,
				...(logs
					? [
							"Its logs in _prisma_migrations:",
							...logLines(logs)
								.slice(0, 15)
								.map((l) => `  | ${l}`),
						]
					: []),
				...(logLines(logs).length > 15
					? [
							`  | ... (select logs from ${MIGRATIONS_TABLE} where id = '${row.id}';)`,
						]
					: []),
				"Until it is resolved, `prisma migrate deploy` refuses to apply anything (P3009).",
				"With PostgreSQL a migration.sql runs in one transaction, so a failure normally leaves nothing behind;",
				"statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) or an explicit COMMIT can leave part of it:",
				"the drift check shows what is in the database beyond the applied migrations.",
			],
			commands: resolveCommands(ctx, row.migration_name),
			problem: true,
			migration: row.migration_name,
		});
	}
	const failedNames = new Set(unfinished.map((r) => r.migration_name));
	const rolledBack = new Set<string>();
	for (const i of h.issues) {
		if (i.kind === "failed") continue; // above, from the rows themselves
		if (i.kind === "pending") continue; // summarised below
		if (i.kind === "rolled_back") {
			// Older attempts of a migration that failed again, or several attempts: one line is enough.
			if (failedNames.has(i.migration) || rolledBack.has(i.migration)) continue;
			rolledBack.add(i.migration);
		}
		out.push({
			kind: "history",
			title: `Migration ${i.migration}: ${i.detail}`,
			detail: [],
			commands:
				i.kind === "checksum_mismatch"
					? [
							`git log -p -- ${displayPath(migrationsDir(ctx.env))}/${i.migration}/migration.sql   # who changed it, and how`,
							"# Restore the file as it was applied; put further changes in a new migration (npx tsx runbooks/dev-migrate.ts).",
						]
					: i.kind === "missing_locally"
						? [
								"git log --all --oneline -- 'prisma/migrations/*'   # find the commit that has it, and check out that folder",
							]
						: [
								"npx tsx runbooks/deploy-production.ts   # applies it again, from the start",
							],
			problem: i.kind === "checksum_mismatch" || i.kind === "missing_locally",
			migration: i.migration,
		});
	}
	if (h.pending.length) {
		out.push({
			kind: "history",
			title: `${h.pending.length} migration(s) not yet applied: ${h.pending.map((m) => m.name).join(", ")}`,
			detail: [],
			commands: ["npx tsx runbooks/deploy-production.ts"],
			problem: false,
		});
	}
	return out;
}

// --- locks -------------------------------------------------------------------------------------

function lockDiagnoses(
	ctx: Ctx,
	s: ActivitySnapshot,
	holders: number[],
): { found: Diagnosis[]; waiting: SessionDetail[]; roots: BlockNode[] } {
	const migrations = migrationSessions(s.sessions, holders);
	const waiting = migrations.filter((m) => m.blockedBy.length > 0);
	const nodes = flattenTree(s.tree);
	const roots: BlockNode[] = [];
	const chains: BlockNode[] = [];
	for (const w of waiting) {
		const at = nodes.find((x) => x.node.pid === w.pid);
		if (at && !roots.includes(at.root)) {
			roots.push(at.root);
			chains.push(at.root);
		}
	}
	const found: Diagnosis[] = [];
	for (const root of chains) {
		const stuck = waiting.filter((w) =>
			flattenTree([root]).some((x) => x.node.pid === w.pid),
		);
		const longest = Math.max(...stuck.map((w) => w.waitingFor?.waitingMs ?? 0));
		const effect = cancelEffect(root);
		const db = ctx.target.direct.database;
		found.push({
			kind: "hanging_migration",
			title: `Migration session ${stuck.map((w) => `pid ${w.pid}`).join(", ")} has waited ${formatDuration(longest)} for ${
				stuck[0].waitingFor?.description ?? "a lock"
			}, held by pid ${root.pid} (${root.state ?? "?"})`,
			detail: [
				...renderTree([root], {
					thresholdMs: Number.POSITIVE_INFINITY,
					width: 90,
				}),
				"While the migration waits for its lock, every later query on that table queues behind it.",
				root.pid === 0
					? "The root is a prepared transaction."
					: `The blocker: ${sessionLine(root, 120)}`,
				root.pid === 0
					? ""
					: `A cancel would ${effect.releasesLocks ? "" : "not "}help: ${effect.note}.`,
			].filter(Boolean),
			commands:
				root.pid === 0
					? [
							"select gid, prepared, owner from pg_prepared_xacts;   -- then COMMIT PREPARED '<gid>' or ROLLBACK PREPARED '<gid>'",
						]
					: [
							...(effect.releasesLocks
								? [
										`${TROUBLESHOOT} --cancel-blocker   # = ${signalSql("cancel", root.pid)}`,
									]
								: []),
							`${TROUBLESHOOT} --terminate-blocker ${confirmFlags(ctx)}   # = ${signalSql("terminate", root.pid)} (rolls back its transaction)`,
							`# or stop the migration instead: ${signalSql("cancel", stuck[0].pid)}   (pid ${stuck[0].pid}, the migration)`,
							"npx tsx runbooks/monitor.ts --watch 2   # watch the chain",
						],
			problem: true,
		});
		void db;
	}
	for (const m of migrations.filter(
		(x) => !x.blockedBy.length && x.state === "active",
	)) {
		found.push({
			kind: "running_migration",
			title: `pid ${m.pid} is running DDL for ${formatDuration(m.queryAgeMs ?? 0)} and waits for no lock: ${oneLineOf(m.query)}`,
			detail: [
				`wait event: ${m.waitEventType ? `${m.waitEventType}:${m.waitEvent}` : "none (working)"}`,
			],
			commands: ["npx tsx runbooks/monitor.ts --watch 2"],
			problem: false,
		});
	}
	return { found, waiting, roots };
}

// --- drift ---------------------------------------------------------------------------------------

/** Drift of the database against the migrations its history records as applied, as diagnoses. */
async function measureDrift(
	ctx: Ctx,
	h: History,
	unfinished: AppliedRow[],
): Promise<Diagnosis[]> {
	const applied = [
		...new Set(
			h.applied
				.filter((r) => r.finished_at && !r.rolled_back_at)
				.map((r) => r.migration_name),
		),
	];
	const databaseVsMigrations = await databaseDriftAgainst(
		ctx.target,
		ctx.env,
		applied,
		ctx.signal,
	);
	ctx.state.drift = {
		...ctx.state.drift,
		checked: true,
		databaseVsMigrations,
		against: applied,
	};
	if (databaseVsMigrations.length === 0) return [];
	const local = ctx.target.isLocal && !ctx.target.isProduction;
	const failed = unfinished.map((r) => r.migration_name);
	return [
		{
			kind: "drift",
			title: `Drift: the database differs from its ${applied.length} applied migrations (${explainDrift(databaseVsMigrations).length} change(s))`,
			detail: [
				...explainDrift(databaseVsMigrations).map((x) => `- ${x}`),
				...(failed.length
					? [
							`Part of it may be what ${failed.join(", ")} left behind before failing: compare with its migration.sql.`,
						]
					: []),
				"SQL that would take the database back to what its applied migrations build:",
				...databaseVsMigrations.flatMap((sql) =>
					sql.split("\n").map((l) => `  ${l}`),
				),
			],
			commands: [
				"# If the change belongs in the app: put it in prisma/schema.prisma and write its migration,",
				"npx tsx runbooks/dev-migrate.ts --name <name> --create-only",
				"# then record that migration as applied here, since the change is already in this database:",
				`${TROUBLESHOOT} --resolve-applied <that migration's folder name>`,
				"# If it was a mistake: take a backup, then undo it with the SQL above:",
				"npx tsx runbooks/backup.ts",
				...(local
					? [
							"# Local database only, dropping all data and reapplying every migration:",
							`${TROUBLESHOOT} --reset`,
						]
					: []),
			],
			problem: true,
		},
	];
}

// --- NOT NULL without default --------------------------------------------------------------------

const NULLS_IN_LOGS =
	/column "([^"]+)" of relation "([^"]+)" contains null values/i;

function columnOf(statement: string): string | null {
	const m =
		/ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?("(?:[^"]|"")+"|[\w$]+)/i.exec(
			statement,
		) ??
		/ALTER\s+COLUMN\s+("(?:[^"]|"")+"|[\w$]+)\s+SET\s+NOT\s+NULL/i.exec(
			statement,
		);
	if (!m) return null;
	return m[1].startsWith('"') ? m[1].slice(1, -1).replace(/""/g, '"') : m[1];
}

/** The SQL type of an added NOT NULL column, when the statement names it. */
function typeOf(statement: string): string | null {
	const m =
		/ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:"(?:[^"]|"")+"|[\w$]+)\s+(.+?)\s+NOT\s+NULL/i.exec(
			statement,
		);
	if (!m) return null;
	const type = m[1].trim().replace(/^"([\w$]+)"$/, "$1");
	return /^[\w ().,]+$/.test(type)
		? type.toLowerCase()
		: `'${type.replace(/'/g, "'\\''")}'`;
}

async function tableHasRows(
	db: Db,
	table: string | null,
): Promise<boolean | null> {
	if (!table) return null;
	const { rows } = await db.query<{ reg: string | null }>(
		"select to_regclass($1)::text as reg",
		[table],
	);
	if (!rows[0].reg) return false;
	const r = await db.query<{ any: boolean }>(
		`select exists (select 1 from ${rows[0].reg}) as any`,
	);
	return r.rows[0].any;
}

// --- the runbook ---------------------------------------------------------------------------------

await runRunbook<State>({
	name: "troubleshoot",
	summary:
		"Diagnose failed or hanging migrations, drift and NOT NULL columns without default; offer the fixes.",
	description:
		"Reads _prisma_migrations, pg_stat_activity/pg_locks and Prisma's migrate diff, and reports each problem\n" +
		"with the exact commands that resolve it. Changes something only when asked: interactively by choosing\n" +
		"(then confirming), or with one of --resolve-rolled-back, --resolve-applied, --cancel-blocker (y/n or\n" +
		"--yes), --terminate-blocker, --reset (type the database name, or --yes --confirm <database>).\n" +
		"Marking a migration rolled back or applied does what `prisma migrate resolve` does, directly on\n" +
		"_prisma_migrations (Prisma's resolve needs the native engine); --engine-native or PRISMA_ENGINE=native\n" +
		"runs Prisma's own instead. Reset (`prisma migrate reset`) refuses any target that is not local or that\n" +
		"is marked production (exit 3). Exit 0 when nothing is wrong (or everything found was resolved), 1 otherwise.",
	flags: {
		"resolve-rolled-back": {
			type: "string",
			value: "<migration>",
			description:
				"Mark a failed migration rolled back (as prisma migrate resolve --rolled-back).",
		},
		"resolve-applied": {
			type: "string",
			value: "<migration>",
			description:
				"Mark a migration applied, its changes made by hand (as prisma migrate resolve --applied).",
		},
		"cancel-blocker": {
			type: "boolean",
			description:
				"Cancel the statement that holds the lock a migration waits for.",
		},
		"terminate-blocker": {
			type: "boolean",
			description:
				"Terminate the session that holds the lock a migration waits for (rolls back its transaction).",
		},
		reset: {
			type: "boolean",
			description:
				"Local databases only: drop everything and reapply all migrations (prisma migrate reset).",
		},
		"skip-drift": {
			type: "boolean",
			description:
				"Skip the drift check (it runs Prisma three times, several seconds).",
		},
		"engine-native": {
			type: "boolean",
			description:
				"Resolve through Prisma's CLI with its native engine (downloaded by Prisma).",
		},
	},
	env: {
		PRISMA_ENGINE:
			"Prisma schema engine: wasm (default, offline) or native (also makes resolve use Prisma's CLI).",
	},
	examples: [
		"npx tsx runbooks/troubleshoot.ts",
		"npx tsx runbooks/troubleshoot.ts --skip-drift --json | jq '.diagnoses'",
		"npx tsx runbooks/troubleshoot.ts --resolve-rolled-back 20241230000000_comprehensive_schema --yes",
		"npx tsx runbooks/troubleshoot.ts --terminate-blocker --yes --confirm faceswap",
		"npx tsx runbooks/troubleshoot.ts --reset            # local databases only",
	],
	state: () => ({
		action: null,
		unfinished: [],
		prismaLockHolders: [],
		waitingMigrations: [],
		blockers: [],
		drift: {
			checked: false,
			databaseVsMigrations: [],
			migrationsVsSchema: [],
			against: [],
		},
		required: [],
		diagnoses: [],
		done: [],
		remaining: [],
	}),
	steps: [
		{
			title: "Check the requested action",
			async run(ctx) {
				const action = actionFromFlags(ctx);
				ctx.state.action = action;
				if (action?.kind === "reset") refuseReset(ctx);
				if (
					action?.kind === "applied" &&
					!readLocalMigrations(migrationsDir(ctx.env)).some(
						(m) => m.name === action.migration,
					)
				) {
					throw usageError(
						`The migration ${action.migration} could not be found in ${displayPath(migrationsDir(ctx.env))} (P3017). Nothing was changed.`,
						"Pass the whole folder name, e.g. 20241230000000_comprehensive_schema.",
					);
				}
				return {
					summary: action
						? `requested: ${describeAction(action)} (after the diagnosis)`
						: "none: diagnosis only; each finding prints the commands that resolve it",
				};
			},
		},
		{
			title: "Read the migration history (_prisma_migrations)",
			async run(ctx) {
				const db = await ctx.db();
				const h = await readHistory(db, migrationsDir(ctx.env));
				const holders = await prismaLockHolders(db);
				ctx.state.history = h;
				ctx.state.prismaLockHolders = holders;
				ctx.state.unfinished = h.applied.filter(
					(r) => r.finished_at === null && r.rolled_back_at === null,
				);
				if (!h.tableMissing) {
					ctx.log(
						`${h.local.length} migrations in ${displayPath(migrationsDir(ctx.env))}; ${h.applied.length} rows in _prisma_migrations; latest applied: ${h.latestApplied ?? "none"}`,
					);
				}
				return conclude(
					ctx,
					historyDiagnoses(ctx, h, ctx.state.unfinished, holders),
					"every migration applied, none failed",
					{
						latest_applied: h.latestApplied,
						issues: h.issues,
						unfinished: ctx.state.unfinished,
					},
				);
			},
		},
		{
			title:
				"Look for a migration hanging on a lock (pg_locks, pg_blocking_pids)",
			async run(ctx) {
				const s = await readActivity(await ctx.db());
				ctx.state.activity = s;
				const { found, waiting, roots } = lockDiagnoses(
					ctx,
					s,
					ctx.state.prismaLockHolders,
				);
				ctx.state.waitingMigrations = waiting;
				ctx.state.blockers = roots;
				const otherWaits = flattenTree(s.tree).filter(
					(x) => x.depth > 0 && x.node.database === s.database,
				).length;
				return conclude(
					ctx,
					found,
					otherWaits
						? `no migration waits; ${otherWaits} other session(s) wait for locks (npx tsx runbooks/monitor.ts)`
						: "no migration waits for a lock",
					{ waiting_migrations: waiting.map((w) => w.pid), tree: s.tree },
				);
			},
		},
		{
			title: "Check drift against the applied migrations (prisma migrate diff)",
			skip: (ctx) =>
				ctx.flags["skip-drift"]
					? "--skip-drift"
					: ctx.state.history?.tableMissing
						? "nothing was ever deployed here"
						: migrationBusy(ctx)
							? "a migration is running or waiting for a lock, and Prisma's introspection would queue behind its lock; rerun once it is resolved"
							: false,
			async run(ctx) {
				const h = ctx.state.history as History;
				const dir = displayPath(migrationsDir(ctx.env));
				ctx.log(
					`${prismaCommand(["db", "pull", "--print"])} > database.prisma`,
				);
				ctx.log(
					`${prismaCommand(["migrate", "diff", "--from-schema-datamodel", "database.prisma", "--to-migrations", "<the applied migrations>", "--script"])}`,
				);
				ctx.log(
					prismaCommand([
						"migrate",
						"diff",
						"--from-migrations",
						dir,
						"--to-schema-datamodel",
						"prisma/schema.prisma",
						"--script",
					]),
				);
				const migrationsVsSchema = await schemaDrift(
					ctx.target,
					ctx.env,
					ctx.signal,
				);
				const found = await measureDrift(ctx, h, ctx.state.unfinished);
				ctx.state.drift.migrationsVsSchema = migrationsVsSchema;
				if (migrationsVsSchema.length) {
					found.push({
						kind: "schema_drift",
						title: `prisma/schema.prisma has ${migrationsVsSchema.length} change(s) no migration holds`,
						detail: migrationsVsSchema.flatMap((sql) =>
							sql.split("\n").map((l) => `  ${l}`),
						),
						commands: [
							"npx tsx runbooks/dev-migrate.ts --name <name>   # writes (and locally applies) the migration",
						],
						problem: true,
					});
				}
				return conclude(
					ctx,
					found,
					"no drift: the database is what its applied migrations build",
					ctx.state.drift,
				);
			},
		},
		{
			title: "Look for NOT NULL columns added without a default",
			async run(ctx) {
				const db = await ctx.db();
				const h = ctx.state.history as History;
				const failedNames = new Set(
					ctx.state.unfinished.map((r) => r.migration_name),
				);
				const sources: Array<[string, string]> = [
					...h.pending.map((m): [string, string] => [
						`pending migration ${m.name}`,
						m.sql,
					]),
					...h.local
						.filter((m) => failedNames.has(m.name))
						.map((m): [string, string] => [
							`failed migration ${m.name}`,
							m.sql,
						]),
				];
				if (ctx.state.drift.migrationsVsSchema.length) {
					sources.push([
						"prisma/schema.prisma (not yet migrated)",
						ctx.state.drift.migrationsVsSchema.join("\n"),
					]);
				}
				const found: RequiredField[] = [];
				for (const [source, sql] of sources) {
					const lint = await lintSql(sql, source);
					for (const f of lint.findings.filter(
						(x) =>
							x.rule === "adding-required-field" ||
							x.rule === "adding-not-nullable-field",
					)) {
						const table = f.table;
						found.push({
							source,
							table,
							column: columnOf(f.statement),
							statement: f.statement,
							tableHasRows: await tableHasRows(db, table),
						});
					}
				}
				for (const row of ctx.state.unfinished) {
					const m = NULLS_IN_LOGS.exec(row.logs ?? "");
					if (m && !found.some((f) => f.column === m[1])) {
						found.push({
							source: `failed migration ${row.migration_name} (its logs)`,
							// The server's message names the relation as stored: quote it to look it up exactly.
							table: qualifiedName({ schema: null, name: m[2] }),
							column: m[1],
							statement: oneLineOf(row.logs ?? ""),
							tableHasRows: await tableHasRows(
								db,
								qualifiedName({ schema: null, name: m[2] }),
							),
						});
					}
				}
				ctx.state.required = found;
				ctx.log(
					`Checked: ${sources.length ? sources.map(([s]) => s).join(", ") : "nothing pending, failed or unmigrated"}.`,
				);
				const diagnoses = found.map(
					(f): Diagnosis => ({
						kind: "required_field",
						title: `${f.source}: required column ${(f.table ?? "?").replace(/^public\./, "")}.${f.column ?? "?"} without a default${
							f.tableHasRows
								? " on a table with rows: it fails (existing rows have no value)"
								: ""
						}`,
						detail: [
							f.statement,
							f.tableHasRows === false
								? "The table is empty now, so it would pass here, but fails wherever the table has rows."
								: "Add it as optional, backfill it in batches, then make it required: add-required-field does all three.",
						],
						commands: [
							`npx tsx runbooks/add-required-field.ts --table ${(f.table ?? "<table>").replace(/^public\./, "")} --column ${f.column ?? "<column>"} --type ${typeOf(f.statement) ?? "<sql type>"} --backfill '<value for existing rows, e.g. a constant or an expression of the row>' --dry-run`,
							"# or --default '<constant>' instead of --backfill, when every row may keep the same value",
							...(f.source.startsWith("failed")
								? [
										`${TROUBLESHOOT} --resolve-rolled-back ${f.source.split(" ")[2]}   # first, to clear the failure`,
									]
								: []),
						],
						problem: f.tableHasRows !== false,
					}),
				);
				return conclude(ctx, diagnoses, "none found", found);
			},
		},
		{
			title: "Choose what to do",
			async run(ctx) {
				let action = ctx.state.action;
				if (!action) {
					const choices = choicesFor(ctx);
					if (choices.length > 1) {
						const picked = await ctx.choose(
							"What do you want to do? (each choice shows its SQL and asks again)",
							choices,
							"none",
						);
						action = parseChoice(picked);
						ctx.state.action = action;
					}
				}
				if (!action) {
					const problems = ctx.state.diagnoses.filter((d) => d.problem);
					if (problems.length)
						ctx.log(
							"Nothing will be changed. To act, run one of the commands printed above.",
						);
					return {
						summary: problems.length
							? "no change chosen"
							: "nothing to resolve",
					};
				}
				await prepare(ctx, action);
				return { summary: `chosen: ${describeAction(action)}` };
			},
		},
		{
			title: "Mark the failed migration rolled back (_prisma_migrations)",
			kind: "change",
			skip: (ctx) =>
				ctx.state.action?.kind === "rolled-back" ? false : "not chosen",
			plan: (ctx) => resolvePlanLines(ctx),
			async run(ctx) {
				return resolve(ctx, "rolled-back");
			},
			onFailure: () =>
				`_prisma_migrations is unchanged (the change runs in one transaction). Check the state with: ${TROUBLESHOOT} --skip-drift`,
		},
		{
			title: "Mark the migration applied (_prisma_migrations)",
			kind: "change",
			skip: (ctx) =>
				ctx.state.action?.kind === "applied" ? false : "not chosen",
			plan: (ctx) => resolvePlanLines(ctx),
			async run(ctx) {
				return resolve(ctx, "applied");
			},
			onFailure: () =>
				`_prisma_migrations is unchanged (the change runs in one transaction). Check with: ${TROUBLESHOOT} --skip-drift`,
		},
		{
			title: "Cancel the statement blocking the migration",
			kind: "change",
			skip: (ctx) =>
				ctx.state.action?.kind === "cancel-blocker" ? false : "not chosen",
			plan: (ctx) => signalPlan(ctx, "cancel"),
			async run(ctx) {
				return signalBlockers(ctx, "cancel");
			},
			onFailure: () =>
				"The blocker may still be running: npx tsx runbooks/monitor.ts shows it.",
		},
		{
			title:
				"Terminate the session blocking the migration (rolls back its transaction)",
			kind: "destroy",
			skip: (ctx) =>
				ctx.state.action?.kind === "terminate-blocker" ? false : "not chosen",
			plan: (ctx) => signalPlan(ctx, "terminate"),
			async run(ctx) {
				return signalBlockers(ctx, "terminate");
			},
			onFailure: () =>
				"The blocker may still be running: npx tsx runbooks/monitor.ts shows it.",
		},
		{
			title:
				"Reset the local database (prisma migrate reset: drops all data, reapplies every migration)",
			kind: "destroy",
			skip: (ctx) =>
				ctx.state.action?.kind === "reset" ? false : "not chosen",
			plan: (ctx) => [
				`-- drops every table, type and row in ${ctx.target.direct.display}, then applies all ${ctx.state.history?.local.length ?? "the"} migrations`,
				prismaCommand(RESET_ARGS),
			],
			async run(ctx) {
				refuseReset(ctx);
				const lock = await acquireRunLock(ctx.target.direct, "troubleshoot");
				ctx.defer(() => lock.release());
				const run = await runPrisma(
					RESET_ARGS,
					ctx.target,
					ctx.env,
					ctx.signal,
				);
				if (run.exitCode !== 0)
					throw new RunbookError(
						`prisma migrate reset failed: ${prismaErrorText(run).split("\n").slice(0, 6).join(" ")}`,
					);
				ctx.state.done.push("reset");
				return {
					summary: `reset: ${ctx.state.history?.local.length ?? ""} migrations applied to an empty database`,
				};
			},
			onFailure: () =>
				"The database may be partly rebuilt: a rerun resets it again (or restore a backup instead).",
		},
		{
			title: "Check again and conclude",
			async run(ctx) {
				let diagnoses = ctx.state.diagnoses;
				if (ctx.state.done.length && !ctx.dryRun) {
					const db = await ctx.db();
					const h = await readHistory(db, migrationsDir(ctx.env));
					const holders = await prismaLockHolders(db);
					const unfinished = h.applied.filter(
						(r) => r.finished_at === null && r.rolled_back_at === null,
					);
					const locks = lockDiagnoses(ctx, await readActivity(db), holders);
					const reset = ctx.state.done.includes("reset");
					const resolved =
						ctx.state.action?.kind === "rolled-back" ||
						ctx.state.action?.kind === "applied";
					// Marking a migration applied or rolled back changes what "applied" means: measure again.
					const remeasure =
						resolved && ctx.state.drift.checked && !migrationBusy(ctx);
					const carried = diagnoses.filter(
						(d) =>
							(d.kind === "drift" && !reset && !remeasure) ||
							d.kind === "schema_drift" ||
							// A failed migration marked rolled back runs again on the next deploy: its NOT NULL problem stays.
							(d.kind === "required_field" && !reset),
					);
					const drift = remeasure ? await measureDrift(ctx, h, unfinished) : [];
					diagnoses = [
						...historyDiagnoses(ctx, h, unfinished, holders),
						...locks.found,
						...drift,
						...carried,
					];
					for (const d of diagnoses.filter(
						(x) => x.kind === "history" || x.kind.endsWith("_migration"),
					)) {
						(d.problem ? ctx.warn : ctx.log)(d.title);
					}
					for (const d of drift) printDiagnosis(ctx, d);
					if (remeasure && drift.length === 0) {
						ctx.log("No drift against the applied migrations any more.");
					}
				}
				const remaining = diagnoses.filter((d) => d.problem);
				ctx.state.remaining = remaining;
				if (ctx.state.done.length)
					ctx.log(`Done: ${ctx.state.done.join("; ")}.`);
				for (const d of remaining)
					ctx.log(style.red(`still to resolve: ${d.title}`));
				return {
					status: remaining.length ? "problem" : "ok",
					summary: remaining.length
						? `${remaining.length} problem(s) to resolve`
						: ctx.state.done.length
							? "resolved; nothing else found"
							: "no problem found",
				};
			},
		},
	],
	summarize: (ctx, ok) => ({
		healthy: ok && ctx.state.remaining.length === 0,
		action: ctx.state.action
			? { ...ctx.state.action, description: describeAction(ctx.state.action) }
			: null,
		done: ctx.state.done,
		diagnoses: ctx.state.diagnoses,
		remaining: ctx.state.remaining.map((d) => d.title),
		drift: ctx.state.drift,
		latest_applied: ctx.state.history?.latestApplied ?? null,
	}),
});

// --- choosing and acting -------------------------------------------------------------------------

function choicesFor(ctx: Ctx): Choice[] {
	const out: Choice[] = [];
	for (const d of ctx.state.diagnoses) {
		if (
			(d.kind === "failed_migration" || d.kind === "unfinished_migration") &&
			d.migration
		) {
			out.push({
				value: `rolled-back:${d.migration}`,
				title: `Mark ${d.migration} rolled back`,
				description:
					"It changed nothing or you undid it; fix it, then deploy again",
			});
			out.push({
				value: `applied:${d.migration}`,
				title: `Mark ${d.migration} applied`,
				description: "You completed its changes by hand",
			});
		}
	}
	if (ctx.state.blockers.length) {
		if (
			ctx.state.blockers.some(
				(b) => b.pid !== 0 && cancelEffect(b).releasesLocks,
			)
		) {
			out.push({
				value: "cancel-blocker",
				title: `Cancel the blocking statement (pid ${ctx.state.blockers.map((b) => b.pid).join(", ")})`,
			});
		}
		if (ctx.state.blockers.some((b) => b.pid !== 0)) {
			out.push({
				value: "terminate-blocker",
				title: `Terminate the blocking session (pid ${ctx.state.blockers.map((b) => b.pid).join(", ")}), rolling back its transaction`,
			});
		}
	}
	const needsReset = ctx.state.diagnoses.some(
		(d) =>
			d.problem &&
			["drift", "failed_migration", "unfinished_migration", "history"].includes(
				d.kind,
			),
	);
	if (needsReset && ctx.target.isLocal && !ctx.target.isProduction) {
		out.push({
			value: "reset",
			title:
				"Reset this local database (drops all data, reapplies every migration)",
		});
	}
	if (out.length)
		out.push({
			value: "none",
			title: "Change nothing now",
			description: "The commands are printed above",
		});
	return out;
}

function parseChoice(value: string): Action | null {
	if (value === "none") return null;
	const [kind, ...rest] = value.split(":");
	if (kind === "rolled-back" || kind === "applied")
		return { kind, migration: rest.join(":") };
	if (
		kind === "cancel-blocker" ||
		kind === "terminate-blocker" ||
		kind === "reset"
	)
		return { kind };
	return null;
}

/** Checks that the action applies to what was found, and plans it. */
async function prepare(ctx: Ctx, action: Action): Promise<void> {
	switch (action.kind) {
		case "rolled-back":
		case "applied": {
			const db = await ctx.db();
			ctx.state.plan =
				action.kind === "rolled-back"
					? await planRolledBack(db, action.migration)
					: await planApplied(
							db,
							action.migration,
							readLocalMigrations(migrationsDir(ctx.env)),
						);
			if (ctx.state.prismaLockHolders.length) {
				throw refusal(
					`A Prisma migration is running (pid ${ctx.state.prismaLockHolders.join(", ")} holds Prisma Migrate's lock): not changing _prisma_migrations under it. Nothing was changed.`,
					"Wait for it to end, or stop it first (see the lock diagnosis above).",
				);
			}
			return;
		}
		case "cancel-blocker":
		case "terminate-blocker": {
			const blockers = ctx.state.blockers.filter((b) => b.pid !== 0);
			if (blockers.length === 0) {
				throw refusal(
					"No migration is waiting for a lock held by a session: there is no blocker to cancel or terminate. Nothing was changed.",
					"npx tsx runbooks/monitor.ts shows every lock wait.",
				);
			}
			if (
				action.kind === "cancel-blocker" &&
				!blockers.some((b) => cancelEffect(b).releasesLocks)
			) {
				throw refusal(
					`Cancelling cannot free the migration: ${blockers.map((b) => `pid ${b.pid}: ${cancelEffect(b).note}`).join("; ")}. Nothing was changed.`,
					`Terminate it instead: ${TROUBLESHOOT} --terminate-blocker ${confirmFlags(ctx)}`,
				);
			}
			return;
		}
		case "reset":
			refuseReset(ctx);
			return;
	}
}

function resolvePlanLines(ctx: Ctx): string[] {
	const p = ctx.state.plan;
	if (!p) return [];
	if (useNative(ctx)) return [`PRISMA_ENGINE=native ${p.nativeCommand}`];
	return [
		"BEGIN;",
		`SELECT pg_try_advisory_xact_lock(72707369);  -- Prisma Migrate's lock: refuses while a migration runs`,
		...p.sql,
		"COMMIT;",
		`-- the same as: ${p.nativeCommand} (native engine only)`,
	];
}

async function resolve(ctx: Ctx, kind: ResolveKind): Promise<StepResult> {
	const plan = ctx.state.plan as ResolvePlan;
	const lock = await acquireRunLock(ctx.target.direct, "troubleshoot");
	ctx.defer(() => lock.release());
	if (useNative(ctx)) {
		const run = await runPrisma(
			resolveArgs(kind, plan.migration),
			ctx.target,
			{ ...ctx.env, PRISMA_ENGINE: "native" },
			ctx.signal,
		);
		if (run.exitCode !== 0) {
			throw new RunbookError(
				`prisma migrate resolve failed: ${prismaErrorText(run).split("\n").slice(0, 4).join(" ")}`,
				1,
				`Without --engine-native this runbook makes the same change itself: ${TROUBLESHOOT} --resolve-${kind} ${plan.migration}`,
			);
		}
	} else {
		await applyResolve(await ctx.db(), plan);
	}
	const what = kind === "rolled-back" ? "rolled back" : "applied";
	ctx.state.done.push(`${plan.migration} marked ${what}`);
	if (kind === "rolled-back") {
		ctx.log(
			`Next: fix prisma/migrations/${plan.migration}/migration.sql or the data, then deploy; it runs again from the start.`,
		);
	}
	return {
		summary: `${plan.migration} marked ${what}${useNative(ctx) ? " (by Prisma's CLI)" : ""}`,
		data: plan,
	};
}

function signalPlan(ctx: Ctx, kind: SignalKind): string[] {
	const targets = ctx.state.blockers.filter(
		(b) =>
			b.pid !== 0 && (kind === "terminate" || cancelEffect(b).releasesLocks),
	);
	return targets.flatMap((b) => [
		`-- ${sessionLine(b, 120)}`,
		signalSql(kind, b.pid),
	]);
}

async function signalBlockers(ctx: Ctx, kind: SignalKind): Promise<StepResult> {
	const db = await ctx.db();
	const targets = ctx.state.blockers.filter(
		(b) =>
			b.pid !== 0 && (kind === "terminate" || cancelEffect(b).releasesLocks),
	);
	const results: string[] = [];
	for (const b of targets) {
		const r = await signalSession(db, b.pid, kind);
		results.push(
			`pid ${b.pid} ${kind === "cancel" ? "cancelled" : "terminated"} (${r.after ? `now ${r.after.state}` : "gone"})`,
		);
	}
	ctx.state.done.push(...results);
	return { summary: results.join("; "), data: results };
}

/** Any migration session (running DDL, holding or awaiting Prisma's lock) in this database. */
function migrationBusy(ctx: Ctx): boolean {
	const s = ctx.state.activity;
	return Boolean(
		s && migrationSessions(s.sessions, ctx.state.prismaLockHolders).length,
	);
}

/** Prisma's logs without the engine's backtrace frames ("0: sql_schema_connector::...", "at ...", "with ..."). */
function logLines(logs: string): string[] {
	const lines = logs.split("\n");
	const kept = lines.filter((l) => !/^\s+(\d+: |at |with )/.test(l));
	return kept.length < lines.length
		? [...kept, "(engine backtrace left out)"]
		: kept;
}

/** The line of a log or statement that says what went wrong. */
function oneLineOf(text: string): string {
	const lines = text
		.split("\n")
		.map((l) => l.trim())
		.filter(Boolean);
	const error = lines.find((l) => l.includes("ERROR:"));
	const first =
		(error ? error.slice(error.indexOf("ERROR:")) : undefined) ??
		lines.find((l) => /error|fail|violat|exist|null/i.test(l)) ??
		lines[0] ??
		"";
	const t = first.replace(/\s+/g, " ").trim();
	return t.length > 160 ? `${t.slice(0, 159)}…` : t;
}
