// Flags as an operator types them: --dotenv (which Node leaves alone) and the old --env-file,
// and one duration syntax for every time flag, old spellings included.

import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseInvocation, renamedDuration } from "../lib/kit/cli.ts";
import { tsxCli } from "./support/field-checkout.ts";
import {
	createDatabase,
	dropDatabase,
	ROOT,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { runbookBundle } from "./support/runbook-bundle.ts";

const scratch = scratchDir();
const missing = join(scratch, "missing.env");
const mysqlEnv = join(scratch, "mysql.env");
writeFileSync(
	mysqlEnv,
	"DATABASE_URL=mysql://app:secretpw1@localhost:3306/x\n",
);

/** Exactly what an operator types at the repository root: npx tsx runbooks/<name>.ts … */
function npxTsx(name: string, args: string[]) {
	const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: "1" };
	delete env.DATABASE_URL;
	delete env.DIRECT_URL;
	return spawnSync("npx", ["tsx", `runbooks/${name}.ts`, ...args], {
		cwd: ROOT,
		env,
		encoding: "utf8",
	});
}

describe("--dotenv <path>", () => {
	it("with npx tsx and a missing file: the runbook's exit 2 and a plain message (Node leaves --dotenv alone)", () => {
		const run = npxTsx("validate", ["--dotenv", missing]);
		expect(run.status, run.stderr).toBe(2);
		expect(run.stderr).toContain(
			`Cannot read the environment file ${missing} (ENOENT).`,
		);
		expect(run.stderr).not.toMatch(/^node:/m);
	});

	it("reads the file it names", () => {
		const run = npxTsx("validate", ["--dotenv", mysqlEnv]);
		expect(run.status).toBe(2);
		expect(run.stderr).toContain(
			"DATABASE_URL is not a PostgreSQL connection string",
		);
	});
});

describe("--env-file <path>, the old spelling", () => {
	it("still reads the file, also through npx tsx", () => {
		const run = npxTsx("validate", ["--env-file", mysqlEnv]);
		expect(run.status).toBe(2);
		expect(run.stderr).toContain(
			"DATABASE_URL is not a PostgreSQL connection string",
		);
	});

	it("a missing file gets exit 2 and the plain message where Node leaves the flag to the runbook", async () => {
		for (const asExecutable of [false, true]) {
			// false: node tsx/cli -- runbooks/…; true: ./runbooks/….ts (the shebang ends with --)
			const run = await runRunbook("db-health", ["--env-file", missing], {
				asExecutable,
			});
			expect(run.code, run.stderr).toBe(2);
			expect(run.stderr).toContain("Cannot read the environment file");
			expect(run.stderr).not.toContain("at ");
		}
	});

	it("given with --dotenv: exit 2", async () => {
		const run = await runRunbook("db-health", [
			"--env-file",
			mysqlEnv,
			"--dotenv",
			mysqlEnv,
		]);
		expect(run.code).toBe(2);
		expect(run.stderr).toContain(
			"--env-file is the old spelling of --dotenv: give one of them.",
		);
	});
});

describe("durations", () => {
	const specs = {
		...renamedDuration("sleep", "sleep-ms", "ms", {
			description: "",
			default: "0ms",
		}),
		...renamedDuration("monitor-for", "monitor-seconds", "s", {
			description: "",
			default: "30s",
		}),
	};
	const parse = (argv: string[]) => parseInvocation(argv, specs).flags;

	it("take 500ms, 30s, 2min and 1h; a bare number is seconds", () => {
		expect(parse(["--sleep", "500ms"]).sleep).toBe(500);
		expect(parse(["--sleep", "30s"]).sleep).toBe(30_000);
		expect(parse(["--sleep", "2min"]).sleep).toBe(120_000);
		expect(parse(["--sleep", "1h"]).sleep).toBe(3_600_000);
		expect(parse(["--sleep", "2"]).sleep).toBe(2000);
		expect(parse([])).toEqual({ sleep: 0, "monitor-for": 30_000 });
	});

	it("old spellings keep the unit their name says", () => {
		expect(parse(["--sleep-ms", "250"]).sleep).toBe(250);
		expect(parse(["--sleep-ms", "2s"]).sleep).toBe(2000);
		expect(parse(["--monitor-seconds", "0"])["monitor-for"]).toBe(0);
		expect(parse(["--monitor-seconds", "45"])["monitor-for"]).toBe(45_000);
		expect(() => parse(["--sleep", "1s", "--sleep-ms", "5"])).toThrow(
			"--sleep-ms is the old spelling of --sleep",
		);
		expect(() => parse(["--sleep", "soon"])).toThrow(
			'--sleep needs a duration such as 5s, 500ms or 2min, not "soon".',
		);
	});

	describe("on a database", () => {
		let url: string;
		beforeAll(async () => {
			url = await createDatabase("cli_flags");
		});
		afterAll(async () => {
			await dropDatabase(url);
		});

		it("db-health takes --idle-age 1s (and its other ages as durations)", async () => {
			const run = await runRunbook(
				"db-health",
				[
					"--idle-age",
					"1s",
					"--transaction-age",
					"2min",
					"--replication-lag",
					"500ms",
					"--json",
				],
				{ env: { DATABASE_URL: url } },
			);
			expect(run.code, run.stderr).toBe(0);
			expect(JSON.parse(run.stdout).ok).toBe(true);
		});

		it("monitor takes --threshold 1500ms and --watch/--duration as durations", async () => {
			const run = await runRunbook(
				"monitor",
				["--watch", "500ms", "--duration", "1s", "--threshold", "1500ms"],
				{ env: { DATABASE_URL: url } },
			);
			expect(run.code, run.stderr).toBe(0);
			const bad = await runRunbook("monitor", ["--watch", "100ms"], {
				env: { DATABASE_URL: url },
			});
			expect(bad.code).toBe(2);
			expect(bad.stderr).toContain("--watch needs at least 0.5 seconds");
		});
	});
});

describe("the suite's bundles (test/support/runbook-bundle.ts)", () => {
	it.for(["validate", "emergency-rollback", "migrate-to-supabase"])(
		"%s: the bundle the tests start prints what tsx's run of the source prints",
		(name) => {
			const bundle = runbookBundle(ROOT, name);
			expect(bundle, "built by the global set-up").not.toBeNull();
			const run = (argv: string[]) =>
				spawnSync(process.execPath, ["--", ...argv, "--help"], {
					cwd: ROOT,
					env: { ...process.env, NO_COLOR: "1" },
					encoding: "utf8",
				});
			const viaTsx = run([tsxCli, join("runbooks", `${name}.ts`)]);
			const viaBundle = run([bundle as string]);
			expect(viaTsx.status, viaTsx.stderr).toBe(0);
			expect(viaBundle.stdout).toBe(viaTsx.stdout);
			expect(viaBundle.status).toBe(0);
		},
	);
});
