/**
 * A hostile offer across real kernel networking: a peer in its own namespace announces a validly signed offer
 * whose addresses name the requestor's loopback (its own libp2p port among them), its LAN, link-local and the
 * unspecified address; `airqube run --public` in the requestor's namespace must dial none of them and say why
 * it skipped the offer. Watched twice inside the requestor's namespace: a listener on [::]:4020 (every address
 * the offer names but the requestor's own port) and an nftables counter of new outgoing TCP connections to
 * the offer's ports (the requestor's own port included, where no listener can sit). The control: the same run
 * with --allow-private-addrs --allow-loopback-addrs does dial them, so both watches see it. The same run
 * checks `run --listen` and `--announce`: an observer dials the requestor at its listen address and reads the
 * address it announces (identify).
 *
 * Topology (test/helpers/netns.ts): bootnode, hostile peer and requestor on a bridge of 203.0.113.0/24
 * (TEST-NET-3, RFC 5737: reserved for documentation, routed nowhere, and counted as public by the address
 * policy, so that the requestor runs in public mode without --allow-private-addrs); the requestor's namespace
 * also holds the LAN addresses the offer names, on its loopback interface. Every address exists only inside the
 * namespaces this test creates and deletes. Needs root, `ip netns` and nft (skipped with the reason
 * otherwise). Tagged @docker like public-network.test.ts so that scripts/test.sh runs it in its heavy group
 * beside the other namespace test; it needs no Docker (the qube's image digest is given, nothing runs).
 */
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { loadOrCreateIdentity, loadOrCreateKeyFile } from "../../src/net/keys.js";
import { createTopology, jsonLine, netnsUnavailable, type Topology } from "../helpers/netns.js";

const CLI = join(process.cwd(), "bin", "airqube.js");
/** The requestor's own libp2p port (`run --listen`) and the port of the listener standing where the offer points. */
const OWN_PORT = 4010;
const TRAP_PORT = 4020;
/** What the hostile offer names (at most 8 addresses per offer): all inside the requestor's namespace. */
const HOSTILE_ADDRS = [
  `/ip4/127.0.0.1/tcp/${OWN_PORT}`,
  `/ip4/127.0.0.1/tcp/${TRAP_PORT}`,
  `/ip6/::1/tcp/${TRAP_PORT}`,
  `/ip4/10.99.0.1/tcp/${TRAP_PORT}`,
  `/ip4/192.168.99.1/tcp/${TRAP_PORT}`,
  `/ip4/169.254.99.1/tcp/${TRAP_PORT}`,
  `/ip6/fd99::1/tcp/${TRAP_PORT}`,
  `/ip4/0.0.0.0/tcp/${TRAP_PORT}`,
];
const ANNOUNCED = `/dns4/requestor.example.org/tcp/${OWN_PORT}`;
const DIGEST = `sha256:${"ab".repeat(32)}`;

/** What the hostile peer's observer saw of the requestor (fixtures/hostile-provider.ts). */
interface Observed {
  observed: { listenAddrs: string[]; remoteAddr: string };
}

interface RunError {
  error: { code: string; message: string; details?: string };
}

describe("net: a hostile offer across network namespaces is never dialled by a public requestor @docker", function () {
  this.timeout(120_000);
  const reason = netnsUnavailable({ nat: true });
  const dir = mkdtempSync(join(tmpdir(), "aq-hostile-offer-"));
  const children: ChildProcess[] = [];
  let net: Topology | undefined;
  let bootstrap = "";
  let hostile = "";
  let requestorId = "";
  /** Local addresses of the connections the trap listener accepted. */
  const trapped: string[] = [];
  let observed: Promise<Observed>;

  const spawn = (host: string, args: string[], env: Record<string, string> = {}) => {
    const child = net!.spawn(host, process.execPath, args, env);
    children.push(child);
    return child;
  };
  /** New outgoing TCP connections from the requestor's namespace to the offer's ports (nftables counter). */
  const dialsCounted = () =>
    Number(/packets (\d+)/.exec(net!.exec("d", "nft", ["list", "table", "inet", "aqwatch"]))?.[1]);

  /** `airqube run --public` in the requestor's namespace, k = 1; resolves with its error line and its stderr. */
  const run = async (extra: string[]) => {
    const child = spawn(
      "d",
      [
        CLI,
        "run",
        "--public",
        ...extra,
        "--bootstrap",
        bootstrap,
        "--redundancy",
        "1",
        "--image",
        "airqube/busybox:latest",
        "--image-digest",
        DIGEST,
        "--output",
        join(dir, "out"),
        "--data-dir",
        join(dir, "requestor"),
        "--json",
        "--",
        "true",
      ],
      { AIRQUBE_LOG_LEVEL: "warn" },
    );
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const line = await jsonLine<RunError>(child, (v) => v.error !== undefined, 90_000);
    await new Promise((resolve) => (child.exitCode === null ? child.once("exit", resolve) : resolve(undefined)));
    return { line, stderr, exitCode: child.exitCode };
  };

  before(async function () {
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    net = createTopology(["boot", "h", "d"], [], "203.0.113");
    // the requestor's LAN and its link-local and ULA addresses: where the offer points, besides loopback
    const d = net.hosts.d!.ns;
    const ip = (...args: string[]) => net!.exec("d", "ip", args);
    // on its loopback interface (this kernel may lack the dummy link type): local to the namespace only
    for (const cidr of ["10.99.0.1/32", "192.168.99.1/32", "169.254.99.1/32"]) ip("addr", "add", cidr, "dev", "lo");
    ip("-6", "addr", "add", "fd99::1/128", "dev", "lo");
    // counts the first packet of every TCP connection the namespace opens to the offer's ports (loopback too)
    net.exec("d", "nft", ["add table inet aqwatch"]);
    net.exec("d", "nft", ["add chain inet aqwatch out { type filter hook output priority 0; policy accept; }"]);
    net.exec("d", "nft", [`add rule inet aqwatch out tcp dport { ${OWN_PORT}, ${TRAP_PORT} } ct state new counter`]);
    expect(dialsCounted(), `nft in ${d}`).to.equal(0);

    const trap = spawn("d", [
      "--import",
      "tsx",
      join(process.cwd(), "test", "net", "fixtures", "count-connections.ts"),
      String(TRAP_PORT),
    ]);
    await jsonLine<{ ready: number }>(trap, (v) => v.ready === TRAP_PORT, 60_000);
    trap.stdout?.on("data", (chunk: Buffer) => {
      for (const m of chunk.toString().matchAll(/"local":"([^"]+)"/g)) trapped.push(m[1]!);
    });

    // the bootnode's key and the requestor's identity made first: their peer ids are known before they start
    const bootKey = join(dir, "bootnode.key");
    bootstrap = `/ip4/${net.hosts.boot!.ip}/tcp/4001/p2p/${loadOrCreateKeyFile(bootKey).peerId}`;
    requestorId = loadOrCreateIdentity(join(dir, "requestor")).peerId;
    const boot = spawn("boot", [
      CLI,
      "bootnode",
      "--public",
      "--key-file",
      bootKey,
      "--listen",
      "/ip4/0.0.0.0/tcp/4001",
      "--json",
    ]);
    const bootReady = jsonLine<{ addresses: string[] }>(boot, (v) => Array.isArray(v.addresses), 60_000);
    expect((await bootReady).addresses).to.deep.equal([bootstrap]);
    const peer = spawn("h", [
      "--import",
      "tsx",
      join(process.cwd(), "test", "net", "fixtures", "hostile-provider.ts"),
      JSON.stringify({
        bootstrap,
        addrs: HOSTILE_ADDRS,
        requestor: `/ip4/${net.hosts.d!.ip}/tcp/${OWN_PORT}/p2p/${requestorId}`,
      }),
    ]);
    observed = jsonLine<Observed>(peer, (v) => v.observed !== undefined, 110_000);
    observed.catch(() => undefined);
    hostile = (await jsonLine<{ hostile: string }>(peer, (v) => typeof v.hostile === "string", 60_000)).hostile;
  });

  after(() => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    net?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("run --public skips the offer without a single dial and says why; run --listen/--announce: reachable at its listen address, announcing the given one", async () => {
    const t0 = performance.now();
    const { line, stderr, exitCode } = await run(["--listen", `/ip4/0.0.0.0/tcp/${OWN_PORT}`, "--announce", ANNOUNCED]);
    console.log(`      run with the hostile offer only: ${Math.round(performance.now() - t0)} ms (CLI start included)`);
    expect(exitCode).to.equal(125);
    expect(line.error.code, JSON.stringify(line)).to.equal("NOT_ENOUGH_PROVIDERS");
    // the outcome names the offer, the reason and the addresses
    expect(line.error.details).to.include(`${hostile}: OFFER_NOT_DIALLABLE`);
    expect(line.error.details).to.include("public mode never dials loopback");
    expect(line.error.details).to.include(`/ip4/127.0.0.1/tcp/${OWN_PORT}`);
    // and so does the log (one warning per skipped offer)
    const warnings = stderr
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as { msg?: string; provider?: string; code?: string })
      .filter((l) => l.msg === "offer skipped");
    expect(warnings.map((w) => [w.provider, w.code])).to.deep.equal([[hostile, "OFFER_NOT_DIALLABLE"]]);
    // nothing reached the listener, nothing even tried to connect (the requestor's own port included)
    expect(trapped).to.deep.equal([]);
    expect(dialsCounted()).to.equal(0);

    // --listen: the observer reached the requestor at its namespace address and port; --announce: the requestor
    // announces the given address instead of its listen addresses
    const { observed: seen } = await observed;
    expect(seen.remoteAddr).to.equal(`/ip4/${net!.hosts.d!.ip}/tcp/${OWN_PORT}/p2p/${requestorId}`);
    expect(seen.listenAddrs).to.deep.equal([ANNOUNCED]);
  });

  it("the control: with --allow-private-addrs --allow-loopback-addrs the same offer is dialled, and both watches see it", async () => {
    const { line } = await run(["--allow-private-addrs", "--allow-loopback-addrs"]);
    expect(line.error.code, JSON.stringify(line)).to.equal("NOT_ENOUGH_PROVIDERS");
    // dialled: none of those addresses speaks libp2p, so the provider did not answer its ping
    expect(line.error.details).to.include(`${hostile}: PROVIDER_UNREACHABLE`);
    const dials = dialsCounted();
    console.log(`      control: ${dials} connections opened, ${trapped.length} reached the listener`);
    // every address the policy now permits reached the listener (0.0.0.0 is never dialled)
    expect([...new Set(trapped)].sort()).to.deep.equal(
      ["::ffff:127.0.0.1", "::1", "::ffff:10.99.0.1", "::ffff:192.168.99.1", "::ffff:169.254.99.1", "fd99::1"]
        .map((ip) => `${ip}:${TRAP_PORT}`)
        .sort(),
    );
    // and not over and over: one round of the 7 permitted addresses per LIVENESS_RETRY_MS (1 s) of the 5 s of
    // discovery (without that pause: about 140 in this run, a dial of each every 150 ms)
    expect(dials).to.be.within(7, 7 * 6);
  });
});
