// One copy by migrate-to-supabase, from its snapshot of the source to its verification: the
// exported snapshot that pg_dump and the checksums both read, the run's record on the target, and
// the source's checksums started as soon as pg_dump has read everything. Kept as one object
// because a step that stops midway must still name the run it recorded.

import type pg from "pg";
import { type TableChecksum, tableChecksums } from "../backup/row-checksums.ts";
import {
	type CopyPlan,
	type CopyResult,
	type CopyTools,
	copySchema,
	resetSequences,
	sequenceValues,
} from "../data/schema-copy.ts";
import { formatBytes, formatDuration } from "../kit/format.ts";
import { table } from "../kit/output.ts";
import { connect, type Db } from "../pg/db.ts";
import { setPhase, startRun } from "../pg/supabase.ts";
import type { Connection } from "../pg/target.ts";
import { SCHEMA } from "./settings.ts";

export class CopyRun {
	/** The source session holding the snapshot until the copy is verified. */
	snapshotDb?: pg.Client;
	snapshot?: string;
	runId?: string;
	result?: CopyResult;
	sourceSums?: Promise<Record<string, TableChecksum>>;
	/** Both sides' checksums, once compared (kept for --json even when they differ). */
	sums?: {
		source: Record<string, TableChecksum>;
		target: Record<string, TableChecksum>;
	};

	constructor(
		readonly source: Connection,
		readonly tables: string[],
	) {}

	/** Exports a snapshot of the source (closed by `defer` when the run ends). */
	private async holdSnapshot(
		defer: (fn: () => Promise<void>) => void,
	): Promise<void> {
		const snap = await connect(this.source, "runbook:migrate-to-supabase");
		defer(() => snap.end().catch(() => {}));
		this.snapshotDb = snap;
		await snap.query("begin isolation level repeatable read read only");
		const { rows } = await snap.query<{ s: string }>(
			"select pg_export_snapshot() as s",
		);
		this.snapshot = rows[0].s;
	}

	/**
	 * Takes the snapshot, records the run as copying in migrate_to_supabase.runs on the target,
	 * streams the copy logging its progress, and records it as copied.
	 */
	async copy(
		plan: () => CopyPlan,
		target: Connection,
		tools: CopyTools,
		db: Db,
		o: {
			signal: AbortSignal;
			verbose: boolean;
			log: (l: string) => void;
			defer: (fn: () => Promise<void>) => void;
		},
	): Promise<CopyResult> {
		// A snapshot of the source, for pg_dump and for the verification of the same rows.
		await this.holdSnapshot(o.defer);
		this.runId = await startRun(db, this.source.display);
		o.log(
			`Recorded as run ${this.runId} in migrate_to_supabase.runs on the target`,
		);
		const copyPlan = plan();
		const started = performance.now();
		const at = () => formatDuration(performance.now() - started).padStart(6);
		let lastBytes = 0;
		this.result = await copySchema(copyPlan, this.source, target, tools, {
			signal: o.signal,
			onLine: (l) => {
				const m = /(?:processing|copied) data for table "?([^"]+)"?(.*)$/.exec(
					l,
				);
				if (m) o.log(`${at()}  data of ${m[1]}${m[2] ? ` copied${m[2]}` : ""}`);
				else if (
					/^built /.test(l) ||
					(/creating (INDEX|CONSTRAINT|FK CONSTRAINT)/.test(l) && o.verbose)
				)
					o.log(`${at()}  ${l.replace(/^pg_restore: /, "")}`);
			},
			onSourceDone: () => {
				// The source is free now: compare its rows (in the same snapshot) while the target builds indexes.
				const sums = this.checksums(Math.max(2, copyPlan.jobs), o.signal);
				sums.catch(() => {});
				this.sourceSums = sums;
			},
			onBytes: (n) => {
				if (n - lastBytes >= 256 * 1024 * 1024) {
					lastBytes = n;
					o.log(`${at()}  ${formatBytes(n)} streamed`);
				}
			},
		});
		await setPhase(db, this.runId as string, "copied");
		return this.result;
	}

	/** Sets the target's sequences past the copied values (the source's, read in the snapshot). */
	async resetSequences(db: Db, log: (text: string) => void): Promise<number> {
		const srcValues = await sequenceValues(
			this.snapshotDb as pg.Client,
			SCHEMA,
		);
		const resets = await resetSequences(db, srcValues, SCHEMA);
		if (resets.length)
			log(
				table(
					resets.map((r) => ({
						sequence: r.sequence,
						column: r.column,
						value: r.after,
					})),
				),
			);
		return resets.length;
	}

	/** The source's checksums, in the copy's snapshot when there is one. */
	checksums(
		jobs: number,
		signal: AbortSignal,
	): Promise<Record<string, TableChecksum>> {
		return tableChecksums(this.source, this.tables, {
			jobs,
			snapshot: this.snapshot,
			signal,
		});
	}
}
