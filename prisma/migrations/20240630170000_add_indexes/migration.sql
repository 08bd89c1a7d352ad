-- CreateIndex
CREATE INDEX "accounts_user_id_idx" ON "accounts"("user_id");

-- CreateIndex
CREATE INDEX "face_sources_user_id_idx" ON "face_sources"("user_id");

-- CreateIndex
CREATE INDEX "face_sources_user_id_is_active_idx" ON "face_sources"("user_id", "is_active");

-- CreateIndex
CREATE INDEX "generated_videos_user_id_idx" ON "generated_videos"("user_id");

-- CreateIndex
CREATE INDEX "generated_videos_status_idx" ON "generated_videos"("status");

-- CreateIndex
CREATE INDEX "generated_videos_created_at_idx" ON "generated_videos"("created_at");

-- CreateIndex
CREATE INDEX "generated_videos_face_source_id_idx" ON "generated_videos"("face_source_id");

-- CreateIndex
CREATE INDEX "generated_videos_template_id_idx" ON "generated_videos"("template_id");

-- CreateIndex
CREATE INDEX "purchases_user_id_idx" ON "purchases"("user_id");

-- CreateIndex
CREATE INDEX "purchases_status_idx" ON "purchases"("status");

-- CreateIndex
CREATE INDEX "purchases_created_at_idx" ON "purchases"("created_at");

-- CreateIndex
CREATE INDEX "purchases_generated_video_id_idx" ON "purchases"("generated_video_id");

-- CreateIndex
CREATE INDEX "purchases_template_id_idx" ON "purchases"("template_id");

-- CreateIndex
CREATE INDEX "purchases_provider_customer_id_idx" ON "purchases"("provider_customer_id");

-- CreateIndex
CREATE INDEX "sessions_user_id_idx" ON "sessions"("user_id");

-- CreateIndex
CREATE INDEX "target_templates_category_idx" ON "target_templates"("category");

-- CreateIndex
CREATE INDEX "target_templates_is_active_is_premium_idx" ON "target_templates"("is_active", "is_premium");
