-- CreateEnum
CREATE TYPE "UserRole" AS ENUM ('USER', 'ADMIN', 'PREMIUM');

-- AlterTable
ALTER TABLE "generated_videos" ADD COLUMN     "progress" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN     "quality" VARCHAR(16) NOT NULL DEFAULT '720p';

-- AlterTable
ALTER TABLE "target_templates" ADD COLUMN     "sort_order" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "users" ADD COLUMN     "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
ADD COLUMN     "role" "UserRole" NOT NULL DEFAULT 'USER',
ADD COLUMN     "updated_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP;

-- CreateIndex
CREATE INDEX "generated_videos_user_id_created_at_idx" ON "generated_videos"("user_id", "created_at" DESC);

-- CreateIndex
CREATE INDEX "generated_videos_status_created_at_idx" ON "generated_videos"("status", "created_at");

-- CreateIndex
CREATE INDEX "target_templates_is_active_sort_order_idx" ON "target_templates"("is_active", "sort_order");

-- CreateIndex
CREATE INDEX "users_role_idx" ON "users"("role");

-- CreateIndex
CREATE INDEX "users_created_at_idx" ON "users"("created_at");
