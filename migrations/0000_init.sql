CREATE TABLE `aliases` (
	`model_id` integer NOT NULL,
	`alias` text NOT NULL,
	`variant_id` integer NOT NULL,
	`updated_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`variant_id`) REFERENCES `variants`(`id`) ON UPDATE no action ON DELETE restrict
);
--> statement-breakpoint
CREATE UNIQUE INDEX `aliases_model_alias` ON `aliases` (`model_id`,`alias`);--> statement-breakpoint
CREATE TABLE `api_keys` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`key_hash` text NOT NULL,
	`prefix` text NOT NULL,
	`scopes` text NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	`revoked_at` text
);
--> statement-breakpoint
CREATE UNIQUE INDEX `api_keys_key_hash_unique` ON `api_keys` (`key_hash`);--> statement-breakpoint
CREATE TABLE `models` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`name` text NOT NULL,
	`task` text NOT NULL,
	`labels` text NOT NULL,
	`io` text NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL
);
--> statement-breakpoint
CREATE UNIQUE INDEX `models_name_unique` ON `models` (`name`);--> statement-breakpoint
CREATE TABLE `task_slas` (
	`task` text PRIMARY KEY NOT NULL,
	`metric` text NOT NULL,
	`min` real NOT NULL,
	`max_latency_ms` real,
	`strict` integer DEFAULT false NOT NULL,
	`updated_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL
);
--> statement-breakpoint
CREATE TABLE `variants` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`model_id` integer NOT NULL,
	`version` integer NOT NULL,
	`status` text DEFAULT 'staged' NOT NULL,
	`sparsity` real NOT NULL,
	`params` integer NOT NULL,
	`accuracy` real NOT NULL,
	`latency_p50_ms` real NOT NULL,
	`manifest` text NOT NULL,
	`artifact_key` text NOT NULL,
	`sha256` text NOT NULL,
	`bytes` integer NOT NULL,
	`tokenizer_key` text,
	`tokenizer_sha256` text,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `variants_model_version` ON `variants` (`model_id`,`version`);--> statement-breakpoint
CREATE UNIQUE INDEX `variants_model_sha256` ON `variants` (`model_id`,`sha256`);--> statement-breakpoint
CREATE INDEX `variants_model_status` ON `variants` (`model_id`,`status`);