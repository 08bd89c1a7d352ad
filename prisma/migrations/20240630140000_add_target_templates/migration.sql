-- CreateTable
CREATE TABLE "target_templates" (
    "id" TEXT NOT NULL,
    "title" TEXT NOT NULL,
    "description" TEXT,
    "video_path" TEXT NOT NULL,
    "thumbnail_path" TEXT,
    "duration_seconds" INTEGER NOT NULL,
    "category" TEXT,
    "is_premium" BOOLEAN NOT NULL DEFAULT false,
    "price_cents" INTEGER NOT NULL DEFAULT 0,
    "is_active" BOOLEAN NOT NULL DEFAULT true,
    "created_at" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "target_templates_pkey" PRIMARY KEY ("id")
);
