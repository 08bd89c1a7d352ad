// A target: the database a runbook works on, parsed once from its connection string,
// shown masked, and handed to pg, libpq tools and Prisma without putting secrets on argv.

import type { ClientConfig } from "pg";
import { parse } from "pg-connection-string";
import { refusal, usageError } from "../kit/errors.ts";
import { registerSecret } from "../kit/secrets.ts";

export interface Connection {
	/** The full connection string: a secret, never printed. */
	readonly url: string;
	readonly host: string;
	readonly port: number;
	readonly user: string;
	readonly password?: string;
	readonly database: string;
	readonly sslmode?: string;
	/** Whether the URL goes through a transaction pooler (pgbouncer=true, or Supabase's port 6543). */
	readonly pooled: boolean;
	/** `user@host:port/db`, safe to show. */
	readonly display: string;
}

/**
 * Refuses a connection through a transaction pooler where one real session is needed (dumps,
 * restores, migrations, session locks): "<name> (<display>) goes through a transaction pooler
 * (pgbouncer=true or port 6543)<rest>", with the fix as hint. The one wording of this refusal.
 */
export function refusePooler(
	conn: Connection,
	o: { name?: string; rest: string; hint: string; short?: boolean },
): void {
	if (!conn.pooled) return;
	throw refusal(
		`${o.name ? `${o.name} (${conn.display})` : conn.display} goes through a transaction pooler${o.short ? "" : " (pgbouncer=true or port 6543)"}${o.rest}`,
		o.hint,
	);
}

export interface Target {
	/** What the app uses (DATABASE_URL); may be a pooler. */
	readonly app: Connection;
	/** Where migrations, dumps and restores go: DIRECT_URL when set, else DATABASE_URL. */
	readonly direct: Connection;
	readonly isLocal: boolean;
	readonly isProduction: boolean;
}

// Prisma-only URL parameters that pg and libpq do not understand.
const PRISMA_PARAMS = [
	"pgbouncer",
	"schema",
	"connection_limit",
	"pool_timeout",
	"socket_timeout",
	"statement_cache_size",
];

export function parseConnection(
	url: string,
	label = "DATABASE_URL",
): Connection {
	registerSecret(url);
	if (!/^postgres(ql)?:\/\//i.test(url)) {
		throw usageError(
			`${label} is not a PostgreSQL connection string (it must start with postgresql://).`,
			`Example: ${label}=postgresql://user:password@localhost:5432/faceswap`,
		);
	}
	let parsed: ReturnType<typeof parse>;
	let params: URLSearchParams;
	try {
		parsed = parse(url);
		params = new URL(url).searchParams;
	} catch {
		throw usageError(
			`${label} is not a valid connection string.`,
			"Check it for unescaped characters (@, :, / in the password must be percent-encoded).",
		);
	}
	if (parsed.password) registerSecret(parsed.password);
	const host = parsed.host || params.get("host") || "localhost";
	const portText = parsed.port || "5432";
	const port = Number(portText);
	if (!Number.isInteger(port) || port <= 0 || port > 65535) {
		throw usageError(`${label} has an invalid port (${portText}).`);
	}
	const database = parsed.database || "";
	if (!database) {
		throw usageError(
			`${label} names no database (add /<database> after the host and port).`,
		);
	}
	const user = parsed.user || process.env.PGUSER || "postgres";
	const pooled = params.get("pgbouncer") === "true" || port === 6543;
	return {
		url,
		host,
		port,
		user,
		password: parsed.password || undefined,
		database,
		sslmode: params.get("sslmode") ?? undefined,
		pooled,
		display: `${user}@${host.includes(":") ? `[${host}]` : host}:${port}/${database}`,
	};
}

export function isLocalHost(host: string): boolean {
	return (
		host === "localhost" ||
		host === "::1" ||
		host.startsWith("/") ||
		/^127\.\d+\.\d+\.\d+$/.test(host)
	);
}

export function makeTarget(
	databaseUrl: string,
	directUrl?: string,
	env: NodeJS.ProcessEnv = process.env,
): Target {
	const app = parseConnection(databaseUrl, "DATABASE_URL");
	const direct = directUrl ? parseConnection(directUrl, "DIRECT_URL") : app;
	return {
		app,
		direct,
		isLocal: isLocalHost(direct.host),
		isProduction: (env.RUNBOOK_ENV ?? "").toLowerCase() === "production",
	};
}

/** A connection string with another database name, e.g. for scratch or shadow databases. */
export function withDatabase(conn: Connection, database: string): Connection {
	const u = new URL(conn.url);
	u.pathname = `/${encodeURIComponent(database)}`;
	return parseConnection(u.toString());
}

/** Environment for libpq tools (pg_dump, pg_restore, psql): the password travels here, never on argv. */
export function libpqEnv(
	conn: Connection,
	appName = "runbook",
): Record<string, string> {
	const env: Record<string, string> = {
		PGHOST: conn.host,
		PGPORT: String(conn.port),
		PGUSER: conn.user,
		PGDATABASE: conn.database,
		PGAPPNAME: appName,
		PGCONNECT_TIMEOUT: "10",
	};
	if (conn.password) env.PGPASSWORD = conn.password;
	if (conn.sslmode) env.PGSSLMODE = conn.sslmode;
	return env;
}

/** Settings for node-postgres, as separate fields so nothing re-parses the URL. */
export function pgConfig(conn: Connection, appName = "runbook"): ClientConfig {
	const ssl =
		conn.sslmode &&
		conn.sslmode !== "disable" &&
		conn.sslmode !== "prefer" &&
		conn.sslmode !== "allow"
			? {
					rejectUnauthorized:
						conn.sslmode === "verify-full" || conn.sslmode === "verify-ca",
				}
			: undefined;
	return {
		host: conn.host,
		port: conn.port,
		user: conn.user,
		password: conn.password,
		database: conn.database,
		ssl,
		application_name: appName,
		connectionTimeoutMillis: 10_000,
	};
}

/** The URL without Prisma-only parameters, for tools that pass it on. */
export function stripPrismaParams(url: string): string {
	const u = new URL(url);
	for (const p of PRISMA_PARAMS) u.searchParams.delete(p);
	return u.toString();
}
