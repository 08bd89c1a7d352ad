// The app's .env file, read and rewritten safely: only the DATABASE_URL and DIRECT_URL lines
// change, every other byte (comments, blank lines, quoting, line endings) stays as it was; the new
// file is written to a temporary file, fsynced and renamed over the old one (never half-written),
// keeping the file's mode, and the previous content is kept as a 0600 backup beside it.

import { randomBytes } from "node:crypto";
import {
	closeSync,
	fchmodSync,
	fchownSync,
	fsyncSync,
	openSync,
	readdirSync,
	readFileSync,
	realpathSync,
	renameSync,
	statSync,
	unlinkSync,
	writeSync,
} from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { parse } from "dotenv";
import { refusal, usageError } from "../kit/errors.ts";
import { utcStamp } from "../kit/format.ts";

/** The two keys a switch rewrites. */
export type UrlKey = "DATABASE_URL" | "DIRECT_URL";

/**
 * Marks a DIRECT_URL line that a switch added to a file that had none, so that switching to a
 * profile without a direct URL removes it again and the file reads exactly as before.
 */
export const ADDED_MARK = "# added by switch-db-env";

export interface EnvFile {
	/** The path as given (absolute). */
	path: string;
	/** The file written to: the symlink's target when .env is a link. */
	realPath: string;
	text: string;
	mode: number;
	uid: number;
	gid: number;
	/** The values dotenv reads from the file (not the process environment). */
	values: Record<string, string>;
}

/** The file a run reads: --dotenv <path>, else .env in the current directory. */
export function envFilePath(flag?: string): string {
	return resolve(flag ?? ".env");
}

const codeOf = (err: unknown) =>
	(err as NodeJS.ErrnoException)?.code ?? "unknown error";

export function readEnvFile(path: string): EnvFile {
	let buf: Buffer;
	let realPath: string;
	let st: ReturnType<typeof statSync>;
	try {
		realPath = realpathSync(path);
		st = statSync(realPath);
		if (st.isDirectory()) throw Object.assign(new Error(), { code: "EISDIR" });
		buf = readFileSync(realPath);
	} catch (err) {
		const code = codeOf(err);
		throw usageError(
			code === "ENOENT"
				? `There is no environment file at ${path}.`
				: `Cannot read the environment file ${path} (${code}).`,
			code === "ENOENT"
				? "Run from the app's directory (where .env lives), pass --dotenv <path>, or create .env from .env.example."
				: "Check the path and its permissions. Nothing was changed.",
		);
	}
	const text = buf.toString("utf8");
	if (!Buffer.from(text, "utf8").equals(buf)) {
		throw usageError(
			`${path} is not valid UTF-8 text; it cannot be rewritten safely. Nothing was changed.`,
		);
	}
	return {
		path,
		realPath,
		text,
		mode: st.mode & 0o7777,
		uid: st.uid,
		gid: st.gid,
		values: parse(text),
	};
}

interface Assignment {
	index: number;
	/** `KEY=` with any leading `export ` and spaces, kept as written. */
	prefix: string;
	quote: "" | '"' | "'" | "`";
	value: string;
	/** What follows the value on the line: spaces and a comment. */
	suffix: string;
	/** "\r" for CRLF files. */
	eol: string;
}

function findAssignments(lines: string[], key: UrlKey): Assignment[] {
	const re = new RegExp(`^(\\s*(?:export\\s+)?${key}\\s*=\\s*)(.*?)(\\r?)$`);
	const out: Assignment[] = [];
	lines.forEach((line, index) => {
		const m = re.exec(line);
		if (!m) return;
		const [, prefix, rest, eol] = m;
		const q = rest[0];
		if (q === '"' || q === "'" || q === "`") {
			const end = rest.indexOf(q, 1);
			if (end === -1) {
				throw usageError(
					`${key} in the environment file has an opening ${q} but no closing one on its line (a value over several lines); edit it by hand. Nothing was changed.`,
				);
			}
			out.push({
				index,
				prefix,
				quote: q,
				value: rest.slice(1, end),
				suffix: rest.slice(end + 1),
				eol,
			});
		} else {
			const hash = rest.search(/\s#/);
			const value = hash === -1 ? rest : rest.slice(0, hash);
			out.push({
				index,
				prefix,
				quote: "",
				value: value.trimEnd(),
				suffix: rest.slice(value.trimEnd().length),
				eol,
			});
		}
	});
	return out;
}

function render(a: Assignment, value: string): string {
	let q = a.quote;
	if (q === "" && /[\s#"'`\\]/.test(value)) q = '"';
	if (q && value.includes(q))
		q = (['"', "'", "`"] as const).find((c) => !value.includes(c)) ?? '"';
	return `${a.prefix}${q}${value}${q}${a.suffix}${a.eol}`;
}

export interface UrlChange {
	key: UrlKey;
	/** What happened to the key's line(s). */
	action: "set" | "added" | "removed" | "unchanged";
	/** The new value (a secret: mask before showing), or null when removed. */
	value: string | null;
}

/**
 * New file text with DATABASE_URL and DIRECT_URL set for a profile; every other line as it was.
 * `directUrl` null means the profile has no direct URL: a DIRECT_URL line a switch added is
 * removed again, one the operator wrote is set to the database URL (a direct connection to the
 * same server), and none is added.
 */
export function rewriteUrls(
	text: string,
	databaseUrl: string,
	directUrl: string | null,
): { text: string; changes: UrlChange[] } {
	const lines = text.split("\n");
	const eol = lines.some((l) => l.endsWith("\r")) ? "\r" : "";
	const changes: UrlChange[] = [];
	const removed = new Set<number>();
	const inserts = new Map<number, string>();

	const db = findAssignments(lines, "DATABASE_URL");
	const direct = findAssignments(lines, "DIRECT_URL");
	for (const a of db) lines[a.index] = render(a, databaseUrl);
	changes.push({
		key: "DATABASE_URL",
		action: db.length
			? db.every((a) => a.value === databaseUrl)
				? "unchanged"
				: "set"
			: "added",
		value: databaseUrl,
	});

	if (directUrl !== null) {
		for (const a of direct) lines[a.index] = render(a, directUrl);
		if (direct.length) {
			changes.push({
				key: "DIRECT_URL",
				action: direct.every((a) => a.value === directUrl)
					? "unchanged"
					: "set",
				value: directUrl,
			});
		} else {
			const after = db.length ? db[db.length - 1].index : -1;
			inserts.set(after, `DIRECT_URL="${directUrl}" ${ADDED_MARK}${eol}`);
			changes.push({ key: "DIRECT_URL", action: "added", value: directUrl });
		}
	} else if (direct.length) {
		const ours = direct.filter((a) => a.suffix.trim() === ADDED_MARK);
		for (const a of ours) removed.add(a.index);
		const theirs = direct.filter((a) => a.suffix.trim() !== ADDED_MARK);
		for (const a of theirs) lines[a.index] = render(a, databaseUrl);
		changes.push(
			theirs.length
				? {
						key: "DIRECT_URL",
						action: theirs.every((a) => a.value === databaseUrl)
							? "unchanged"
							: "set",
						value: databaseUrl,
					}
				: { key: "DIRECT_URL", action: "removed", value: null },
		);
	}

	const out: string[] = [];
	lines.forEach((line, i) => {
		if (!removed.has(i)) out.push(line);
		const ins = inserts.get(i);
		if (ins !== undefined) out.push(ins);
	});
	if (!db.length) {
		// No DATABASE_URL line yet: append one (and DIRECT_URL after it) at the end of the file.
		const appended = [`DATABASE_URL="${databaseUrl}"${eol}`];
		const ins = inserts.get(-1);
		if (ins !== undefined) appended.push(ins);
		if (out[out.length - 1] === "") out.splice(out.length - 1, 0, ...appended);
		else out.push(...appended, "");
	}
	return { text: out.join("\n"), changes };
}

function fsyncDir(dir: string): void {
	try {
		const fd = openSync(dir, "r");
		try {
			fsyncSync(fd);
		} finally {
			closeSync(fd);
		}
	} catch {
		// Some filesystems refuse fsync on a directory; the rename itself is still atomic.
	}
}

function writeNew(
	path: string,
	text: string,
	mode: number,
	owner?: { uid: number; gid: number },
): void {
	const fd = openSync(path, "wx", 0o600);
	try {
		const buf = Buffer.from(text, "utf8");
		let off = 0;
		while (off < buf.length) off += writeSync(fd, buf, off);
		fchmodSync(fd, mode);
		if (owner && process.getuid?.() === 0) {
			try {
				fchownSync(fd, owner.uid, owner.gid);
			} catch {
				// keep root's ownership rather than fail
			}
		}
		fsyncSync(fd);
	} finally {
		closeSync(fd);
	}
}

/** Where the previous content goes: `<file>.backup-<UTC time>`, never overwriting an older one. */
export function backupPath(file: EnvFile, now = new Date()): string {
	return `${file.path}.backup-${utcStamp(now, "compact-ms")}`;
}

/** Temporary files a killed rewrite left beside the file (an hour old: no live run's). */
export function removeStaleTemps(realPath: string, now = Date.now()): string[] {
	const dir = dirname(realPath);
	const name = basename(realPath).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	const pattern = new RegExp(`^\\.${name}\\.[0-9a-f]{8}\\.tmp$`);
	const removed: string[] = [];
	for (const f of readdirSync(dir).filter((x) => pattern.test(x))) {
		try {
			if (now - statSync(join(dir, f)).mtimeMs < 3_600_000) continue;
			unlinkSync(join(dir, f));
			removed.push(f);
		} catch {
			// gone meanwhile
		}
	}
	return removed;
}

/**
 * Replaces the file's content with `text`: the old content first goes to a 0600 backup, the new
 * one to a temporary file in the same directory (same mode and owner), fsynced, then renamed over
 * the file. Refuses if the file changed since it was read. Returns the backup's path.
 */
export function replaceEnvFile(
	file: EnvFile,
	text: string,
	now = new Date(),
): string {
	const dir = dirname(file.realPath);
	const tmp = join(
		dir,
		`.${basename(file.realPath)}.${randomBytes(4).toString("hex")}.tmp`,
	);
	removeStaleTemps(file.realPath);
	let backup = backupPath(file, now);
	const cleanup: string[] = [];
	try {
		for (let n = 1; ; n++) {
			try {
				writeNew(backup, file.text, 0o600);
				break;
			} catch (err) {
				if (codeOf(err) !== "EEXIST" || n > 50) throw err;
				backup = `${backupPath(file, now)}-${n}`;
			}
		}
		cleanup.push(backup);
		writeNew(tmp, text, file.mode, file);
		cleanup.push(tmp);
		if (readFileSync(file.realPath, "utf8") !== file.text) {
			throw refusal(
				`${file.path} changed while this run was working on it (another editor or run?). Nothing was changed.`,
				"Check the file, then rerun.",
			);
		}
		renameSync(tmp, file.realPath);
		fsyncDir(dir);
		return backup;
	} catch (err) {
		for (const p of cleanup.reverse()) {
			try {
				unlinkSync(p);
			} catch {
				// already gone
			}
		}
		if ((err as { exitCode?: number }).exitCode !== undefined) throw err;
		throw usageError(
			`Cannot write the environment file ${file.path} (${codeOf(err)}): nothing was changed.`,
			`Check that ${dir} is writable by this user and has free space.`,
		);
	}
}
