// switch-db-env.ts as an operator runs it: ./runbooks/switch-db-env.ts remote|local|status in a
// checkout whose .env holds both profiles, the remote one being a Supabase-shaped server behind a
// real pgbouncer. Every .env lives in a temporary directory, never the repository's own.

import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "dotenv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADDED_MARK, rewriteUrls } from "../lib/config/env-file.ts";
import { copyRepository, dropDatabase, runRunbook } from "./support/harness.ts";
import { freePort } from "./support/postgres.ts";
import {
	envDir,
	expectNoSecrets,
	newAuditLog,
	type SupabaseFixture,
	startSupabaseWithLocal,
	tempDir,
} from "./support/supabase-suite.ts";

let sb: SupabaseFixture;
let localUrl: string;
let audit: string;

beforeAll(async () => {
	[sb, localUrl] = await startSupabaseWithLocal("switch_local");
	audit = newAuditLog();
});

afterAll(async () => {
	await sb?.stop();
	await dropDatabase(localUrl);
});

/** An app's .env with comments, blanks, quoting styles and both profiles. */
function envText(
	opts: { remoteApp?: string; remoteDirect?: string; eol?: string } = {},
): string {
	const eol = opts.eol ?? "\n";
	return [
		"# Face Swap app settings",
		`DATABASE_URL="${localUrl}"`,
		"  # DATABASE_URL=postgresql://commented-out@elsewhere/db stays a comment",
		"",
		"NEXTAUTH_URL=http://localhost:3000",
		"NEXTAUTH_SECRET='s3cr3t # not a comment'",
		"export STRIPE_KEY=sk_test_123   # trailing comment",
		"",
		"# Profiles for switch-db-env",
		`LOCAL_DATABASE_URL="${localUrl}"`,
		`REMOTE_DATABASE_URL="${opts.remoteApp ?? sb.poolerUrl}"`,
		`REMOTE_DIRECT_URL=${opts.remoteDirect ?? sb.directUrl}`,
		"EMPTY=",
		"",
	].join(eol);
}

/** A temporary directory holding `.env` with `text`. */
const appDir = (text: string) => envDir("switch-env-", text);

const run = (args: string[], file: string) =>
	runRunbook("switch-db-env", [...args, "--env-file", file], {
		env: { RUNBOOK_AUDIT_LOG: audit },
	});

const backups = (dir: string) =>
	readdirSync(dir).filter((f) => f.startsWith(".env.backup-"));

describe("switch-db-env.ts", () => {
	it("switches remote then local as an executable in a checkout: only DATABASE_URL/DIRECT_URL change, backup 0600, original restored byte for byte", async () => {
		const repo = copyRepository();
		const original = envText();
		const file = join(repo, ".env");
		writeFileSync(file, original, { mode: 0o640 });

		const remote = await runRunbook("switch-db-env", ["remote"], {
			root: repo,
			asExecutable: true,
			env: { RUNBOOK_AUDIT_LOG: audit },
		});
		expect(remote.code, remote.stdout + remote.stderr).toBe(0);
		expectNoSecrets(remote, sb);
		const switched = readFileSync(file, "utf8");
		const values = parse(switched);
		expect(values.DATABASE_URL).toBe(sb.poolerUrl);
		expect(values.DIRECT_URL).toBe(sb.directUrl);
		// Every other line kept: removing the two URL lines gives the original without its DATABASE_URL line.
		const strip = (t: string) =>
			t
				.split("\n")
				.filter((l) => !/^(DATABASE_URL|DIRECT_URL)=/.test(l))
				.join("\n");
		expect(strip(switched)).toBe(strip(original));
		expect(statSync(file).mode & 0o777).toBe(0o640);
		const [backup] = backups(repo);
		expect(backup).toBeDefined();
		expect(statSync(join(repo, backup)).mode & 0o777).toBe(0o600);
		expect(readFileSync(join(repo, backup), "utf8")).toBe(original);

		const status = await runRunbook("switch-db-env", ["status"], {
			root: repo,
			asExecutable: true,
			env: { RUNBOOK_AUDIT_LOG: audit },
		});
		expect(status.code, status.stdout + status.stderr).toBe(0);
		expect(status.stdout).toContain("active profile: remote");
		expect(status.stdout).toMatch(
			/DATABASE_URL = REMOTE_DATABASE_URL postgres@127\.0\.0\.1:\d+\/postgres \(pooler\): answers/,
		);
		expectNoSecrets(status, sb);

		const local = await runRunbook("switch-db-env", ["local"], {
			root: repo,
			asExecutable: true,
			env: { RUNBOOK_AUDIT_LOG: audit },
		});
		expect(local.code, local.stdout + local.stderr).toBe(0);
		expect(readFileSync(file, "utf8")).toBe(original);
		expect(statSync(file).mode & 0o777).toBe(0o640);
		expect(backups(repo)).toHaveLength(2);
	});

	it("keeps CRLF line endings and restores them exactly", async () => {
		const original = envText({ eol: "\r\n" });
		const { file } = appDir(original);
		expect((await run(["remote"], file)).code).toBe(0);
		const switched = readFileSync(file, "utf8");
		expect(
			switched.split("\n").every((l) => l === "" || l.endsWith("\r")),
		).toBe(true);
		expect(parse(switched).DIRECT_URL).toBe(sb.directUrl);
		expect((await run(["local"], file)).code).toBe(0);
		expect(readFileSync(file, "utf8")).toBe(original);
	});

	it("refuses an unreachable profile with exit 3 and leaves .env untouched; --force switches anyway", async () => {
		const port = await freePort();
		const dead = `postgresql://postgres:nope@127.0.0.1:${port}/postgres`;
		const original = envText({
			remoteApp: `${dead}?pgbouncer=true`,
			remoteDirect: dead,
		});
		const { dir, file } = appDir(original);
		const refused = await run(["remote"], file);
		expect(refused.code, refused.stdout + refused.stderr).toBe(3);
		expect(refused.stderr).toContain(
			"The remote profile does not answer (REMOTE_DATABASE_URL and REMOTE_DIRECT_URL): .env was not changed.",
		);
		expect(refused.stdout).toContain("the connection was refused");
		expect(readFileSync(file, "utf8")).toBe(original);
		expect(backups(dir)).toEqual([]);

		const forced = await run(["remote", "--force"], file);
		expect(forced.code, forced.stdout + forced.stderr).toBe(0);
		expect(parse(readFileSync(file, "utf8")).DATABASE_URL).toBe(
			`${dead}?pgbouncer=true`,
		);
	});

	it("refuses a pooler URL as REMOTE_DIRECT_URL, naming DIRECT_URL", async () => {
		const original = envText({ remoteDirect: sb.poolerUrl });
		const { dir, file } = appDir(original);
		const r = await run(["remote"], file);
		expect(r.code).toBe(3);
		expect(r.stderr).toContain("REMOTE_DIRECT_URL");
		expect(r.stderr).toContain("it becomes DIRECT_URL");
		expect(readFileSync(file, "utf8")).toBe(original);
		expect(backups(dir)).toEqual([]);
		expectNoSecrets(r, sb);
	});

	it("refuses to drop a DATABASE_URL that no profile records, unless --force", async () => {
		const other = localUrl.replace(/\/[^/]+$/, "/postgres");
		const original = envText().replace(
			`DATABASE_URL="${localUrl}"`,
			`DATABASE_URL="${other}"`,
		);
		const { file } = appDir(original);
		const r = await run(["remote"], file);
		expect(r.code).toBe(3);
		expect(r.stderr).toContain("which no profile records");
		expect(readFileSync(file, "utf8")).toBe(original);
	});

	it("status and switching work when .env has no DATABASE_URL, or a dead one", async () => {
		const original = envText().replace(`DATABASE_URL="${localUrl}"\n`, "");
		const { file } = appDir(original);
		const status = await run(["status"], file);
		expect(status.code, status.stdout + status.stderr).toBe(1);
		expect(status.stdout).toContain("DATABASE_URL is not set in .env");
		expect(status.stdout).toMatch(
			/REMOTE_DIRECT_URL postgres@127\.0\.0\.1:\d+\/postgres: answers/,
		);

		const remote = await run(["remote"], file);
		expect(remote.code, remote.stdout + remote.stderr).toBe(0);
		const values = parse(readFileSync(file, "utf8"));
		expect(values.DATABASE_URL).toBe(sb.poolerUrl);
		expect(values.DIRECT_URL).toBe(sb.directUrl);

		// A dead DATABASE_URL recorded as the local profile: status says so (exit 1) but still runs.
		const port = await freePort();
		const dead = `postgresql://postgres:nope@127.0.0.1:${port}/faceswap`;
		const deadEnv = envText().split(localUrl).join(dead);
		const d = appDir(deadEnv);
		const deadStatus = await run(["status"], d.file);
		expect(deadStatus.code).toBe(1);
		expect(deadStatus.stdout).toContain("active profile: local");
		expect(deadStatus.stdout).toContain("does not answer");
		expect((await run(["remote"], d.file)).code).toBe(0);
	});

	it("changes nothing under --dry-run", async () => {
		const original = envText();
		const { dir, file } = appDir(original);
		const r = await run(["remote", "--dry-run"], file);
		expect(r.code, r.stdout + r.stderr).toBe(0);
		expect(r.stdout).toContain("DATABASE_URL: set to REMOTE_DATABASE_URL");
		expect(readFileSync(file, "utf8")).toBe(original);
		expect(readdirSync(dir)).toEqual([".env"]);
	});

	it("exits 2 with a plain message when there is no .env to switch", async () => {
		// (A missing --env-file path is caught by Node 20 itself, which scans argv for --env-file: exit 9.)
		const cwd = tempDir("switch-env-");
		const r = await runRunbook("switch-db-env", ["remote"], {
			cwd,
			env: {
				RUNBOOK_AUDIT_LOG: audit,
				REMOTE_DATABASE_URL: sb.poolerUrl,
				REMOTE_DIRECT_URL: sb.directUrl,
			},
		});
		expect(r.code, r.stdout + r.stderr).toBe(2);
		expect(r.stderr).toContain(
			`There is no environment file at ${join(cwd, ".env")}.`,
		);
		expect(readdirSync(cwd)).toEqual([]);
		expectNoSecrets(r, sb);
	});
});

describe("rewriteUrls (lib/config/env-file.ts)", () => {
	const A = "postgresql://a:pw@h1:5432/app";
	const B = "postgresql://b:pw@h2:6543/postgres?pgbouncer=true";
	const D = "postgresql://b:pw@h2:5432/postgres";

	it("keeps each line's own quoting, export prefix and trailing comment", () => {
		const text = `export DATABASE_URL='${A}'  # local\r\nX=1\r\n`;
		const out = rewriteUrls(text, B, D).text;
		expect(out).toBe(
			`export DATABASE_URL='${B}'  # local\r\nDIRECT_URL="${D}" ${ADDED_MARK}\r\nX=1\r\n`,
		);
		expect(rewriteUrls(out, A, null).text).toBe(text);
	});

	it("sets an unquoted value unquoted, and every assignment of a repeated key", () => {
		const text = `DATABASE_URL=${A}\nDIRECT_URL=${A} # mine\nDATABASE_URL=${A}`;
		const out = rewriteUrls(text, B, D);
		expect(out.text).toBe(
			`DATABASE_URL=${B}\nDIRECT_URL=${D} # mine\nDATABASE_URL=${B}`,
		);
		// A DIRECT_URL the operator wrote is set to the database URL, not removed, for a profile without one.
		expect(rewriteUrls(out.text, A, null).text).toBe(
			`DATABASE_URL=${A}\nDIRECT_URL=${A} # mine\nDATABASE_URL=${A}`,
		);
	});

	it("appends missing keys at the end, and reports nothing to do when already set", () => {
		expect(rewriteUrls("X=1", B, D).text).toBe(
			`X=1\nDATABASE_URL="${B}"\nDIRECT_URL="${D}" ${ADDED_MARK}\n`,
		);
		expect(rewriteUrls("", B, null).text).toBe(`DATABASE_URL="${B}"\n`);
		const same = `DATABASE_URL="${B}"\nDIRECT_URL="${D}"\n`;
		expect(rewriteUrls(same, B, D).text).toBe(same);
		expect(rewriteUrls(same, B, D).changes.map((c) => c.action)).toEqual([
			"unchanged",
			"unchanged",
		]);
	});

	it("refuses a value spread over several lines (exit 2)", () => {
		expect(() => rewriteUrls(`DATABASE_URL="${A}\nmore"\n`, B, D)).toThrow(
			/over several lines/,
		);
	});
});
