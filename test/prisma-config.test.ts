// Plain `npx prisma <command>` from the repository root, as README.md shows it: Prisma finds the
// project's config through .config/prisma.ts, uses the WebAssembly engine (this machine, like CI,
// cannot download Prisma's native engine) and reads DATABASE_URL from .env.

import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
	copyRepository,
	createDatabase,
	dropDatabase,
	ROOT,
} from "./support/harness.ts";

/** The lines of README.md's ```sh block under "## Prisma". */
function readmePrismaCommands(): string[] {
	const readme = readFileSync(join(ROOT, "README.md"), "utf8");
	const section = readme.split("\n## Prisma\n")[1].split("\n## ")[0];
	const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? "";
	return block
		.split("\n")
		.map((l) => l.replace(/\s+#.*$/, "").trim())
		.filter(Boolean);
}

let repo: string;
let url: string;

beforeAll(async () => {
	repo = copyRepository();
	url = await createDatabase("prisma_root");
	writeFileSync(join(repo, ".env"), `DATABASE_URL="${url}"\n`, {
		mode: 0o600,
	});
});

afterAll(async () => {
	await dropDatabase(url);
});

function npx(command: string) {
	const env: NodeJS.ProcessEnv = {
		...process.env,
		PRISMA_HIDE_UPDATE_MESSAGE: "1",
		CHECKPOINT_DISABLE: "1",
	};
	for (const k of ["DATABASE_URL", "DIRECT_URL", "PRISMA_MIGRATIONS_DIR"])
		delete env[k];
	// The README's lines are shell commands without quoting: split on spaces.
	const [bin, ...args] = command.split(/\s+/);
	return spawnSync(bin, args, { cwd: repo, env, encoding: "utf8" });
}

describe("npx prisma from the repository root", () => {
	it("README shows the migration notes' commands", () => {
		const commands = readmePrismaCommands();
		expect(commands).toEqual(
			expect.arrayContaining([
				"npx prisma migrate status",
				"npx prisma migrate deploy",
			]),
		);
		for (const c of commands) expect(c).not.toContain("--config");
	});

	it("runs every README command as written, offline, with .env's DATABASE_URL", () => {
		// Before anything is applied, status says what is pending (exit 1), from .config/prisma.ts.
		const before = npx("npx prisma migrate status");
		expect(before.stderr + before.stdout).toContain(
			"Loaded Prisma config from .config/prisma.ts",
		);
		expect(before.stdout).toContain(
			"Following migrations have not yet been applied",
		);
		// migrate deploy (in the README's list) applies them: run it first, so that status exits 0.
		const commands = readmePrismaCommands().sort(
			(a, b) =>
				Number(b.includes("migrate deploy")) -
				Number(a.includes("migrate deploy")),
		);
		for (const command of commands) {
			const run = npx(command);
			const out = `${run.stdout}\n${run.stderr}`;
			expect(out, command).not.toMatch(/binaries\.prisma\.sh|schema-engine/);
			expect(run.status, `${command}\n${out}`).toBe(0);
		}
		const after = npx("npx prisma migrate status");
		expect(after.status, after.stderr).toBe(0);
		expect(after.stdout).toContain("Database schema is up to date");
	});
});
