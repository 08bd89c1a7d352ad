// The secret scan that runs after every runbook run in the suite (test/support/harness.ts) must
// be able to fail: a runbook that prints its connection string, or hands it to a child on argv,
// is caught.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { adminUrl, copyRepository, runRunbook } from "./support/harness.ts";

describe("secret scan", () => {
	const repo = copyRepository();
	writeFileSync(
		join(repo, "runbooks", "leaky-output.ts"),
		"console.log('connecting to ' + process.env.DATABASE_URL);\n",
	);
	writeFileSync(
		join(repo, "runbooks", "leaky-argv.ts"),
		[
			'import { execFileSync } from "node:child_process";',
			'execFileSync("sh", ["-c", "sleep 0.3", "sh", new URL(process.env.DATABASE_URL ?? "").password]);',
			"",
		].join("\n"),
	);

	/** Runs one of the leaky runbooks above against the test server. */
	const runLeaky = (name: string) =>
		runRunbook(name, [], { root: repo, env: { DATABASE_URL: adminUrl() } });

	it("catches a connection string on stdout", async () => {
		await expect(runLeaky("leaky-output")).rejects.toThrow(
			"secret scan: runbooks/leaky-output.ts leaked a password or connection string into stdout",
		);
	});

	it("catches a password in a child process's argv", async () => {
		await expect(runLeaky("leaky-argv")).rejects.toThrow(
			"leaked a password or connection string into a child's argv (sh -c sleep 0.3 sh",
		);
	});
});
