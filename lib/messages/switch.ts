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
