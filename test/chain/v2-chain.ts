/**
 * A real local chain for escrow v2 tests (EDR over HTTP on 127.0.0.1): the test GLM (deployed with escrow v1),
 * escrow v2, and every account funded with 1000 GLM. Time moves with {@link advance}.
 */
import { type JsonRpcProvider, Wallet } from "ethers";
import { deployEscrow, fundAccounts } from "../../src/chain/deploy.js";
import { deployEscrowV2 } from "../../src/chain/escrow-v2-client.js";
import { type LocalChain, startLocalChain } from "../../src/chain/local-chain.js";
import { createRpcProvider } from "../../src/chain/rpc.js";

export const E18 = 10n ** 18n;

export interface V2Chain {
  chain: LocalChain;
  rpc: JsonRpcProvider;
  /** The escrow v2's address. */
  escrow: string;
  /** Stops the chain and its RPC client. */
  stop(): Promise<void>;
}

/** Starts a chain with `accounts` funded accounts (account 0 deploys) and escrow v2 on it. */
export async function startV2Chain(accounts: number): Promise<V2Chain> {
  const chain = await startLocalChain({ accounts });
  const rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
  const deployer = new Wallet(chain.accounts[0]!.privateKey, rpc);
  const { token } = await deployEscrow(deployer);
  await fundAccounts(
    deployer,
    token,
    chain.accounts.map((a) => a.address),
    1000n * E18,
  );
  const escrow = await deployEscrowV2(deployer, token);
  return {
    chain,
    rpc,
    escrow,
    stop: async () => {
      rpc.destroy();
      await chain.stop();
    },
  };
}

/** Moves the chain's clock `seconds` ahead and mines a block. */
export async function advance(rpc: JsonRpcProvider, seconds: number): Promise<void> {
  await rpc.send("evm_increaseTime", [seconds]);
  await rpc.send("evm_mine", []);
}
