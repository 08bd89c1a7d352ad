// The words of a production deploy, from typed results: the advice for an unfinished migration,
// what the database holds after a failure and the way back, the apply step's running lines, its
// plan, the confirmation and the closing summary.

import type { BackupManifest } from "../backup/archive.ts";
import { formatMs, formatNames } from "../kit/format.ts";
import {
	backoffMs,
	DEPLOY_ARGS,
	type DeployEvent,
	type DeployOutcome,
	type DeploySettings,
	deployCommand,
	type InvalidIndex,
	type UnfinishedState,
} from "../migrations/deploy.ts";
import type { Preflight } from "../migrations/preflight.ts";
import { quoteLiteral } from "../pg/db.ts";
import { describeSession } from "./sessions.ts";

export const markRolledBackSql = (name: string) =>
	`UPDATE "_prisma_migrations" SET rolled_back_at = now() WHERE migration_name = ${quoteLiteral(name)} AND finished_at IS NULL AND rolled_back_at IS NULL;`;

/** How to resolve an unfinished migration, from what the database holds (unfinishedState). */
export function unfinishedAdvice(
	migration: string,
	s: UnfinishedState,
): string {
	const applied = `Mark it applied, then rerun the deploy:\n  npx tsx runbooks/troubleshoot.ts --resolve-applied ${migration}`;
	if (s.kind === "concurrent") {
		if (s.running)
			return `Its CREATE INDEX CONCURRENTLY is still running in pid ${s.running}: wait for it to end (npx tsx runbooks/monitor.ts), then rerun the deploy.`;
		if (s.invalid.length)
			return `Its CREATE INDEX CONCURRENTLY was interrupted and left ${s.invalid.join(", ")} INVALID in the database (the rest of it is not there). Drop it, mark the migration rolled back, then rerun the deploy:\n${s.invalid.map((i) => `  DROP INDEX CONCURRENTLY IF EXISTS ${i};`).join("\n")}\n  ${markRolledBackSql(migration)}`;
		if (s.valid.length === s.builds)
			return `Its index build completed (${s.valid.join(", ")} valid) but was never recorded. ${applied}`;
		return `None of it is in the database (no index it builds exists). Mark it rolled back, then rerun the deploy:\n  ${markRolledBackSql(migration)}`;
	}
	if (s.kind === "applied")
		return `Its changes are all in the database: it committed, but its process ended before Prisma recorded it. ${applied}`;
	if (s.kind === "rolled-back")
		return `None of its changes are in the database (PostgreSQL rolled its transaction back). Fix it if it failed, mark it rolled back, then rerun the deploy:\n  ${markRolledBackSql(migration)}\n  (or: npx tsx runbooks/troubleshoot.ts --resolve-rolled-back ${migration})`;
	return "The database matches neither the migrations with it nor without it: see what it left with npx tsx runbooks/troubleshoot.ts, and resolve it by hand.";
}

type Failure = NonNullable<DeployOutcome["failure"]>;

/** What a failed migration left in the database, truthfully for each way it runs. */
export function whatStayed(f: Failure): string {
	if (f.partial)
		return "It commits in parts (BEGIN/COMMIT of its own), so the statements before its failing part may be in the database: check with npx tsx runbooks/validate.ts";
	if (f.invalidIndexes.length) {
		const left = f.invalidIndexes.filter((i) => !i.dropped);
		return left.length
			? `CREATE INDEX CONCURRENTLY runs outside a transaction: it left ${left.map((i) => i.index).join(", ")} INVALID in the database (dropping it failed: ${left[0].error}); drop it with DROP INDEX CONCURRENTLY IF EXISTS ${left[0].index} before a retry`
			: `CREATE INDEX CONCURRENTLY runs outside a transaction: the INVALID index it left (${f.invalidIndexes.map((i) => i.index).join(", ")}) was dropped, so none of it is in the database`;
	}
	return "PostgreSQL rolled its transaction back, so none of it is in the database";
}

export type Interrupted = Omit<
	Extract<DeployEvent, { type: "interrupted" }>,
	"type"
>;

/** Where a deploy stood when a step at or after the apply stopped. */
export interface DeployStop {
	pending: string[];
	/** The apply step's outcome, when it returned. */
	deploy?: DeployOutcome;
	/** What the apply step found after Ctrl-C. */
	interrupted?: Interrupted;
	/** prisma migrate deploy was running (stopped with no account of its own). */
	applying: boolean;
	/** The restore command of the pre-deploy backup. */
	rollback: string | null;
}

/** What the database holds after a failure at or after the apply step, and the way back. */
export function stateAfterFailure(x: DeployStop): string {
	const lines: string[] = [];
	const d = x.deploy;
	if (d) {
		lines.push(
			`Applied by this deploy: ${d.applied.length ? formatNames(d.applied) : "none"}.`,
		);
		const f = d.failure;
		if (f?.migration) {
			lines.push(
				`Failed: ${f.migration}. ${whatStayed(f)}; ${
					f.markedRolledBack
						? "it is marked rolled back in _prisma_migrations, so the next deploy applies it again."
						: `_prisma_migrations records it as failed, and deploys refuse until it is resolved: fix the migration, then mark it rolled back:\n  ${markRolledBackSql(f.migration)}`
				}`,
			);
		}
		const rest = x.pending.filter(
			(n) => !d.applied.includes(n) && n !== d.failure?.migration,
		);
		if (rest.length) lines.push(`Not applied: ${formatNames(rest)}.`);
	} else if (x.interrupted) {
		lines.push(...afterInterrupt(x.interrupted));
	} else if (x.applying) {
		lines.push(
			"The deploy was stopped while prisma migrate deploy ran: a migration in progress was rolled back by PostgreSQL when its session ended.",
			"Check with: npx tsx runbooks/validate.ts (a migration shown as failed/unfinished was not applied; mark it rolled back before resuming:",
			`  ${markRolledBackSql("<migration>")})`,
		);
	} else {
		lines.push(
			`All ${x.pending.length} pending migration(s) are applied: ${formatNames(x.pending)}.`,
		);
	}
	if (x.rollback)
		lines.push(
			`To restore the database as it was before this deploy (pre-deploy backup): ${x.rollback}`,
		);
	return lines.join("\n");
}

function afterInterrupt(i: Interrupted): string[] {
	const lines = [
		`Applied by this deploy before the interrupt: ${i.applied.length ? formatNames(i.applied) : "none"}.`,
	];
	const x = i.invalidIndexes.find((y) => !y.dropped) as InvalidIndex;
	if (i.migration && i.markedRolledBack) {
		lines.push(
			i.invalidIndexes.length
				? `${i.migration} was running: its concurrent index build was cancelled, the INVALID index it left (${i.invalidIndexes.map((y) => y.index).join(", ")}) was dropped, so none of it is in the database, and it is marked rolled back in _prisma_migrations (the next deploy applies it again).`
				: `${i.migration} was running: its session was cancelled, PostgreSQL rolled it back, and it is marked rolled back in _prisma_migrations (the next deploy applies it again).`,
		);
	} else if (i.migration && x) {
		lines.push(
			`${i.migration} was running: its concurrent index build was cancelled and left ${x.index} INVALID in the database (dropping it failed: ${x.error}). Drop it, then mark the migration rolled back:\n  DROP INDEX CONCURRENTLY IF EXISTS ${x.index};\n  ${markRolledBackSql(i.migration)}`,
		);
	} else if (i.migration) {
		lines.push(
			`${i.migration} was running and is recorded as unfinished in _prisma_migrations${
				i.leftSessions
					? ` (its session was still there; it ends at the lock or statement timeout)`
					: ""
			}. Once npx tsx runbooks/monitor.ts shows no "runbook:deploy-production:prisma" session, it was rolled back: mark it so:\n  ${markRolledBackSql(i.migration)}`,
		);
	}
	return lines;
}

/** The apply step's plan: the command, the session settings, the retries; in a dry run each SQL. */
export function applyPlan(
	s: DeploySettings,
	pending: Array<{ name: string; sql: string }>,
	dryRun: boolean,
): string[] {
	return [
		deployCommand(s),
		`-- every engine session: SET lock_timeout = ${formatMs(s.lockTimeoutMs)}, statement_timeout = ${formatMs(s.statementTimeoutMs)}`,
		`-- after a lock timeout: mark the migration rolled back in _prisma_migrations, retry (up to ${s.retries}, waiting ${[1, 2, 3].map((n) => formatMs(backoffMs(n, s))).join(", ")} ...)`,
		...(dryRun
			? pending.flatMap((m) => [`-- ${m.name}/migration.sql:`, m.sql.trim()])
			: []),
	];
}

export interface Line {
	warn?: boolean;
	text: string;
}

/**
 * The lines an event of deployWithRetries prints. `concurrent` says whether a migration only builds
 * indexes CONCURRENTLY; `lastPhase` the index build's phase printed last (one line per phase).
 */
export function deployEventLines(
	e: DeployEvent,
	s: DeploySettings,
	concurrent: (migration: string | null) => boolean,
	lastPhase: string,
): Line[] {
	const log = (text: string): Line => ({ text });
	const warn = (text: string): Line => ({ warn: true, text });
	const waitConcurrent = formatMs(s.concurrentTimeoutMs ?? 0);
	switch (e.type) {
		case "waiting":
			return e.blockers.map((b) =>
				log(
					b.table
						? `waiting up to ${formatMs(s.lockTimeoutMs)} for a lock on ${b.table} held by pid ${b.pid} ("${b.application}")`
						: `waiting for pid ${b.pid} ("${b.application}"): ${describeSession(b)} (a concurrent index build waits up to ${waitConcurrent} for older transactions)`,
				),
			);
		case "attempt":
			return [log(`attempt ${e.no}/${e.of}: ${DEPLOY_ARGS.join(" ")}`)];
		case "blocked":
			return [
				warn(
					concurrent(e.migration)
						? `${e.migration} waited ${waitConcurrent} (--concurrent-timeout) for older transactions to end and gave up; its waits held up no other query.`
						: `${e.migration ?? "the deploy"} could not get its lock within ${formatMs(s.lockTimeoutMs)} and gave up; other queries were not held up longer.`,
				),
				...(e.blockers.length === 0
					? [warn("the blocker ended before it could be identified")]
					: []),
				...e.blockers.map((b) =>
					warn(
						`blocked by ${describeSession(b)}${b.table ? ` (on ${b.table})` : ""}`,
					),
				),
			];
		case "index-progress":
			return e.phase === lastPhase
				? []
				: [
						log(
							`CREATE INDEX CONCURRENTLY: ${e.phase}${e.total ? ` (${e.done} of ${e.total})` : ""}`,
						),
					];
		case "invalid-index":
			return [
				warn(
					e.index.dropped
						? `the interrupted CREATE INDEX CONCURRENTLY left ${e.index.index} INVALID; dropped it (DROP INDEX CONCURRENTLY IF EXISTS ${e.index.index})`
						: `the interrupted CREATE INDEX CONCURRENTLY left ${e.index.index} INVALID, and dropping it failed: ${e.index.error}`,
				),
			];
		case "rolled-back":
			return [
				log(
					`marked ${e.migration} rolled back in _prisma_migrations (${concurrent(e.migration) ? "its build ran outside a transaction; nothing of it is left once its INVALID index is gone" : "PostgreSQL rolled its transaction back"})`,
				),
			];
		case "retry":
			return [log(`retrying in ${formatMs(e.delayMs)}`)];
		default:
			return [];
	}
}

/** Why a deploy that did not apply everything stopped, and what to do: the step's error. */
export function deployFailure(
	outcome: DeployOutcome,
	s: DeploySettings,
): { message: string; hint?: string } {
	const f = outcome.failure;
	const why = f?.lockTimeout
		? `${f.migration ?? "a migration"} could not get its lock in ${outcome.attempts.length} attempt(s) (lock_timeout ${formatMs(s.lockTimeoutMs)})`
		: f?.statementTimeout
			? `${f.migration} ran longer than the statement timeout (${formatMs(s.statementTimeoutMs)}): ${f.error}`
			: `${f?.migration ?? "prisma migrate deploy"} failed: ${f?.error}`;
	const blockers = outcome.attempts.flatMap((a) => a.blockers);
	return {
		message: `${why}.`,
		hint:
			f?.lockTimeout && blockers.length
				? `Last blocker: ${describeSession(blockers[blockers.length - 1])}. Rerun when it is gone (npx tsx runbooks/monitor.ts).`
				: f?.statementTimeout
					? "If the migration is expected to take longer, rerun with a larger --statement-timeout."
					: undefined,
	};
}

/** The apply step's closing line. */
export function appliedSummary(outcome: DeployOutcome): string {
	const retried = outcome.attempts.length - 1;
	return `applied ${outcome.applied.length} migration(s)${retried ? ` after ${retried} lock timeout(s)` : ""}`;
}

/** What the operator reads before confirming the deploy. */
export function deployConfirmation(x: {
	target: string;
	production: boolean;
	pending: string[];
	backupId: string;
	s: DeploySettings;
}): { lines: string[]; question: string } {
	return {
		lines: [
			`target:  ${x.target}${x.production ? " [production]" : ""}`,
			`migrations to apply (${x.pending.length}):`,
			...x.pending.map((m) => `  ${m}`),
			`backup:  ${x.backupId} (verified)`,
			`each statement: lock_timeout ${formatMs(x.s.lockTimeoutMs)}, statement_timeout ${formatMs(x.s.statementTimeoutMs)}; up to ${x.s.retries} retries`,
		],
		question: `Deploy ${x.pending.length} migration(s) to ${x.target}?`,
	};
}

/** The closing summary: nothing to do, the dry run's plan, or what was deployed and the way back. */
export function deploySummary(x: {
	pending: string[];
	dryRun: boolean;
	applied: string[];
	backup?: BackupManifest;
	rollback: string | null;
}): { lines: string[]; summary: string } {
	if (x.pending.length === 0)
		return {
			lines: [],
			summary: "nothing to deploy: the database is up to date",
		};
	if (x.dryRun)
		return {
			lines: [],
			summary: `dry run: would back up, then apply ${x.pending.length} migration(s): ${formatNames(x.pending)}`,
		};
	return {
		lines: [
			`applied: ${formatNames(x.applied)}`,
			`backup:  ${x.backup?.id}`,
			`if the app misbehaves, restore the pre-deploy backup with:\n  ${x.rollback}`,
		],
		summary: `deployed ${x.applied.length} migration(s); rollback: ${x.rollback}`,
	};
}

/** The preflight step's closing line. */
export function preflightSummary(p: Preflight): string {
	const h = p.history;
	if (!p.pending.length)
		return `nothing to deploy: all ${h.local.length} migrations are applied (latest ${h.latestApplied ?? "none"})`;
	const n = p.findings.length;
	return `${p.pending.length} pending migration(s), ${n ? `${n} finding(s), all allowed` : "no unsafe statements"}${
		p.holders.length ? `, ${p.holders.length} session(s) holding locks` : ""
	}`;
}
