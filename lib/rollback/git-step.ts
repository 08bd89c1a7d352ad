// The migration files of a rollback: the folders the rolled-back database no longer has, the
// commits that added them, the command that removes them (a git revert, or `git rm` of exactly
// those folders when a commit brought more), and --git-revert, checked before anything changes.

import { join, relative } from "node:path";
import { EXIT, RunbookError, usageError } from "../kit/errors.ts";
import * as say from "../messages/rollback.ts";
import {
	commitsAdding,
	gitRevert,
	removeFoldersCommand,
	repositoryOf,
	resolveCommit,
	revertCommand,
	revertOrder,
	revertTakesMore,
} from "../migrations/git.ts";
import { readHistory } from "../migrations/history.ts";
import { displayPath, migrationsDir } from "../migrations/prisma-cli.ts";
import type { Db } from "../pg/db.ts";
import { finishedNames } from "./choose-backup.ts";
import { type MigrationFiles, midway } from "./results.ts";
import type { RollbackCtx } from "./settings.ts";

async function filesOf(dir: string, names: string[]): Promise<MigrationFiles> {
	const repository = await repositoryOf(dir);
	const files = repository
		? await commitsAdding(dir, names)
		: names.map((migration) => ({ migration, commit: null, subject: null }));
	return { repository, files, reverted: [] };
}

/** Checks --git-revert against the commits that added the migrations to take out (before anything changes). */
export async function checkGitRevert(
	ctx: RollbackCtx,
	names: string[],
): Promise<MigrationFiles> {
	const dir = migrationsDir(ctx.env);
	const found = await filesOf(dir, names);
	const wanted = ctx.settings.gitRevert;
	if (!wanted.length) return found;
	if (!found.repository)
		throw usageError(
			`--git-revert: ${displayPath(dir)} is not in a git repository. Nothing was changed.`,
		);
	const known = found.files.map((f) => f.commit).filter(Boolean) as string[];
	for (const ref of wanted) {
		const full = await resolveCommit(dir, ref);
		if (!full)
			throw usageError(
				`--git-revert ${ref}: no such commit. Nothing was changed.`,
			);
		if (!known.includes(full))
			throw usageError(...say.gitRevertNotOurs(ref, names, known));
	}
	return found;
}

/**
 * What removes the migration folders the database no longer has: a revert of the commits that
 * added them, or, when one of those commits brought more (migrations that stay, code), `git rm` of
 * exactly those folders.
 */
async function filesRemoval(
	dir: string,
	git: MigrationFiles,
	commits: string[],
) {
	const repo = git.repository as string;
	const folders = git.files
		.filter((f) => f.commit)
		.map((f) => relative(repo, join(dir, f.migration)));
	const more = await revertTakesMore(repo, commits, folders);
	return {
		command: more.length
			? removeFoldersCommand(repo, folders)
			: revertCommand(repo, commits),
		more,
	};
}

/** The files step under --dry-run: what it would print or run. */
export async function filesPlan(
	ctx: RollbackCtx,
	git: MigrationFiles,
): Promise<string[]> {
	const dir = migrationsDir(ctx.env);
	if (!git.files.length)
		return [
			"-- no migration in the folder is newer than what the rollback keeps: nothing to revert",
		];
	const commits = [
		...new Set(git.files.map((f) => f.commit).filter(Boolean)),
	] as string[];
	const wanted = ctx.settings.gitRevert;
	return [
		`-- in ${displayPath(dir)} but not in the rolled-back history: ${git.files.map((f) => f.migration).join(", ")}`,
		...(commits.length
			? [
					wanted.length
						? revertCommand(git.repository, wanted)
						: `${(await filesRemoval(dir, git, commits)).command}   -- printed; run with --git-revert <commit>`,
				]
			: []),
		...git.files
			.filter((f) => !f.commit)
			.map(
				(f) =>
					`rm -r ${displayPath(dir)}/${f.migration}   -- not committed in git`,
			),
	];
}

/**
 * The files step: the migrations in the folder the rolled-back database lacks, the command that
 * removes them, printed, or with --git-revert run.
 */
export async function migrationFiles(
	ctx: RollbackCtx,
	db: Db,
	rolledBack: string[],
) {
	const dir = migrationsDir(ctx.env);
	const h = await readHistory(db, dir);
	const applied = new Set(finishedNames(h));
	const missing = h.local.map((x) => x.name).filter((n) => !applied.has(n));
	const git = await filesOf(dir, missing);
	midway.files = git;
	if (!missing.length)
		return {
			git,
			summary:
				"the folder holds no migration the database lacks: nothing to revert",
		};
	for (const f of git.files)
		ctx.log(say.fileLine(f, rolledBack.includes(f.migration)));
	const commits = await revertOrder(
		dir,
		git.files.map((f) => f.commit).filter(Boolean) as string[],
	);
	const removal = commits.length ? await filesRemoval(dir, git, commits) : null;
	git.revert = removal?.command;
	for (const more of removal?.more ?? []) ctx.warn(say.revertTakesMore(more));
	for (const f of git.files.filter((x) => !x.commit))
		ctx.log(`remove by hand: rm -r ${displayPath(dir)}/${f.migration}`);
	const wanted = ctx.settings.gitRevert;
	if (!wanted.length) {
		if (git.revert)
			ctx.log(
				`so that the next deploy does not apply them again, run:\n  ${git.revert}`,
			);
		return {
			git,
			status: "warning" as const,
			summary: `${missing.length} migration(s) to remove from the folder: ${git.revert ?? "see above"}`,
		};
	}
	const full = await Promise.all(wanted.map((r) => resolveCommit(dir, r)));
	const order = await revertOrder(dir, full.filter(Boolean) as string[]);
	const r = await gitRevert(git.repository as string, order, ctx.signal);
	const short = order.map((c) => c.slice(0, 12));
	if (!r.ok)
		throw new RunbookError(
			`git revert ${short.join(" ")} failed: ${r.output.split("\n").slice(-2).join(" ")}`,
			EXIT.failed,
			"The database rollback is complete; only the files remain. Resolve it in git (git status; git revert --continue, or --abort), then start the app.",
		);
	git.reverted = order;
	const still = (await readHistory(db, dir)).local
		.map((x) => x.name)
		.filter((n) => missing.includes(n));
	if (still.length)
		ctx.warn(
			`still in the folder after the revert: ${still.join(", ")} (added by another commit?)`,
		);
	ctx.log(r.output);
	return {
		git,
		status: still.length ? ("warning" as const) : ("ok" as const),
		summary: `reverted ${short.join(", ")}: ${missing.length - still.length} migration folder(s) removed`,
	};
}
