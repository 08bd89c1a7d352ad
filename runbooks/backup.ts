#!/usr/bin/env -S npx tsx --
// Verified backups: pg_dump archives with a manifest beside each (row counts, latest migration,
// sha256), checked by recomputing the sha256 and reading the archive with pg_restore --list.
// The seed's `pg_dump $DATABASE_URL > backup.sql` put the password on the command line, wrote a
// plain file anyone could read, and never checked it could be restored.

import {
	applyPrune,
	type BackupCheck,
	type BackupEntry,
	type BackupFormat,
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
import { EXIT, RunbookError, usageError } from "../lib/kit/errors.ts";
import { formatDuration, table } from "../lib/kit/output.ts";
import { type Context, runRunbook } from "../lib/kit/runner.ts";
import { formatBytes } from "../lib/pg/catalog.ts";

type Action = "create" | "verify" | "list" | "prune";

interface State {
	check?: BackupCheck;
	created?: BackupManifest;
	verified?: VerifyResult;
	list?: BackupEntry[];
	prune?: PrunePlan;
}

type Ctx = Context<State>;

const action = (ctx: Ctx): Action =>
	(ctx.args[0] as Action | undefined) ?? "create";

function options(ctx: Ctx): {
	format: BackupFormat;
	jobs: number;
	keep?: number;
} {
	const format = ctx.flags.format as string;
	if (format !== "custom" && format !== "directory") {
		throw usageError(`--format must be custom or directory, not "${format}".`);
	}
	const jobs = Number(ctx.flags.jobs ?? 1);
	if (!Number.isInteger(jobs) || jobs < 1)
		throw usageError(
			`--jobs needs a whole number of at least 1, not "${ctx.flags.jobs}".`,
		);
	if (jobs > 1 && format !== "directory") {
		throw usageError(
			"--jobs needs --format directory: only directory archives are dumped in parallel.",
			"Example: --format directory --jobs 4",
		);
	}
	const keep =
		ctx.flags.keep === undefined ? undefined : Number(ctx.flags.keep);
	if (keep !== undefined && (!Number.isInteger(keep) || keep < 1))
		throw usageError(
			`--keep needs a whole number of at least 1, not "${ctx.flags.keep}".`,
		);
	const a = action(ctx);
	if (keep !== undefined && a !== "create" && a !== "prune")
		throw usageError(`--keep goes with create or prune, not ${a}.`);
	if (a === "prune" && keep === undefined)
		throw usageError(
			"prune needs --keep N: how many of this database's newest backups to keep.",
		);
	if (ctx.args[1] !== undefined && a !== "verify")
		throw usageError(
			`Only verify takes a backup id (got "${ctx.args[1]}" with ${a}).`,
		);
	return { format, jobs, keep };
}

const when =
	(...actions: Action[]) =>
	(ctx: Ctx) =>
		actions.includes(action(ctx)) ? false : `not part of ${action(ctx)}`;

function entryRow(e: BackupEntry) {
	const m = e.manifest;
	return {
		id: m.id,
		kind: m.kind,
		created: m.created_at.replace("T", " ").replace(/\.\d+Z$/, "Z"),
		size: e.archivePresent ? formatBytes(m.size_bytes) : "MISSING",
		format: m.format,
		verified: m.verified_at
			? m.verified_at.slice(0, 19).replace("T", " ")
			: m.verify_error
				? "FAILED"
				: "no",
		"latest migration": m.latest_migration ?? "(none)",
		target: m.target,
	};
}

function describeVerify(ctx: Ctx, r: VerifyResult): void {
	const m = r.manifest;
	ctx.log(
		`${m.id}: ${m.format} archive ${m.archive}, ${formatBytes(m.size_bytes)}, sha256 ${m.sha256.slice(0, 16)}…`,
	);
	ctx.log(
		`pg_restore --list: ${r.tocEntries} entries, data for ${r.tablesWithData} tables (manifest counts ${Object.keys(m.row_counts).length})`,
	);
	for (const p of r.problems) ctx.warn(p);
}

await runRunbook<State>({
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
		BACKUP_DIR: "Where backups go (default backups/).",
		BACKUP_SCOPE:
			"What a backup holds: auto (default: the app's objects only on a Supabase database, else the whole database), app or database.",
		APP_SCHEMAS:
			"With scope app: the app's schemas, comma-separated (default public).",
		BACKUP_MIN_FREE_MB:
			"Space to leave free on BACKUP_DIR's disk after the dump (default 256).",
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
	state: () => ({}),
	steps: [
		{
			title: "Check pg_dump, the server and free space",
			skip: when("create"),
			async run(ctx) {
				options(ctx);
				refusePooled(ctx.target.direct);
				const c = await checkBackup(await ctx.db(), ctx.env);
				ctx.state.check = c;
				ctx.log(
					`server PostgreSQL ${c.serverVersion}; pg_dump ${c.pgDump.version} (${c.pgDump.path})`,
				);
				ctx.log(
					`database ${formatBytes(c.databaseBytes)}; dump estimated at ${formatBytes(c.estimateBytes)}; ${formatBytes(c.freeBytes)} free in ${c.dir}`,
				);
				return {
					summary: `room for about ${formatBytes(c.estimateBytes)}, pg_dump ${c.pgDump.version}`,
				};
			},
		},
		{
			title: "Dump the database (pg_dump)",
			kind: "write",
			skip: when("create"),
			plan: (ctx) =>
				describeBackup(ctx.target.direct, { ...options(ctx), env: ctx.env }),
			async run(ctx) {
				const o = options(ctx);
				const m = await createBackup(ctx.target.direct, {
					format: o.format,
					jobs: o.jobs,
					kind: "manual",
					env: ctx.env,
					signal: ctx.signal,
					log: ctx.log,
				});
				ctx.state.created = m;
				const tables = Object.keys(m.row_counts).length;
				const rows = Object.values(m.row_counts).reduce((a, b) => a + b, 0);
				ctx.log(
					`${backupDir(ctx.env)}/${m.archive} and ${m.id}.json (mode 0600)`,
				);
				ctx.log(
					`${tables} tables, ${rows} rows; latest migration ${m.latest_migration ?? "(none)"}`,
				);
				return {
					summary: `${m.id}, ${formatBytes(m.size_bytes)} in ${formatDuration(m.duration_ms)}`,
					data: m,
				};
			},
			onFailure: () =>
				"No backup was kept (partial files are removed); the database is untouched.",
		},
		{
			title: "Verify the backup (sha256, pg_restore --list)",
			kind: "write",
			skip: when("create", "verify"),
			plan: (ctx) => {
				const dir = backupDir(ctx.env);
				const m =
					action(ctx) === "create"
						? null
						: findBackup(
								ctx.env,
								ctx.args[1] ?? "latest",
								ctx.target.direct.display,
							).manifest;
				const archive = m ? `${dir}/${m.archive}` : "<the new archive>";
				return [
					`sha256 of ${archive}, compared with the manifest`,
					`pg_restore --list ${archive}`,
					`record verified_at in ${m ? `${dir}/${m.id}.json` : "its manifest"}`,
				];
			},
			async run(ctx) {
				options(ctx);
				const entry =
					action(ctx) === "create" && ctx.state.created
						? { manifest: ctx.state.created, archivePresent: true }
						: findBackup(
								ctx.env,
								ctx.args[1] ?? "latest",
								ctx.target.direct.display,
							);
				const r = await verifyBackup(entry, ctx.env, ctx.signal);
				ctx.state.verified = r;
				describeVerify(ctx, r);
				if (!r.ok) {
					throw new RunbookError(
						`Backup ${entry.manifest.id} failed verification: ${r.problems[0]}.`,
						EXIT.failed,
						"Do not restore from it. Take a new backup (npx tsx runbooks/backup.ts) and keep this one for inspection.",
					);
				}
				return { summary: `${r.manifest.id} verified`, data: r };
			},
			onFailure: (ctx) =>
				ctx.signal.aborted
					? `Interrupted before the check ended: nothing was recorded${
							ctx.state.created
								? `; ${ctx.state.created.id} is complete but not verified, so it does not count as a backup yet (npx tsx runbooks/backup.ts verify ${ctx.state.created.id} verifies it alone)`
								: ""
						}.`
					: `The manifest now records the failure (verified_at cleared). Nothing else was changed.${
							ctx.state.created
								? ` The new archive ${ctx.state.created.archive} is kept for inspection but does not count as a backup.`
								: ""
						}`,
		},
		{
			title: "List backups",
			skip: when("list"),
			async run(ctx) {
				options(ctx);
				const list = listBackups(ctx.env);
				ctx.state.list = list;
				ctx.log(`${backupDir(ctx.env)}:`);
				ctx.log(table(list.map(entryRow)));
				const stray = strayFiles(ctx.env);
				if (stray.length)
					ctx.warn(
						`not backups (no manifest, or a dump in progress): ${stray.join(", ")}`,
					);
				const missing = list.filter((e) => !e.archivePresent);
				for (const e of missing)
					ctx.warn(
						`${e.manifest.id}: the manifest is here but the archive ${e.manifest.archive} is missing`,
					);
				const verified = list.filter(
					(e) => e.manifest.verified_at && e.archivePresent,
				).length;
				return {
					status: missing.length ? "warning" : "ok",
					summary: `${list.length} backup(s), ${verified} verified, ${formatBytes(list.reduce((a, e) => a + (e.archivePresent ? e.manifest.size_bytes : 0), 0))}`,
					data: list.map((e) => ({
						...e.manifest,
						archive_present: e.archivePresent,
					})),
				};
			},
		},
		{
			title: "Prune older backups (--keep)",
			kind: "write",
			skip: (ctx) =>
				ctx.flags.keep === undefined && action(ctx) === "create"
					? "no --keep given"
					: when("create", "prune")(ctx),
			plan: (ctx) => {
				const plan = planPrune(
					ctx.env,
					ctx.target.direct.display,
					options(ctx).keep as number,
				);
				return plan.remove.length
					? plan.remove.map(
							(e) =>
								`rm -r ${backupDir(ctx.env)}/${e.manifest.archive} ${backupDir(ctx.env)}/${e.manifest.id}.json`,
						)
					: ["(nothing to delete now)"];
			},
			async run(ctx) {
				const keep = options(ctx).keep as number;
				const plan = planPrune(ctx.env, ctx.target.direct.display, keep);
				ctx.state.prune = plan;
				if (
					plan.protectedId &&
					!plan.keep
						.slice(0, keep)
						.some((e) => e.manifest.id === plan.protectedId)
				) {
					ctx.log(
						`keeping ${plan.protectedId} as well: it is the newest verified backup`,
					);
				}
				const freed = applyPrune(ctx.env, plan);
				for (const e of plan.remove) ctx.log(`deleted ${e.manifest.id}`);
				return {
					summary: plan.remove.length
						? `deleted ${plan.remove.length}, freed ${formatBytes(freed)}; kept ${plan.keep.length}`
						: `nothing to delete (${plan.keep.length} kept)`,
					data: {
						removed: plan.remove.map((e) => e.manifest.id),
						kept: plan.keep.map((e) => e.manifest.id),
					},
				};
			},
			onFailure: (ctx) =>
				`Each older backup is wholly kept or wholly removed${ctx.state.verified?.ok ? `; the new backup ${ctx.state.verified.manifest.id} is verified` : ""}.`,
		},
	],
	summarize: (ctx) => ({
		action: action(ctx),
		backup: ctx.state.verified?.manifest ?? ctx.state.created ?? null,
		verified: ctx.state.verified ? ctx.state.verified.ok : null,
		problems: ctx.state.verified?.problems ?? [],
		backups:
			ctx.state.list?.map((e) => ({
				...e.manifest,
				archive_present: e.archivePresent,
			})) ?? null,
		pruned: ctx.state.prune?.remove.map((e) => e.manifest.id) ?? null,
	}),
});
