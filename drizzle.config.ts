import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "sqlite",
  schema: ["./src/registry/schema.ts", "./src/registry/experiments-schema.ts"],
  out: "./migrations",
});
