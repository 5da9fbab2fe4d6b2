CREATE TABLE `experiment_arms` (
	`experiment_id` integer NOT NULL,
	`arm` integer NOT NULL,
	`variant_id` integer,
	`version` integer NOT NULL,
	`weight` real NOT NULL,
	PRIMARY KEY(`experiment_id`, `arm`),
	FOREIGN KEY (`experiment_id`) REFERENCES `experiments`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`variant_id`) REFERENCES `variants`(`id`) ON UPDATE no action ON DELETE set null
);
--> statement-breakpoint
CREATE INDEX `experiment_arms_variant` ON `experiment_arms` (`variant_id`);--> statement-breakpoint
CREATE TABLE `experiments` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`model_id` integer NOT NULL,
	`name` text NOT NULL,
	`status` text DEFAULT 'draft' NOT NULL,
	`seed` text NOT NULL,
	`unit` text NOT NULL,
	`primary_metric` text NOT NULL,
	`guardrails` text NOT NULL,
	`alpha` real NOT NULL,
	`design` text NOT NULL,
	`planned_units` integer,
	`non_inferiority_margin` real DEFAULT 0 NOT NULL,
	`control_arm` integer DEFAULT 0 NOT NULL,
	`winner_arm` integer,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	`started_at` text,
	`stopped_at` text,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `experiments_model` ON `experiments` (`model_id`);--> statement-breakpoint
CREATE UNIQUE INDEX `experiments_one_running_per_model` ON `experiments` (`model_id`) WHERE status = 'running';--> statement-breakpoint
CREATE TABLE `exposures` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`request_id` text NOT NULL,
	`experiment_id` integer NOT NULL,
	`arm` integer NOT NULL,
	`unit_id` text,
	`sticky` integer NOT NULL,
	`served_version` integer,
	`latency_ms` real NOT NULL,
	`error` integer NOT NULL,
	`predicted` text,
	`served_at` text NOT NULL,
	FOREIGN KEY (`experiment_id`) REFERENCES `experiments`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `exposures_request_id_unique` ON `exposures` (`request_id`);--> statement-breakpoint
CREATE INDEX `exposures_experiment_arm` ON `exposures` (`experiment_id`,`arm`);--> statement-breakpoint
CREATE TABLE `feedback` (
	`request_id` text PRIMARY KEY NOT NULL,
	`experiment_id` integer NOT NULL,
	`label` text NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	FOREIGN KEY (`experiment_id`) REFERENCES `experiments`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `feedback_experiment` ON `feedback` (`experiment_id`);