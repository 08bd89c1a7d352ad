import { defineConfig } from "vitest/config";

/** The suites of the runbooks that dump, restore and migrate: npm run test:containers runs them in Docker. */
export const CONTAINER_SUITES = [
	"test/deploy-production*.test.ts",
	"test/emergency-rollback*.test.ts",
	"test/migrate-to-supabase.test.ts",
	"test/backfill.test.ts",
	"test/backup.test.ts",
];

// TEST_CONTAINER_SUITES=docker: those run against Docker (npm run test:containers) and not here, so
// a run of both (.ci/run) runs each test once.
const elsewhere =
	process.env.TEST_CONTAINER_SUITES === "docker" ? CONTAINER_SUITES : [];

export default defineConfig({
	test: {
		root: new URL("..", import.meta.url).pathname,
		include: ["test/**/*.test.ts"],
		// *.containers.test.ts need a Docker engine: npm run test:containers.
		exclude: [
			"**/node_modules/**",
			"test/**/*.containers.test.ts",
			...elsewhere,
		],
		globalSetup: ["test/support/global-setup.ts"],
		testTimeout: 300_000,
		hookTimeout: 300_000,
		// Files run in parallel, each on its own database: three on two cores, as a worker spends a
		// fifth of its time waiting (runbooks' pauses, fault timers, the server), which a third fills
		// (docs/benchmarks.md: 417 s -> 348 s).
		maxWorkers: 3,
	},
});
