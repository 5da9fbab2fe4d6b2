ALTER TABLE `task_slas` ADD `margin` real;--> statement-breakpoint
ALTER TABLE `task_slas` ADD `confidence` real;