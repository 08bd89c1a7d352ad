// How numbers an operator reads are written, in one place: byte sizes, counts, elapsed times,
// timeouts, and UTC timestamps for names and screens.

/** "512 B", "1.5 MB", "12 GB" (powers of 1024, PostgreSQL's unit names). */
export function formatBytes(bytes: number): string {
	const units = ["B", "kB", "MB", "GB", "TB"];
	let v = bytes;
	let u = 0;
	while (v >= 1024 && u < units.length - 1) {
		v /= 1024;
		u++;
	}
	return `${v < 10 && u > 0 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** "1,234,567": a whole count with thousands separators. */
export function formatCount(n: number): string {
	return Math.round(n).toLocaleString("en-US");
}

/** How long something took: "850ms", "4.2s", "3m07s". */
export function formatDuration(ms: number): string {
	if (ms < 1000) return `${Math.round(ms)}ms`;
	if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
	const m = Math.floor(ms / 60_000);
	const s = Math.round((ms % 60_000) / 1000);
	return `${m}m${String(s).padStart(2, "0")}s`;
}

/**
 * Names an operator reads in one line: all of them up to `max`, else the first and last few and how
 * many in all ("a, b, c, … 160 more …, y, z (165 in all)"): a fresh install applies hundreds.
 */
export function formatNames(names: string[], max = 10): string {
	if (names.length <= Math.max(max, 5)) return names.join(", ");
	const head = names.slice(0, 3);
	const tail = names.slice(-2);
	return `${[...head, `… ${names.length - 5} more …`, ...tail].join(", ")} (${names.length} in all)`;
}

/** A timeout the way PostgreSQL prints it: "5s", "1.5s", "2min", "0 (none)". */
export function formatMs(ms: number): string {
	if (ms === 0) return "0 (none)";
	if (ms % 60_000 === 0) return `${ms / 60_000}min`;
	if (ms % 1000 === 0) return `${ms / 1000}s`;
	return ms < 1000 ? `${ms}ms` : `${(ms / 1000).toFixed(1)}s`;
}

/**
 * A UTC time for names and screens:
 * - "compact": 20250107T031500Z (backup ids, scratch databases)
 * - "compact-ms": 20250107T031500123Z (.env backups: two in one second stay apart)
 * - "digits": 20250107031500 (Prisma's migration folder prefix)
 * - "clock": 2025-01-07 03:15:00 (a live view's clock)
 */
export type StampStyle = "compact" | "compact-ms" | "digits" | "clock";

export function utcStamp(d: Date, style: StampStyle = "compact"): string {
	const iso = d.toISOString(); // 2025-01-07T03:15:00.123Z
	switch (style) {
		case "compact":
			return iso.replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
		case "compact-ms":
			return iso.replace(/[-:]/g, "").replace(/\.(\d{3})Z$/, "$1Z");
		case "digits":
			return iso.replace(/\D/g, "").slice(0, 14);
		case "clock":
			return iso.replace("T", " ").slice(0, 19);
	}
}
