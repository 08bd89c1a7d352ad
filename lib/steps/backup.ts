// The verified backup step: pg_dump, then sha256 and pg_restore --list; no verified backup, no
// change. Its value is the manifest (ctx.result<BackupManifest>(id)).

import {
	type BackupKind,
	type BackupManifest,
	createVerifiedBackup,
	describeBackup,
} from "../backup/archive.ts";
import { formatBytes } from "../kit/format.ts";
import type { Context, Step } from "../kit/runner.ts";
import { type Placement, placeStep } from "./placement.ts";

export function verifiedBackupStep<P>(
	o: Placement<P> & {
		id: string;
		kind: BackupKind;
		/** The error when the archive fails verification (its id and the first problem). */
		unverified: (id: string, problem: string) => Error;
		/** Work once the backup is verified (e.g. read rows it will be compared with). */
		after?: (ctx: Context<unknown, P>, m: BackupManifest) => Promise<void>;
	},
): Step<unknown, P> {
	return placeStep(o, "Backup: pg_dump, verified", {
		kind: "write",
		plan: (ctx) => describeBackup(ctx.target.direct, { env: ctx.env }),
		async run(ctx) {
			const r = await createVerifiedBackup(ctx.target.direct, {
				kind: o.kind,
				env: ctx.env,
				signal: ctx.signal,
				log: ctx.log,
			});
			const m = r.manifest;
			for (const p of r.problems) ctx.warn(p);
			if (!r.ok) throw o.unverified(m.id, r.problems[0]);
			const rows = Object.values(m.row_counts).reduce((a, b) => a + b, 0);
			ctx.log(
				`${m.id}: ${formatBytes(m.size_bytes)}, ${Object.keys(m.row_counts).length} tables, ${rows} rows, sha256 and pg_restore --list checked`,
			);
			await o.after?.(ctx, m);
			return {
				summary: `${m.id} (${formatBytes(m.size_bytes)}), verified`,
				data: m,
				value: m,
			};
		},
	});
}
