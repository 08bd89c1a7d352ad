// How long an operator waits: validate, troubleshoot and the deploy's verify step against one
// `prisma migrate status` on the same database (the field's floor for "is this database up to
// date?"), and `--help` of every runbook as an operator types it (`npx tsx runbooks/<name>.ts` and
// `./runbooks/<name>.ts`) beside the floors of those two forms (the same commands on an empty
// file). Medians of BENCH_RUNS (5) runs each, in one run.
//   npx tsx test/bench/latency.ts      (BENCH_USERS=20000 by default; BENCH_DATABASE_URL to reuse one;
//                                       BENCH_ROOT=<another checkout> times its runbooks instead)

import { spawnSync } from "node:child_process";
import {
	cpSync,
	mkdirSync,
	mkdtempSync,
	readdirSync,
	readFileSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
	prismaCli as prisma,
	ROOT,
	tsxCli as tsx,
} from "../support/field-checkout.ts";
import { faceSwapDatabase, median, secs } from "./face-swap-db.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CHECKOUT = process.env.BENCH_ROOT ?? ROOT;

const bench = await faceSwapDatabase(Number(process.env.BENCH_USERS ?? 20_000));
const env = {
	...process.env,
	DATABASE_URL: bench.url,
	RUNBOOK_AUDIT_LOG: "/tmp/bench-latency-audit.jsonl",
	BACKUP_DIR: mkdtempSync(join(tmpdir(), "bench-latency-backups-")),
	PRISMA_HIDE_UPDATE_MESSAGE: "1",
	CHECKPOINT_DISABLE: "1",
	NO_COLOR: "1",
};

// The migrations and one more, for the deploy to apply (and verify).
const PROBE = "29990101000000_bench_probe";
const probeMigrations = mkdtempSync(join(tmpdir(), "bench-migrations-"));
cpSync(join(ROOT, "prisma", "migrations"), probeMigrations, {
	recursive: true,
});
mkdirSync(join(probeMigrations, PROBE));
writeFileSync(
	join(probeMigrations, PROBE, "migration.sql"),
	"CREATE TABLE bench_probe (id integer PRIMARY KEY);\n",
);
const psql = (sql: string) =>
	spawnSync("psql", [bench.url, "-qc", sql], { stdio: "ignore" });

/** Wall time of one child process (node unless `command` says otherwise), and its stdout. */
function time(
	argv: string[],
	extraEnv: Record<string, string> = {},
	command = process.execPath,
): { ms: number; out: string } {
	const t = performance.now();
	const r = spawnSync(command, argv, {
		cwd: CHECKOUT,
		env: { ...env, ...extraEnv },
		encoding: "utf8",
		stdio: ["ignore", "pipe", "ignore"],
	});
	return { ms: performance.now() - t, out: r.stdout };
}

const runbook = (
	name: string,
	args: string[],
	extraEnv: Record<string, string> = {},
) =>
	time(
		[tsx, "--", join(CHECKOUT, "runbooks", `${name}.ts`), ...args],
		extraEnv,
	);

function medianOf(what: () => number): number {
	return median(Array.from({ length: RUNS }, what));
}

/** The deploy of the probe migration; returns its verify step's duration, then takes it back. */
function verifyStep(): number {
	const r = runbook(
		"deploy-production",
		[
			"--yes",
			"--confirm",
			new URL(bench.url).pathname.slice(1),
			// The old spelling of --monitor-for, which versions before it take too.
			"--monitor-seconds",
			"0",
			"--json",
		],
		{ PRISMA_MIGRATIONS_DIR: probeMigrations },
	);
	psql(
		`drop table if exists bench_probe; delete from _prisma_migrations where migration_name = '${PROBE}'`,
	);
	const step = JSON.parse(r.out).steps.find((s: { title: string }) =>
		s.title.startsWith("Verify"),
	);
	if (step?.status !== "ok" && step?.status !== "warning")
		throw new Error(`the deploy did not verify: ${r.out}`);
	return step.duration_ms;
}

const load = () =>
	loadavg()
		.map((l) => l.toFixed(2))
		.join(" ");

try {
	console.log(
		`database: ${(bench.bytes / 1024 ** 2).toFixed(0)} MB; load average before: ${load()}`,
	);
	const status = medianOf(
		() =>
			time([prisma, "migrate", "status", "--config", "prisma/prisma.config.ts"])
				.ms,
	);
	const rows: Array<[string, number]> = [
		["validate.ts", medianOf(() => runbook("validate", []).ms)],
		["troubleshoot.ts", medianOf(() => runbook("troubleshoot", []).ms)],
		["deploy-production.ts: the verify step", medianOf(verifyStep)],
	];
	console.log(`\n| command | median of ${RUNS} | × migrate status |`);
	console.log("| --- | --- | --- |");
	console.log(`| \`prisma migrate status\` | ${secs(status)} | 1.00 |`);
	for (const [name, ms] of rows)
		console.log(`| ${name} | ${secs(ms)} | ${(ms / status).toFixed(2)} |`);

	// An empty .ts file beside the runbooks, with their shebang, so both forms start as for a runbook.
	const empty = join(CHECKOUT, "runbooks", ".bench-empty.ts");
	const shebang = readFileSync(
		join(CHECKOUT, "runbooks", "validate.ts"),
		"utf8",
	).split("\n")[0];
	writeFileSync(empty, `${shebang}\n`, { mode: 0o755 });
	const help = (args: string[], command: string) =>
		secs(medianOf(() => time(args, {}, command).ms));
	console.log(
		`\n| \`--help\`, median of ${RUNS} | \`npx tsx runbooks/<name>.ts\` | \`./runbooks/<name>.ts\` |`,
	);
	console.log("| --- | --- | --- |");
	try {
		console.log(
			`| (an empty file: the floor) | ${help(["tsx", empty], "npx")} | ${help([], empty)} |`,
		);
	} finally {
		rmSync(empty);
	}
	for (const file of readdirSync(join(CHECKOUT, "runbooks")).sort()) {
		if (!file.endsWith(".ts") || file.startsWith(".")) continue;
		const path = join(CHECKOUT, "runbooks", file);
		console.log(
			`| ${file.replace(/\.ts$/, "")} | ${help(["tsx", path, "--help"], "npx")} | ${help(["--help"], path)} |`,
		);
	}
	console.log(`\nload average after: ${load()}`);
} finally {
	await bench.stop();
}
