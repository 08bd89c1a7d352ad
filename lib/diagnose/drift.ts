// Drift of the database against the migrations its history records as applied (not against every
// migration in the folder: a pending one is not drift).

import type { Env } from "../config/env.ts";
import { databaseDriftAgainst, schemaDrift } from "../migrations/drift.ts";
import type { History } from "../migrations/history.ts";
import type { Target } from "../pg/target.ts";

export interface DriftCheck {
	checked: boolean;
	/** SQL that would take the database back to what its applied migrations build. */
	databaseVsMigrations: string[];
	/** Changes in prisma/schema.prisma that no migration holds. */
	migrationsVsSchema: string[];
	/** The applied migrations measured against. */
	against: string[];
}

export const NOT_CHECKED: DriftCheck = {
	checked: false,
	databaseVsMigrations: [],
	migrationsVsSchema: [],
	against: [],
};

export async function measureDrift(
	target: Target,
	env: Env,
	h: History,
	signal: AbortSignal,
): Promise<{ against: string[]; databaseVsMigrations: string[] }> {
	const against = [
		...new Set(
			h.applied
				.filter((r) => r.finished_at && !r.rolled_back_at)
				.map((r) => r.migration_name),
		),
	];
	const databaseVsMigrations = await databaseDriftAgainst(
		target,
		env,
		against,
		signal,
	);
	return { against, databaseVsMigrations };
}

/** Both checks: schema.prisma against the migrations, and the database against its applied ones. */
export async function checkDrift(
	target: Target,
	env: Env,
	h: History,
	signal: AbortSignal,
): Promise<DriftCheck> {
	const migrationsVsSchema = await schemaDrift(target, env, signal);
	const { against, databaseVsMigrations } = await measureDrift(
		target,
		env,
		h,
		signal,
	);
	return { checked: true, databaseVsMigrations, migrationsVsSchema, against };
}
