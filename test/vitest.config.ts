import { defineConfig } from "vitest/config";

export default defineConfig({
	test: {
		root: new URL("..", import.meta.url).pathname,
		include: ["test/**/*.test.ts"],
		// Those need a Docker engine: npm run test:containers (vitest.containers.config.ts).
		exclude: ["**/node_modules/**", "test/**/*.containers.test.ts"],
		globalSetup: ["test/support/global-setup.ts"],
		testTimeout: 300_000,
		hookTimeout: 300_000,
		// Two cores: files run in parallel, each on its own database.
		maxWorkers: 2,
	},
});
