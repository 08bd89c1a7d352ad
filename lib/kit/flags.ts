// Flags several runbooks share (lock and statement timeouts, retries, --small-table-mb), declared
// and parsed here once, so a flag means the same, says the same in --help and fails the same way.

import {
	type FlagSpec,
	type FlagSpecs,
	type FlagValues,
	renamedDuration,
} from "./cli.ts";
import { usageError } from "./errors.ts";

export interface LockFlagOptions {
	/** Default of --lock-timeout, e.g. "5s". */
	lockTimeout: string;
	lockTimeoutHelp: string;
	/** Also accept the old spelling --lock-timeout-ms (bare numbers in ms). */
	oldMsSpelling?: boolean;
	/** Default of --statement-timeout, when the runbook has the flag. */
	statementTimeout?: string;
	statementTimeoutHelp?: string;
	retries: number;
	retriesHelp: string;
}

/** --lock-timeout, --statement-timeout (when asked for) and --retries. */
export function lockFlags(o: LockFlagOptions): FlagSpecs {
	const lock: Omit<FlagSpec, "type"> = {
		default: o.lockTimeout,
		description: o.lockTimeoutHelp,
	};
	return {
		...(o.oldMsSpelling
			? renamedDuration("lock-timeout", "lock-timeout-ms", "ms", lock)
			: { "lock-timeout": { ...lock, type: "duration" } }),
		...(o.statementTimeout === undefined
			? {}
			: {
					"statement-timeout": {
						type: "duration",
						default: o.statementTimeout,
						description: o.statementTimeoutHelp ?? "",
					},
				}),
		retries: {
			type: "number",
			value: "<n>",
			default: o.retries,
			description: o.retriesHelp,
		},
	};
}

export interface LockSettings {
	lockTimeoutMs: number;
	/** 0 when the runbook has no --statement-timeout. */
	statementTimeoutMs: number;
	retries: number;
}

/** The values of lockFlags: a lock timeout of at least 100ms and a whole number of retries. */
export function parseLockFlags(f: FlagValues): LockSettings {
	const lockTimeoutMs = f["lock-timeout"] as number;
	atLeast100ms(lockTimeoutMs, "--lock-timeout");
	return {
		lockTimeoutMs,
		statementTimeoutMs: (f["statement-timeout"] as number | undefined) ?? 0,
		retries: wholeNumber(f, "retries"),
	};
}

/** A timeout flag's milliseconds, refused under 100ms (0 would wait forever). */
export function atLeast100ms(ms: number, flag: string): number {
	if (ms < 100)
		throw usageError(
			`${flag} must be at least 100ms (0 would wait forever, which is what it prevents).`,
		);
	return ms;
}

/** A number flag that must be whole (cli.ts has checked it is a non-negative number). */
export function wholeNumber(f: FlagValues, name: string): number {
	const n = Number(f[name]);
	if (!Number.isInteger(n))
		throw usageError(`--${name} needs a whole number, not "${f[name]}".`);
	return n;
}

/** --small-table-mb: a finding whose only risk is a short lock is accepted under this size. */
export const SMALL_TABLE_FLAG: FlagSpecs = {
	"small-table-mb": {
		type: "number",
		value: "<MB>",
		default: 10,
		description:
			"Accept findings whose only risk is a short lock (index builds, constraint checks) on tables smaller than this.",
	},
};

export const smallTableBytes = (f: FlagValues): number =>
	Number(f["small-table-mb"]) * 1024 * 1024;

/** --allow <rule>[,<rule>]: squawk rule names accepted by the operator. */
export const ALLOW_FLAG: FlagSpecs = {
	allow: {
		type: "string",
		value: "<rule>",
		repeatable: true,
		description:
			"Accept one squawk rule by name (repeat, or comma-separate), e.g. --allow adding-required-field.",
	},
};

export function parseAllow(f: FlagValues): string[] {
	const allow = String(f.allow ?? "")
		.split(",")
		.map((r) => r.trim())
		.filter(Boolean);
	for (const r of allow)
		if (!/^[a-z][a-z0-9-]*$/.test(r))
			throw usageError(
				`--allow takes squawk rule names such as adding-required-field, not "${r}".`,
			);
	return allow;
}

export interface BatchFlagOptions {
	/** Defaults (the backfill engine's). */
	batchSize: number;
	maxBatchSize?: number;
	targetBatchMs: number;
	sleepMs: number;
	/** --help text of each; --max-batch-size only when given. */
	help: {
		batchSize: string;
		maxBatchSize?: string;
		targetBatch: string;
		sleep: string;
	};
}

/** A batched backfill's pacing: --batch-size, --max-batch-size (when asked for), --target-batch, --sleep. */
export function batchFlags(o: BatchFlagOptions): FlagSpecs {
	return {
		"batch-size": {
			type: "number",
			value: "<rows>",
			default: o.batchSize,
			description: o.help.batchSize,
		},
		...(o.help.maxBatchSize === undefined
			? {}
			: {
					"max-batch-size": {
						type: "number",
						value: "<rows>",
						default: o.maxBatchSize,
						description: o.help.maxBatchSize,
					},
				}),
		...renamedDuration("target-batch", "target-batch-ms", "ms", {
			default: `${o.targetBatchMs}ms`,
			description: o.help.targetBatch,
		}),
		...renamedDuration("sleep", "sleep-ms", "ms", {
			default: `${o.sleepMs}ms`,
			description: o.help.sleep,
		}),
	};
}
