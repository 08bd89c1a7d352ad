// The views that hang on a column, and the SQL that drops and recreates them around a change of its
// type. PostgreSQL refuses to drop or retype a column a view reads ("cannot alter type of a column
// used by a view or rule"), so a type change drops the views (and the views on those views) and
// creates them again from their stored definitions in the same transaction, with their options,
// comment, owner and grants.

import { refusal } from "../kit/errors.ts";
import { type Db, quoteIdent } from "../pg/db.ts";

export interface DependentView {
	/** As SQL names it (regclass text: quoted and schema-qualified where needed). */
	name: string;
	/** The SELECT, as pg_get_viewdef prints it, without its semicolon. */
	select: string;
	options: string[];
	comment: string | null;
	/** Set only when another role owns the view: the recreated one is owned by whoever runs it. */
	owner: string | null;
	/** GRANT and REVOKE statements that give the recreated view the old one's privileges. */
	grants: string[];
}

/**
 * Every view that reads the column, directly or through another view, in creation order (a view
 * after the views it reads). Exit 3 for what cannot simply be recreated: a materialized view (it
 * holds data), a view with triggers or rules of its own.
 */
export async function readDependentViews(
	db: Db,
	table: number,
	column: number,
): Promise<DependentView[]> {
	const { rows } = await db.query<{
		oid: number;
		name: string;
		kind: string;
		select: string;
		options: string[] | null;
		comment: string | null;
		owner: string;
		mine: boolean;
		extra: string | null;
		acl: Array<{ grantee: string; privilege: string; grantable: boolean }>;
		defaults: string[];
	}>(
		`with recursive dep(oid, depth) as (
		   select r.ev_class, 1 from pg_depend d join pg_rewrite r on r.oid = d.objid
		    where d.classid = 'pg_rewrite'::regclass and d.refclassid = 'pg_class'::regclass
		      and d.refobjid = $1 and d.refobjsubid = $2 and r.ev_class <> $1
		   union all
		   select r.ev_class, dep.depth + 1 from dep
		     join pg_depend d on d.refclassid = 'pg_class'::regclass and d.refobjid = dep.oid and d.classid = 'pg_rewrite'::regclass
		     join pg_rewrite r on r.oid = d.objid and r.ev_class <> dep.oid
		 )
		 select c.oid, c.oid::regclass::text as name, c.relkind as kind,
		        pg_get_viewdef(c.oid) as select, c.reloptions as options,
		        obj_description(c.oid, 'pg_class') as comment,
		        pg_get_userbyid(c.relowner) as owner, c.relowner = (select oid from pg_roles where rolname = current_user) as mine,
		        (select string_agg(x, ', ') from (
		           select 'trigger ' || tgname as x from pg_trigger where tgrelid = c.oid and not tgisinternal
		           union all select 'rule ' || rulename from pg_rewrite where ev_class = c.oid and rulename <> '_RETURN') e) as extra,
		        coalesce((select json_agg(json_build_object('grantee', case a.grantee when 0 then 'PUBLIC' else quote_ident(pg_get_userbyid(a.grantee)) end,
		                   'privilege', a.privilege_type, 'grantable', a.is_grantable))
		                   from aclexplode(c.relacl) a where a.grantee <> c.relowner), '[]') as acl,
		        array(select distinct case a.grantee when 0 then 'PUBLIC' else quote_ident(pg_get_userbyid(a.grantee)) end
		                from pg_default_acl da, aclexplode(da.defaclacl) a
		               where da.defaclobjtype = 'r' and da.defaclrole = (select oid from pg_roles where rolname = current_user)
		                 and (da.defaclnamespace = 0 or da.defaclnamespace = c.relnamespace) and a.grantee <> da.defaclrole) as defaults
		   from (select oid, max(depth) as depth from dep group by oid) v join pg_class c on c.oid = v.oid
		  order by v.depth, c.oid`,
		[table, column],
	);
	const refused = rows.filter((r) => r.kind !== "v" || r.extra);
	if (refused.length)
		throw refusal(
			`The column is read by ${refused.map((r) => (r.kind === "m" ? `materialized view ${r.name}` : `view ${r.name} (with ${r.extra})`)).join(", ")}, which this runbook does not recreate. Nothing was changed.`,
			"Drop it, change the type, and create it again in a migration of your own.",
		);
	return rows.map((r) => ({
		name: r.name,
		select: r.select.trim().replace(/;$/, ""),
		options: r.options ?? [],
		comment: r.comment,
		owner: r.mine ? null : r.owner,
		grants: [
			// The runner's default privileges would give the new view grants the old one may lack.
			...(r.defaults.length
				? [`REVOKE ALL ON ${r.name} FROM ${r.defaults.join(", ")};`]
				: []),
			...r.acl.map(
				(a) =>
					`GRANT ${a.privilege} ON ${r.name} TO ${a.grantee}${a.grantable ? " WITH GRANT OPTION" : ""};`,
			),
		],
	}));
}

/** One DROP VIEW for them all (PostgreSQL orders the drops among the views it names). */
export const dropViews = (views: DependentView[]): string[] =>
	views.length
		? [
				`DROP VIEW ${[...views]
					.reverse()
					.map((v) => v.name)
					.join(", ")};`,
			]
		: [];

/** Each view created again as it was, in creation order. */
export const createViews = (views: DependentView[]): string[] =>
	views.flatMap((v) => [
		`CREATE VIEW ${v.name}${v.options.length ? ` WITH (${v.options.join(", ")})` : ""} AS\n${v.select};`,
		...(v.comment === null
			? []
			: [`COMMENT ON VIEW ${v.name} IS '${v.comment.replace(/'/g, "''")}';`]),
		...v.grants,
		// Last: a new owner takes the grants over as they stand.
		...(v.owner
			? [`ALTER VIEW ${v.name} OWNER TO ${quoteIdent(v.owner)};`]
			: []),
	]);
