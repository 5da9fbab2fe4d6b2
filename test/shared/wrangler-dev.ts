/** The gateway under `wrangler dev` for tests and simulations: the one helper in scripts/lib/wrangler.ts. */
export {
  freePort,
  startWranglerDev,
  type WranglerDev,
  type WranglerDevOptions,
} from "../../scripts/lib/wrangler";
