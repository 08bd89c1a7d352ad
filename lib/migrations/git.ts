// Git, for the migration files a rollback leaves behind: which commit added each migration folder,
// the `git revert` that removes them (so that the next deploy does not apply them again), and
// running it. git runs in the repository that holds the migrations folder.

import { execFile } from "node:child_process";
import { relative } from "node:path";
import { promisify } from "node:util";
import { redact } from "../kit/secrets.ts";

const execFileAsync = promisify(execFile);

async function git(
	cwd: string,
	args: string[],
	signal?: AbortSignal,
): Promise<{ ok: boolean; stdout: string; stderr: string }> {
	try {
		const { stdout, stderr } = await execFileAsync(
			"git",
			["-C", cwd, ...args],
			{
				signal,
				maxBuffer: 16 * 1024 * 1024,
			},
		);
		return { ok: true, stdout, stderr };
	} catch (err) {
		const e = err as { stdout?: string; stderr?: string; message: string };
		if (signal?.aborted) throw new Error("aborted");
		return {
			ok: false,
			stdout: e.stdout ?? "",
			stderr: redact(e.stderr || e.message),
		};
	}
}

/** The top of the git work tree holding `dir`, or null (not in a repository, or no git). */
export async function repositoryOf(dir: string): Promise<string | null> {
	const r = await git(dir, ["rev-parse", "--show-toplevel"]);
	return r.ok ? r.stdout.trim() : null;
}

export interface MigrationCommit {
	migration: string;
	/** The commit that added the migration's folder, or null when it is not committed. */
	commit: string | null;
	subject: string | null;
}

/** For each migration folder under `dir`, the commit that added it. */
export async function commitsAdding(
	dir: string,
	migrations: string[],
): Promise<MigrationCommit[]> {
	const out: MigrationCommit[] = [];
	for (const migration of migrations) {
		const r = await git(dir, [
			"log",
			"--diff-filter=A",
			"--format=%H%x09%s",
			"--",
			`${migration}/migration.sql`,
		]);
		// Oldest last: the commit that first added it.
		const line = r.ok
			? r.stdout.trim().split("\n").filter(Boolean).pop()
			: undefined;
		const [commit, subject] = line ? line.split("\t") : [null, null];
		out.push({ migration, commit: commit ?? null, subject: subject ?? null });
	}
	return out;
}

/** The commits to revert, newest first (so that each revert applies cleanly), without repeats. */
export async function revertOrder(
	dir: string,
	commits: string[],
): Promise<string[]> {
	const unique = [...new Set(commits)];
	if (unique.length < 2) return unique;
	const r = await git(dir, ["rev-list", "--no-walk=sorted", ...unique]);
	return r.ok ? r.stdout.trim().split("\n").filter(Boolean) : unique;
}

/** `git revert --no-edit <commits>` as the operator types it (with -C when the repository is elsewhere). */
export function revertCommand(
	repository: string | null,
	commits: string[],
	cwd = process.cwd(),
): string {
	const rel = repository ? relative(cwd, repository) : "";
	const where = repository && rel !== "" ? ` -C ${repository}` : "";
	return `git${where} revert --no-edit ${commits.map((c) => c.slice(0, 12)).join(" ")}`;
}

/** The full commit id, or null when `ref` names no commit. */
export async function resolveCommit(
	dir: string,
	ref: string,
): Promise<string | null> {
	const r = await git(dir, [
		"rev-parse",
		"--verify",
		"--quiet",
		`${ref}^{commit}`,
	]);
	return r.ok ? r.stdout.trim() : null;
}

export async function gitRevert(
	dir: string,
	commits: string[],
	signal?: AbortSignal,
): Promise<{ ok: boolean; output: string }> {
	const r = await git(dir, ["revert", "--no-edit", ...commits], signal);
	return {
		ok: r.ok,
		output: `${r.stdout}\n${r.stderr}`.trim().split("\n").slice(-6).join("\n"),
	};
}

/** The files a commit added, changed or removed, relative to the repository's top. */
async function filesOfCommit(
	repository: string,
	commit: string,
): Promise<string[]> {
	const r = await git(repository, [
		"diff-tree",
		"--no-commit-id",
		"--name-only",
		"-r",
		"--root",
		commit,
	]);
	return r.ok ? r.stdout.split("\n").filter(Boolean) : [];
}

/**
 * What a revert of `commits` would remove beyond the migration folders being rolled back (other
 * migrations that stay applied, code, anything else): file paths per commit, only where there are some.
 */
export async function revertTakesMore(
	repository: string,
	commits: string[],
	folders: string[],
): Promise<Array<{ commit: string; others: string[] }>> {
	const inside = (f: string) => folders.some((d) => f.startsWith(`${d}/`));
	const out: Array<{ commit: string; others: string[] }> = [];
	for (const commit of commits) {
		const others = (await filesOfCommit(repository, commit)).filter(
			(f) => !inside(f),
		);
		if (others.length) out.push({ commit, others });
	}
	return out;
}

/** `git rm -r` of exactly these folders, then a commit: removes the rolled-back migrations only. */
export function removeFoldersCommand(
	repository: string,
	folders: string[],
	cwd = process.cwd(),
): string {
	const rel = relative(cwd, repository);
	const where = rel !== "" ? ` -C ${repository}` : "";
	const names = folders.map((f) => f.split("/").pop()).join(", ");
	return `git${where} rm -r -q ${folders.join(" ")} && git${where} commit -m "Roll back ${names}"`;
}
