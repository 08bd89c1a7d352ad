// A real PostgreSQL for tests and the demo, chosen explicitly by TEST_PG and said which:
// - docker: a Testcontainers container (the image runbooks-postgres:15 built by
//   build-postgres-image.sh when present, else the official postgres:15); the default when a
//   Docker engine answers. A container that does not start fails the run with the reason.
// - local: a throw-away cluster from the PostgreSQL binaries (initdb + pg_ctl, as the postgres OS
//   user when we run as root), removed afterwards; the default when no engine answers.
// - external: TEST_DATABASE_URL (the default when it is set).

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
import type { StartedPostgreSqlContainer } from "@testcontainers/postgresql";
import pg from "pg";
import type { ContainerRuntimeClient } from "testcontainers";

export interface PgServer {
	/** Superuser connection string to the `postgres` database. */
	adminUrl: string;
	kind: "external" | "testcontainers" | "local";
	/** What it is, for the run's output: the image, server version and address. */
	description: string;
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

/** The image build-postgres-image.sh makes; the official image is the fallback where a registry answers. */
export const LOCAL_IMAGE = "runbooks-postgres:15";
const OFFICIAL_IMAGE = "postgres:15";

/**
 * The Docker engine as Testcontainers finds it (TESTCONTAINERS_HOST_OVERRIDE, DOCKER_HOST,
 * ~/.testcontainers.properties, /var/run/docker.sock, the rootless socket), or why none answers.
 */
export async function dockerEngine(): Promise<
	{ client: ContainerRuntimeClient } | { problem: string }
> {
	// A local engine publishes the port on the host: reach it on loopback. (Inside a container,
	// /.dockerenv, Testcontainers would pick the bridge gateway, a private address, instead.)
	if (!process.env.DOCKER_HOST || process.env.DOCKER_HOST.startsWith("unix:"))
		process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "127.0.0.1";
	const { getContainerRuntimeClient } = await import("testcontainers");
	try {
		return { client: await getContainerRuntimeClient() };
	} catch (err) {
		const where = process.env.DOCKER_HOST
			? `DOCKER_HOST=${process.env.DOCKER_HOST}`
			: "/var/run/docker.sock";
		return {
			problem: `No Docker engine answers at ${where} (Testcontainers: ${(err as Error).message}).`,
		};
	}
}

/** A PostgreSQL container through @testcontainers/postgresql; throws (with the reason) when it does not start. */
export async function startContainer(
	opts: { image?: string } = {},
): Promise<PgServer> {
	const engine = await dockerEngine();
	if ("problem" in engine) {
		throw new Error(
			`${engine.problem} Start dockerd, or run the tests on a local cluster with TEST_PG=local.`,
		);
	}
	const { ImageName } = await import("testcontainers");
	const image =
		opts.image ??
		process.env.TEST_PG_IMAGE ??
		((await engine.client.image.exists(ImageName.fromString(LOCAL_IMAGE)))
			? LOCAL_IMAGE
			: OFFICIAL_IMAGE);
	// Ryuk, Testcontainers' reaper, comes from a registry image; without it, stop() and the
	// teardown remove the container.
	process.env.TESTCONTAINERS_RYUK_DISABLED ??= "true";
	const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
	const password = randomBytes(12).toString("hex");
	let container: StartedPostgreSqlContainer;
	try {
		container = await new PostgreSqlContainer(image)
			.withUsername("postgres")
			.withPassword(password)
			.withDatabase("postgres")
			.withCommand([
				"postgres",
				"-c",
				"max_connections=200",
				"-c",
				"fsync=off",
				"-c",
				"synchronous_commit=off",
				"-c",
				"full_page_writes=off",
			])
			.start();
	} catch (err) {
		const ours = /^runbooks-postgres:(\d+)$/.exec(image);
		const hint =
			image === OFFICIAL_IMAGE
				? " Build the local image with test/support/build-postgres-image.sh (no registry needed), or run with TEST_PG=local."
				: ours
					? ` Build it with test/support/build-postgres-image.sh --pg ${ours[1]}.`
					: " Or run with TEST_PG=local.";
		throw new Error(
			`The PostgreSQL container (${image}) did not start: ${(err as Error).message.trim()}.${hint}`,
		);
	}
	// 127.0.0.1 rather than "localhost": the same address family every run, as for a local cluster.
	const host =
		container.getHost() === "localhost" ? "127.0.0.1" : container.getHost();
	const adminUrl = `postgresql://postgres:${password}@${host}:${container.getPort()}/postgres`;
	const db = new pg.Client({ connectionString: adminUrl });
	await db.connect();
	const version = (
		await db.query("show server_version")
	).rows[0].server_version.split(" ")[0];
	await db.end();
	return {
		adminUrl,
		kind: "testcontainers",
		description: `testcontainers: ${image} (PostgreSQL ${version}), container ${container.getId().slice(0, 12)} at ${host}:${container.getPort()}`,
		stop: async () => void (await container.stop({ remove: true })),
	};
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
		description: `local: a throw-away cluster (${findPgBin("postgres")}) at 127.0.0.1:${port}`,
		async stop() {
			try {
				run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"]);
			} finally {
				rmSync(dir, { recursive: true, force: true });
			}
		},
	};
}

export type PgChoice = "docker" | "local" | "external";

/** TEST_PG when set; else external with TEST_DATABASE_URL, docker when an engine answers, local otherwise. */
export async function choosePostgres(env = process.env): Promise<PgChoice> {
	const chosen = env.TEST_PG;
	if (chosen) {
		if (chosen !== "docker" && chosen !== "local" && chosen !== "external")
			throw new Error(`TEST_PG=${chosen}: expected docker, local or external.`);
		return chosen;
	}
	if (env.TEST_DATABASE_URL) return "external";
	return "client" in (await dockerEngine()) ? "docker" : "local";
}

export async function startPostgres(): Promise<PgServer> {
	const choice = await choosePostgres();
	if (choice === "docker") return startContainer();
	if (choice === "local") return startLocalCluster({ fsync: false });
	const url = process.env.TEST_DATABASE_URL;
	if (!url)
		throw new Error(
			"TEST_PG=external needs TEST_DATABASE_URL (a superuser connection string).",
		);
	const u = new URL(url);
	return {
		adminUrl: url,
		kind: "external",
		description: `external: TEST_DATABASE_URL (${u.username}@${u.host})`,
		stop: async () => {},
	};
}
