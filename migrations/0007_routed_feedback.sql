CREATE TABLE `routed_feedback` (
	`nonce` text PRIMARY KEY NOT NULL,
	`model_id` integer NOT NULL,
	`variant_id` integer NOT NULL,
	`version` integer NOT NULL,
	`unit_id` text,
	`predicted` text NOT NULL,
	`label` text NOT NULL,
	`served_at` text NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	FOREIGN KEY (`model_id`) REFERENCES `models`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`variant_id`) REFERENCES `variants`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `routed_feedback_model_served` ON `routed_feedback` (`model_id`,`served_at`);--> statement-breakpoint
CREATE INDEX `routed_feedback_variant` ON `routed_feedback` (`variant_id`);