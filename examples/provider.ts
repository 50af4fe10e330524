// Start a provider programmatically: it vets its sandbox with the escape suite, joins the network through a
// bootstrap peer, publishes signed offers and runs qubes in fresh hardened containers until Ctrl-C.
// Needs the Docker engine and the images built by `npm run images` in a checkout.
//   node provider.ts BOOTSTRAP_MULTIADDR [DATA_DIR]
import { homedir } from "node:os";
import { join } from "node:path";
import { escapeSuiteGate, loadProviderConfig, ProviderAgent } from "airqube/provider";

const [bootstrap, dataDir = join(homedir(), ".airqube", "provider")] = process.argv.slice(2);
if (!bootstrap) {
  process.stderr.write("usage: node provider.ts BOOTSTRAP_MULTIADDR [DATA_DIR]\n");
  process.exit(2);
}
const config = loadProviderConfig(undefined, { dataDir, bootstrap: [bootstrap] });
const agent = new ProviderAgent(config, { probe: escapeSuiteGate({ cacheDir: join(dataDir, "probe-cache") }) });
const status = await agent.start();
process.stdout.write(`provider ${status.peerId} listening on ${status.addrs.join(", ")}\n`);
const stop = async () => {
  await agent.stop({ drainMs: 10_000 });
  process.exit(0);
};
process.once("SIGINT", stop);
process.once("SIGTERM", stop);
