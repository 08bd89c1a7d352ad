#!/usr/bin/env -S node --import tsx --
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
	PROFILE_NAMES,
	type ProfileName,
	prepareSwitch,
	probeProfile,
	profileTarget,
	readProfile,
	requireProfile,
	type SwitchPlan,
	shellOverrides,
} from "../lib/config/db-profiles.ts";
import { envFilePath } from "../lib/config/env-file.ts";
import {
	activeProfile,
	envValues,
	probeStatus,
	statusLines,
} from "../lib/config/env-status.ts";
import { refusal, usageError } from "../lib/kit/errors.ts";
import { runRunbook } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/switch.ts";

type Command = ProfileName | "status";

/** What step 1 read: the active profile, and for local|remote the switch to make. */
interface Read {
	active: ProfileName | null;
	plan?: SwitchPlan;
}

await runRunbook({
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
		const cmd = args[0] as Command;
		if (cmd !== "status") return profileTarget(requireProfile(env, cmd), env);
		if (!env.DATABASE_URL && PROFILE_NAMES.every((n) => !readProfile(env, n)))
			throw usageError(say.noDatabaseUrl.message, say.noDatabaseUrl.hint);
		return null;
	},
	settings: ({ args, flags }) => ({
		command: args[0] as Command,
		path: envFilePath(flags.dotenv as string | undefined),
		force: Boolean(flags.force),
	}),
	steps: [
		{
			id: "read",
			title: "Read .env and the profiles",
			async run(ctx) {
				const { command, path } = ctx.settings;
				if (command === "status") {
					const values = envValues(path);
					if (values) ctx.log(`Environment file: ${path}`);
					else ctx.warn(say.noEnvFile(path));
					const shown = values ?? ctx.env;
					const active = activeProfile(shown, ctx.env);
					for (const line of statusLines(shown, ctx.env)) ctx.log(line);
					for (const k of shellOverrides())
						ctx.warn(say.shellOverride(k, false));
					return {
						summary: say.statusSummary(active, Boolean(shown.DATABASE_URL)),
						status: shown.DATABASE_URL ? "ok" : "problem",
						data: { env_file: path, active_profile: active },
						value: { active } satisfies Read,
					};
				}
				const plan = prepareSwitch(path, ctx.env, command);
				const url = plan.file.values.DATABASE_URL;
				const active = matchProfile(url, ctx.env);
				ctx.log(`Environment file: ${path}`);
				ctx.log(say.nowLine(active, Boolean(url)));
				for (const line of describeSwitch(plan)) ctx.log(line);
				for (const k of shellOverrides()) ctx.warn(say.shellOverride(k, true));
				if (plan.unrecorded.length && !plan.unchanged) {
					const what = plan.unrecorded.join(" and ");
					const a = say.unrecorded(what);
					if (!ctx.settings.force) throw refusal(a.message, a.hint);
					ctx.warn(say.forcedUnrecorded(what));
				}
				return {
					summary: plan.unchanged
						? `.env already points at the ${command} profile`
						: `switch to the ${command} profile`,
					value: { active, plan } satisfies Read,
				};
			},
		},
		{
			id: "probe",
			title: "Check that each end answers (connect and select 1)",
			async run(ctx) {
				const { plan } = ctx.result<Read>("read");
				if (!plan) {
					const { ends, down } = await probeStatus(
						ctx.settings.path,
						ctx.env,
						ctx,
					);
					return {
						status: down ? "problem" : "ok",
						summary: say.statusProbeSummary(down),
						data: ends,
						value: ends,
					};
				}
				const ends = await probeProfile(plan.profile);
				for (const e of ends) ctx.log(describeEnd(e));
				const what = ends
					.filter((e) => !e.ok)
					.map((e) => e.key)
					.join(" and ");
				if (!what)
					return { summary: "every end answers", data: ends, value: ends };
				const a = say.profileDown(plan.profile.name, what);
				if (!ctx.settings.force) throw refusal(a.message, a.hint);
				ctx.warn(say.forcedDown(what));
				return {
					status: "warning",
					summary: `${what} does not answer`,
					data: ends,
					value: ends,
				};
			},
		},
		{
			id: "write",
			title: "Rewrite DATABASE_URL and DIRECT_URL in .env",
			kind: "write",
			skip: (ctx) => {
				const { plan } = ctx.result<Read>("read");
				if (!plan) return "status changes nothing";
				return plan.unchanged
					? `.env already points at the ${plan.profile.name} profile; nothing to change`
					: false;
			},
			plan: (ctx) => {
				const { plan } = ctx.result<Read>("read");
				return plan ? say.rewritePlanLines(plan) : [];
			},
			async run(ctx) {
				const plan = ctx.result<Read>("read").plan as SwitchPlan;
				const backup = applySwitch(plan);
				ctx.log(`Previous file kept as ${backup}`);
				ctx.log(say.switchBack(plan.profile.name));
				return {
					summary: `.env now points at the ${plan.profile.name} profile`,
					data: { backup },
					value: backup,
				};
			},
			onFailure: () => say.rewriteStopped,
		},
	],
	summarize: (ctx) => {
		const read = ctx.has("read") ? ctx.result<Read>("read") : undefined;
		const switched = ctx.has("write") || read?.plan?.unchanged;
		return {
			command: ctx.settings.command,
			env_file: ctx.settings.path,
			active_profile: switched
				? (read?.plan?.profile.name ?? null)
				: (read?.active ?? null),
			backup: ctx.has("write") ? ctx.result<string | null>("write") : null,
			ends: ctx.has("probe") ? ctx.result<EndStatus[]>("probe") : [],
		};
	},
});
