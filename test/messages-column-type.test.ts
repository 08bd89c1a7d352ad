// The operator's text of change-column-type.ts and remove-enum-value.ts, from typed results.

import { describe, expect, it } from "vitest";
import type { ColumnChange } from "../lib/data/column-type.ts";
import { directSteps, onlineSteps } from "../lib/data/column-type.ts";
import {
	enumInUse,
	planOf,
	roadOf,
	unconvertibleMessage,
} from "../lib/messages/column-type.ts";

const change: ColumnChange = {
	schema: "public",
	table: "generated_videos",
	tableSql: '"generated_videos"',
	column: "quality",
	newColumn: "quality__new",
	fromType: "character varying(16)",
	fromEnum: false,
	toType: "character varying(8)",
	using: '"quality"',
	usingGiven: false,
	notNull: true,
	default: "'720p'::character varying",
	bytes: 64 * 1024 * 1024,
	estimatedRows: 200_000,
	indexes: [
		{
			name: "generated_videos_quality_idx",
			def: "CREATE INDEX generated_videos_quality_idx ON public.generated_videos USING btree (quality)",
			constraint: null,
		},
	],
	constraints: [],
	views: [],
};

describe("column-type messages", () => {
	it("says which road and why", () => {
		expect(roadOf(change, false, 10)).toMatchInlineSnapshot(
			`"generated_videos is 64.0 MB (~200,000 rows): online, expand and contract (a new column kept in step by a trigger, filled in batches, swapped in)"`,
		);
		expect(
			roadOf({ ...change, bytes: 1024 * 1024 }, true, 10),
		).toMatchInlineSnapshot(
			`"generated_videos is small (1.0 MB, under --small-table-mb 10): one direct ALTER TABLE ... TYPE, which rewrites it under ACCESS EXCLUSIVE for about as long as a scan takes"`,
		);
	});

	it("names the rows that do not convert", () => {
		expect(
			unconvertibleMessage(change, { count: 3, examples: ["a1", "a2", "a3"] }),
		).toMatchInlineSnapshot(
			`"3 row(s) of generated_videos have a quality that does not convert to character varying(8) (e.g. id a1, a2, a3). Nothing was changed."`,
		);
	});

	it("plans each migration with its lock", () => {
		const steps = onlineSteps(change).map((s) =>
			planOf({
				...s,
				name: `00000000000000_${s.suffix}`,
				exists: false,
				applied: false,
			}).join("\n"),
		);
		expect(steps.join("\n")).toMatchSnapshot();
		expect(directSteps(change)[0].sql).toMatchSnapshot();
	});

	it("refuses an enum value in use", () => {
		const u = {
			name: "VideoStatus",
			sql: '"VideoStatus"',
			newSql: '"VideoStatus__new"',
			values: ["PENDING", "PROCESSING"],
			columns: [
				{
					schema: "public",
					table: "generated_videos",
					column: "status",
					rows: 1234,
				},
			],
		};
		expect(enumInUse(u, "PROCESSING", 1234)).toMatchInlineSnapshot(
			`"1,234 row(s) still hold VideoStatus.PROCESSING: generated_videos.status (1,234). Nothing was changed."`,
		);
	});
});
