// Editing prisma/schema.prisma the way a developer would after a migration: find the model that
// maps to a table, add or change one scalar field, with the Prisma type, native type attribute
// and @default that describe a PostgreSQL column (so `prisma migrate diff` from the migrations to
// the schema is empty). Formatting is left to `prisma format`.

import { usageError } from "../kit/errors.ts";

export interface PrismaColumn {
	/** The Prisma type, e.g. "String", "Int", "DateTime", or an enum's name. */
	type: string;
	/** A native type attribute, e.g. "@db.VarChar(16)", or "". */
	native: string;
}

const SCALARS = new Set([
	"String",
	"Boolean",
	"Int",
	"BigInt",
	"Float",
	"Decimal",
	"DateTime",
	"Json",
	"Bytes",
]);

/**
 * The Prisma type of a column type as format_type() prints it (e.g. "character varying(16)",
 * "timestamp(3) without time zone", "\"VideoStatus\""); null when Prisma has no plain mapping.
 */
export function prismaTypeOf(
	sqlType: string,
	enums: string[],
): PrismaColumn | null {
	const t = sqlType.trim();
	const enumName = t.startsWith('"') ? t.slice(1, -1).replace(/""/g, '"') : t;
	if (enums.includes(enumName)) return { type: enumName, native: "" };
	switch (t) {
		case "text":
			return { type: "String", native: "" };
		case "integer":
			return { type: "Int", native: "" };
		case "smallint":
			return { type: "Int", native: "@db.SmallInt" };
		case "bigint":
			return { type: "BigInt", native: "" };
		case "boolean":
			return { type: "Boolean", native: "" };
		case "double precision":
			return { type: "Float", native: "" };
		case "real":
			return { type: "Float", native: "@db.Real" };
		case "jsonb":
			return { type: "Json", native: "" };
		case "json":
			return { type: "Json", native: "@db.Json" };
		case "uuid":
			return { type: "String", native: "@db.Uuid" };
		case "bytea":
			return { type: "Bytes", native: "" };
		case "date":
			return { type: "DateTime", native: "@db.Date" };
		case "character varying":
			return { type: "String", native: "@db.VarChar" };
		case "timestamp without time zone":
			return { type: "DateTime", native: "@db.Timestamp(6)" };
		case "timestamp with time zone":
			return { type: "DateTime", native: "@db.Timestamptz(6)" };
	}
	const varchar = /^character varying\((\d+)\)$/.exec(t);
	if (varchar) return { type: "String", native: `@db.VarChar(${varchar[1]})` };
	const char = /^character\((\d+)\)$/.exec(t);
	if (char) return { type: "String", native: `@db.Char(${char[1]})` };
	const numeric = /^numeric\((\d+),(\d+)\)$/.exec(t);
	if (numeric)
		return {
			type: "Decimal",
			native: `@db.Decimal(${numeric[1]}, ${numeric[2]})`,
		};
	const ts = /^timestamp\((\d)\) without time zone$/.exec(t);
	if (ts)
		return {
			type: "DateTime",
			native: ts[1] === "3" ? "" : `@db.Timestamp(${ts[1]})`,
		};
	const tstz = /^timestamp\((\d)\) with time zone$/.exec(t);
	if (tstz) return { type: "DateTime", native: `@db.Timestamptz(${tstz[1]})` };
	return null;
}

const prismaString = (s: string) =>
	`"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

/**
 * The @default(...) for a column default as pg_get_expr() prints it, the way `prisma db pull`
 * reads it back: literals, now(), enum values; anything else as dbgenerated("...").
 */
export function prismaDefaultOf(expr: string, col: PrismaColumn): string {
	const e = expr.trim();
	const str = /^'((?:[^']|'')*)'(?:::[a-z ]+(?:\(\d+\))?)?$/.exec(e);
	if (col.type === "String" && str)
		return `@default(${prismaString(str[1].replace(/''/g, "'"))})`;
	const num =
		/^\(?'?(-?\d+(?:\.\d+)?)'?\)?(?:::[a-z ]+(?:\(\d+(?:,\d+)?\))?)?$/.exec(e);
	if (["Int", "BigInt", "Float", "Decimal"].includes(col.type) && num)
		return `@default(${num[1]})`;
	if (col.type === "Boolean" && /^(true|false)$/.test(e))
		return `@default(${e})`;
	if (col.type === "DateTime" && /^(now\(\)|CURRENT_TIMESTAMP)$/i.test(e))
		return "@default(now())";
	const enumValue = /^'([A-Za-z_][A-Za-z0-9_]*)'::/.exec(e);
	if (!SCALARS.has(col.type) && enumValue) return `@default(${enumValue[1]})`;
	return `@default(dbgenerated(${prismaString(e)}))`;
}

/** snake_case -> camelCase, as the schema's other fields are named. */
export function fieldNameOf(column: string): string {
	return column.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

export interface ModelBlock {
	name: string;
	/** Offsets of the model's body in the schema text: after "{" and at "}". */
	start: number;
	end: number;
	body: string;
}

export function enumsOf(schema: string): string[] {
	return [...schema.matchAll(/^enum\s+(\w+)\s*\{/gm)].map((m) => m[1]);
}

/** The model whose @@map names the table (or whose name is the table's). */
export function findModel(schema: string, table: string): ModelBlock | null {
	for (const m of schema.matchAll(/^model\s+(\w+)\s*\{/gm)) {
		const start = (m.index ?? 0) + m[0].length;
		const end = schema.indexOf("\n}", start) + 1;
		const body = schema.slice(start, end);
		const map = /^\s*@@map\(\s*(?:name:\s*)?"([^"]+)"\s*\)/m.exec(body);
		if ((map ? map[1] : m[1]) === table)
			return { name: m[1], start, end, body };
	}
	return null;
}

const FIELD = /^\s+(\w+)\s+(\w+)(\?|\[\])?(?:\s|$)/;

/** The field of the model that maps to the column (by @map, or by name), as a line, if any. */
export function findField(
	model: ModelBlock,
	column: string,
): { name: string; line: string } | null {
	for (const line of model.body.split("\n")) {
		const f = FIELD.exec(line);
		if (!f) continue;
		const map = /@map\(\s*"([^"]+)"\s*\)/.exec(line);
		if ((map ? map[1] : f[1]) === column) return { name: f[1], line };
	}
	return null;
}

export function fieldLine(
	name: string,
	column: string,
	col: PrismaColumn,
	optional: boolean,
	defaultAttr: string,
): string {
	const attrs = [
		defaultAttr,
		name === column ? "" : `@map(${prismaString(column)})`,
		col.native,
	].filter(Boolean);
	return `  ${name} ${col.type}${optional ? "?" : ""}${attrs.length ? ` ${attrs.join(" ")}` : ""}`;
}

/**
 * The schema with the field's line added after the model's last scalar field, or put in place of
 * the line that maps to the same column.
 */
export function upsertField(
	schema: string,
	table: string,
	column: string,
	line: string,
): string {
	const model = findModel(schema, table);
	if (!model)
		throw usageError(
			`No model in schema.prisma maps to the table ${table} (no @@map("${table}")).`,
		);
	const existing = findField(model, column);
	const lines = model.body.split("\n");
	if (existing) {
		const i = lines.indexOf(existing.line);
		lines[i] = line;
	} else {
		const enums = new Set(enumsOf(schema));
		let last = -1;
		lines.forEach((l, i) => {
			const f = FIELD.exec(l);
			if (f && (SCALARS.has(f[2]) || enums.has(f[2])) && !/@relation/.test(l))
				last = i;
		});
		lines.splice(last === -1 ? 1 : last + 1, 0, line);
	}
	return (
		schema.slice(0, model.start) + lines.join("\n") + schema.slice(model.end)
	);
}
