// A real PostgreSQL for tests and the demo: TEST_DATABASE_URL when given; else a Testcontainers
// container when a Docker engine answers; else a throw-away local cluster from the PostgreSQL
// binaries (initdb + pg_ctl, as the postgres OS user when we run as root), removed afterwards.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
	chmodSync,
	chownSync,
	existsSync,
	mkdtempSync,
	readdirSync,
	rmSync,
	writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";

export interface PgServer {
	/** Superuser connection string to the `postgres` database. */
	adminUrl: string;
	kind: "external" | "testcontainers" | "local";
	stop(): Promise<void>;
}

export function findPgBin(tool: string): string {
	if (process.env.PG_BIN_DIR) return join(process.env.PG_BIN_DIR, tool);
	const base = "/usr/lib/postgresql";
	if (existsSync(base)) {
		const versions = readdirSync(base)
			.filter((v) => existsSync(join(base, v, "bin", tool)))
			.sort((a, b) => Number(b) - Number(a));
		if (versions.length) return join(base, versions[0], "bin", tool);
	}
	return tool;
}

export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = createServer();
		srv.unref();
		srv.on("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const addr = srv.address();
			srv.close(() =>
				resolve(typeof addr === "object" && addr ? addr.port : 0),
			);
		});
	});
}

function dockerAvailable(): boolean {
	if (process.env.DOCKER_HOST) return true;
	return existsSync("/var/run/docker.sock");
}

async function startContainer(): Promise<PgServer | null> {
	if (!dockerAvailable()) return null;
	try {
		const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
		const container = await new PostgreSqlContainer("postgres:15-alpine")
			.withPassword("pw-test")
			.start();
		const url = new URL(container.getConnectionUri());
		url.pathname = "/postgres";
		return {
			adminUrl: url.toString(),
			kind: "testcontainers",
			stop: async () => void (await container.stop()),
		};
	} catch {
		return null;
	}
}

/** Starts a throw-away cluster on 127.0.0.1 with password authentication. */
export async function startLocalCluster(
	opts: {
		fsync?: boolean;
		/** The bootstrap superuser's name (default postgres), e.g. supabase_admin for a Supabase-shaped server. */
		superuser?: string;
	} = {},
): Promise<PgServer> {
	const superuser = opts.superuser ?? "postgres";
	const dir = mkdtempSync(join(tmpdir(), "runbook-pg-"));
	const data = join(dir, "data");
	const password = randomBytes(12).toString("hex");
	const pwfile = join(dir, "pw");
	writeFileSync(pwfile, password);
	const asRoot = userInfo().uid === 0;
	if (asRoot) {
		const uid = Number(
			execFileSync("id", ["-u", "postgres"]).toString().trim(),
		);
		const gid = Number(
			execFileSync("id", ["-g", "postgres"]).toString().trim(),
		);
		chownSync(dir, uid, gid);
		chownSync(pwfile, uid, gid);
	}
	chmodSync(dir, 0o700);
	const run = (tool: string, args: string[]) => {
		const bin = findPgBin(tool);
		return asRoot
			? execFileSync("runuser", ["-u", "postgres", "--", bin, ...args], {
					stdio: "pipe",
				})
			: execFileSync(bin, args, { stdio: "pipe" });
	};
	run("initdb", [
		"-D",
		data,
		"-U",
		superuser,
		"--auth=scram-sha-256",
		`--pwfile=${pwfile}`,
		"-E",
		"UTF8",
		"--locale=C.UTF-8",
	]);
	const port = await freePort();
	const settings = [
		`-p ${port}`,
		`-k ${dir}`,
		"-c listen_addresses=127.0.0.1",
		"-c max_connections=200",
		...(opts.fsync === false
			? ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
			: []),
	].join(" ");
	run("pg_ctl", [
		"-D",
		data,
		"-o",
		settings,
		"-l",
		join(dir, "server.log"),
		"-w",
		"-t",
		"60",
		"start",
	]);
	return {
		adminUrl: `postgresql://${superuser}:${password}@127.0.0.1:${port}/postgres`,
		kind: "local",
		async stop() {
			try {
				run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
			} finally {
				rmSync(dir, { recursive: true, force: true });
			}
		},
	};
}

export async function startPostgres(): Promise<PgServer> {
	if (process.env.TEST_DATABASE_URL) {
		return {
			adminUrl: process.env.TEST_DATABASE_URL,
			kind: "external",
			stop: async () => {},
		};
	}
	return (
		(await startContainer()) ?? (await startLocalCluster({ fsync: false }))
	);
}
