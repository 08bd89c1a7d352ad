// What troubleshoot reports for each problem it finds: a sentence, its detail, and the exact
// commands that resolve it. lib/messages/diagnose.ts words them; the --json summary lists them.

import {
	type AppliedRow,
	type History,
	readHistory,
} from "../migrations/history.ts";
import type { Db } from "../pg/db.ts";
import { prismaLockHolders } from "../pg/sessions.ts";

export type DiagnosisKind =
	| "failed_migration"
	| "unfinished_migration"
	| "running_migration"
	| "history"
	| "hanging_migration"
	| "drift"
	| "schema_drift"
	| "required_field";

export interface Diagnosis {
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

/** Where the commands printed with a diagnosis run. */
export interface Where {
	/** The migrations folder, as the operator types it. */
	migrationsDir: string;
	/** A local database not marked production: reset is offered. */
	resettable: boolean;
	/** `--yes --confirm <database>` for this target. */
	confirmFlags: string;
}

/** Rows of _prisma_migrations with neither finished_at nor rolled_back_at. */
export const unfinishedRows = (h: { applied: AppliedRow[] }) =>
	h.applied.filter((r) => r.finished_at === null && r.rolled_back_at === null);

/** The history, its unfinished rows, and who holds Prisma Migrate's lock now. */
export async function readMigrationState(db: Db, dir: string) {
	const h: History = await readHistory(db, dir);
	const holders = await prismaLockHolders(db);
	return { h, unfinished: unfinishedRows(h), holders };
}
