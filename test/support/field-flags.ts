// Flags the schema-change runbooks (add-required-field, change-column-type) take, for their tests,
// the conventions' dry runs and the benchmarks alike (no vitest here: benchmarks import it too).

/** The flags naming the column a schema-change runbook works on. */
export function columnFlags(table: string, column: string, type: string) {
	return ["--table", table, "--column", column, "--type", type];
}

/** generated_videos.thumbnail_path, filled from each row's id: the add-required-field example. */
export const THUMBNAIL_FIELD = [
	...columnFlags("generated_videos", "thumbnail_path", "text"),
	"--backfill",
	"'thumbs/' || id || '.jpg'",
];

/** generated_videos.share_slug, 'v-' || id: the field the fault and resume-advice cases add. */
export const SHARE_SLUG_FIELD = [
	...columnFlags("generated_videos", "share_slug", "text"),
	"--backfill",
	"'v-' || id",
];

/** A slow fill, fixed batches of 200 rows `pause` apart (--target-batch 0), for a fault to land in. */
export const slowFill = (pause: string) => [
	"--batch-size",
	"200",
	"--target-batch",
	"0",
	"--sleep",
	pause,
];

/** VideoStatus without PROCESSING, its rows moved to PENDING: the remove-enum-value example. */
export const PROCESSING_TO_PENDING = [
	"--enum",
	"VideoStatus",
	"--value",
	"PROCESSING",
	"--replace-with",
	"PENDING",
];
