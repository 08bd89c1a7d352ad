// Queries through node-postgres: one client per run, connected lazily, closed by the runner.

import type pg from "pg";
import { plainError } from "../kit/errors.ts";
import { type Connection, pgConfig } from "./target.ts";

export type Db = pg.Client;

export async function connect(
	conn: Connection,
	appName = "runbook",
): Promise<pg.Client> {
	// pg is loaded on first connection, not at start-up (--help needs none).
	const { default: pgm } = await import("pg");
	const client = new pgm.Client(pgConfig(conn, appName));
	// An idle client whose server goes away emits 'error'; without a listener that would crash the run.
	client.on("error", () => {});
	try {
		await client.connect();
	} catch (err) {
		await client.end().catch(() => {});
		throw plainError(err, conn.display);
	}
	return client;
}

/** Runs fn with a fresh client and always closes it. */
export async function withClient<T>(
	conn: Connection,
	fn: (db: pg.Client) => Promise<T>,
	appName?: string,
): Promise<T> {
	const db = await connect(conn, appName);
	try {
		return await fn(db);
	} finally {
		await db.end().catch(() => {});
	}
}

export function quoteIdent(name: string): string {
	return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
	return `'${value.replace(/'/g, "''")}'`;
}

export async function serverVersion(
	db: pg.Client,
): Promise<{ text: string; major: number; num: number }> {
	const { rows } = await db.query<{ v: string; n: string }>(
		"select current_setting('server_version') as v, current_setting('server_version_num') as n",
	);
	const num = Number(rows[0].n);
	return { text: rows[0].v, major: Math.floor(num / 10000), num };
}

/** Each server's major version, read once per process (keyed by the connection string). */
const majors = new Map<string, Promise<number>>();

/**
 * The major version of the server `conn` names, on a connection of its own: read once per run
 * (the cache keys of Prisma's diffs and of the expected catalog both hold it).
 */
export function serverMajor(conn: Connection): Promise<number> {
	let major = majors.get(conn.url);
	if (!major) {
		major = withClient(
			conn,
			async (db) => (await serverVersion(db)).major,
			"runbook:version",
		);
		// A failed read is not kept: the next caller tries again.
		major.catch(() => majors.delete(conn.url));
		majors.set(conn.url, major);
	}
	return major;
}
