/**
 * The public network across real kernel networking: network namespaces stand in for hosts (helpers/netns.ts).
 * Two bootnodes in A and A2, providers in B and C, a provider E behind a NAT router (reached through the
 * bootnodes' circuit relays), a requestor in D; every process is the real CLI in public mode, except the DCUtR
 * case's requestors (fixtures/dcutr-requestor.ts records the connection each exchange stream ran on, which the
 * CLI does not report; `airqube run --listen` hands the market the same listen address). Addresses live only
 * inside the namespaces this test creates and deletes. Skipped, with the reason, when not root or without
 * `ip netns`.
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "chai";
import { createTopology, jsonLine, netnsUnavailable, type Topology } from "../helpers/netns.js";
import { PROBE_CACHE } from "../helpers/network.js";

const CLI = join(process.cwd(), "bin", "airqube.js");
const PUBLIC = ["--public", "--allow-private-addrs"];

interface Ready {
  event: string;
  peerId: string;
  addrs: string[];
}

interface RunResultLine {
  event?: string;
  error?: { code: string; message: string };
  status: string;
  verified?: boolean;
  agreeing: string[];
  answers: { provider: string }[];
  failures: { provider: string; code: string }[];
  payments?: { status: string; providers: string[]; credits: { account: string; amount: string }[] }[];
}

/** What test/net/fixtures/dcutr-requestor.ts prints. */
interface DcutrLine {
  phasesMs: Record<string, number>;
  upgradeMs: number | null;
  status: string;
  agreeing: string[];
  payments: string[];
  streams: { protocol: string; remoteAddr: string; limited: boolean; direction: string }[];
  connections: { remoteAddr: string; limited: boolean; direction: string }[];
}

interface Chain {
  rpcUrl: string;
  escrow: string;
  keys: { address: string; privateKey: string }[];
}

describe("net: the public network across network namespaces @docker", function () {
  this.timeout(300_000);
  const reason = netnsUnavailable({ nat: true });
  const dir = mkdtempSync(join(tmpdir(), "aq-public-net-"));
  const keyFile = join(dir, "bootnode.key");
  const children: ChildProcess[] = [];
  let net: Topology | undefined;
  let bootnode: ChildProcess | undefined;
  let bootnode2: ChildProcess | undefined;
  let bootstrap = "";
  let bootstrap2 = "";
  const providers: Record<string, Ready> = {};
  /**
   * The paid devnet's chain, served from the bootnode's host; keys[0] pays, keys[1..3] are payout keys, keys[4]
   * pays for the second requestor of the DCUtR case.
   */
  let chain: Chain;
  const payouts: Record<string, string> = {};

  /** The process started last on each host. */
  const processes: Record<string, ChildProcess> = {};
  const cli = (host: string, args: string[]) => {
    const child = net!.spawn(host, process.execPath, [CLI, ...args], { AIRQUBE_LOG_LEVEL: "warn" });
    children.push(child);
    // AQ_NETNS_LOGS=DIR keeps every process's stderr (DIR/HOST-N.log) to find out why a run failed
    if (process.env.AQ_NETNS_LOGS)
      child.stderr?.pipe(createWriteStream(join(process.env.AQ_NETNS_LOGS, `${host}-${children.length}.log`)));
    if (host !== "d") processes[host] = child;
    return child;
  };

  const startBootnode = async (host = "boot", extra: string[] = []) => {
    const child = cli(host, [
      "bootnode",
      ...PUBLIC,
      "--key-file",
      host === "boot" ? keyFile : join(dir, `${host}.key`),
      "--listen",
      "/ip4/0.0.0.0/tcp/4001",
      ...extra,
      "--json",
    ]);
    if (host === "boot") bootnode = child;
    else bootnode2 = child;
    return jsonLine<{ peerId: string; addresses: string[] }>(child, (v) => typeof v.peerId === "string", 60_000);
  };

  const startProvider = (host: string, listen: string[], key: number) => {
    const dataDir = join(dir, `provider-${host}`);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, "payout.key"), `${chain.keys[key]!.privateKey}\n`, { mode: 0o600 });
    payouts[host] = chain.keys[key]!.address.toLowerCase();
    return jsonLine<Ready>(
      cli(host, [
        "provider",
        "start",
        ...PUBLIC,
        ...listen.flatMap((l) => ["--listen", l]),
        "--bootstrap",
        bootstrap,
        "--bootstrap",
        bootstrap2,
        "--data-dir",
        dataDir,
        "--rpc-url",
        chain.rpcUrl,
        "--escrow",
        chain.escrow,
        "--allow-public-rpc",
        "--probe-cache",
        PROBE_CACHE,
        "--json",
      ]),
      (v) => v.event === "ready",
      240_000,
    );
  };

  const run = async (k: number, label: string): Promise<{ result: RunResultLine; ms: number }> => {
    const t0 = performance.now();
    const child = cli("d", [
      "run",
      ...PUBLIC,
      "--bootstrap",
      bootstrap,
      "--bootstrap",
      bootstrap2,
      "--redundancy",
      String(k),
      "--image",
      "airqube/busybox:latest",
      "--output",
      join(dir, `out-${label}`),
      "--data-dir",
      join(dir, "requestor"),
      "--rpc-url",
      chain.rpcUrl,
      "--escrow",
      chain.escrow,
      "--payment-key-file",
      join(dir, "requestor.key"),
      "--allow-public-rpc",
      "--json",
      "--",
      "sh",
      "-c",
      `echo ${label} > /output/result`,
    ]);
    const result = await jsonLine<RunResultLine>(child, (v) => v.event === "result" || v.error !== undefined, 240_000);
    await new Promise((resolve) => (child.exitCode === null ? child.once("exit", resolve) : resolve(undefined)));
    return { result, ms: Math.round(performance.now() - t0) };
  };

  before(async function () {
    if (reason) {
      console.log(`      skipped: ${reason}`);
      this.skip();
    }
    net = createTopology(["boot", "boot2", "b", "c", "d"], ["e"]);
    const boot = await startBootnode();
    expect(boot.addresses, "the bootnode announces its namespace address, never loopback").to.deep.equal([
      `/ip4/${net.hosts.boot!.ip}/tcp/4001/p2p/${boot.peerId}`,
    ]);
    bootstrap = boot.addresses[0]!;
    // the chain lives on the bootnode's host too; everyone else reaches it as a remote RPC (--allow-public-rpc)
    const chainProcess = net.spawn("boot", process.execPath, [
      "--import",
      "tsx",
      join(process.cwd(), "test", "helpers", "netns-chain.ts"),
      net.hosts.boot!.ip,
      "8545",
      "5",
    ]);
    children.push(chainProcess);
    chain = await jsonLine<Chain>(chainProcess, (v) => typeof v.escrow === "string", 120_000);
    writeFileSync(join(dir, "requestor.key"), `${chain.keys[0]!.privateKey}\n`, { mode: 0o600 });
    // the second bootnode meshes with the first, so gossip spans both
    bootstrap2 = (await startBootnode("boot2", ["--bootstrap", bootstrap])).addresses[0]!;
    // the first provider fills the shared escape-suite cache; the others start from it at once
    providers.b = await startProvider("b", ["/ip4/0.0.0.0/tcp/0"], 1);
    const [c, e] = await Promise.all([
      startProvider("c", ["/ip4/0.0.0.0/tcp/0"], 2),
      // behind NAT: a relay reservation on each bootnode makes it reachable through either
      startProvider("e", ["/ip4/0.0.0.0/tcp/0", "/p2p-circuit", "/p2p-circuit"], 3),
    ]);
    providers.c = c;
    providers.e = e;
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
    net?.destroy();
  });

  it("providers announce their namespace addresses, never loopback; the one behind NAT announces a relay address", () => {
    for (const host of ["b", "c"]) {
      expect(providers[host]!.addrs.length, host).to.be.at.least(1);
      for (const addr of providers[host]!.addrs) expect(addr, host).to.match(/^\/ip4\/10\.77\.0\.\d+\/tcp\//);
    }
    const e = providers.e!.addrs;
    expect(e.join(" ")).not.to.match(/127\.0\.0\.1/);
    // reachable only through the bootnode's relay (its own address is behind the router)
    expect(e.filter((a) => a.includes("/p2p-circuit")).map((a) => a.split("/p2p-circuit")[0])).to.include(bootstrap);
    expect(e.filter((a) => !a.includes("/p2p-circuit")).every((a) => a.includes("/ip4/192.168.77."))).to.equal(true);
  });

  it("run --public --redundancy 3 with B, C and E (behind NAT) is verified by all three, paid, and E earns", async () => {
    const { result, ms } = await run(3, "first");
    console.log(`      k=3 across namespaces: ${ms} ms (CLI start included)`);
    expect(result.status, JSON.stringify(result.error ?? result.failures)).to.equal("verified");
    expect(result.agreeing, JSON.stringify(result.failures)).to.have.members([
      providers.b!.peerId,
      providers.c!.peerId,
      providers.e!.peerId,
    ]);
    expect(readFileSync(join(dir, "out-first", "result"), "utf8")).to.equal("first\n");
    // paid through the escrow on the chain across the "internet"; the provider behind NAT is credited too
    const [payment] = result.payments ?? [];
    expect(payment?.status, JSON.stringify(result.payments)).to.equal("settled");
    for (const host of ["b", "c", "e"]) {
      const credited = payment!.credits.filter((c) => c.account.toLowerCase() === payouts[host]);
      expect(credited.length, host).to.be.at.least(1);
      expect(BigInt(credited[0]!.amount) > 0n, host).to.equal(true);
    }
  });

  it("DCUtR: a requestor with an address of its own, reaching E through the relay, is dialled back by E (reverse connection) and the paid qube runs over the direct connection; without one it is served over the relay", async () => {
    const requestor = async (listen: boolean, payer: number) => {
      const t0 = performance.now();
      const child = net!.spawn(
        "d",
        process.execPath,
        [
          "--import",
          "tsx",
          join(process.cwd(), "test", "net", "fixtures", "dcutr-requestor.ts"),
          JSON.stringify({
            bootstrap: [bootstrap, bootstrap2],
            provider: providers.e!.peerId,
            ...(listen ? { listen: `/ip4/${net!.hosts.d!.ip}/tcp/0` } : {}),
            rpcUrl: chain.rpcUrl,
            escrow: chain.escrow,
            privateKey: chain.keys[payer]!.privateKey,
          }),
        ],
        { AIRQUBE_LOG_LEVEL: "warn" },
      );
      children.push(child);
      const line = await jsonLine<DcutrLine>(child, (v) => typeof v.status === "string", 120_000);
      return { ...line, ms: Math.round(performance.now() - t0) };
    };
    // both at once (two paying accounts): the case the NAT allows and the one it does not
    const [upgraded, relayed] = await Promise.all([requestor(true, 0), requestor(false, 4)]);
    console.log(
      `      DCUtR reverse connection after ${upgraded.upgradeMs} ms; qube over it: ${upgraded.ms} ms in all ${JSON.stringify(upgraded.phasesMs)}`,
    );
    expect(upgraded.upgradeMs, JSON.stringify(upgraded)).to.be.a("number");
    expect(upgraded.status).to.equal("verified");
    expect(upgraded.agreeing).to.deep.equal([providers.e!.peerId]);
    expect(upgraded.payments).to.deep.equal(["settled"]);
    expect(upgraded.streams.length, JSON.stringify(upgraded.streams)).to.be.at.least(2);
    for (const stream of upgraded.streams) {
      // E dialled the requestor: the connection comes in from E's NAT router, unlimited and not relayed
      expect(stream.limited, JSON.stringify(stream)).to.equal(false);
      expect(stream.direction).to.equal("inbound");
      expect(stream.remoteAddr).to.match(new RegExp(`^/ip4/${net!.hosts.router!.ip.replaceAll(".", "\\.")}/tcp/`));
    }
    expect(upgraded.connections.filter((c) => c.limited || c.remoteAddr.includes("/p2p-circuit"))).to.deep.equal([]);

    // no address to dial back and a masquerade NAT in front of E: the upgrade cannot happen, the relay serves
    console.log(
      `      without an address to dial back: qube over the relay in ${relayed.ms} ms ${JSON.stringify(relayed.phasesMs)}`,
    );
    expect(relayed.upgradeMs).to.equal(null);
    expect(relayed.status, JSON.stringify(relayed)).to.equal("verified");
    expect(relayed.payments).to.deep.equal(["settled"]);
    expect(relayed.streams.length, JSON.stringify(relayed.streams)).to.be.at.least(2);
    for (const stream of relayed.streams) {
      expect(stream.limited, JSON.stringify(stream)).to.equal(true);
      expect(stream.remoteAddr).to.include("/p2p-circuit");
    }
    expect(relayed.connections.filter((c) => !c.limited)).to.deep.equal([]);
  });

  it("with two bootnodes, killing one changes nothing", async () => {
    bootnode2!.kill("SIGKILL");
    await new Promise((resolve) => bootnode2!.once("exit", resolve));
    const { result, ms } = await run(3, "one-bootnode-left");
    console.log(`      k=3 with one of two bootnodes killed: ${ms} ms`);
    expect(result.status, JSON.stringify(result.error ?? result.failures)).to.equal("verified");
    expect(result.agreeing).to.have.length(3);
  });

  it("the bootnode killed and restarted with the same key heals the network: the next run succeeds within 30 s", async () => {
    bootnode!.kill("SIGKILL");
    await new Promise((resolve) => bootnode!.once("exit", resolve));
    const restarted = await startBootnode();
    expect(restarted.addresses[0]).to.equal(bootstrap);
    // runs start until one is verified; the one that succeeds must have started within 30 s of the restart
    const t0 = performance.now();
    let last: RunResultLine | undefined;
    let startedMs = 0;
    while (performance.now() - t0 < 30_000) {
      startedMs = Math.round(performance.now() - t0);
      const { result } = await run(3, "healed");
      last = result;
      if (result.status === "verified") break;
    }
    console.log(
      `      healed after the bootnode restart: the run started ${startedMs} ms after it came back was verified (${Math.round(performance.now() - t0)} ms)`,
    );
    expect(last?.status, JSON.stringify(last?.error ?? last?.failures)).to.equal("verified");
    expect(last?.agreeing).to.have.length(3);
    expect(startedMs).to.be.lessThan(30_000);
  });

  it("a provider that vanished after announcing is never locked in escrow", async () => {
    const c = processes.c!;
    c.kill("SIGKILL");
    await new Promise((resolve) => (c.exitCode === null ? c.once("exit", resolve) : resolve(undefined)));
    const { result } = await run(2, "without-c");
    expect(result.status, JSON.stringify(result.error ?? result.failures)).to.equal("verified");
    expect(result.agreeing).to.have.members([providers.b!.peerId, providers.e!.peerId]);
    for (const payment of result.payments ?? [])
      expect(payment.providers.map((p) => p.toLowerCase())).not.to.include(payouts.c);
    expect(result.failures.map((f) => f.provider)).not.to.include(providers.c!.peerId);
  });
});
