#!/usr/bin/env -S node --import tsx --

// The seed's "Migration Monitoring": every session's query and wait, who blocks whom as a tree,
// once or refreshed; cancels or terminates one session on request, never the runbook's own.
// (The seed's watch command counted nothing: "active" in double quotes is a column name.)

import { watchActivity } from "../lib/diagnose/watch-activity.ts";
import type { FlagValues } from "../lib/kit/cli.ts";
import { usageError } from "../lib/kit/errors.ts";
import { type Context, runRunbook, type Step } from "../lib/kit/runner.ts";
import * as say from "../lib/messages/monitor.ts";
import { sessionLine } from "../lib/messages/sessions.ts";
import {
	type ActivitySnapshot,
	blockedHere,
	readActivity,
} from "../lib/pg/blocking-tree.ts";
import type { SessionDetail } from "../lib/pg/sessions.ts";
import {
	cancelEffect,
	checkSignalTarget,
	type SignalKind,
	signalSession,
	signalSql,
} from "../lib/pg/signal.ts";

await runRunbook({
	name: "monitor",
	summary:
		"Show sessions, their queries and waits, and who blocks whom; cancel or terminate a session.",
	description:
		"Read-only unless --cancel or --terminate is given. Lists this database's sessions that are not idle\n" +
		"(query, time in state, transaction age, wait event) and the blocking chains from pg_blocking_pids() as a\n" +
		"tree: the session at the root holds the lock; those below wait, each for the one above it. Sessions\n" +
		"waiting longer than --threshold are highlighted; with --once that makes the exit code 1.\n" +
		"--watch refreshes in place on a terminal and prints timestamped lines otherwise, until Ctrl-C or\n" +
		"--duration. --cancel stops a session's current statement (y/n); --terminate ends the session and rolls\n" +
		"back its transaction (type the database name, or --yes --confirm <database>). The runbook's own\n" +
		"session is never listed and never signalled.",
	flags: {
		once: {
			type: "boolean",
			description: "Take one snapshot and exit (the default without --watch).",
		},
		watch: {
			type: "duration",
			description: "Refresh this often until Ctrl-C (or --duration).",
		},
		duration: {
			type: "duration",
			description: "With --watch: stop after this long.",
		},
		threshold: {
			type: "duration",
			default: 10,
			description:
				"Highlight sessions waiting for a lock at least this long; with --once, exit 1 when any does.",
		},
		all: {
			type: "boolean",
			description:
				"List every session (idle ones, other databases, background workers).",
		},
		cancel: {
			type: "number",
			value: "<pid>",
			description:
				"Cancel the current statement of session <pid> (asks first).",
		},
		terminate: {
			type: "number",
			value: "<pid>",
			description:
				"Terminate session <pid>, rolling back its transaction (type the database name, or --yes --confirm).",
		},
	},
	examples: [
		"npx tsx runbooks/monitor.ts",
		"npx tsx runbooks/monitor.ts --watch 2",
		"npx tsx runbooks/monitor.ts --watch 5 --duration 600 >> logs/monitor.log",
		"npx tsx runbooks/monitor.ts --once --json | jq '.activity.tree'",
		"npx tsx runbooks/monitor.ts --cancel 4711",
		"npx tsx runbooks/monitor.ts --terminate 4711 --yes --confirm faceswap",
	],
	settings: ({ flags }) => parseSettings(flags),
	steps: [
		{
			id: "read",
			title: "Read sessions, locks and blocking chains",
			async run(ctx) {
				const o = ctx.settings;
				const db = await ctx.db();
				if (o.watchMs !== undefined) {
					const w = await watchActivity(
						db,
						{ ...o, watchMs: o.watchMs },
						ctx.signal,
					);
					return {
						status: w.over ? "warning" : "ok",
						summary: say.watchSummary(w.live, w.over, o.thresholdMs),
						value: { snapshot: w.last, refreshes: w.live.refreshes },
					};
				}
				const s = await readActivity(db);
				for (const l of say.screenOf(s, o)) ctx.log(l);
				return {
					...say.snapshotResult(s, o, Boolean(o.signal)),
					value: { snapshot: s, refreshes: 1 },
				};
			},
		},
		{
			id: "target",
			title: "Check the session to cancel or terminate",
			skip: (ctx) =>
				ctx.settings.signal ? false : "no --cancel or --terminate given",
			async run(ctx) {
				const { kind, pid } = ctx.settings.signal as Signal;
				const s = await checkSignalTarget(await ctx.db(), pid, kind);
				ctx.log(sessionLine(s));
				if (kind === "cancel" && !cancelEffect(s).releasesLocks) {
					ctx.warn(
						`${cancelEffect(s).note}: use --terminate ${s.pid} to release them.`,
					);
					return {
						status: "warning",
						summary: `pid ${s.pid}: a cancel will not release its locks`,
						data: s,
						value: s,
					};
				}
				const done = kind === "cancel" ? "cancelled" : "terminated";
				return {
					summary: `pid ${s.pid} (${s.state ?? s.backendType}) can be ${done}`,
					data: s,
					value: s,
				};
			},
		},
		signalStep("cancel", "Cancel the session's current statement", "change"),
		signalStep(
			"terminate",
			"Terminate the session (rolls back its transaction)",
			"destroy",
		),
	],
	summarize: (ctx) => {
		const read = ctx.has("read") ? ctx.result<Read>("read") : undefined;
		const s = read?.snapshot;
		const { all, thresholdMs } = ctx.settings;
		const signalled = ["cancel", "terminate"].find((id) => ctx.has(id));
		return {
			threshold_ms: thresholdMs,
			refreshes: read?.refreshes ?? 0,
			blocked_over_threshold: s
				? blockedHere(s, thresholdMs).map((n) => n.pid)
				: [],
			signalled: signalled ? ctx.result(signalled) : null,
			activity: say.activityJson(s, all),
		};
	},
});

interface Signal {
	kind: SignalKind;
	pid: number;
}
interface Settings extends say.View {
	watchMs?: number;
	durationMs?: number;
	signal: Signal | null;
}
interface Read {
	snapshot?: ActivitySnapshot;
	refreshes: number;
}

function parseSettings(f: FlagValues): Settings {
	if (f.watch !== undefined && f.once)
		throw usageError("--watch and --once exclude each other.");
	if (f.watch !== undefined && f.json)
		throw usageError(
			"--json prints one JSON object at the end; use --once --json for scripts, --watch for people.",
		);
	if (f.watch !== undefined && Number(f.watch) < 500)
		throw usageError("--watch needs at least 0.5 seconds between refreshes.");
	if (f.duration !== undefined && f.watch === undefined)
		throw usageError("--duration limits --watch; add --watch <duration>.");
	if (f.cancel !== undefined && f.terminate !== undefined)
		throw usageError("Pass either --cancel or --terminate, not both.");
	const kind =
		f.terminate !== undefined
			? "terminate"
			: f.cancel !== undefined
				? "cancel"
				: null;
	if (kind && f.watch !== undefined)
		throw usageError("--cancel/--terminate run once; leave out --watch.");
	const pid = Number(f.terminate ?? f.cancel);
	if (kind && (!Number.isInteger(pid) || pid <= 0))
		throw usageError(
			`--${kind} needs a process id (a positive whole number), not "${pid}".`,
		);
	return {
		all: Boolean(f.all),
		thresholdMs: Number(f.threshold),
		watchMs: f.watch === undefined ? undefined : Number(f.watch),
		durationMs: f.duration === undefined ? undefined : Number(f.duration),
		signal: kind ? { kind, pid } : null,
	};
}

/** Cancels or terminates the --cancel/--terminate session, after the check step. */
function signalStep(
	kind: SignalKind,
	title: string,
	stepKind: "change" | "destroy",
): Step<unknown, Settings> {
	const pid = (ctx: Context<unknown, Settings>) =>
		ctx.settings.signal?.pid ?? 0;
	return {
		id: kind,
		title,
		kind: stepKind,
		skip: (ctx) =>
			ctx.settings.signal?.kind === kind ? false : `no --${kind} given`,
		plan: (ctx) => {
			const target = ctx.has("target")
				? ctx.result<SessionDetail>("target")
				: undefined;
			return say.signalPlan(target, pid(ctx), kind, signalSql(kind, pid(ctx)));
		},
		async run(ctx) {
			const r = await signalSession(await ctx.db(), pid(ctx), kind);
			const done = say.signalled(kind, r);
			if (r.after) ctx.log(`after: ${sessionLine(r.after)}`);
			return {
				status: done.warning ? "warning" : "ok",
				summary: done.summary,
				data: { before: r.before, after: r.after },
				value: { kind, pid: r.before.pid, after: done.after },
			};
		},
		onFailure: (ctx) =>
			`Nothing was ${kind === "cancel" ? "cancelled" : "terminated"}. \`npx tsx runbooks/monitor.ts\` shows what pid ${pid(ctx)} is doing now.`,
	};
}
