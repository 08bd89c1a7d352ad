#!/usr/bin/env -S npx tsx --
// The seed's `scripts/switch-db-env.sh remote`, done carefully: point the app's .env at the local
// or the remote (Supabase) profile after checking that the profile answers, rewriting only the
// DATABASE_URL and DIRECT_URL lines and keeping the previous file as a 0600 backup.

import {
	applySwitch,
	describeEnd,
	describeSwitch,
	type EndStatus,
	matchProfile,
	PROFILE_ENV,
	PROFILE_KEYS,
	PROFILE_NAMES,
	type Profile,
	type ProfileName,
	prepareSwitch,
	probeEnd,
	probeProfile,
	profileTarget,
	readProfile,
	requireProfile,
	type SwitchPlan,
	shellOverrides,
} from "../lib/config/db-profiles.ts";
import { envFilePath, readEnvFile } from "../lib/config/env-file.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import { parseConnection } from "../lib/pg/target.ts";

type Command = ProfileName | "status";

interface State {
	path: string;
	plan?: SwitchPlan;
	backup?: string | null;
	active?: ProfileName | null;
	ends: EndStatus[];
}

const command = (args: string[]) => args[0] as Command;
const isStatus = (args: string[]) => command(args) === "status";

await runRunbook<State>({
	name: "switch-db-env",
	summary:
		"Point the app's .env at the local or the remote (Supabase) database profile, or show which one it uses.",
	description:
		"local|remote: checks that the profile answers (connect and `select 1` through its DATABASE_URL,\n" +
		"the pooler, and its DIRECT_URL), then rewrites only the DATABASE_URL and DIRECT_URL lines of .env\n" +
		"(every other line, comment and quote kept byte for byte) through a temporary file renamed over it;\n" +
		"the previous file is kept as .env.backup-<time> (mode 0600). Refuses (exit 3, .env untouched) when\n" +
		"the profile does not answer, or when .env holds a DATABASE_URL/DIRECT_URL that no profile records\n" +
		"(switching would lose it), unless --force.\n" +
		"status: shows the active profile (masked) and whether each end answers; exit 1 when the active one\n" +
		"does not. Profiles live in .env: see .env.example.",
	args: [
		{
			name: "command",
			description: "which profile to switch to, or status",
			choices: ["local", "remote", "status"],
			required: true,
		},
	],
	flags: {
		force: {
			type: "boolean",
			description:
				"Switch even when the profile does not answer or .env holds values no profile records.",
		},
	},
	env: PROFILE_ENV,
	examples: [
		"./runbooks/switch-db-env.ts status",
		"./runbooks/switch-db-env.ts remote",
		"./runbooks/switch-db-env.ts local",
		"./runbooks/switch-db-env.ts remote --dry-run",
		"npx tsx runbooks/switch-db-env.ts remote --dotenv ../app/.env",
	],
	// switch-db-env writes only .env, but it must not point the app at a database another runbook is
	// changing (a deploy halfway through, a restore, migrate-to-supabase copying it), nor race
	// migrate-to-supabase's own final switch of the same .env: it holds the run lock of the profile it
	// switches to (migrate-to-supabase locks both its source, the local profile, and its target, the
	// remote one). When that database does not answer or has only a pooler URL, no lock is taken and
	// the probe step below refuses (or --force switches anyway). status changes nothing: no lock.
	exclusive: "when-reachable",
	resolveTarget({ env, args }) {
		const cmd = command(args);
		if (cmd === "status") {
			if (
				!env.DATABASE_URL &&
				PROFILE_NAMES.every((n) => !readProfile(env, n))
			) {
				throw usageError(
					"DATABASE_URL is not set.",
					"Neither is any profile (LOCAL_DATABASE_URL, REMOTE_DATABASE_URL): add them to .env (see .env.example) or pass --dotenv <path>.",
				);
			}
			return null;
		}
		return profileTarget(requireProfile(env, cmd), env);
	},
	state: () => ({ path: "", ends: [] }),
	steps: [
		{
			title: "Read .env and the profiles",
			async run(ctx) {
				const path = envFilePath(ctx.flags.dotenv as string | undefined);
				ctx.state.path = path;
				const overrides = shellOverrides();
				if (isStatus(ctx.args)) {
					let values: Record<string, string | undefined> = ctx.env;
					try {
						values = { ...readEnvFile(path).values };
						ctx.log(`Environment file: ${path}`);
					} catch {
						ctx.warn(
							`No readable environment file at ${path}: showing the process environment.`,
						);
					}
					const active = matchProfile(values.DATABASE_URL, ctx.env);
					ctx.state.active = active;
					for (const key of ["DATABASE_URL", "DIRECT_URL"]) {
						ctx.log(`${key.padEnd(12)} ${show(values[key], key)}`);
					}
					for (const name of PROFILE_NAMES) {
						const p = readProfile(ctx.env, name);
						ctx.log(
							`${name.padEnd(12)} ${p ? `${p.appKey} ${p.app.display}${p.app.pooled ? " (pooler)" : ""}${p.direct ? `, ${p.directKey} ${p.direct.display}` : ""}` : `not configured (${PROFILE_KEYS[name].app} is not set)`}`,
						);
					}
					for (const k of overrides)
						ctx.warn(
							`${k} is also set in this shell's environment: it overrides .env for everything started from this shell.`,
						);
					return {
						summary: values.DATABASE_URL
							? `active profile: ${active ?? "none (DATABASE_URL matches no profile)"}`
							: "DATABASE_URL is not set in .env",
						status: values.DATABASE_URL ? "ok" : "problem",
						data: { env_file: path, active_profile: active },
					};
				}
				const name = command(ctx.args) as ProfileName;
				const plan = prepareSwitch(path, ctx.env, name);
				ctx.state.plan = plan;
				ctx.state.active = matchProfile(plan.file.values.DATABASE_URL, ctx.env);
				ctx.log(`Environment file: ${path}`);
				ctx.log(
					`Now: ${ctx.state.active ? `the ${ctx.state.active} profile` : plan.file.values.DATABASE_URL ? "DATABASE_URL matches no profile" : "DATABASE_URL is not set"}`,
				);
				for (const line of describeSwitch(plan)) ctx.log(line);
				for (const k of overrides)
					ctx.warn(
						`${k} is also set in this shell's environment: it overrides .env for everything started from this shell (unset it).`,
					);
				if (plan.unrecorded.length && !plan.unchanged) {
					const what = plan.unrecorded.join(" and ");
					if (!ctx.flags.force) {
						throw refusal(
							`.env holds ${what}, which no profile records: switching would drop it from .env and switching back could not restore it. Nothing was changed.`,
							`Record it as a profile first (e.g. LOCAL_DATABASE_URL=<the current DATABASE_URL> in .env), or rerun with --force (the old file is kept as a backup).`,
						);
					}
					ctx.warn(
						`--force: ${what} matches no profile; it will stay only in the backup of .env.`,
					);
				}
				return {
					summary: plan.unchanged
						? `.env already points at the ${name} profile`
						: `switch to the ${name} profile`,
				};
			},
		},
		{
			title: "Check that each end answers (connect and select 1)",
			async run(ctx) {
				if (isStatus(ctx.args)) return statusProbe(ctx);
				const plan = ctx.state.plan as SwitchPlan;
				const ends = await probeProfile(plan.profile);
				ctx.state.ends = ends;
				for (const e of ends) ctx.log(describeEnd(e));
				const down = ends.filter((e) => !e.ok);
				if (down.length) {
					const what = down.map((e) => e.key).join(" and ");
					if (!ctx.flags.force) {
						throw refusal(
							`The ${plan.profile.name} profile does not answer (${what}): .env was not changed.`,
							`Check that the server (and the pooler) is up and that host, port and password in ${what} are right; the reasons are above. Rerun with --force to switch anyway.`,
						);
					}
					ctx.warn(`--force: switching although ${what} does not answer.`);
					return {
						status: "warning",
						summary: `${what} does not answer`,
						data: ends,
					};
				}
				return { summary: "every end answers", data: ends };
			},
		},
		{
			title: "Rewrite DATABASE_URL and DIRECT_URL in .env",
			kind: "write",
			skip: (ctx) =>
				isStatus(ctx.args)
					? "status changes nothing"
					: ctx.state.plan?.unchanged
						? `.env already points at the ${ctx.state.plan.profile.name} profile; nothing to change`
						: false,
			plan: (ctx) => {
				const plan = ctx.state.plan;
				if (!plan) return [];
				return [
					`cp ${plan.file.path} ${plan.file.path}.backup-<UTC time>   (mode 0600)`,
					...describeSwitch(plan).filter((l) => !l.includes(": already")),
					`write the new file to a temporary file beside it, fsync, rename over ${plan.file.path} (mode ${(plan.file.mode & 0o777).toString(8)} kept)`,
				];
			},
			async run(ctx) {
				const plan = ctx.state.plan as SwitchPlan;
				const backup = applySwitch(plan);
				ctx.state.backup = backup;
				ctx.log(`Previous file kept as ${backup}`);
				ctx.log(
					`To switch back: ./runbooks/switch-db-env.ts ${plan.profile.name === "remote" ? "local" : "remote"}`,
				);
				return {
					summary: `.env now points at the ${plan.profile.name} profile`,
					data: { backup },
				};
			},
			onFailure: () =>
				".env was not changed (the new content goes to a temporary file renamed over it only when complete).",
		},
	],
	summarize: (ctx) => ({
		command: command(ctx.args),
		env_file: ctx.state.path,
		active_profile: isStatus(ctx.args)
			? (ctx.state.active ?? null)
			: ctx.state.backup !== undefined || ctx.state.plan?.unchanged
				? (ctx.state.plan?.profile.name ?? null)
				: (ctx.state.active ?? null),
		backup: ctx.state.backup ?? null,
		ends: ctx.state.ends,
	}),
});

/** A connection string shown as user@host:port/db, or why it cannot be. */
function show(value: string | undefined, key: string): string {
	if (!value?.trim()) return "not set";
	try {
		const c = parseConnection(value.trim(), key);
		return `${c.display}${c.pooled ? " (pooler)" : ""}`;
	} catch {
		return "set, but not a valid PostgreSQL connection string";
	}
}

async function statusProbe(ctx: {
	env: Record<string, string | undefined>;
	state: State;
	log(t?: string): void;
	warn(t: string): void;
}) {
	const path = ctx.state.path;
	let values: Record<string, string | undefined> = ctx.env;
	try {
		values = readEnvFile(path).values;
	} catch {
		// the process environment, as step 1 said
	}
	// Each distinct URL probed once, labelled with every key that holds it.
	const byUrl = new Map<string, string[]>();
	const add = (key: string, url: string | undefined) => {
		if (!url?.trim()) return;
		byUrl.set(url.trim(), [...(byUrl.get(url.trim()) ?? []), key]);
	};
	add("DATABASE_URL", values.DATABASE_URL);
	add("DIRECT_URL", values.DIRECT_URL);
	const profiles: Profile[] = [];
	for (const name of PROFILE_NAMES) {
		const p = readProfile(ctx.env, name);
		if (!p) continue;
		profiles.push(p);
		add(p.appKey, p.app.url);
		if (p.direct) add(p.directKey, p.direct.url);
	}
	const ends = await Promise.all(
		[...byUrl.entries()].map(async ([url, keys]) => {
			let conn: ReturnType<typeof parseConnection>;
			try {
				conn = parseConnection(url, keys[0]);
			} catch (err) {
				return {
					key: keys.join(" = "),
					display: "(invalid)",
					pooled: false,
					ok: false,
					ms: 0,
					error: (err as Error).message,
				} satisfies EndStatus;
			}
			return probeEnd(conn, keys.join(" = "));
		}),
	);
	ctx.state.ends = ends;
	let activeDown = false;
	for (const e of ends) {
		const active = /\b(DATABASE_URL|DIRECT_URL)\b/.test(
			e.key.replace(/(LOCAL|REMOTE)_(DATABASE|DIRECT)_URL/g, ""),
		);
		if (e.ok) ctx.log(describeEnd(e));
		else if (active) {
			activeDown = true;
			ctx.warn(describeEnd(e));
		} else ctx.log(`${describeEnd(e)} (not the active profile)`);
	}
	return {
		status: activeDown ? ("problem" as const) : ("ok" as const),
		summary: activeDown
			? "the app's database (DATABASE_URL/DIRECT_URL) does not answer"
			: "the active profile answers",
		data: ends,
	};
}
