/**
 * Deployment of the test token and the escrow, and funding of accounts, for the devnet and tests.
 */
import { Contract, ContractFactory, type Signer } from "ethers";
import { airqubeEscrowAbi, airqubeEscrowBytecode } from "./abi/airqube-escrow.js";
import { testGLMAbi, testGLMBytecode } from "./abi/test-glm.js";
import { type CallOptions, runChainCall } from "./rpc.js";

/** The addresses {@link deployEscrow} deployed (or used). */
export interface Deployment {
  /** The ERC-20 token's address. */
  token: string;
  /** The escrow's address. */
  escrow: string;
}

/**
 * Deploys the escrow for an existing token, or a fresh TestGLM and the escrow when no token is given.
 *
 * @example
 * const { token, escrow } = await deployEscrow(new Wallet(chain.accounts[0].privateKey, provider));
 */
export async function deployEscrow(
  deployer: Signer,
  config: { token?: string } = {},
  options: CallOptions = {},
): Promise<Deployment> {
  return runChainCall(
    "deploy the escrow",
    async () => {
      let token = config.token;
      if (token === undefined) {
        const glm = await new ContractFactory(testGLMAbi, testGLMBytecode, deployer).deploy();
        await glm.waitForDeployment();
        token = await glm.getAddress();
      }
      const escrow = await new ContractFactory(airqubeEscrowAbi, airqubeEscrowBytecode, deployer).deploy(token);
      await escrow.waitForDeployment();
      return { token, escrow: await escrow.getAddress() };
    },
    options,
  );
}

/**
 * Mints `amount` TestGLM to each account (TestGLM only: its `mint` is open to anyone).
 *
 * @example
 * await fundAccounts(deployer, token, chain.accounts.map((a) => a.address), 1000n * 10n ** 18n);
 */
export async function fundAccounts(
  minter: Signer,
  token: string,
  accounts: readonly string[],
  amount: bigint,
  options: CallOptions = {},
): Promise<void> {
  await runChainCall(
    "fund accounts",
    async () => {
      const glm = new Contract(token, testGLMAbi, minter);
      for (const account of accounts) {
        const tx = await glm.getFunction("mint")(account, amount);
        await tx.wait();
      }
    },
    options,
  );
}
