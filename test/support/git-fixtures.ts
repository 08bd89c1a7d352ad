// A migrations folder in a git repository of its own, as a real checkout has it: the repository's
// migrations in a first commit, then a feature commit adding more, so that a rollback runbook can
// find the commit that added them and `git revert` it.

import { execFileSync } from "node:child_process";
import { dirname } from "node:path";
import { migrationsWith } from "./migration-fixtures.ts";

/** Identity for commits made by tests and by the runbooks they run (git revert). */
export const GIT_ENV = {
	GIT_AUTHOR_NAME: "On Call",
	GIT_AUTHOR_EMAIL: "oncall@example.com",
	GIT_COMMITTER_NAME: "On Call",
	GIT_COMMITTER_EMAIL: "oncall@example.com",
};

const git = (cwd: string, args: string[]) =>
	execFileSync("git", args, {
		cwd,
		env: { ...process.env, ...GIT_ENV },
		stdio: ["ignore", "pipe", "pipe"],
	})
		.toString()
		.trim();

export interface MigrationsRepo {
	/** The migrations folder (PRISMA_MIGRATIONS_DIR). */
	dir: string;
	repo: string;
	/** The commit that added the extra migrations. */
	commit: string;
}

/** prisma/migrations committed, then `extra` (folder name -> migration.sql) in a second commit. */
export function migrationsRepo(
	extra: Record<string, string>,
	message = "Add ratings and user preferences",
): MigrationsRepo {
	const dir = migrationsWith(extra);
	const repo = dirname(dir);
	git(repo, ["init", "-q"]);
	git(repo, ["add", "migrations"]);
	for (const name of Object.keys(extra))
		git(repo, ["rm", "-r", "-q", "--cached", `migrations/${name}`]);
	git(repo, ["commit", "-q", "-m", "Face Swap schema"]);
	git(repo, ["add", "migrations"]);
	git(repo, ["commit", "-q", "-m", message]);
	return { dir, repo, commit: git(repo, ["rev-parse", "HEAD"]) };
}
