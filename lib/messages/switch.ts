// What switch-db-env (and migrate-to-supabase's last steps) tell the operator about .env: the
// plan of a switch, refusals, and where things stand.

import { describeSwitch, type SwitchPlan } from "../config/db-profiles.ts";

const keepOld = (plan: SwitchPlan) =>
	`cp ${plan.file.path} ${plan.file.path}.backup-<UTC time>   (mode 0600)`;

/** migrate-to-supabase's plan of its final switch. */
export const switchPlanLines = (plan: SwitchPlan) => [
	keepOld(plan),
	...describeSwitch(plan),
];

/** switch-db-env's plan: keep the old file, the changed lines, the atomic rewrite. */
export const rewritePlanLines = (plan: SwitchPlan) => [
	keepOld(plan),
	...describeSwitch(plan).filter((l) => !l.includes(": already")),
	`write the new file to a temporary file beside it, fsync, rename over ${plan.file.path} (mode ${(plan.file.mode & 0o777).toString(8)} kept)`,
];

export const shellOverride = (key: string, unset: boolean) =>
	`${key} is also set in this shell's environment: it overrides .env for everything started from this shell${unset ? " (unset it)" : ""}.`;

export const nowLine = (active: string | null, urlSet: boolean) =>
	`Now: ${active ? `the ${active} profile` : urlSet ? "DATABASE_URL matches no profile" : "DATABASE_URL is not set"}`;

export const statusSummary = (active: string | null, urlSet: boolean) =>
	urlSet
		? `active profile: ${active ?? "none (DATABASE_URL matches no profile)"}`
		: "DATABASE_URL is not set in .env";

export const unrecorded = (what: string) => ({
	message: `.env holds ${what}, which no profile records: switching would drop it from .env and switching back could not restore it. Nothing was changed.`,
	hint: "Record it as a profile first (e.g. LOCAL_DATABASE_URL=<the current DATABASE_URL> in .env), or rerun with --force (the old file is kept as a backup).",
});

export const forcedUnrecorded = (what: string) =>
	`--force: ${what} matches no profile; it will stay only in the backup of .env.`;

export const profileDown = (profile: string, what: string) => ({
	message: `The ${profile} profile does not answer (${what}): .env was not changed.`,
	hint: `Check that the server (and the pooler) is up and that host, port and password in ${what} are right; the reasons are above. Rerun with --force to switch anyway.`,
});

export const noDatabaseUrl = {
	message: "DATABASE_URL is not set.",
	hint: "Neither is any profile (LOCAL_DATABASE_URL, REMOTE_DATABASE_URL): add them to .env (see .env.example) or pass --dotenv <path>.",
};

export const switchBack = (profile: string) =>
	`To switch back: ./runbooks/switch-db-env.ts ${profile === "remote" ? "local" : "remote"}`;

export const rewriteStopped =
	".env was not changed (the new content goes to a temporary file renamed over it only when complete).";

export const statusProbeSummary = (activeDown: boolean) =>
	activeDown
		? "the app's database (DATABASE_URL/DIRECT_URL) does not answer"
		: "the active profile answers";

export const forcedDown = (what: string) =>
	`--force: switching although ${what} does not answer.`;

export const noEnvFile = (path: string) =>
	`No readable environment file at ${path}: showing the process environment.`;
