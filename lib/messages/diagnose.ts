// The words of troubleshoot: each diagnosis as a sentence, its detail and the exact commands that
// resolve it; the plans of its fixes; what it chose. Functions over what lib/diagnose found.

import type { Action } from "../diagnose/actions.ts";
import type { Diagnosis, Where } from "../diagnose/diagnosis.ts";
import type { LockFindings } from "../diagnose/locks.ts";
import type { RequiredField } from "../diagnose/required-fields.ts";
import { formatDuration, formatNames } from "../kit/format.ts";
import { explainDrift } from "../migrations/drift.ts";
import type { AppliedRow, History } from "../migrations/history.ts";
import { prismaCommand } from "../migrations/prisma-cli.ts";
import { type ResolvePlan, resolveArgs } from "../migrations/resolve.ts";
import type { BlockNode } from "../pg/blocking-tree.ts";
import { cancelEffect, type SignalKind, signalSql } from "../pg/signal.ts";
import { renderTree, sessionLine } from "./sessions.ts";

export const TROUBLESHOOT = "npx tsx runbooks/troubleshoot.ts";
const MONITOR = "npx tsx runbooks/monitor.ts --watch 2";
const MIGRATIONS_TABLE = "public._prisma_migrations";

export function resolveCommands(where: Where, migration: string): string[] {
	return [
		`# If it changed nothing (PostgreSQL rolled its transaction back) or you undid what it did, fix`,
		`# prisma/migrations/${migration}/migration.sql (or the data it tripped on), then:`,
		`${TROUBLESHOOT} --resolve-rolled-back ${migration}`,
		`#   = UPDATE ${MIGRATIONS_TABLE} SET rolled_back_at = now() WHERE migration_name = '${migration}' AND finished_at IS NULL AND rolled_back_at IS NULL;`,
		"#   then deploy again: the next `migrate deploy` runs it from the start (npx tsx runbooks/deploy-production.ts).",
		"# If you completed its changes by hand instead:",
		`${TROUBLESHOOT} --resolve-applied ${migration}`,
		`# Same through Prisma's CLI (native engine only): PRISMA_ENGINE=native ${prismaCommand(resolveArgs("rolled-back", migration))}`,
		...(where.resettable
			? [`# Local database only, dropping all data: ${TROUBLESHOOT} --reset`]
			: []),
	];
}

function unfinishedDiagnosis(
	where: Where,
	row: AppliedRow,
	holders: number[],
): Diagnosis {
	const logs = (row.logs ?? "").trim();
	const when = `started ${row.started_at.toISOString()} (${formatDuration(Date.now() - row.started_at.getTime())} ago), ${row.applied_steps_count} step(s) recorded`;
	if (!logs && holders.length)
		return {
			kind: "running_migration",
			title: `Migration ${row.migration_name} is running now (pid ${holders.join(", ")} holds Prisma Migrate's lock)`,
			detail: [
				when,
				"If it seems stuck, the lock diagnosis below shows what it waits for.",
			],
			commands: [MONITOR],
			problem: false,
			migration: row.migration_name,
		};
	const lines = logLines(logs);
	return {
		kind: logs ? "failed_migration" : "unfinished_migration",
		title: logs
			? `Migration ${row.migration_name} failed: ${oneLineOf(logs)}`
			: `Migration ${row.migration_name} started but never finished, and nothing runs it now (its process died or was killed)`,
		detail: [
			when,
			...(logs
				? [
						"Its logs in _prisma_migrations:",
						...lines.slice(0, 15).map((l) => `  | ${l}`),
					]
				: []),
			...(lines.length > 15
				? [
						`  | ... (select logs from ${MIGRATIONS_TABLE} where id = '${row.id}';)`,
					]
				: []),
			"Until it is resolved, `prisma migrate deploy` refuses to apply anything (P3009).",
			"With PostgreSQL a migration.sql runs in one transaction, so a failure normally leaves nothing behind;",
			"statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) or an explicit COMMIT can leave part of it:",
			"the drift check shows what is in the database beyond the applied migrations.",
		],
		commands: resolveCommands(where, row.migration_name),
		problem: true,
		migration: row.migration_name,
	};
}

/** The history's problems: failed and unfinished rows, changed or missing files, what is pending. */
export function historyDiagnoses(
	where: Where,
	h: History,
	unfinished: AppliedRow[],
	holders: number[],
): Diagnosis[] {
	if (h.tableMissing)
		return [
			{
				kind: "history",
				title:
					"No _prisma_migrations table: no migration was ever deployed to this database",
				detail: [
					`${h.local.length} migrations wait in ${where.migrationsDir}.`,
				],
				commands: [
					"npx tsx runbooks/deploy-production.ts   # or, on a local database: npx tsx runbooks/dev-migrate.ts",
				],
				problem: false,
			},
		];
	const out = unfinished.map((row) => unfinishedDiagnosis(where, row, holders));
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
							`git log -p -- ${where.migrationsDir}/${i.migration}/migration.sql   # who changed it, and how`,
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
	if (h.pending.length)
		out.push({
			kind: "history",
			title: `${h.pending.length} migration(s) not yet applied: ${formatNames(h.pending.map((m) => m.name))}`,
			detail: [],
			commands: ["npx tsx runbooks/deploy-production.ts"],
			problem: false,
		});
	return out;
}

/** A migration waiting in a blocking chain, and migrations busy with DDL. */
export function lockDiagnoses(f: LockFindings, where: Where): Diagnosis[] {
	const found: Diagnosis[] = f.chains.map(({ root, stuck, longestMs }) => {
		const effect = cancelEffect(root);
		const prepared = root.pid === 0;
		return {
			kind: "hanging_migration",
			title: `Migration session ${stuck.map((w) => `pid ${w.pid}`).join(", ")} has waited ${formatDuration(longestMs)} for ${
				stuck[0].waitingFor?.description ?? "a lock"
			}, held by pid ${root.pid} (${root.state ?? "?"})`,
			detail: [
				...renderTree([root], {
					thresholdMs: Number.POSITIVE_INFINITY,
					width: 90,
				}),
				"While the migration waits for its lock, every later query on that table queues behind it.",
				prepared
					? "The root is a prepared transaction."
					: `The blocker: ${sessionLine(root, 120)}`,
				prepared
					? ""
					: `A cancel would ${effect.releasesLocks ? "" : "not "}help: ${effect.note}.`,
			].filter(Boolean),
			commands: prepared
				? [
						"select gid, prepared, owner from pg_prepared_xacts;   -- then COMMIT PREPARED '<gid>' or ROLLBACK PREPARED '<gid>'",
					]
				: [
						...(effect.releasesLocks
							? [
									`${TROUBLESHOOT} --cancel-blocker   # = ${signalSql("cancel", root.pid)}`,
								]
							: []),
						`${TROUBLESHOOT} --terminate-blocker ${where.confirmFlags}   # = ${signalSql("terminate", root.pid)} (rolls back its transaction)`,
						`# or stop the migration instead: ${signalSql("cancel", stuck[0].pid)}   (pid ${stuck[0].pid}, the migration)`,
						`${MONITOR}   # watch the chain`,
					],
			problem: true,
		};
	});
	for (const m of f.running)
		found.push({
			kind: "running_migration",
			title: `pid ${m.pid} is running DDL for ${formatDuration(m.queryAgeMs ?? 0)} and waits for no lock: ${oneLineOf(m.query)}`,
			detail: [
				`wait event: ${m.waitEventType ? `${m.waitEventType}:${m.waitEvent}` : "none (working)"}`,
			],
			commands: [MONITOR],
			problem: false,
		});
	return found;
}

/** The database beyond (or short of) its applied migrations, with the SQL that undoes it. */
export function driftDiagnoses(
	drift: { against: string[]; databaseVsMigrations: string[] },
	failed: string[],
	where: Where,
): Diagnosis[] {
	const sql = drift.databaseVsMigrations;
	if (sql.length === 0) return [];
	return [
		{
			kind: "drift",
			title: `Drift: the database differs from its ${drift.against.length} applied migrations (${explainDrift(sql).length} change(s))`,
			detail: [
				...explainDrift(sql).map((x) => `- ${x}`),
				...(failed.length
					? [
							`Part of it may be what ${failed.join(", ")} left behind before failing: compare with its migration.sql.`,
						]
					: []),
				"SQL that would take the database back to what its applied migrations build:",
				...indented(sql),
			],
			commands: [
				"# If the change belongs in the app: put it in prisma/schema.prisma and write its migration,",
				"npx tsx runbooks/dev-migrate.ts --name <name> --create-only",
				"# then record that migration as applied here, since the change is already in this database:",
				`${TROUBLESHOOT} --resolve-applied <that migration's folder name>`,
				"# If it was a mistake: take a backup, then undo it with the SQL above:",
				"npx tsx runbooks/backup.ts",
				...(where.resettable
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

export function schemaDriftDiagnoses(
	migrationsVsSchema: string[],
): Diagnosis[] {
	if (migrationsVsSchema.length === 0) return [];
	return [
		{
			kind: "schema_drift",
			title: `prisma/schema.prisma has ${migrationsVsSchema.length} change(s) no migration holds`,
			detail: indented(migrationsVsSchema),
			commands: [
				"npx tsx runbooks/dev-migrate.ts --name <name>   # writes (and locally applies) the migration",
			],
			problem: true,
		},
	];
}

const indented = (sql: string[]) =>
	sql.flatMap((s) => s.split("\n").map((l) => `  ${l}`));

/** The commands the drift check runs, as the operator would type them. */
export function driftCheckCommands(migrationsDir: string): string[] {
	return [
		`${prismaCommand(["db", "pull", "--print"])} > database.prisma`,
		prismaCommand([
			"migrate",
			"diff",
			"--from-schema-datamodel",
			"database.prisma",
			"--to-migrations",
			"<the applied migrations>",
			"--script",
		]),
		prismaCommand([
			"migrate",
			"diff",
			"--from-migrations",
			migrationsDir,
			"--to-schema-datamodel",
			"prisma/schema.prisma",
			"--script",
		]),
	];
}

export function requiredFieldDiagnosis(f: RequiredField): Diagnosis {
	const table = (f.table ?? "?").replace(/^public\./, "");
	return {
		kind: "required_field",
		title: `${f.source}: required column ${table}.${f.column ?? "?"} without a default${
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
	};
}

/** The SQL type of an added NOT NULL column, when the statement names it (for --type). */
export function typeOf(statement: string): string | null {
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

/** What the history step prints first (nothing when the table is missing). */
export function historyLine(h: History, migrationsDir: string): string[] {
	return h.tableMissing
		? []
		: [
				`${h.local.length} migrations in ${migrationsDir}; ${h.applied.length} rows in _prisma_migrations; latest applied: ${h.latestApplied ?? "none"}`,
			];
}

/** Why the drift check does not run, or false. */
export function driftSkip(o: {
	skipDrift: boolean;
	tableMissing: boolean;
	busy: boolean;
}): string | false {
	if (o.skipDrift) return "--skip-drift";
	if (o.tableMissing) return "nothing was ever deployed here";
	if (o.busy)
		return "a migration is running or waiting for a lock, and Prisma's introspection would queue behind its lock; rerun once it is resolved";
	return false;
}

/** The first step's line: what the flags asked for. */
export const requested = (a: Action | null) =>
	a
		? `requested: ${describeAction(a)} (after the diagnosis)`
		: "none: diagnosis only; each finding prints the commands that resolve it";

/** The lock step's line when no migration waits. */
export const noMigrationWaits = (others: number) =>
	others
		? `no migration waits; ${others} other session(s) wait for locks (npx tsx runbooks/monitor.ts)`
		: "no migration waits for a lock";

/** What the NOT NULL check read. */
export const checkedSources = (sources: string[]) =>
	`Checked: ${sources.length ? sources.join(", ") : "nothing pending, failed or unmigrated"}.`;

/** The conclusion's one line. */
export function conclusion(remaining: number, done: number): string {
	return remaining
		? `${remaining} problem(s) to resolve`
		: done
			? "resolved; nothing else found"
			: "no problem found";
}

export function describeAction(a: Action | null): string {
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

/** The diagnosis as printed under its step: the title (a warning when a problem), detail, commands. */
export function diagnosisLines(d: Diagnosis): string[] {
	return [
		...d.detail.map((l) => `  ${l}`),
		...(d.commands.length
			? ["  Commands:", ...d.commands.map((c) => `    ${c}`)]
			: []),
	];
}

/** A diagnosis step's status and summary: a problem is a warning until the verdict at the end. */
export function findingsSummary(
	found: Diagnosis[],
	ok: string,
): { status: "ok" | "warning"; summary: string } {
	const problems = found.filter((d) => d.problem);
	return {
		status: problems.length ? "warning" : "ok",
		summary: problems.length
			? problems.map((d) => d.title).join("; ")
			: found.length
				? found.map((d) => d.title).join("; ")
				: ok,
	};
}

export function resolvePlanLines(plan: ResolvePlan, native: boolean): string[] {
	if (native) return [`PRISMA_ENGINE=native ${plan.nativeCommand}`];
	return [
		"BEGIN;",
		`SELECT pg_try_advisory_xact_lock(72707369);  -- Prisma Migrate's lock: refuses while a migration runs`,
		...plan.sql,
		"COMMIT;",
		`-- the same as: ${plan.nativeCommand} (native engine only)`,
	];
}

export function signalPlanLines(
	targets: BlockNode[],
	kind: SignalKind,
): string[] {
	return targets.flatMap((b) => [
		`-- ${sessionLine(b, 120)}`,
		signalSql(kind, b.pid),
	]);
}

/** Prisma's logs without the engine's backtrace frames ("0: sql_schema_connector::...", "at ...", "with ..."). */
export function logLines(logs: string): string[] {
	const lines = logs.split("\n");
	const kept = lines.filter((l) => !/^\s+(\d+: |at |with )/.test(l));
	return kept.length < lines.length
		? [...kept, "(engine backtrace left out)"]
		: kept;
}

/** The line of a log or statement that says what went wrong. */
export function oneLineOf(text: string): string {
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
