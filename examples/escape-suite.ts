// Run the sandbox escape regression suite on one provider of the network, as ordinary (paid) qubes, and
// save the report as JUnit XML for CI dashboards.
//   node escape-suite.ts PEER_ID BOOTSTRAP_MULTIADDR [report.xml]
import { writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { exitStatus, toJUnit } from "airqube/probes";
import { runRemoteProbeSuite } from "airqube/requestor";

const [provider, bootstrap, file = "escape-suite.xml"] = process.argv.slice(2);
if (!provider || !bootstrap) {
  process.stderr.write("usage: node escape-suite.ts PEER_ID BOOTSTRAP_MULTIADDR [report.xml]\n");
  process.exit(2);
}
const report = await runRemoteProbeSuite({
  provider,
  bootstrap: [bootstrap],
  dataDir: join(homedir(), ".airqube", "requestor"),
  tier: "container",
});
await writeFile(file, toJUnit(report));
const { pass, fail, inconclusive } = report.summary;
process.stdout.write(`${provider}: ${pass} pass, ${fail} fail, ${inconclusive} inconclusive; JUnit in ${file}\n`);
process.exitCode = exitStatus(report);
