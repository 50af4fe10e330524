/**
 * Hardhat 3 configuration for Airqube's contracts (`contracts/`) and their tests (`test/contracts/`).
 *
 * Compilation is offline: the compiler is the npm `solc` package pinned to 0.8.28, so Hardhat never
 * downloads a compiler list (it would fail with HHE905 on a machine without internet).
 */
import { createRequire } from "node:module";
import hardhatToolboxMochaEthers from "@nomicfoundation/hardhat-toolbox-mocha-ethers";
import { defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);

export default defineConfig({
  plugins: [hardhatToolboxMochaEthers],
  solidity: {
    version: "0.8.28",
    path: require.resolve("solc/soljson.js"),
    settings: {
      // Cancun: EIP-1153 transient storage for ReentrancyGuardTransient (Ethereum, Polygon PoS since 2024).
      evmVersion: "cancun",
      optimizer: { enabled: true, runs: 10_000 },
      // The IR pipeline: about 7 000 gas less escrow overhead per k = 3 job than the legacy code generator.
      viaIR: true,
    },
  },
  paths: {
    sources: "contracts",
    tests: { mocha: "test/contracts" },
  },
  test: { mocha: { timeout: 120_000 } },
  // Typed contract wrappers are not generated: `src/chain/` carries its own typed bindings.
  typechain: { dontOverrideCompile: true },
});
