// What migrate-to-supabase tells the operator: refusals (a sentence and what to do instead), why a
// rerun copies or not, the copy's and the verification's results, and what each stopped step left.

import type { CopyResult } from "../data/schema-copy.ts";
import { formatBytes } from "../kit/format.ts";
import type { MigrationIssue } from "../migrations/history.ts";
import type { PlatformShape, RunRecord } from "../pg/supabase.ts";

/** A refusal or an error: one or two sentences, and what to do next. */
export interface Advice {
	message: string;
	hint?: string;
}

export type CopyMode = "fresh" | "restart" | "resume";

const nothing = "Nothing was changed.";

export const sourcePooled = (key: string, display: string): Advice => ({
	message: `${key} (${display}) goes through a transaction pooler, but pg_dump needs a direct connection to the local database. ${nothing}`,
	hint: "Set LOCAL_DIRECT_URL to the local database's direct URL (no pgbouncer=true).",
});

export const sameDatabase = (key: string, display: string): Advice => ({
	message: `The source (${key}) and the target (REMOTE_DIRECT_URL) are the same database, ${display}. ${nothing}`,
});

export const sourceUnmigrated: Advice = {
	message: `The source has no _prisma_migrations table: it was never migrated with Prisma, so the copy could not be validated. ${nothing}`,
	hint: "Check LOCAL_DATABASE_URL (or DATABASE_URL): it should be the Face Swap app's database.",
};

export const sourceHistoryDirty = (issues: MigrationIssue[]): Advice => ({
	message: `The source's migration history is not clean: ${issues.map((i) => `${i.migration}: ${i.detail}`).join("; ")}. A copy would carry that to Supabase. ${nothing}`,
	hint: "Fix the local database first (npx tsx runbooks/validate.ts names each problem; apply pending migrations with prisma migrate deploy), then rerun.",
});

export const otherSchema = (schema: string, tables: string) =>
	`schema ${schema} on the source has ${tables} table(s): only public is copied (the app's schema)`;

export function notSupabase(shape: PlatformShape): string {
	const missing = ["anon", "authenticated", "service_role"]
		.filter((r) => !shape.roles.includes(r))
		.concat(shape.hasExtensionsSchema ? [] : ["schema extensions"]);
	return `the target does not look like a Supabase project (missing: ${missing.join(", ")})`;
}

export const cannotCreate = (shape: PlatformShape): Advice => ({
	message: `${shape.user} on the target may not create ${!shape.canCreateInPublic ? "objects in public" : "schemas (for this runbook's record)"}. ${nothing}`,
	hint: "Use the project's postgres user in REMOTE_DIRECT_URL.",
});

export const olderTarget = (target: number, source: number) =>
	`the target runs PostgreSQL ${target}, older than the source's ${source}: objects using newer features may fail to restore`;

export const extensionsUnavailable = (names: string[]): Advice => ({
	message: `The target cannot install the extension(s) ${names.join(", ")} that the source uses. ${nothing}`,
	hint: "Enable them in the Supabase dashboard (Database > Extensions) if offered, or remove their use locally.",
});

/** An extension whose schema differs on the target while copied objects name it by schema. */
export interface MovedExtension {
	name: string;
	schema: string;
	where: string;
	dependents: string[];
}

export function extensionsMoved(moved: MovedExtension[]): Advice {
	const each = moved.map(
		(e) =>
			`${e.name} is in schema ${e.schema} locally but will be in ${e.where} on the target, and ${e.dependents.slice(0, 3).join(", ")}${e.dependents.length > 3 ? ` and ${e.dependents.length - 3} more` : ""} name its objects as ${e.schema}.<name>`,
	);
	return {
		message: `Restored objects would point at extension objects that do not exist on the target: ${each.join("; ")}. ${nothing}`,
		hint: `Move the extension locally first, e.g. create schema if not exists extensions; alter extension "<name>" set schema extensions; (Supabase keeps extensions there), then rerun.`,
	};
}

export const extensionLine = (
	name: string,
	installed: { installed: string | null; schema: string | null } | undefined,
	createIn: string,
) =>
	`Extension ${name}: ${installed?.installed ? `already installed on the target (schema ${installed.schema})` : `to create in ${createIn}`}`;

export const publicNotEmpty = (
	objects: Array<{ kind: string; name: string }>,
): Advice => ({
	message: `The target's public schema is not empty: it holds ${objects.length} object(s) (${objects
		.slice(0, 5)
		.map((o) => `${o.kind} ${o.name}`)
		.join(
			", ",
		)}${objects.length > 5 ? ", ..." : ""}) that this runbook did not put there. ${nothing}`,
	hint: "Migrate into an empty project, or empty public yourself if those objects are expendable (this runbook never drops what it did not create).",
});

export const copyOfAnother = (previous: RunRecord, source: string): Advice => ({
	message: `The target's public schema holds a copy of another database (${previous.source}, run ${previous.run_id}, ${previous.phase}). ${nothing}`,
	hint: `Check LOCAL_DATABASE_URL: it is ${source} now.`,
});

/** Why this run copies afresh, clears and copies again, or only verifies again. */
export function modeReason(
	mode: CopyMode,
	previous: RunRecord | null,
	objects: number,
): string {
	if (mode === "fresh")
		return "the target's public schema is empty: fresh copy";
	if (mode === "resume")
		return `run ${previous?.run_id} already copied and verified public at ${previous?.updated_at.toISOString()}: the copy is checked again, nothing is copied twice (--restart copies again)`;
	return previous?.phase === "verified"
		? `--restart: the copy of run ${previous.run_id} (verified ${previous.updated_at.toISOString()}) will be cleared and made again`
		: `run ${previous?.run_id} stopped while ${previous?.phase}: its partial copy (${objects} objects) will be cleared and the copy made again`;
}

const MODE_SUMMARY: Record<CopyMode, string> = {
	fresh: "fresh copy",
	restart: "clear the previous copy and copy again",
	resume: "already copied: verify again",
};

/** Step 1's result line: both ends, their versions, and what this run does. */
export const checkedSummary = (
	source: { display: string; major: number },
	target: { display: string; major: number },
	mode: CopyMode,
) =>
	`${source.display} (PostgreSQL ${source.major}) -> ${target.display} (PostgreSQL ${target.major}); ${MODE_SUMMARY[mode]}`;

export const alreadyCopied = (previous: RunRecord) =>
	`run ${previous.run_id} already copied and verified public (at ${previous.updated_at.toISOString()})`;

export const remoteProfileMissing: Advice = {
	message:
		"REMOTE_DATABASE_URL is not set: the app's .env could not be switched to Supabase at the end.",
	hint: "Set REMOTE_DATABASE_URL to the project's pooler URL (port 6543, ?pgbouncer=true), or pass --no-switch.",
};

export const unrecordedEnv = (keys: string[]): Advice => ({
	message: `.env holds ${keys.join(" and ")}, which no profile records: switching to Supabase at the end would lose it. ${nothing}`,
	hint: "Add LOCAL_DATABASE_URL=<the current DATABASE_URL> to .env (so switch-db-env local can switch back), or pass --no-switch.",
});

export const poolerDown = (hint: string | undefined): Advice => ({
	message: `The app's connection to Supabase (REMOTE_DATABASE_URL) does not answer: the switch at the end would fail. ${nothing}`,
	hint: hint ?? "Check the pooler URL and password, or pass --no-switch.",
});

export const copyOutcome = (copy: CopyResult, jobs: number) =>
	`${copy.tablesCopied} tables, ${formatBytes(copy.bytes)} streamed, ${jobs > 1 ? `${jobs} streams and index builds at a time` : "in one transaction"}`;

export const copyStopped = (
	jobs: number,
	runId: string | undefined,
	database: string,
) =>
	jobs > 1
		? `The target's public may hold a partial copy, recorded as run ${runId ?? "(none)"} in migrate_to_supabase.runs; a rerun clears it first (type the database name, or --yes --confirm ${database}), then copies again. Nothing in .env changed.`
		: "pg_restore ran in one transaction, so the target's public is as it was before this step. Nothing in .env changed.";

/** What the verification found different; the hint depends on whether this run copied. */
export function copyDiffers(
	found: { bad: string[]; extra: string[]; migrationsSame: boolean },
	resumed: boolean,
): Advice {
	const what = [
		found.bad.length ? `rows differ in ${found.bad.join(", ")}` : "",
		found.extra.length
			? `the target has extra tables ${found.extra.join(", ")}`
			: "",
		!found.migrationsSame ? "_prisma_migrations differs" : "",
	].filter(Boolean);
	return {
		message: `The copy does not match the source: ${what.join("; ")}.${resumed ? " The local database has probably changed since that copy was made." : ""}`,
		hint: resumed
			? "Stop the app's writes to the local database, then rerun with --restart to copy again."
			: "Make sure nothing else writes to the target's public schema, then rerun (the runbook clears its own copy first).",
	};
}

export const targetInvalid = (problems: number): Advice => ({
	message: `The target does not validate: ${problems} problem(s), listed above.`,
	hint: "The rows are copied and equal; .env was not changed. Fix the schema problem (npx tsx runbooks/validate.ts against the local database shows the same), then rerun.",
});

export const exposedToAnon = (tables: string[]) =>
	`${tables.length} table(s) in public have row level security off while the API role anon may read them (${tables.slice(0, 4).join(", ")}${tables.length > 4 ? ", ..." : ""}): Supabase's Data API would serve them to anyone holding the anon key. Enable RLS (alter table ... enable row level security) or revoke anon's grants before publishing the API keys.`;

export const verifiedSummary = (tables: number, rows: number) =>
	`${tables} tables equal, ${rows.toLocaleString("en-US")} rows; migrations identical; no drift`;

export const remoteDown = (keys: string[]): Advice => ({
	message: `The remote profile does not answer (${keys.join(", ")}): .env was not changed.`,
	hint: "Once it answers: ./runbooks/switch-db-env.ts remote",
});

export const verifyStopped = (switched: boolean) =>
	`The data on Supabase is verified${switched ? " and .env points at it" : ""}; a rerun does not copy again. If the app is broken, go back first with ./runbooks/switch-db-env.ts local and fix it.`;

/** What each step leaves when it stops, for those whose account needs no result. */
export const STOPPED = {
	clear: (database: string) =>
		`The drops run in one transaction: public is as it was before this step (a rerun asks again: type the database name, or --yes --confirm ${database}).`,
	extensions:
		"Each extension is created wholly or not at all; public is still empty and .env unchanged.",
	sequences:
		"The copy is on the target; each sequence is set or not yet (setting one again is harmless). .env was not changed.",
	verify:
		"The copy stays on the target (recorded in migrate_to_supabase.runs); .env was not changed. A rerun clears this runbook's copy and copies again when it was not verified.",
	switch:
		"The data is on Supabase and verified; .env was not changed (./runbooks/switch-db-env.ts remote switches it alone).",
};

export const SKIPPED = {
	noLeftovers: "no previous copy to clear",
	extensionsInstalled:
		"every extension the source uses is already installed (or none is used)",
	dryRun: "nothing was copied (dry run)",
	noSwitch:
		"--no-switch: .env left as it is (switch later with ./runbooks/switch-db-env.ts remote)",
	switched: ".env already points at the remote profile",
	noVerifyCmd:
		"VERIFY_CMD is not set: check the app yourself against the new DATABASE_URL (the seed's npm run build && npm run dev)",
};
