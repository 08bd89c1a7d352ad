// `npm run test:containers`: the suites of the runbooks that dump, restore and migrate, against
// PostgreSQL in a Testcontainers container (TEST_PG=docker unless set), the runbooks on the host as
// on a laptop; and the newer-server refusal, which starts a container of its own.
// `TEST_PG=local npm run test:containers` runs the same suites on a local cluster, without the
// newer-server check (it needs an engine), and says so.
import { defineConfig } from "vitest/config";
import base, { CONTAINER_SUITES } from "./vitest.config.ts";

process.env.TEST_PG ??= "docker";
const needEngine = "test/*.containers.test.ts";
if (process.env.TEST_PG !== "docker")
	process.stderr.write(
		`TEST_PG=${process.env.TEST_PG}: ${needEngine} left out, as it needs a Docker engine\n`,
	);

export default defineConfig({
	test: {
		...base.test,
		include: [
			...CONTAINER_SUITES,
			...(process.env.TEST_PG === "docker" ? [needEngine] : []),
		],
		exclude: ["**/node_modules/**"],
	},
});
