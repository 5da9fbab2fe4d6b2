#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so there is no build step between editing and running.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/trainer-node/cli.ts");
process.exitCode = await main(process.argv.slice(2));
