// Schema changes kept in Prisma's history, as add-required-field keeps them: each one a folder in
// prisma/migrations, written once (a rerun replays the plan the first run wrote), applied online
// and recorded in _prisma_migrations; prisma/schema.prisma edited and `prisma format`ted into place
// atomically; and Prisma's own view checked at the end (migrate status, drift).

import {
	mkdtempSync,
	readFileSync,
	renameSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { cached } from "../kit/cache.ts";
import { formatDuration } from "../kit/format.ts";
import type { Context, Step } from "../kit/runner.ts";
import { detectDrift, explainDriftStatement } from "../migrations/drift.ts";
import {
	readAppliedMigrations,
	readHistory,
	readLocalMigrations,
	writeMigrationFolder,
} from "../migrations/history.ts";
import {
	migrationsDir,
	prismaCacheInputs,
	prismaErrorText,
	runPrisma,
	SCHEMA_PATH,
} from "../migrations/prisma-cli.ts";
import type { Db } from "../pg/db.ts";
import {
	applyConcurrently,
	type Phase,
	type SchemaStep,
} from "./column-type.ts";
import { applyOnline, migrationTimestamp } from "./online-ddl.ts";

export interface PlannedMigration extends SchemaStep {
	name: string;
	exists: boolean;
	applied: boolean;
}

/** What the steps of a runbook pass down: the runner's context, minus what they do not use. */
export type Io = Pick<
	Context,
	"db" | "log" | "warn" | "signal" | "env" | "target"
>;

const phaseOf = (suffix: string): Phase =>
	suffix.startsWith("index_")
		? "index"
		: suffix === "check_not_valid"
			? "check"
			: suffix === "validate_check"
				? "validate"
				: suffix.startsWith("validate_")
					? "after"
					: suffix === "alter"
						? "direct"
						: (suffix as Phase);

/** The step a migration folder (`<14-digit time>_<tag>_<step>`) holds for the change `tag`, if any. */
function stepOf(name: string, tag: string): string | undefined {
	const rest = name.slice(15);
	return rest.startsWith(`${tag}_`) ? rest.slice(tag.length + 1) : undefined;
}

/**
 * The migrations of the change tagged `tag`: the folders an earlier run wrote when there are any
 * (the plan it made is the one carried on), else `steps` named after the latest migration.
 */
export async function planMigrations(
	db: Db,
	env: Io["env"],
	tag: string,
	steps: () => SchemaStep[],
	header: string,
): Promise<PlannedMigration[]> {
	const local = readLocalMigrations(migrationsDir(env));
	const applied = new Set(
		((await readAppliedMigrations(db)) ?? [])
			.filter((r) => r.finished_at && !r.rolled_back_at)
			.map((r) => r.migration_name),
	);
	let mine = local.filter((m) => stepOf(m.name, tag) !== undefined);
	// A run killed while writing its folders leaves part of the plan, none of it applied (folders are
	// all written before the first is applied): plan again rather than carry on with a part.
	if (mine.length && !mine.some((m) => applied.has(m.name))) {
		const whole = steps().map((s) => s.suffix);
		const found = mine.map((m) => stepOf(m.name, tag));
		// (writePlanned removes the part when it writes the new plan; a dry run leaves it.)
		if (whole.join() !== found.join()) mine = [];
	}
	if (mine.length) {
		return mine.map((m) => {
			const suffix = stepOf(m.name, tag) as string;
			const phase = phaseOf(suffix);
			return {
				phase,
				suffix,
				name: m.name,
				sql: m.sql,
				exists: true,
				applied: applied.has(m.name),
				concurrent: phase === "index",
				mode: [
					"index",
					"validate",
					"after",
					"create_type",
					"drop_old_type",
				].includes(phase)
					? "SHARE UPDATE EXCLUSIVE"
					: "ACCESS EXCLUSIVE",
				holds: /^(CREATE|ALTER TABLE \S+ VALIDATE)/m.test(m.sql)
					? "blocks no reads or writes; scans the table"
					: "see the statement",
			};
		});
	}
	const kept = local.filter((m) => stepOf(m.name, tag) === undefined);
	const latest = kept.length ? kept[kept.length - 1].name : null;
	const now = new Date();
	return steps().map((s, i) => ({
		...s,
		name: `${migrationTimestamp(now, latest, i)}_${tag}_${s.suffix}`,
		sql: `${header}${s.sql}`,
		exists: false,
		applied: false,
	}));
}

/** Writes the folders not written yet (all at once: a rerun then follows the same plan). */
export function writePlanned(io: Io, planned: PlannedMigration[]): void {
	const fresh = planned.filter((x) => !x.exists);
	// A killed run's partial plan for the same change, which planMigrations set aside (unapplied).
	const tags = new Set(
		fresh.map((p) => p.name.slice(15, -(p.suffix.length + 1))),
	);
	const names = new Set(planned.map((p) => p.name));
	for (const m of readLocalMigrations(migrationsDir(io.env)))
		if (
			!names.has(m.name) &&
			[...tags].some((t) => stepOf(m.name, t) !== undefined)
		)
			rmSync(join(migrationsDir(io.env), m.name), {
				recursive: true,
				force: true,
			});
	for (const p of fresh) {
		writeMigrationFolder(migrationsDir(io.env), p.name, p.sql);
		p.exists = true;
	}
}

/** --abort: the folders go too (their _prisma_migrations rows went with the undo). */
export function removePlanned(io: Io, planned: PlannedMigration[]): void {
	for (const p of planned)
		rmSync(join(migrationsDir(io.env), p.name), {
			recursive: true,
			force: true,
		});
}

/** Applies one migration (online, or CONCURRENTLY outside a transaction) and records it. */
export async function applyRecorded(
	io: Io,
	p: PlannedMigration,
	opts: { lockTimeoutMs: number; retries: number; tableSql: string },
): Promise<{ heldMs: number; waitedMs: number; attempts: number }> {
	const migration = readLocalMigrations(migrationsDir(io.env)).find(
		(m) => m.name === p.name,
	);
	if (!migration)
		throw new Error(
			`prisma/migrations/${p.name} is missing: rerun without deleting it, or --abort`,
		);
	const onRetry = (attempt: number, waitMs: number) =>
		io.warn(
			`attempt ${attempt}: the lock was not granted within ${opts.lockTimeoutMs}ms; retrying in ${formatDuration(waitMs)}`,
		);
	const report = p.concurrent
		? await applyConcurrently(await io.db(), migration, {
				...opts,
				signal: io.signal,
				onRetry,
			})
		: await applyOnline(await io.db(), {
				migration,
				tableSql: opts.tableSql,
				mode: p.mode,
				lockTimeoutMs: opts.lockTimeoutMs,
				statementTimeoutMs:
					p.mode === "ACCESS EXCLUSIVE" && p.phase !== "direct" ? 10_000 : 0,
				retries: opts.retries,
				signal: io.signal,
				onRetry: (r) => onRetry(r.attempt, r.waitMs),
			});
	p.applied = true;
	return report;
}

/**
 * Edits schema.prisma: the edited text, aligned by `prisma format` (cached by the text: a rerun
 * formats the same edit), renamed into place, so a kill leaves it as it was or wholly updated.
 * Returns whether it changed.
 */
export async function rewriteSchemaFile(
	io: Pick<Io, "warn" | "signal" | "env" | "target">,
	edit: (text: string) => string,
	what = "the schema",
): Promise<boolean> {
	const text = readFileSync(SCHEMA_PATH, "utf8");
	const draft = edit(text);
	const next =
		(await cached("prisma-format", [...prismaCacheInputs(io.env), draft], () =>
			prismaFormat(io, draft, what),
		)) ?? draft;
	if (next === text) return false;
	const tmp = join(dirname(SCHEMA_PATH), `.schema.prisma.${process.pid}.tmp`);
	writeFileSync(tmp, next);
	renameSync(tmp, SCHEMA_PATH);
	return true;
}

/** The schema text as `prisma format` leaves it, in a scratch copy; undefined (warned) when it fails. */
async function prismaFormat(
	io: Pick<Io, "warn" | "signal" | "env" | "target">,
	draft: string,
	what: string,
): Promise<string | undefined> {
	const scratch = mkdtempSync(join(tmpdir(), "schema-edit-"));
	try {
		const file = join(scratch, "schema.prisma");
		writeFileSync(file, draft);
		const formatted = await runPrisma(
			["format", "--schema", file],
			io.target,
			io.env,
			io.signal,
		);
		// The child alone was stopped: leave schema.prisma as it was, so the rerun writes and formats
		// it (written unformatted, a rerun would find the field there and never format it).
		if (formatted.signal || formatted.exitCode === 130)
			throw new Error(
				`prisma format was stopped (${formatted.signal ?? "exit 130"}); schema.prisma is unchanged`,
			);
		if (formatted.exitCode !== 0) {
			io.warn(
				`prisma format failed, so ${what} goes in unformatted: ${prismaErrorText(formatted)}`,
			);
			return undefined;
		}
		return readFileSync(file, "utf8");
	} finally {
		rmSync(scratch, { recursive: true, force: true });
	}
}

/** Applies the planned migrations of these phases not applied yet, logging each lock. */
export async function applyPhases(
	io: Io,
	planned: PlannedMigration[],
	phases: Phase[],
	opts: { lockTimeoutMs: number; retries: number; tableSql: string },
): Promise<string> {
	const todo = planned.filter((p) => phases.includes(p.phase) && !p.applied);
	let longest = 0;
	for (const p of todo) {
		const r = await applyRecorded(io, p, opts);
		longest = Math.max(longest, p.mode === "ACCESS EXCLUSIVE" ? r.heldMs : 0);
		io.log(
			`applied and recorded: ${p.name} (${p.mode}${p.concurrent ? ", CONCURRENTLY" : ""}, ${formatDuration(r.heldMs)}${r.attempts > 1 ? `, attempt ${r.attempts}` : ""})`,
		);
	}
	const done =
		planned.filter((p) => phases.includes(p.phase)).length - todo.length;
	return `${todo.length} migration(s) applied${done ? `, ${done} by an earlier run` : ""}${longest ? `; ACCESS EXCLUSIVE held at most ${formatDuration(longest)}` : ""}`;
}

/** Prisma's view after the change: migrate status up to date, history clean, no drift. */
export async function prismaProblems(io: Io): Promise<string[]> {
	const status = await runPrisma(
		["migrate", "status"],
		io.target,
		io.env,
		io.signal,
	);
	const history = await readHistory(await io.db(), migrationsDir(io.env));
	const drift = await detectDrift(io.target, io.env, io.signal);
	return [
		...(status.exitCode === 0 && /up to date/i.test(prismaErrorText(status))
			? []
			: [`prisma migrate status: ${prismaErrorText(status)}`]),
		...history.issues.map((i) => `migration ${i.migration}: ${i.detail}`),
		...drift.databaseVsMigrations.map(
			(s) => `drift: ${explainDriftStatement(s)} (${s})`,
		),
		...drift.migrationsVsSchema.map(
			(s) => `schema.prisma differs from the migrations: ${s}`,
		),
	];
}

/** The closing step of both runbooks: Prisma's view (its value: the problems found). */
export function prismaViewStep<P>(
	done: (ctx: Context<unknown, P>) => string,
): Step<unknown, P> {
	return {
		id: "verify",
		title: "Check Prisma's view: migrate status and drift",
		skip: (ctx) => (ctx.dryRun ? "dry run: nothing was applied" : false),
		async run(ctx) {
			const problems = await prismaProblems(ctx);
			for (const p of problems) ctx.warn(p);
			const summary = problems.length
				? `${problems.length} problem(s)`
				: `${done(ctx)}; migrate status up to date; no drift`;
			return {
				status: problems.length ? "problem" : "ok",
				summary,
				value: problems,
			};
		},
	};
}

/** Healthy: the run ended well and the closing step found nothing. */
export const healthy = (ctx: Pick<Context, "has" | "result">, ok: boolean) =>
	ok && ctx.has("verify") && ctx.result<string[]>("verify").length === 0;
