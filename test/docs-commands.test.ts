// The commands the docs show, run, so that the docs cannot go stale: every line of the ```sh,
// ```bash and ```console blocks of README.md and docs/*.md, every `npx tsx runbooks/...` or
// `./runbooks/...` command in a table cell, and the runbook command inside each line of a
// ```crontab block. Each runbook command runs against a throw-away copy of a small seeded Face Swap
// database prepared for it; it must exit as the docs say (a trailing `# exit N` comment) or 0, and
// never 2 (bad usage: a flag, subcommand or argument that no longer exists). Commands that change
// something run as shown where the prepared state allows it (RUN_AS_SHOWN), else with --dry-run
// appended. Every other command (npm, psql, pg_dump, prisma, cron lines) must be listed in
// NOT_RUN with the reason, so a new one cannot slip through unchecked.

import { execFileSync } from "node:child_process";
import { cpSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedFaceSwap } from "./support/fixtures.ts";
import { GIT_ENV, migrationsRepo } from "./support/git-fixtures.ts";
import {
	admin,
	copyRepository,
	createDatabase,
	dropDatabase,
	ROOT,
	runPrismaCli,
	runRunbook,
	scratchDir,
} from "./support/harness.ts";
import { rewind, scratchDatabases } from "./support/migration-fixtures.ts";

/**
 * Placeholders the docs use, and what the test puts in their place. `faceswap` and `faceswap_dev`
 * after --confirm are the example database names: the prepared database's name replaces them.
 */
const PLACEHOLDERS: Record<string, (p: Prepared) => string> = {
	"<database>": (p) => p.db,
	"<id>": (p) => p.backupId,
	"<safety id>": (p) => p.backupId,
	"<migration>": () => LATEST_MIGRATION,
	"<commit>": (p) => p.commit,
	"<t>": () => "generated_videos",
	"<c>": () => "thumbnail_path",
	"<col>": () => "thumbnail_path",
	"<type>": () => "text",
	"<expr>": () => "'thumbs/' || id || '.jpg'",
	"<cond>": () => "thumbnail_path IS NULL",
};

/** Commands that are not runbooks, and why they are not run here. */
const NOT_RUN: Array<[RegExp, string]> = [
	[/^npm (ci|test)\b/, "installs or runs the whole suite: what CI does"],
	[/^npm run (typecheck|lint|demo)\b/, "development tooling, run by CI"],
	[/^npm run test:containers\b/, "the container suites: what CI does"],
	[
		/^test\/support\/build-postgres-image\.sh\b/,
		"builds the Docker test images as root (debootstrap): what CI does",
	],
	[
		/^pg_dump \$DATABASE_URL/,
		"the old way the docs warn against (password on the command line)",
	],
	[
		/^npx prisma migrate deploy$/,
		"the old way the docs warn against (no backup, no lock timeout)",
	],
	[
		/^npx prisma (migrate (status|deploy|diff)|validate)\b/,
		"run from a copy of the repository root by test/prisma-config.test.ts",
	],
	[/^psql\b/, "a plain psql session, not a runbook"],
	[
		/^[\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+ [\d*/,-]+ /,
		"a crontab line: its runbook command is run on its own",
	],
];

/** Commands that change something and are run as shown, on the state prepared for them. */
const RUN_AS_SHOWN: RegExp[] = [
	/runbooks\/backup\.ts( create\b| --keep| *$| prune| verify| list)/,
	/runbooks\/emergency-rollback\.ts .*--rehearse/,
	/runbooks\/troubleshoot\.ts --resolve-(rolled-back|applied)/,
	/runbooks\/backfill\.ts .*--resume/,
	/runbooks\/switch-db-env\.ts status/,
];

/** Read-only runbooks: run as shown. */
const READ_ONLY =
	/runbooks\/(validate|db-health|troubleshoot)\.ts(?!.*--(reset|cancel-blocker|terminate-blocker|resolve))|runbooks\/monitor\.ts(?!.*--(cancel|terminate))|--help\b/;

const LATEST_MIGRATION = "20241230000000_comprehensive_schema";
const RATING = "20250101000000_add_video_rating";
const RATING_SQL =
	'ALTER TABLE "generated_videos" ADD COLUMN "rating" INTEGER;\n';

const markFailed = (url: string) =>
	admin(
		(a) =>
			a.query(
				"update _prisma_migrations set finished_at = null, logs = 'error: simulated failure' where migration_name = $1",
				[LATEST_MIGRATION],
			),
		url,
	);

interface DocCommand {
	file: string;
	line: number;
	text: string;
	/** The exit code the docs state (`# exit N`), else 0. */
	exit: number;
}

function extract(): DocCommand[] {
	const files = [
		join(ROOT, "README.md"),
		...readdirSync(join(ROOT, "docs"))
			.filter((f) => f.endsWith(".md"))
			.map((f) => join(ROOT, "docs", f)),
	];
	const out: DocCommand[] = [];
	for (const file of files) {
		const lines = readFileSync(file, "utf8").split("\n");
		const rel = file.slice(ROOT.length);
		let fence: string | null = null;
		for (let i = 0; i < lines.length; i++) {
			const line = lines[i];
			const open = /^```(\w*)\s*$/.exec(line);
			if (open) {
				fence = fence === null ? open[1] || "text" : null;
				continue;
			}
			if (fence && ["sh", "bash", "console", "crontab"].includes(fence)) {
				let text = line.replace(/^\$ /, "");
				const first = i + 1;
				while (text.endsWith("\\") && i + 1 < lines.length)
					text = `${text.slice(0, -1).trimEnd()} ${lines[++i].trim()}`;
				if (!text.trim() || text.trim().startsWith("#")) continue;
				const { command, exit } = splitComment(text);
				out.push({ file: rel, line: first, text: command, exit });
				if (fence === "crontab") {
					const inner = /(?:npx tsx |\.\/)runbooks\/[^>|&;]*/.exec(command);
					if (inner)
						out.push({
							file: rel,
							line: first,
							text: inner[0].trim(),
							exit: 0,
						});
				}
				continue;
			}
			if (fence === null && line.startsWith("|")) {
				for (const m of line.matchAll(
					/`((?:npx tsx |\.\/)runbooks\/[^`]+)`/g,
				)) {
					out.push({
						file: rel,
						line: i + 1,
						text: m[1].replace(/\\\|/g, "|"),
						exit: 0,
					});
				}
			}
		}
	}
	return out;
}

/** A trailing `# comment` (outside quotes), and the exit code it states. */
function splitComment(text: string): { command: string; exit: number } {
	let quote: string | null = null;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (quote) {
			if (c === quote) quote = null;
		} else if (c === "'" || c === '"') quote = c;
		else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]))) {
			const comment = text.slice(i);
			const exit = /# exit (\d+)/.exec(comment);
			return {
				command: text.slice(0, i).trim(),
				exit: exit ? Number(exit[1]) : 0,
			};
		}
	}
	return { command: text.trim(), exit: 0 };
}

/** Shell words: '...', "..." (with \" and \\), and bare words. */
function shellWords(text: string): string[] {
	const words: string[] = [];
	let cur = "";
	let inWord = false;
	for (let i = 0; i < text.length; i++) {
		const c = text[i];
		if (c === "'") {
			const end = text.indexOf("'", i + 1);
			cur += text.slice(i + 1, end);
			i = end;
			inWord = true;
		} else if (c === '"') {
			i++;
			while (i < text.length && text[i] !== '"') {
				if (text[i] === "\\" && /["\\$`]/.test(text[i + 1] ?? "")) i++;
				cur += text[i++];
			}
			inWord = true;
		} else if (/\s/.test(c)) {
			if (inWord) words.push(cur);
			cur = "";
			inWord = false;
		} else {
			cur += c;
			inWord = true;
		}
	}
	if (inWord) words.push(cur);
	return words;
}

interface Prepared {
	db: string;
	url: string;
	backupId: string;
	/** For --git-revert: the commit that added the migration the rollback takes out. */
	commit: string;
	/** Extra environment (PRISMA_MIGRATIONS_DIR of a git repository for --git-revert). */
	env: Record<string, string>;
}

let template: string;
let remote: string;
let repo: string;
let backupsTemplate: string;
let templateBackupId: string;
/** The prepared copies of the template. */
const copies = scratchDatabases();

beforeAll(async () => {
	[template, remote] = await Promise.all([
		createDatabase("docs_tpl"),
		createDatabase("docs_remote"),
	]);
	const deployed = await runPrismaCli(["migrate", "deploy"], template);
	expect(deployed.code, deployed.stderr).toBe(0);
	await seedFaceSwap(template, { users: 50 });
	repo = copyRepository();
	// A throw-away git repository of the copy, for emergency-rollback's --git-revert <commit>.
	for (const args of [
		["init", "-q"],
		["add", "-A"],
		["commit", "-qm", "the runbooks and migrations"],
	])
		execFileSync("git", args, {
			cwd: repo,
			env: { ...process.env, ...GIT_ENV },
			stdio: "ignore",
		});
	// A verified backup for the commands that name one (<id>), made of the template.
	backupsTemplate = join(scratchDir(), "backups");
	const made0 = await runRunbook("backup", ["create"], {
		env: {
			DATABASE_URL: template,
			BACKUP_DIR: backupsTemplate,
			RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
		},
		root: repo,
		cwd: repo,
	});
	expect(made0.code, made0.stdout + made0.stderr).toBe(0);
	templateBackupId = readdirSync(backupsTemplate)
		.filter((f) => f.endsWith(".json"))
		.map((f) => f.replace(/\.json$/, ""))[0];
}, 180_000);

afterAll(async () => {
	await copies.dropAll();
	if (template) await dropDatabase(template);
	if (remote) await dropDatabase(remote);
});

const commands = extract();
const runbookCommands = commands.filter((c) =>
	/^(npx tsx |\.\/)runbooks\//.test(c.text),
);
const others = commands.filter((c) => !runbookCommands.includes(c));

describe("the commands shown in the docs", () => {
	it("finds the docs' commands (and lists every non-runbook one as not run, with the reason)", () => {
		expect(runbookCommands.length).toBeGreaterThan(40);
		const unclassified = others.filter(
			(c) => !NOT_RUN.some(([re]) => re.test(c.text)),
		);
		expect(unclassified.map((c) => `${c.file}:${c.line}: ${c.text}`)).toEqual(
			[],
		);
	});

	it.concurrent.for(
		runbookCommands.map((c) => [`${c.file}:${c.line}`, c.text, c] as const),
	)("%s runs: %s", async ([, , cmd], { expect }) => {
		const p = await prepare(cmd);
		let text = cmd.text;
		for (const [k, v] of Object.entries(PLACEHOLDERS))
			text = text.split(k).join(v(p));
		text = text.replace(/--confirm faceswap(_dev)?\b/g, `--confirm ${p.db}`);
		expect(text, "a placeholder the test cannot fill").not.toMatch(
			/<[a-z][^>]*>/,
		);
		const words = shellWords(text);
		const script = words[0] === "npx" ? words[2] : words[0];
		const name = /runbooks\/([\w-]+)\.ts$/.exec(script)?.[1];
		expect(name, text).toBeDefined();
		const args = words.slice(words[0] === "npx" ? 3 : 1);
		const asShown =
			args.includes("--dry-run") ||
			READ_ONLY.test(text) ||
			RUN_AS_SHOWN.some((re) => re.test(text));
		if (!asShown) args.push("--dry-run");
		const watch = args.includes("--watch");
		const dir = scratchDir();
		const env = {
			...p.env,
			DATABASE_URL: p.url,
			BACKUP_DIR: join(dir, "backups"),
			RUNBOOK_AUDIT_LOG: join(dir, "audit.jsonl"),
		};
		copyBackups(env.BACKUP_DIR, p.db);
		const envFile = join(dir, ".env");
		const envFileUrls = {
			DATABASE_URL: p.url,
			LOCAL_DATABASE_URL: p.url,
			REMOTE_DATABASE_URL: remote,
			REMOTE_DIRECT_URL: remote,
		};
		writeFileSync(
			envFile,
			Object.entries(envFileUrls)
				.map(([k, v]) => `${k}="${v}"\n`)
				.join(""),
			{ mode: 0o600 },
		);
		const profiles = name === "switch-db-env" || name === "migrate-to-supabase";
		const r = await runRunbook(
			name as string,
			profiles && !args.includes("--env-file")
				? [...args, "--env-file", envFile]
				: args,
			{
				env: profiles ? { ...env, DATABASE_URL: undefined } : env,
				root: repo,
				cwd: repo,
				// --watch runs until Ctrl-C: one refresh, then SIGINT.
				...(watch
					? {
							signalOn: {
								pattern: /\n\S/,
								signal: "SIGINT" as const,
								delayMs: 1500,
							},
						}
					: {}),
			},
		);
		const out = `${text}${asShown ? "" : " --dry-run"}\n${r.stdout}\n${r.stderr}`;
		expect(r.code, out).not.toBe(2);
		expect(r.code, out).toBe(watch && r.code === 130 ? 130 : cmd.exit);
	});
});

/**
 * The template's verified backup, as a pre-deploy backup of the prepared copy (which holds the same
 * data): the manifest names the copy, so emergency-rollback proposes it. The archive and its
 * sha256 are untouched, so verification is real.
 */
function copyBackups(dir: string, db: string): void {
	cpSync(backupsTemplate, dir, { recursive: true });
	const tpl = new URL(template).pathname.slice(1);
	for (const f of readdirSync(dir).filter((f) => f.endsWith(".json"))) {
		const m = JSON.parse(readFileSync(join(dir, f), "utf8"));
		m.kind = "pre-deploy";
		m.database = db;
		m.target = String(m.target).split(tpl).join(db);
		writeFileSync(join(dir, f), JSON.stringify(m, null, 2), { mode: 0o600 });
	}
}

/** A fresh copy of the seeded database, in the state the command needs. */
async function prepare(c: DocCommand): Promise<Prepared> {
	const url = await copies.clone(template, "docs");
	const db = new URL(url).pathname.slice(1);
	if (/--resolve-applied/.test(c.text)) {
		// A failed migration whose changes were then completed by hand: objects there, row failed.
		await markFailed(url);
	}
	if (/--resolve-rolled-back/.test(c.text)) {
		// A failed migration PostgreSQL rolled back: its objects gone, its row failed.
		const [row] = await admin(
			async (a) =>
				(
					await a.query(
						"select * from _prisma_migrations where migration_name = $1",
						[LATEST_MIGRATION],
					)
				).rows,
			url,
		);
		await rewind(url, 1);
		await admin(
			(a) =>
				a.query(
					"insert into _prisma_migrations (id, checksum, migration_name, started_at, applied_steps_count) values ($1, $2, $3, $4, 0)",
					[row.id, row.checksum, row.migration_name, row.started_at],
				),
			url,
		);
		await markFailed(url);
	}
	let commit = "HEAD";
	const env: Record<string, string> = {};
	if (/--git-revert/.test(c.text)) {
		// A deploy after the backup: one more migration, added by a commit of a git repository.
		const mr = migrationsRepo({ [RATING]: RATING_SQL }, "Add video ratings");
		env.PRISMA_MIGRATIONS_DIR = mr.dir;
		const deployed = await runPrismaCli(["migrate", "deploy"], url, env);
		expect(deployed.code, deployed.stderr).toBe(0);
		commit = mr.commit.trim();
	}
	if (/runbooks\/backfill\.ts/.test(c.text)) {
		// The column the docs' backfill examples fill, as a migration adding it would leave it.
		await admin(
			(a) =>
				a.query("alter table generated_videos add column thumbnail_path text"),
			url,
		);
	}
	if (/backfill\.ts .*--resume/.test(c.text)) {
		// An interrupted run of the same backfill: start it, stop it after its first batch.
		const words = shellWords(splitComment(c.text).command).slice(3);
		const args = words.filter((w) => w !== "--resume");
		await runRunbook(
			"backfill",
			[
				...args,
				"--batch-size",
				"10",
				"--target-batch-ms",
				"0",
				"--sleep-ms",
				"500",
			],
			{
				env: {
					DATABASE_URL: url,
					RUNBOOK_AUDIT_LOG: join(scratchDir(), "audit.jsonl"),
					RUNBOOK_PROGRESS_INTERVAL_MS: "100",
				},
				root: repo,
				cwd: repo,
				signalOn: {
					pattern: /\b[1-9][\d,]* of ~?[\d,]+ rows/,
					signal: "SIGKILL",
				},
			},
		);
	}
	// Backups are copied from the template's; the manifest names the template's database.
	return { db, url, backupId: templateBackupId, commit, env };
}
