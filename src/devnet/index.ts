/**
 * A whole Airqube network on this machine for development and tests: a bootstrap peer, providers and,
 * unless disabled, a local chain with the escrow deployed. Needs Hardhat (an optional peer dependency:
 * `npm install --save-dev hardhat@^3`) for the chain; without it `Devnet.start` fails with `HARDHAT_MISSING`.
 *
 * @packageDocumentation
 */
export {
  Devnet,
  type DevnetChain,
  type DevnetOptions,
  type DevnetProvider,
  type DevnetProviderOptions,
} from "./devnet.js";
export { type DevnetProfile, devnetProfilePath, readDevnetProfile } from "./profile.js";
