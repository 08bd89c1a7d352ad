// The audit log: one JSON line per step start and end, appended to RUNBOOK_AUDIT_LOG
// (default logs/audit.jsonl). Lines are redacted and written synchronously, so a killed run
// still leaves a line saying where it stopped.

import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { appendFileSync, mkdirSync } from "node:fs";
import { userInfo } from "node:os";
import { dirname, resolve } from "node:path";
import { redact } from "./secrets.ts";

export interface AuditEntry {
	event: "run_start" | "step_start" | "step_end" | "run_end";
	step?: string;
	step_no?: number;
	status?: string;
	duration_ms?: number;
	error?: string;
	[key: string]: unknown;
}

export interface AuditLog {
	readonly path: string;
	readonly runId: string;
	write(entry: AuditEntry): void;
}

function gitCommit(): string | null {
	try {
		return execFileSync("git", ["rev-parse", "--short=12", "HEAD"], {
			stdio: ["ignore", "pipe", "ignore"],
		})
			.toString()
			.trim();
	} catch {
		return null;
	}
}

function operator(): string {
	try {
		return userInfo().username;
	} catch {
		return process.env.USER ?? "unknown";
	}
}

export function openAuditLog(
	runbook: string,
	target: string | null,
	env: NodeJS.ProcessEnv = process.env,
): AuditLog {
	const path = resolve(env.RUNBOOK_AUDIT_LOG || "logs/audit.jsonl");
	const base = {
		runbook,
		run_id: randomUUID(),
		target,
		operator: operator(),
		git_commit: gitCommit(),
		pid: process.pid,
	};
	mkdirSync(dirname(path), { recursive: true });
	return {
		path,
		runId: base.run_id,
		write(entry) {
			const line = JSON.stringify({
				time: new Date().toISOString(),
				...base,
				...entry,
			});
			appendFileSync(path, `${redact(line)}\n`, { mode: 0o600 });
		},
	};
}
