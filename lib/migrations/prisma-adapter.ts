/**
 * Driver adapter factory for Prisma's WebAssembly schema engine (`engine: "js"`
 * in prisma/prisma.config.ts), built on @prisma/adapter-pg 6.19.3.
 *
 * Stock `new PrismaPg(...)` does not work for migrations; the fixes:
 *   1. catalog columns of type "char" (oid 18) / name (oid 19) are reported as text,
 *   2. the shadow database really is a separate database, and is dropped afterwards,
 *   3. idle pool connections do not keep the CLI alive for 10 s,
 *   4. a migration script runs as one implicit transaction, as with the native engine,
 *   5. (unrefSchemaEngineTimers) the engine's advisory-lock timer does not keep the CLI alive,
 *   6. (withSessionSettings) runbooks can give every engine session a lock_timeout,
 *      statement_timeout and application_name,
 *   7. a migration that only builds indexes CONCURRENTLY gets its own lock budget
 *      (RUNBOOK_CONCURRENT_TIMEOUT): it waits for every older transaction, not for a table lock.
 */
import { PrismaPg } from "@prisma/adapter-pg";
import pg from "pg";
import { parseIntoClientConfig } from "pg-connection-string";

type PrismaPgOptions = NonNullable<ConstructorParameters<typeof PrismaPg>[1]>;
type PgAdapter = Awaited<ReturnType<PrismaPg["connect"]>>;

const CHAR_OID = 18;
const NAME_OID = 19;
const TEXT_OID = 25;

type FieldLike = { dataTypeID: number };
type QueryCallback = (err: Error | null | undefined, res?: unknown) => void;

function rewriteFields(fields: unknown): void {
	if (!Array.isArray(fields)) return;
	for (const field of fields as FieldLike[]) {
		if (
			field &&
			(field.dataTypeID === CHAR_OID || field.dataTypeID === NAME_OID)
		) {
			field.dataTypeID = TEXT_OID;
		}
	}
}

/** A pg result, or the array of results of a multi-statement simple query. */
function rewriteResult<T>(result: T): T {
	const results: unknown[] = Array.isArray(result) ? result : [result];
	for (const r of results) {
		if (r && typeof r === "object")
			rewriteFields((r as { fields?: unknown }).fields);
	}
	return result;
}

function wrapCallback(cb: QueryCallback): QueryCallback {
	return (err, res) => cb(err, err ? res : rewriteResult(res));
}

const baseQuery = pg.Client.prototype.query as (...args: unknown[]) => unknown;

/**
 * Fix 1. adapter-pg only knows how to map a fixed list of column types and throws
 * `Column type 'name' could not be deserialized` (UnsupportedNativeDataType) on
 * "char"/name, which the schema engine's introspection queries on pg_catalog return.
 * Both arrive as plain strings over the text protocol, so report them as text (oid 25)
 * before the adapter looks at `fields`.
 *
 * The adapter reaches this class in two ways: `pg.Pool#query(config, values)`, which
 * calls `client.query(config, values, callback)` (callback form), and
 * `PoolClient#query(config, values)` inside transactions (promise form).
 * Submittables (pg.Query, pg-cursor, ...) get their row description rewritten instead.
 */
export class CatalogTypesClient extends pg.Client {
	// biome-ignore lint/suspicious/noExplicitAny: pg.Client#query is a large overload set; this forwards all of it.
	override query(...args: any[]): any {
		const [config, values, callback] = args as [unknown, unknown, unknown];

		if (
			config &&
			typeof (config as { submit?: unknown }).submit === "function"
		) {
			const submittable = config as {
				handleRowDescription?: (msg: { fields?: unknown }) => void;
			};
			const handle = submittable.handleRowDescription;
			if (typeof handle === "function") {
				submittable.handleRowDescription = function (
					this: unknown,
					msg: { fields?: unknown },
				) {
					rewriteFields(msg?.fields);
					return handle.call(this, msg);
				};
			}
			return baseQuery.apply(this, args);
		}

		if (typeof callback === "function") {
			return baseQuery.call(
				this,
				config,
				values,
				wrapCallback(callback as QueryCallback),
			);
		}
		if (typeof values === "function") {
			return baseQuery.call(
				this,
				config,
				wrapCallback(values as QueryCallback),
			);
		}
		const configCallback =
			config && typeof config === "object"
				? (config as { callback?: unknown }).callback
				: undefined;
		if (typeof configCallback === "function") {
			// `client.query({ text, callback })`: copy the config (keeping its prototype) rather than mutate it.
			const copy = Object.create(
				Object.getPrototypeOf(config),
				Object.getOwnPropertyDescriptors(config),
			) as {
				callback: QueryCallback;
			};
			copy.callback = wrapCallback(configCallback as QueryCallback);
			return baseQuery.apply(this, [copy, ...args.slice(1)]);
		}

		const result = baseQuery.apply(this, args);
		if (result && typeof (result as Promise<unknown>).then === "function") {
			return (result as Promise<unknown>).then(rewriteResult);
		}
		return result;
	}
}

function poolConfig(clientConfig: pg.ClientConfig): pg.PoolConfig {
	return {
		...clientConfig,
		Client: CatalogTypesClient,
		// Fix 3. The CLI process only exits once the pool has no connections left; without
		// this it waits for idleTimeoutMillis (10 s) after every command.
		allowExitOnIdle: true,
	};
}

function quoteIdent(name: string): string {
	return `"${name.replaceAll('"', '""')}"`;
}

/**
 * PrismaPg with the fixes above. Takes a connection string (or parsed pg fields); use the
 * direct (non-pooled) URL: the schema engine needs CREATE DATABASE, advisory locks, DDL.
 */
export class MigrationPrismaPg extends PrismaPg {
	readonly #clientConfig: pg.ClientConfig;
	readonly #pgOptions: PrismaPgOptions | undefined;
	/** Fix 7: lock_timeout (ms) for a migration of CREATE INDEX CONCURRENTLY only. */
	concurrentTimeoutMs?: number;
	statementTimeoutMs?: number;

	constructor(connection: string | pg.ClientConfig, options?: PrismaPgOptions) {
		// Separate host/port/user/password/database fields instead of `connectionString`,
		// so that overriding `database` (fix 2) actually takes effect.
		const parsed =
			typeof connection === "string"
				? fromUrl(connection)
				: { clientConfig: connection };
		const pgOptions = options ?? parsed.pgOptions;
		super(poolConfig(parsed.clientConfig), pgOptions);
		this.#clientConfig = parsed.clientConfig;
		this.#pgOptions = pgOptions;
	}

	override async connect(): Promise<PgAdapter> {
		const adapter = await super.connect();
		// Fix 4. Upstream executeScript splits the script on every ";" and runs the pieces one
		// by one, outside any transaction: a failing migration is left half-applied, and ";"
		// inside strings, DO $$ ... $$ blocks or function bodies breaks it. The native engine
		// sends the whole migration.sql as one simple-protocol query, which Postgres runs as a
		// single implicit transaction; do the same (a query without parameters is sent with
		// the simple protocol, which accepts several statements).
		adapter.executeScript = async (script: string) => {
			if (
				this.concurrentTimeoutMs !== undefined &&
				(await onlyConcurrentIndexBuilds(script))
			) {
				await this.#runConcurrently(adapter, script);
				return;
			}
			await adapter.executeRaw({ sql: script, args: [], argTypes: [] });
		};
		return adapter;
	}

	/**
	 * Fix 7. CREATE INDEX CONCURRENTLY waits (as lock waits) for every transaction older than it, on
	 * any table: under the deploy's short lock_timeout it could never finish on a busy database, yet
	 * its waits hold up no one's reads or writes. On a connection of its own, its lock_timeout is
	 * the concurrent budget and its statement_timeout that plus the usual one (the build itself);
	 * the connection is closed afterwards so the settings go with it.
	 */
	async #runConcurrently(adapter: PgAdapter, script: string): Promise<void> {
		const pool = (adapter as unknown as { client: pg.Pool }).client;
		const conn = await pool.connect();
		try {
			const budget = this.concurrentTimeoutMs ?? 0;
			const statement = this.statementTimeoutMs
				? this.statementTimeoutMs + budget
				: 0;
			await conn.query(`SET lock_timeout = ${budget}`);
			await conn.query(`SET statement_timeout = ${statement}`);
			await conn.query(script);
		} catch (error) {
			// The adapter's own error conversion, so Prisma records and reports it as usual.
			(adapter as unknown as { onError(e: unknown): never }).onError(error);
		} finally {
			conn.release(true);
		}
	}

	/**
	 * Fix 2. Upstream builds the shadow pool as `{ ...config, database }`; with a
	 * `connectionString` in config pg lets the string win, so the "shadow" database was
	 * the main one (migrate dev / diff --from-migrations would reset the real database).
	 * Upstream also drops the shadow database while its pool still holds connections,
	 * which fails; close the shadow pool first, then DROP DATABASE ... WITH (FORCE) (PG 13+).
	 */
	override async connectToShadowDb(): Promise<PgAdapter> {
		const main = await this.connect();
		const database = `prisma_migrate_shadow_db_${globalThis.crypto.randomUUID()}`;
		try {
			await main.executeScript(`CREATE DATABASE ${quoteIdent(database)}`);
		} catch (error) {
			await main.dispose();
			throw error;
		}

		let shadow: PgAdapter;
		try {
			shadow = await new MigrationPrismaPg(
				{ ...this.#clientConfig, database },
				this.#pgOptions,
			).connect();
		} catch (error) {
			await dropDatabase(main, database).finally(() => main.dispose());
			throw error;
		}

		const disposeShadowPool = shadow.dispose.bind(shadow);
		let disposed = false;
		shadow.dispose = async () => {
			if (disposed) return;
			disposed = true;
			try {
				await disposeShadowPool();
			} finally {
				await dropDatabase(main, database).finally(() => main.dispose());
			}
		};
		return shadow;
	}
}

/**
 * Whether a migration script is CREATE INDEX CONCURRENTLY statements only, read with PostgreSQL's
 * parser (libpg_query; loaded here on demand, as the Prisma config is not an ES module).
 */
async function onlyConcurrentIndexBuilds(script: string): Promise<boolean> {
	const pgQuery = await import("libpg-query");
	await pgQuery.loadModule();
	try {
		const stmts: Array<{ stmt: { IndexStmt?: { concurrent?: boolean } } }> =
			pgQuery.parseSync(script).stmts ?? [];
		return stmts.length > 0 && stmts.every((s) => s.stmt.IndexStmt?.concurrent);
	} catch {
		return false;
	}
}

async function dropDatabase(main: PgAdapter, database: string): Promise<void> {
	await main.executeScript(
		`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`,
	);
}

/**
 * Prisma URL semantics for `?schema=name`: the native engine migrates into that schema by
 * setting search_path; adapter-pg only uses `schema` to describe the database, so without
 * search_path the tables would land in "public" while Prisma reads "name".
 */
function fromUrl(connectionString: string): {
	clientConfig: pg.ClientConfig;
	pgOptions?: PrismaPgOptions;
} {
	const { schema, ...clientConfig } = parseIntoClientConfig(
		connectionString,
	) as pg.ClientConfig & {
		schema?: unknown;
	};
	if (typeof schema !== "string" || schema === "") return { clientConfig };
	// libpq startup options: `-c search_path="Name"` (quoted identifier, spaces/backslashes escaped).
	const searchPath = `"${schema.replaceAll('"', '""')}"`.replace(
		/[\\ ]/g,
		(c) => `\\${c}`,
	);
	const startup = [clientConfig.options, `-c search_path=${searchPath}`]
		.filter(Boolean)
		.join(" ");
	return {
		clientConfig: { ...clientConfig, options: startup },
		pgOptions: { schema },
	};
}

const TIMERS_PATCHED = Symbol.for("faceswap.unrefSchemaEngineTimers");

/**
 * Fix 5 (CLI process only; call from the Prisma config). The wasm schema engine arms a
 * 10 s timeout around `SELECT pg_advisory_lock(...)` (migrate deploy, migrate dev) and
 * never clears it, so the CLI lingers 10 s after it is done. Timers armed from
 * WebAssembly only race a database query, whose socket keeps the process alive by
 * itself while the query runs, so they are unref'd: they still fire, but no longer
 * hold the process open. Timers set by JavaScript code are untouched.
 */
export function unrefSchemaEngineTimers(): void {
	const g = globalThis as typeof globalThis & { [TIMERS_PATCHED]?: true };
	if (g[TIMERS_PATCHED]) return;
	g[TIMERS_PATCHED] = true;
	const original = globalThis.setTimeout;
	const callOriginal = original as unknown as (...args: unknown[]) => unknown;
	const patched = function (this: unknown, ...args: unknown[]) {
		const timer = callOriginal.apply(this, args);
		if (new Error().stack?.includes("wasm://")) {
			(timer as { unref?: () => unknown } | undefined)?.unref?.();
		}
		return timer;
	};
	// Keep util.promisify.custom (node:timers/promises style) working.
	for (const key of Object.getOwnPropertySymbols(original)) {
		const descriptor = Object.getOwnPropertyDescriptor(original, key);
		if (descriptor) Object.defineProperty(patched, key, descriptor);
	}
	globalThis.setTimeout = patched as unknown as typeof globalThis.setTimeout;
}

/** Settings every engine connection starts with (PostgreSQL startup options). */
export interface SessionSettings {
	/** lock_timeout in milliseconds: a statement that cannot get its lock in time fails (55P03). */
	lockTimeoutMs?: number;
	/** statement_timeout in milliseconds. */
	statementTimeoutMs?: number;
	/** application_name, so the engine's sessions can be found in pg_stat_activity. */
	applicationName?: string;
	/** lock_timeout in milliseconds for a migration that only builds indexes CONCURRENTLY. */
	concurrentTimeoutMs?: number;
}

/** RUNBOOK_LOCK_TIMEOUT / RUNBOOK_STATEMENT_TIMEOUT (ms) and RUNBOOK_APPLICATION_NAME, when set. */
export function sessionSettingsFromEnv(
	env: Record<string, string | undefined>,
): SessionSettings {
	const ms = (name: string) => {
		const text = env[name];
		if (text === undefined || text === "") return undefined;
		const n = Number(text);
		if (!Number.isInteger(n) || n < 0)
			throw new Error(
				`${name} must be a whole number of milliseconds, got "${text}"`,
			);
		return n;
	};
	return {
		lockTimeoutMs: ms("RUNBOOK_LOCK_TIMEOUT"),
		statementTimeoutMs: ms("RUNBOOK_STATEMENT_TIMEOUT"),
		applicationName: env.RUNBOOK_APPLICATION_NAME || undefined,
		concurrentTimeoutMs: ms("RUNBOOK_CONCURRENT_TIMEOUT"),
	};
}

/**
 * Fix 6 (runbook settings). The timeouts travel as the `options` startup parameter
 * (`-c lock_timeout=5000`), appended to any `options` the URL already has, so they hold on every
 * pooled connection from its first statement, with no SET that a pool could lose. (pg also falls
 * back to PGOPTIONS, but only when the config has no `options` of its own; this is explicit.)
 */
export function withSessionSettings(
	config: pg.ClientConfig,
	s: SessionSettings,
): pg.ClientConfig {
	const opts: string[] = [];
	if (s.lockTimeoutMs !== undefined)
		opts.push(`-c lock_timeout=${s.lockTimeoutMs}`);
	if (s.statementTimeoutMs !== undefined)
		opts.push(`-c statement_timeout=${s.statementTimeoutMs}`);
	const existing = (config as { options?: string }).options;
	const options = [existing, ...opts].filter(Boolean).join(" ");
	return {
		...config,
		...(options ? { options } : {}),
		...(s.applicationName ? { application_name: s.applicationName } : {}),
	} as pg.ClientConfig;
}

/** The factory for `adapter: async () => ...` in the Prisma config. */
export function createMigrationAdapter(
	connectionString: string,
	session: SessionSettings = {},
): MigrationPrismaPg {
	const { clientConfig, pgOptions } = fromUrl(connectionString);
	const adapter = new MigrationPrismaPg(
		withSessionSettings(clientConfig, session),
		pgOptions,
	);
	adapter.concurrentTimeoutMs = session.concurrentTimeoutMs;
	adapter.statementTimeoutMs = session.statementTimeoutMs;
	return adapter;
}
