// migrate-to-supabase's last change: .env switched to the remote profile, only once both of the
// profile's ends answer (the app's pooler and the direct connection).

import {
	applySwitch,
	describeEnd,
	probeProfile,
	type SwitchPlan,
} from "../config/db-profiles.ts";
import { refusal } from "../kit/errors.ts";
import { remoteDown } from "../messages/supabase.ts";

/** Switches .env, returning where the previous file is kept; refuses when an end does not answer. */
export async function switchWhenAnswering(
	plan: SwitchPlan,
	log: (text: string) => void,
): Promise<string | null> {
	const ends = await probeProfile(plan.profile);
	for (const e of ends) log(describeEnd(e));
	const down = ends.filter((e) => !e.ok);
	if (down.length) {
		const a = remoteDown(down.map((e) => e.key));
		throw refusal(a.message, a.hint);
	}
	const backup = applySwitch(plan);
	log(`Previous .env kept as ${backup}`);
	return backup;
}
