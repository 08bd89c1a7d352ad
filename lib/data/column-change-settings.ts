// The flags change-column-type.ts and remove-enum-value.ts share (the road, the locks, --abort, the
// backfill's pace) and their parsing, once for both.

import type { FlagSpecs, FlagValues } from "../kit/cli.ts";
import { usageError } from "../kit/errors.ts";
import type { FillOptions } from "./column-fill.ts";

export interface ColumnChangeSettings {
	smallTableMb: number;
	lockTimeoutMs: number;
	retries: number;
	abort: boolean;
	fill: FillOptions;
}

export const COLUMN_CHANGE_FLAGS: FlagSpecs = {
	"small-table-mb": {
		type: "number",
		value: "<MB>",
		default: 10,
		description:
			"Below this size a direct ALTER ... TYPE (a short rewrite) instead of the online road.",
	},
	"lock-timeout": {
		type: "duration",
		unit: "ms",
		default: "500ms",
		description:
			"lock_timeout of each schema change: the longest the app may queue behind it.",
	},
	retries: {
		type: "number",
		value: "<n>",
		default: 20,
		description: "Attempts after a lock timeout, with growing pauses.",
	},
	abort: {
		type: "boolean",
		description:
			"Undo an unfinished run (before its swap): drop the new column, its trigger and its migrations.",
	},
	"batch-size": {
		type: "number",
		value: "<rows>",
		default: 1000,
		description: "Backfill: rows per batch to start with.",
	},
	"target-batch": {
		type: "duration",
		unit: "ms",
		default: "200ms",
		description:
			"Backfill: target duration of one batch (0: keep --batch-size).",
	},
	sleep: {
		type: "duration",
		unit: "ms",
		default: "0ms",
		description: "Backfill: pause between batches.",
	},
};

export function columnChangeSettings(
	f: FlagValues,
	runbook: string,
): ColumnChangeSettings {
	const lockTimeoutMs = Number(f["lock-timeout"]);
	if (!(lockTimeoutMs >= 100))
		throw usageError(
			"--lock-timeout must be at least 100ms (0 would wait forever, which is what it prevents).",
		);
	const retries = Number(f.retries);
	if (!Number.isInteger(retries) || retries < 0)
		throw usageError(`--retries needs a whole number, not "${f.retries}".`);
	const batchSize = Number(f["batch-size"]);
	if (!Number.isInteger(batchSize) || batchSize < 1)
		throw usageError(
			`--batch-size needs a whole number of rows, not "${f["batch-size"]}".`,
		);
	return {
		smallTableMb: Number(f["small-table-mb"]),
		lockTimeoutMs,
		retries,
		abort: Boolean(f.abort),
		fill: {
			batchSize,
			targetBatchMs: Number(f["target-batch"]),
			sleepMs: Number(f.sleep),
			runbook,
		},
	};
}
