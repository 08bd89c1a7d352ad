// db-health.ts on a migrated, seeded Face Swap database: quiet (exit 0), then with a session left
// idle in a transaction (exit 1).

import pg from "pg";
import { describe, expect, it } from "vitest";

import {
	admin,
	createSeededDatabase,
	fileDatabase,
	runRunbook,
} from "./support/harness.ts";

const file = fileDatabase(() => createSeededDatabase("dbhealth", 1000));
const env = () => file.env();

interface TableStats {
	name: string;
	estimatedRows: number;
	tableBytes: number;
	indexBytes: number;
	totalBytes: number;
}

describe("db-health.ts", () => {
	it("reports a quiet database healthy (exit 0), with sizes, row estimates and connections", async () => {
		const run = await runRunbook("db-health", ["--json"], { env: env() });
		expect(run.code, run.stderr).toBe(0);
		const report = JSON.parse(run.stdout);
		expect(report.healthy).toBe(true);
		expect(report.findings).toEqual([]);
		expect(report.database.tables).toBeGreaterThanOrEqual(8);
		expect(report.database.bytes).toBeGreaterThan(1024 * 1024);
		const tables: TableStats[] = report.steps[0].data.tables;
		const videos = tables.find((t) => t.name === "generated_videos");
		expect(videos?.estimatedRows).toBe(5000);
		expect(videos?.indexBytes).toBeGreaterThan(0);
		expect(videos?.totalBytes).toBeGreaterThanOrEqual(
			(videos?.tableBytes ?? 0) + (videos?.indexBytes ?? 0),
		);
		// Largest first.
		expect(tables.map((t) => t.totalBytes)).toEqual(
			[...tables.map((t) => t.totalBytes)].sort((a, b) => b - a),
		);
		expect(report.steps[3].data.max).toBeGreaterThan(0);
		expect(run.stderr).toContain("Largest tables");
	});

	it("flags a session idle in a transaction past --idle-age, and a table past --table-size (exit 1)", async () => {
		const idle = new pg.Client({
			connectionString: file.url,
			application_name: "forgotten-console",
		});
		await idle.connect();
		const pid = (await idle.query("select pg_backend_pid() as pid")).rows[0]
			.pid;
		await idle.query("begin");
		await idle.query("select count(*) from users");
		try {
			// Let it sit idle for over a second (the threshold below), measured by the server.
			for (let i = 0; i < 100; i++) {
				const { rows } = await admin(
					(db) =>
						db.query(
							"select extract(epoch from now() - state_change) as s from pg_stat_activity where pid = $1",
							[pid],
						),
					file.url,
				);
				if (Number(rows[0].s) > 1.2) break;
				await new Promise((r) => setTimeout(r, 100));
			}
			const run = await runRunbook(
				"db-health",
				["--json", "--idle-age", "1", "--table-size", "0.5"],
				{ env: env() },
			);
			expect(run.code, run.stderr).toBe(1);
			const report = JSON.parse(run.stdout);
			expect(report.healthy).toBe(false);
			const idleFinding = report.findings.find(
				(f: { check: string }) => f.check === "idle_in_transaction",
			);
			expect(idleFinding).toMatchObject({
				severity: "danger",
				subject: `pid ${pid}`,
			});
			expect(idleFinding.message).toContain("forgotten-console");
			expect(idleFinding.hint).toContain(
				`npx tsx runbooks/monitor.ts --terminate ${pid}`,
			);
			const big = report.findings
				.filter((f: { check: string }) => f.check === "table_size")
				.map((f: { subject: string }) => f.subject);
			expect(big).toContain("generated_videos");
			expect(big).not.toContain("target_templates");

			// The default thresholds (idle for a minute) do not flag it yet.
			const lenient = await runRunbook("db-health", [], { env: env() });
			expect(lenient.code, lenient.stdout).toBe(0);
			expect(lenient.stdout).toContain(`pid ${pid}`);
		} finally {
			await idle.end();
		}
	});
});
