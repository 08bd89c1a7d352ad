#!/usr/bin/env -S node --import tsx --
// Verified backups: pg_dump archives with a manifest beside each (row counts, latest migration,
// sha256), checked by recomputing the sha256 and reading the archive with pg_restore --list.
// The seed's `pg_dump $DATABASE_URL > backup.sql` put the password on the command line, wrote a
// plain file anyone could read, and never checked it could be restored.

import {
	applyPrune,
	type BackupEntry,
	type BackupManifest,
	backupDir,
	checkBackup,
	createBackup,
	describeBackup,
	findBackup,
	listBackups,
	type PrunePlan,
	planPrune,
	refusePooled,
	strayFiles,
	type VerifyResult,
	verifyBackup,
} from "../lib/backup/archive.ts";
import {
	type Action,
	type BackupOptions,
	backupOptions,
} from "../lib/backup/options.ts";
import { EXIT, RunbookError } from "../lib/kit/errors.ts";
import { table } from "../lib/kit/output.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/backup.ts";

type Ctx = Context<unknown, BackupOptions>;

const when =
	(...actions: Action[]) =>
	(ctx: Ctx) =>
		actions.includes(ctx.settings.action)
			? false
			: `not part of ${ctx.settings.action}`;
const created = (ctx: Ctx) =>
	ctx.has("dump") ? ctx.result<BackupManifest>("dump") : undefined;
const verified = (ctx: Ctx) =>
	ctx.has("verify") ? ctx.result<VerifyResult>("verify") : undefined;
/** The backup verify names (verify <id|latest>) among this database's. */
const named = (ctx: Ctx) =>
	findBackup(ctx.env, ctx.settings.id, ctx.target.direct.display);
const asJson = (e: BackupEntry) => ({
	...e.manifest,
	archive_present: e.archivePresent,
});

await runRunbook({
	name: "backup",
	summary:
		"Create, verify and list verified pg_dump backups with a manifest each.",
	description:
		"create (default): pg_dump of the target (DIRECT_URL when set) into BACKUP_DIR as <db>-<UTC time>.dump\n" +
		"(custom format) or .dir/ (directory format, parallel with --jobs), with <id>.json beside it: target,\n" +
		"versions, size, sha256, duration, latest applied migration and exact row counts taken in the dump's own\n" +
		"snapshot. Files are mode 0600. Refuses before dumping when pg_dump is older than the server or the disk\n" +
		"lacks room. Then verifies it.\n" +
		"verify <id|latest>: recomputes the sha256 and reads the archive with pg_restore --list; exit 1 when\n" +
		"either fails. A backup counts as verified only after this.\n" +
		"list: every backup in BACKUP_DIR, newest first. prune --keep N: delete this database's older backups,\n" +
		"never its newest verified one.",
	args: [
		{
			name: "action",
			description: "What to do",
			choices: ["create", "verify", "list", "prune"],
		},
		{
			name: "id",
			description: "For verify: a backup id from list, or latest (default)",
		},
	],
	flags: {
		format: {
			type: "string",
			value: "<custom|directory>",
			default: "custom",
			description: "Archive format.",
		},
		jobs: {
			type: "number",
			value: "<n>",
			description: "Parallel dump jobs (directory format only).",
		},
		keep: {
			type: "number",
			value: "<n>",
			description:
				"With create or prune: keep this database's newest N backups (and always its newest verified one).",
		},
	},
	env: {
		...say.backupEnvHelp("Where backups go (default backups/).", "the dump"),
		PG_BIN_DIR:
			"Directory of pg_dump/pg_restore when not the newest under /usr/lib/postgresql or on PATH.",
	},
	examples: [
		"npx tsx runbooks/backup.ts",
		"npx tsx runbooks/backup.ts create --format directory --jobs 4 --keep 7",
		"npx tsx runbooks/backup.ts verify latest",
		"npx tsx runbooks/backup.ts list",
		"npx tsx runbooks/backup.ts prune --keep 5 --dry-run",
	],
	// create dumps the database: a pg_dump holds ACCESS SHARE on every table for its duration, so a
	// migration, restore or SET NOT NULL running at the same time would wait for it (and time out),
	// and a dump taken halfway through another runbook's change is no state worth restoring.
	// verify, list and prune touch only files.
	exclusive: ({ args }) => (args[0] ?? "create") === "create",
	settings: ({ args, flags }) => backupOptions(args, flags),
	steps: [
		{
			title: "Check pg_dump, the server and free space",
			skip: when("create"),
			async run(ctx) {
				refusePooled(ctx.target.direct);
				const c = await checkBackup(await ctx.db(), ctx.env);
				for (const line of say.checkLines(c)) ctx.log(line);
				return { summary: say.checkSummary(c) };
			},
		},
		{
			id: "dump",
			title: "Dump the database (pg_dump)",
			kind: "write",
			skip: when("create"),
			plan: (ctx) =>
				describeBackup(ctx.target.direct, { ...ctx.settings, env: ctx.env }),
			async run(ctx) {
				const m = await createBackup(ctx.target.direct, {
					format: ctx.settings.format,
					jobs: ctx.settings.jobs,
					kind: "manual",
					env: ctx.env,
					signal: ctx.signal,
					log: ctx.log,
				});
				for (const line of say.createdLines(backupDir(ctx.env), m))
					ctx.log(line);
				return { summary: say.createdSummary(m), data: m, value: m };
			},
			onFailure: () =>
				"No backup was kept (partial files are removed); the database is untouched.",
		},
		{
			id: "verify",
			title: "Verify the backup (sha256, pg_restore --list)",
			kind: "write",
			skip: when("create", "verify"),
			plan: (ctx) =>
				say.verifyPlan(
					backupDir(ctx.env),
					ctx.settings.action === "create" ? null : named(ctx).manifest,
				),
			async run(ctx) {
				const m = created(ctx);
				const entry =
					ctx.settings.action === "create" && m
						? { manifest: m, archivePresent: true }
						: named(ctx);
				const r = await verifyBackup(entry, ctx.env, ctx.signal);
				for (const line of say.verifyLines(r)) ctx.log(line);
				for (const p of r.problems) ctx.warn(p);
				if (!r.ok) {
					const a = say.verifyFailed(entry.manifest.id, r.problems[0]);
					// The failed check is still reported (--json: verified false, its problems).
					throw Object.assign(
						new RunbookError(a.message, EXIT.failed, a.hint),
						{
							value: r,
						},
					);
				}
				return { summary: `${r.manifest.id} verified`, data: r, value: r };
			},
			onFailure: (ctx) => say.verifyStopped(ctx.signal.aborted, created(ctx)),
		},
		{
			id: "list",
			title: "List backups",
			skip: when("list"),
			async run(ctx) {
				const list = listBackups(ctx.env);
				ctx.log(`${backupDir(ctx.env)}:`);
				ctx.log(table(list.map(say.entryRow)));
				const stray = strayFiles(ctx.env);
				if (stray.length) ctx.warn(say.strayWarning(stray));
				const missing = list.filter((e) => !e.archivePresent);
				for (const e of missing) ctx.warn(say.archiveMissing(e.manifest));
				return {
					status: missing.length ? "warning" : "ok",
					summary: say.listSummary(list),
					data: list.map(asJson),
					value: list,
				};
			},
		},
		{
			id: "prune",
			title: "Prune older backups (--keep)",
			kind: "write",
			skip: (ctx) =>
				ctx.settings.keep === undefined && ctx.settings.action === "create"
					? "no --keep given"
					: when("create", "prune")(ctx),
			plan: (ctx) => {
				const dir = backupDir(ctx.env);
				const { keep } = ctx.settings;
				const plan = planPrune(
					ctx.env,
					ctx.target.direct.display,
					keep as number,
				);
				return plan.remove.length
					? plan.remove.map(
							(e) =>
								`rm -r ${dir}/${e.manifest.archive} ${dir}/${e.manifest.id}.json`,
						)
					: ["(nothing to delete now)"];
			},
			async run(ctx) {
				const keep = ctx.settings.keep as number;
				const plan = planPrune(ctx.env, ctx.target.direct.display, keep);
				const newest = plan.keep.slice(0, keep);
				if (
					plan.protectedId &&
					!newest.some((e) => e.manifest.id === plan.protectedId)
				)
					ctx.log(
						`keeping ${plan.protectedId} as well: it is the newest verified backup`,
					);
				const freed = applyPrune(ctx.env, plan);
				for (const e of plan.remove) ctx.log(`deleted ${e.manifest.id}`);
				return {
					summary: say.pruneSummary(
						plan.remove.length,
						freed,
						plan.keep.length,
					),
					data: {
						removed: plan.remove.map((e) => e.manifest.id),
						kept: plan.keep.map((e) => e.manifest.id),
					},
					value: plan,
				};
			},
			onFailure: (ctx) => say.pruneStopped(verified(ctx)),
		},
	],
	summarize: (ctx) => ({
		action: ctx.settings.action,
		backup: verified(ctx)?.manifest ?? created(ctx) ?? null,
		verified: verified(ctx) ? verified(ctx)?.ok : null,
		problems: verified(ctx)?.problems ?? [],
		backups: ctx.has("list")
			? ctx.result<BackupEntry[]>("list").map(asJson)
			: null,
		pruned: ctx.has("prune")
			? ctx.result<PrunePlan>("prune").remove.map((e) => e.manifest.id)
			: null,
	}),
});
