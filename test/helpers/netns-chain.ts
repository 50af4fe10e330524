/**
 * A paid devnet's chain for network-namespace tests, run inside the namespace of one "host": the local chain
 * (Hardhat's EDR, JSON-RPC on that namespace's 127.0.0.1), the test token and the escrow deployed, accounts
 * 1..n funded, and a plain TCP forwarder on the host's namespace address so that the other hosts reach the
 * RPC as a remote chain. Prints one JSON line `{ rpcUrl, escrow, keys }` (well-known Hardhat test keys: a
 * local test chain only) and runs until killed.
 *
 * Usage (inside the namespace): node --import tsx test/helpers/netns-chain.ts 10.77.0.1 8545 4
 */
import { connect, createServer } from "node:net";
import { Wallet } from "ethers";
import { deployEscrow, fundAccounts } from "../../src/chain/deploy.js";
import { startLocalChain } from "../../src/chain/local-chain.js";
import { createRpcProvider } from "../../src/chain/rpc.js";

const [host = "10.77.0.1", portText = "8545", countText = "4"] = process.argv.slice(2);
const count = Number(countText);
const chain = await startLocalChain({ accounts: count + 1 });
const rpc = createRpcProvider(chain.rpcUrl, chain.chainId);
const deployer = new Wallet(chain.accounts[0]!.privateKey, rpc);
const { token, escrow } = await deployEscrow(deployer);
const funded = chain.accounts.slice(1);
await fundAccounts(
  deployer,
  token,
  funded.map((a) => a.address),
  1000n * 10n ** 18n,
);
rpc.destroy();
const target = new URL(chain.rpcUrl);
const forwarder = createServer((socket) => {
  const upstream = connect(Number(target.port), "127.0.0.1");
  socket.pipe(upstream).pipe(socket);
  const close = () => {
    socket.destroy();
    upstream.destroy();
  };
  socket.on("error", close);
  upstream.on("error", close);
});
await new Promise<void>((resolve) => forwarder.listen(Number(portText), host, resolve));
process.stdout.write(
  `${JSON.stringify({
    rpcUrl: `http://${host}:${portText}`,
    escrow,
    keys: funded.map((a) => ({ address: a.address, privateKey: a.privateKey })),
  })}\n`,
);
const stop = async () => {
  forwarder.close();
  await chain.stop();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
