// Plain `npx prisma <command>` from the repository root: Prisma 6.19 finds its config here (c12
// looks in .config/ as well as beside package.json) and this hands it prisma/prisma.config.ts,
// the runbooks' config, with the WebAssembly engine that needs no download. Unlike the runbooks,
// which pass the environment themselves, a command typed by hand reads DATABASE_URL and
// DIRECT_URL from .env, as the runbooks do; variables already set win.
import { config } from "dotenv";

config({ quiet: true });
const { default: prismaConfig } = await import("../prisma/prisma.config.ts");
export default prismaConfig;
