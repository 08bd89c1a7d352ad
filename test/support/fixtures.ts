// Realistic Face Swap data, generated server-side with generate_series so that a million rows
// take seconds: users with NextAuth accounts and sessions, uploaded faces, templates, generation
// jobs in every status, and purchases. Ids look like Prisma's cuid() (text, random order).

import pg from "pg";

export interface Scale {
	users: number;
}

export interface SeedCounts {
	users: number;
	accounts: number;
	sessions: number;
	face_sources: number;
	target_templates: number;
	generated_videos: number;
	purchases: number;
}

export function countsFor(scale: Scale): SeedCounts {
	const u = scale.users;
	return {
		users: u,
		accounts: u,
		sessions: Math.floor(u / 2),
		face_sources: u * 2,
		target_templates: 50,
		generated_videos: u * 5,
		purchases: u,
	};
}

const id = (prefix: string, expr: string) =>
	`'c' || substr(md5('${prefix}' || ${expr}), 1, 24)`;

/** Inserts the data into a database migrated to the latest schema. */
export async function seedFaceSwap(
	url: string,
	scale: Scale,
): Promise<SeedCounts> {
	const n = countsFor(scale);
	const db = new pg.Client({ connectionString: url });
	await db.connect();
	try {
		await db.query("begin");
		await db.query(`
      insert into users (id, name, email, email_verified, image, role, created_at, updated_at)
      select ${id("u", "i")}, 'User ' || i, 'user' || i || '@example.com',
             case when i % 5 <> 0 then now() - (i % 900) * interval '1 hour' end,
             case when i % 3 = 0 then 'https://cdn.example.com/avatars/' || i || '.png' end,
             (case when i % 50 = 0 then 'ADMIN' when i % 7 = 0 then 'PREMIUM' else 'USER' end)::"UserRole",
             now() - (i % 1000) * interval '1 day', now() - (i % 100) * interval '1 hour'
        from generate_series(1, ${n.users}) i`);
		await db.query(`
      insert into accounts (id, user_id, type, provider, provider_account_id, access_token, expires_at, token_type, scope)
      select ${id("a", "i")}, ${id("u", "i")}, 'oauth', case when i % 2 = 0 then 'google' else 'github' end,
             'acct-' || i, md5('tok' || i), 1900000000 + i, 'bearer', 'openid email profile'
        from generate_series(1, ${n.accounts}) i`);
		await db.query(`
      insert into sessions (id, session_token, user_id, expires)
      select ${id("s", "i")}, md5('session' || i), ${id("u", "i * 2")}, now() + interval '30 days'
        from generate_series(1, ${n.sessions}) i`);
		await db.query(`
      insert into face_sources (id, user_id, file_path, file_url, original_name, mime_type, size_bytes, width, height, is_active, created_at, updated_at)
      select ${id("f", "i")}, ${id("u", `((i - 1) % ${n.users}) + 1`)}, 'faces/' || i || '.jpg',
             'https://cdn.example.com/faces/' || i || '.jpg', 'IMG_' || (1000 + i % 9000) || '.jpg', 'image/jpeg',
             50000 + (i::bigint * 7919) % 4000000, 512 + i % 1024, 512 + i % 768, i % 10 <> 0,
             now() - (i % 700) * interval '1 day', now() - (i % 50) * interval '1 hour'
        from generate_series(1, ${n.face_sources}) i`);
		await db.query(`
      insert into target_templates (id, title, description, video_path, thumbnail_path, duration_seconds, category, is_premium, price_cents, is_active, sort_order, created_at, updated_at)
      select ${id("t", "i")}, 'Template ' || i, 'A ' || (array['movie','dance','meme','music','sport'])[1 + i % 5] || ' clip',
             'templates/' || i || '.mp4', 'templates/' || i || '.jpg', 5 + i % 55,
             (array['movie','dance','meme','music','sport'])[1 + i % 5], i % 4 = 0, case when i % 4 = 0 then 499 else 0 end,
             i % 13 <> 0, i, now() - i * interval '7 days', now() - i * interval '1 day'
        from generate_series(1, ${n.target_templates}) i`);
		await db.query(`
      insert into generated_videos (id, user_id, face_source_id, template_id, status, progress, quality, output_path,
                                    started_at, completed_at, processing_ms, error_message, created_at, updated_at)
      select ${id("v", "i")}, ${id("u", `((i - 1) % ${n.users}) + 1`)}, ${id("f", `((i - 1) % ${n.face_sources}) + 1`)},
             ${id("t", `((i - 1) % ${n.target_templates}) + 1`)},
             s::"VideoStatus", case s when 'COMPLETED' then 100 when 'PROCESSING' then i % 100 else 0 end,
             (array['480p','720p','1080p'])[1 + i % 3],
             case when s = 'COMPLETED' then 'videos/' || i || '.mp4' end,
             case when s <> 'PENDING' then now() - (i % 500) * interval '1 hour' end,
             case when s in ('COMPLETED', 'FAILED') then now() - (i % 500) * interval '1 hour' + interval '90 seconds' end,
             case when s = 'COMPLETED' then 20000 + i % 160000 end,
             case when s = 'FAILED' then 'face not detected in source image' end,
             now() - (i % 600) * interval '1 hour', now() - (i % 60) * interval '1 minute'
        from generate_series(1, ${n.generated_videos}) i,
             lateral (select (array['COMPLETED','COMPLETED','COMPLETED','COMPLETED','COMPLETED','COMPLETED','FAILED','PROCESSING','PENDING','COMPLETED'])[1 + i % 10] as s) st`);
		await db.query(`
      insert into purchases (id, user_id, generated_video_id, template_id, amount_cents, currency, status, provider,
                             provider_payment_id, provider_customer_id, created_at, updated_at)
      select ${id("p", "i")}, ${id("u", `((i - 1) % ${n.users}) + 1`)},
             case when i % 3 <> 0 then ${id("v", `((i * 5 - 1) % ${n.generated_videos}) + 1`)} end,
             case when i % 3 = 0 then ${id("t", `((i - 1) % ${n.target_templates}) + 1`)} end,
             (array[199, 499, 999])[1 + i % 3], case when i % 10 = 0 then 'eur' else 'usd' end,
             (array['SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','SUCCEEDED','PENDING','FAILED','REFUNDED'])[1 + i % 10]::"PurchaseStatus",
             'stripe', 'pi_' || md5('pay' || i), 'cus_' || substr(md5('cus' || (i % ${n.users})), 1, 14),
             now() - (i % 300) * interval '1 day', now() - (i % 30) * interval '1 day'
        from generate_series(1, ${n.purchases}) i`);
		await db.query("commit");
		await db.query("analyze");
	} catch (err) {
		await db.query("rollback").catch(() => {});
		throw err;
	} finally {
		await db.end();
	}
	return n;
}
