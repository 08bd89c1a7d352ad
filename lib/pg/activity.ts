// Kept for the branches that still import the old module: it re-exports what lib/pg/activity.ts
// held. New code imports the module that does the job (remove this file once nothing imports it).

export * from "../messages/sessions.ts";
export * from "./blocking-tree.ts";
export * from "./session-checks.ts";
export * from "./sessions.ts";
export * from "./signal.ts";
