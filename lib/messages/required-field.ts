// The words of add-required-field: the plan as checked, each migration's plan (its lock and what
// that blocks), the fill, and the errors that say to deploy the app version that writes the column.

import type { BackfillResult } from "../data/backfill.ts";
import { LOCK_EFFECT } from "../data/online-ddl.ts";
import type {
	AppliedStep,
	MigrationStep,
	Plan,
} from "../data/required-column.ts";
import { formatCount as fmt, formatDuration } from "../kit/format.ts";
import { displayPath, SCHEMA_PATH } from "../migrations/prisma-cli.ts";

/** What the check step prints: the table, the column, how existing rows get a value, the migrations. */
export function planLines(p: Plan): { log: string[]; warn: string[] } {
	return {
		log: [
			`table:   ${p.table.display} (~${fmt(Math.max(0, p.table.estimatedRows))} rows), model ${p.model}`,
			`column:  ${p.column} ${p.sqlType}${p.storedDefault ? ` DEFAULT ${p.storedDefault}` : ""} -> Prisma field ${p.field} ${p.prisma.type}${p.prisma.native ? ` ${p.prisma.native}` : ""}`,
			`existing rows: ${
				p.fastDefault
					? "read the default at once (a non-volatile default is stored, not written into each row)"
					: `filled in batches with ${p.fillExpr === "DEFAULT" ? `the default (${p.storedDefault})` : p.fillExpr}`
			}`,
			...p.steps.map(
				(s) =>
					`${s.applied ? "applied " : s.exists ? "written " : "to write"}  ${s.name}`,
			),
		],
		warn: p.backfill
			? [
					`once the check is added, INSERTs that leave ${p.column} NULL fail: the app must write ${p.column} before then`,
				]
			: [],
	};
}

export function planSummary(p: Plan): string {
	const done = p.steps.filter((s) => s.applied).length;
	return done
		? `${done} of ${p.steps.length} migrations applied by an earlier run: carrying on`
		: `${p.steps.length} migrations to apply`;
}

/** A migration step's plan: its file, the lock it takes and what that blocks, then its SQL. */
export const migrationPlan = (s: MigrationStep, note: string): string[] => [
	`-- ${s.name}/migration.sql (lock: ${s.mode}, which ${LOCK_EFFECT[s.mode]}; ${note}):`,
	s.sql.replace(/^--.*\n/gm, "").trim(),
];

export const fillPlan = (p: Plan, targetBatchMs: number): string[] => [
	`-- UPDATE ${p.table.display} SET ${p.column} = ${p.fillExpr} WHERE ${p.column} IS NULL, in primary-key order, batches toward ${targetBatchMs}ms`,
	"-- (the batch statements are those of runbooks/backfill.ts; progress is checkpointed in runbooks.backfill_checkpoints)",
];

export const fillSummary = (r: BackfillResult): string =>
	`${fmt(r.updatedThisRun)} rows filled in ${formatDuration(r.elapsedMs)} (${fmt((r.updatedThisRun * 1000) / Math.max(1, r.elapsedMs))} rows/s), longest batch ${Math.round(r.longestBatchMs)}ms`;

/** Rows the app keeps leaving NULL: the fill or the validation cannot finish. */
export function stillNull(
	p: Plan,
	again: string,
	at: { remaining: number; rounds: number } | "validate",
): { message: string; hint: string } {
	return at === "validate"
		? {
				message: `Some rows of ${p.table.display} have ${p.column} NULL again (inserted or updated after the fill): the check cannot be validated. Nothing of this step was applied.`,
				hint: `Deploy the app version that writes ${p.column}, then rerun (it fills the new NULLs first): ${again}`,
			}
		: {
				message: `${fmt(at.remaining)} rows are still NULL after ${at.rounds} catch-up rounds: the app keeps inserting rows without ${p.column}.`,
				hint: `Deploy the app version that writes ${p.column}, then rerun: ${again}`,
			};
}

export const FAILED_MIGRATION =
	"This step runs in one transaction: nothing of it is applied. The steps before it are applied and recorded in _prisma_migrations.";

export const FAILED_FILL =
	"Filled rows stay filled (the batches committed, the checkpoint says how far); the column is still nullable.";

export const schemaRequiredNote = () =>
	`-- then ${displayPath(SCHEMA_PATH)}: the field becomes required`;

export const nothingToFill = (p: Plan) =>
	p.fastDefault
		? "no row is NULL: existing rows read the default"
		: "no row is NULL: nothing to fill";

export const appliedMigration = (a: AppliedStep) =>
	`${a.migration} applied; ${a.lock.mode} held ${formatDuration(a.lock.heldMs)}`;

export const wasApplied = (s: MigrationStep) =>
	`${s.name} was applied; schema.prisma updated`;

/** A migration's lock, for --json. */
export const lockReport = ({ migration, lock: l }: AppliedStep) => ({
	migration,
	mode: l.mode,
	waited_ms: Math.round(l.waitedMs),
	held_ms: Math.round(l.heldMs),
	attempts: l.attempts,
});

/** The fill, for --json (with its batch count in the step's data). */
export const fillReport = (r: BackfillResult, batches = false) => ({
	rows: r.updated,
	...(batches ? { batches: r.batches } : {}),
	elapsed_ms: Math.round(r.elapsedMs),
	longest_batch_ms: Math.round(r.longestBatchMs),
});
