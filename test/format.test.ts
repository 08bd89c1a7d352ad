// The one format module: how sizes, counts, durations, timeouts and UTC times are written.

import { describe, expect, it } from "vitest";
import * as format from "../lib/kit/format.ts";

const {
	formatBytes,
	formatCount,
	formatDuration,
	formatMs,
	formatNames,
	utcStamp,
} = format;

describe("format", () => {
	it("writes byte sizes in PostgreSQL's units, one decimal below 10", () => {
		expect(
			[
				0,
				512,
				1023,
				1024,
				1536,
				10 * 1024,
				5.5 * 1024 ** 2,
				3 * 1024 ** 3,
				2048 * 1024 ** 4,
			].map(formatBytes),
		).toEqual([
			"0 B",
			"512 B",
			"1023 B",
			"1.0 kB",
			"1.5 kB",
			"10 kB",
			"5.5 MB",
			"3.0 GB",
			"2048 TB",
		]);
	});

	it("lists names whole up to the limit, else the first three, the last two and how many", () => {
		const names = Array.from({ length: 167 }, (_, i) => `m${i + 1}`);
		expect(formatNames(names.slice(0, 10))).toBe(names.slice(0, 10).join(", "));
		expect(formatNames(names)).toBe(
			"m1, m2, m3, … 162 more …, m166, m167 (167 in all)",
		);
		expect(formatNames(names.slice(0, 6), 5)).toBe(
			"m1, m2, m3, … 1 more …, m5, m6 (6 in all)",
		);
		expect(formatNames(names.slice(0, 5), 2)).toBe("m1, m2, m3, m4, m5");
	});

	it("writes counts whole, with thousands separators", () => {
		expect([0, 999, 1234.6, 1_234_567].map(formatCount)).toEqual([
			"0",
			"999",
			"1,235",
			"1,234,567",
		]);
	});

	it("writes elapsed times as ms, seconds with a decimal, or minutes and seconds", () => {
		expect(
			[0, 849.6, 1000, 4_250, 59_999, 60_000, 187_000, 3_600_000].map(
				formatDuration,
			),
		).toEqual([
			"0ms",
			"850ms",
			"1.0s",
			"4.3s",
			"60.0s",
			"1m00s",
			"3m07s",
			"60m00s",
		]);
	});

	it("writes timeouts the way PostgreSQL prints them", () => {
		expect([0, 500, 1500, 5000, 120_000, 90_000].map(formatMs)).toEqual([
			"0 (none)",
			"500ms",
			"1.5s",
			"5s",
			"2min",
			"90s",
		]);
	});

	it("writes UTC times in four styles, whatever the local time zone", () => {
		const d = new Date(Date.UTC(2025, 0, 7, 3, 15, 9, 42));
		expect(utcStamp(d)).toBe("20250107T031509Z");
		expect(utcStamp(d, "compact")).toBe("20250107T031509Z");
		expect(utcStamp(d, "compact-ms")).toBe("20250107T031509042Z");
		expect(utcStamp(d, "digits")).toBe("20250107031509");
		expect(utcStamp(d, "clock")).toBe("2025-01-07 03:15:09");
	});
});
