// The runbooks as the suite starts them: one esbuild bundle each, built once per run into
// .cache/runbooks/ and started with plain node. Through tsx, every run paid for tsx's launcher
// (a second Node) and its loader (a hooks thread, then each of ~100 lib modules resolved and
// transformed through it): about 1 CPU-s a run, against 0.17 s for a bundle, and the suite starts
// some 1,500 runs on two cores. The code is the same esbuild transform tsx applies, in one file.
// The launch paths an operator types keep their own tests (cli-flags, docs-commands, bad-input's
// executable cases, validate's Ctrl-C); TEST_RUNBOOKS=tsx starts every run through tsx's CLI.

import {
	existsSync,
	mkdirSync,
	readdirSync,
	readFileSync,
	renameSync,
	writeFileSync,
} from "node:fs";
import { join, relative, sep } from "node:path";
import { build, type Plugin } from "esbuild";

/** Where a checkout's bundles are, from its root. */
export const BUNDLE_DIR = join(".cache", "runbooks");

/** The bundle of `runbooks/<name>.ts` in the checkout at `root`, or null when runs go through tsx. */
export function runbookBundle(root: string, name: string): string | null {
	if (process.env.TEST_RUNBOOKS === "tsx") return null;
	const file = join(root, BUNDLE_DIR, `${name}.mjs`);
	return existsSync(file) ? file : null;
}

/** Builds every runbook's bundle in the checkout at `root`. */
export async function buildRunbookBundles(root: string): Promise<void> {
	const outdir = join(root, BUNDLE_DIR);
	const built = await build({
		entryPoints: readdirSync(join(root, "runbooks"))
			.filter((f) => f.endsWith(".ts"))
			.map((f) => join(root, "runbooks", f)),
		outdir,
		outExtension: { ".js": ".mjs" },
		bundle: true,
		platform: "node",
		format: "esm",
		target: "node20",
		packages: "external",
		logLevel: "warning",
		plugins: [moduleUrls(outdir)],
		write: false,
	});
	// Each file renamed into place: another run of the suite may be starting one meanwhile.
	mkdirSync(outdir, { recursive: true });
	for (const out of built.outputFiles) {
		const staged = `${out.path}.${process.pid}.tmp`;
		writeFileSync(staged, out.contents);
		renameSync(staged, out.path);
	}
}

/**
 * import.meta.url as each module had it, relative to the bundle: lib/ finds the checkout's root
 * and Prisma's package from its own place, and a copy of the checkout (bundle included) keeps
 * pointing at itself.
 */
function moduleUrls(outdir: string): Plugin {
	return {
		name: "module-urls",
		setup(b) {
			b.onLoad({ filter: /\.ts$/ }, (args) => {
				const text = readFileSync(args.path, "utf8");
				if (!text.includes("import.meta.url")) return undefined;
				const rel = relative(outdir, args.path).split(sep).join("/");
				return {
					contents: text.replaceAll(
						"import.meta.url",
						`new URL(${JSON.stringify(rel)}, import.meta.url).href`,
					),
					loader: "ts",
				};
			});
		},
	};
}
