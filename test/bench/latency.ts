// How long an operator waits: validate, troubleshoot and the deploy's verify step against one
// `prisma migrate status` on the same database (the field's floor for "is this database up to
// date?"), and `--help` of every runbook. Medians of BENCH_RUNS (5) runs each, in one run.
//   npx tsx test/bench/latency.ts      (BENCH_USERS=20000 by default; BENCH_DATABASE_URL to reuse one)

import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { loadavg } from "node:os";
import { join } from "node:path";
import { faceSwapDatabase, median, secs } from "./face-swap-db.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const tsx = createRequire(import.meta.url).resolve("tsx/cli");
const prisma = join(
	createRequire(import.meta.url).resolve("prisma/package.json"),
	"..",
	"build",
	"index.js",
);

const bench = await faceSwapDatabase(Number(process.env.BENCH_USERS ?? 20_000));
const env = {
	...process.env,
	DATABASE_URL: bench.url,
	RUNBOOK_AUDIT_LOG: "/tmp/bench-latency-audit.jsonl",
	BACKUP_DIR: "/tmp/bench-latency-backups",
	PRISMA_HIDE_UPDATE_MESSAGE: "1",
	CHECKPOINT_DISABLE: "1",
	NO_COLOR: "1",
};

/** Wall time of one child process, and its stdout. */
function time(argv: string[]): {
	ms: number;
	code: number | null;
	out: string;
} {
	const t = performance.now();
	const r = spawnSync(process.execPath, argv, {
		cwd: ROOT,
		env,
		encoding: "utf8",
		stdio: ["ignore", "pipe", "ignore"],
	});
	return { ms: performance.now() - t, code: r.status, out: r.stdout };
}

const runbook = (name: string, args: string[]) =>
	time([tsx, "--", join(ROOT, "runbooks", `${name}.ts`), ...args]);

function medianOf(what: () => number): number {
	return median(Array.from({ length: RUNS }, what));
}

try {
	console.log(
		`database: ${(bench.bytes / 1024 ** 2).toFixed(0)} MB; load average before: ${loadavg()
			.map((l) => l.toFixed(2))
			.join(" ")}`,
	);
	const status = medianOf(
		() =>
			time([prisma, "migrate", "status", "--config", "prisma/prisma.config.ts"])
				.ms,
	);
	const rows: Array<[string, number]> = [
		["validate.ts", medianOf(() => runbook("validate", []).ms)],
		["troubleshoot.ts", medianOf(() => runbook("troubleshoot", []).ms)],
		[
			"deploy-production.ts: the verify step",
			medianOf(() => {
				// Nothing to deploy: the run still verifies; the step's own duration is read from --json.
				const r = runbook("deploy-production", [
					"--yes",
					"--confirm",
					new URL(bench.url).pathname.slice(1),
					"--json",
				]);
				const step = JSON.parse(r.out).steps.find((s: { title: string }) =>
					s.title.startsWith("Verify"),
				);
				return step.duration_ms;
			}),
		],
	];
	console.log(`\n| command | median of ${RUNS} | × migrate status |`);
	console.log("| --- | --- | --- |");
	console.log(`| \`prisma migrate status\` | ${secs(status)} | 1.00 |`);
	for (const [name, ms] of rows)
		console.log(`| ${name} | ${secs(ms)} | ${(ms / status).toFixed(2)} |`);

	console.log(`\n| \`--help\` | median of ${RUNS} |`);
	console.log("| --- | --- |");
	for (const file of readdirSync(join(ROOT, "runbooks")).sort()) {
		const name = file.replace(/\.ts$/, "");
		console.log(
			`| ${name} | ${secs(medianOf(() => runbook(name, ["--help"]).ms))} |`,
		);
	}
	console.log(
		`\nload average after: ${loadavg()
			.map((l) => l.toFixed(2))
			.join(" ")}`,
	);
} finally {
	await bench.stop();
}
