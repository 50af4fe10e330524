/** `airqube devnet up|bootstrap` and `airqube demo`. */
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Command, Option } from "commander";
import { Devnet } from "../devnet/devnet.js";
import { type DevnetProfile, removeDevnetProfile, writeDevnetProfile } from "../devnet/profile.js";
import { startBootstrapPeer } from "../net/bootstrap-peer.js";
import { Identity } from "../qube/index.js";
import { sealQube } from "../requestor/draft.js";
import { Libp2pMarket } from "../requestor/libp2p-market.js";
import type { EscrowPayments } from "../requestor/payments.js";
import type { EscrowV2Payments } from "../requestor/payments-v2.js";
import { Requestor } from "../requestor/requestor.js";
import { connectPayments, escrowVersionOf } from "./escrow-version.js";
import { reportError } from "./output.js";
import { airqubeHome, defaultProbeCache } from "./paths.js";
import { PAYMENT_ENV } from "./payment-options.js";
import { describePayment } from "./payment-report.js";
import { progressReporter } from "./progress.js";
import { parseCount, parseDuration } from "./units.js";

interface DevnetUpFlags {
  providers: number;
  dir?: string;
  chain: boolean;
  probeCache?: string;
  readyTimeout: number;
  escrowVersion?: string;
  json?: boolean;
}

const waitForSignal = () =>
  new Promise<string>((resolve) => {
    process.once("SIGINT", () => resolve("SIGINT"));
    process.once("SIGTERM", () => resolve("SIGTERM"));
  });

export function registerDevnetCommands(program: Command): void {
  const devnet = program.command("devnet").description("a local network on this machine (everything on 127.0.0.1)");
  devnet
    .command("up")
    .description("start a bootstrap peer and N provider agents as separate processes; run until interrupted")
    .addOption(new Option("--providers <n>", "number of provider agents").argParser(parseCount).default(3))
    .option("--dir <dir>", "directory for the agents' data (default: a temporary one)")
    .option("--no-chain", "run without a local chain (qubes are not paid)")
    .option("--probe-cache <dir>", "escape-suite report cache (default $AIRQUBE_HOME/probe-cache)")
    .addOption(
      new Option("--ready-timeout <duration>", "how long each agent may take to start")
        .argParser(parseDuration)
        .default(60_000, "60s"),
    )
    .addOption(escrowVersionOption())
    .option("--json", "print the bootstrap address and providers as JSON")
    .addHelpText(
      "after",
      "\nWhile it runs, the devnet's profile (AIRQUBE_HOME/devnet/profile.json: bootstrap, chain, escrow, the\n" +
        "payment key file's path, a requestor data directory) is used by `airqube run`, `offers`, `probe --provider`\n" +
        "and `journal` for whatever is not given by a flag or an AIRQUBE_* variable (flags > environment > profile).",
    )
    .action(async (flags: DevnetUpFlags) => {
      let net: Devnet | undefined;
      let profileFile: string | undefined;
      try {
        const stopped = waitForSignal();
        net = await Devnet.start({
          providers: flags.providers,
          ...(flags.dir ? { dir: flags.dir } : {}),
          probeCache: flags.probeCache ?? defaultProbeCache(),
          readyTimeoutMs: flags.readyTimeout,
          chain: flags.chain,
          escrowVersion: escrowVersionOf(flags.escrowVersion, {}),
          onEvent: (event) => {
            if (!flags.json) process.stderr.write(`airqube devnet: ${event.type}\n`);
          },
        });
        profileFile = await writeDevnetProfile(airqubeHome(), profileOf(net));
        const info = {
          event: "ready",
          bootstrap: net.bootstrap,
          dir: net.dir,
          /** Used by run, offers, probe --provider and journal while the devnet runs. */
          profile: profileFile,
          /** Every variable a requestor needs (the key stays in its file). */
          env: devnetEnv(net),
          providers: net.providers.map((p) => ({
            peerId: p.peerId,
            addrs: p.addrs,
            dataDir: p.dataDir,
            ...(p.payout ? { payout: p.payout } : {}),
          })),
          ...(net.chain
            ? {
                chain: {
                  rpcUrl: net.chain.rpcUrl,
                  chainId: net.chain.chainId,
                  escrow: paidEscrow(net),
                  ...(net.chain.escrowVersion === 2 ? { escrowVersion: "v2", escrowV1: net.chain.escrow } : {}),
                  token: net.chain.token,
                  requestor: net.chain.requestor.address,
                  // the key stays in a file (mode 0600), never on stdout
                  requestorKeyFile: net.chain.requestorKeyFile,
                  // what `airqube run` needs to pay (the key file's path, not the key)
                  runArgs: paidRunArgs(net),
                  env: paidRunEnv(net),
                },
              }
            : {}),
        };
        if (flags.json) process.stdout.write(`${JSON.stringify(info)}\n`);
        else {
          process.stdout.write(`devnet ready: ${net.providers.length} providers\n  bootstrap ${net.bootstrap}\n`);
          if (net.chain) {
            process.stdout.write(
              `  chain ${net.chain.rpcUrl} (id ${net.chain.chainId}), escrow ${paidEscrow(net)}${net.chain.escrowVersion === 2 ? " (v2)" : ""}\n`,
            );
            process.stdout.write(
              `  funded requestor ${net.chain.requestor.address}, key in ${net.chain.requestorKeyFile}\n`,
            );
            process.stdout.write(
              `  pay with: airqube run --bootstrap ${net.bootstrap} ${paidRunArgs(net).join(" ")} --image ... --output ... -- CMD\n`,
            );
          }
          process.stdout.write(
            `  profile ${profileFile}: airqube run, offers, probe --provider and journal use it while this devnet runs\n`,
          );
          process.stdout.write("  from another shell or machine user, set instead:\n");
          const exports = Object.entries(devnetEnv(net)).map(([k, v]) => `${k}=${v}`);
          process.stdout.write(`    export ${exports.join(" ")}\n`);
          process.stdout.write("  try: airqube offers\n  press Ctrl-C to stop\n");
        }
        await stopped;
        await removeDevnetProfile(airqubeHome(), process.pid);
        await net.stop();
        if (!flags.dir) await rm(net.dir, { recursive: true, force: true });
        process.exitCode = 0;
      } catch (error) {
        if (profileFile) await removeDevnetProfile(airqubeHome(), process.pid);
        await net?.stop(1000);
        process.exitCode = reportError(error, Boolean(flags.json));
      }
    });
  devnet
    .command("bootstrap", { hidden: true })
    .description("run only a bootstrap peer")
    .option("--listen <multiaddr>", "listen address", "/ip4/127.0.0.1/tcp/0")
    .option("--json", "print the ready line as JSON")
    .action(async (flags: { listen: string; json?: boolean }) => {
      try {
        const stopped = waitForSignal();
        const peer = await startBootstrapPeer({ identity: Identity.fromSeed(randomBytes(32)), listen: [flags.listen] });
        process.stdout.write(
          flags.json
            ? `${JSON.stringify({ event: "ready", peerId: peer.node.peerId.toString(), addrs: peer.addrs })}\n`
            : `bootstrap ${peer.addrs.join(" ")}\n`,
        );
        await stopped;
        await peer.stop();
      } catch (error) {
        process.exitCode = reportError(error, Boolean(flags.json));
      }
    });

  program
    .command("demo")
    .description("start a devnet of 3 providers, run a sample qube on all three, and show the verified result")
    .option("--no-chain", "run without the local chain and escrow (nobody is paid)")
    .addOption(escrowVersionOption())
    .option("--json", "JSON lines instead of a progress display")
    .action(async (flags: { json?: boolean; chain: boolean; escrowVersion?: string }) => {
      process.exitCode = await demo(Boolean(flags.json), flags.chain, escrowVersionOf(flags.escrowVersion, {}));
    });
}

async function demo(json: boolean, chain: boolean, escrowVersion: 1 | 2): Promise<number> {
  const say = (text: string) => {
    if (!json) process.stdout.write(`${text}\n`);
  };
  const work = await mkdtemp(join(tmpdir(), "airqube-demo-"));
  let net: Devnet | undefined;
  let market: Libp2pMarket | undefined;
  let requestor: Requestor | undefined;
  let payments: EscrowPayments | EscrowV2Payments | undefined;
  try {
    say("starting a devnet: 1 bootstrap peer and 3 provider agents on 127.0.0.1 (the escape suite runs first)");
    net = await Devnet.start({
      providers: 3,
      dir: join(work, "devnet"),
      chain,
      escrowVersion,
      onEvent: (e) => {
        if (e.type === "probed") say(`escape suite: ${JSON.stringify(e.detail)}`);
        if (e.type === "chainReady") say(`local chain and escrow: ${JSON.stringify(e.detail)}`);
      },
    });
    say(`devnet up: bootstrap ${net.bootstrap}`);
    if (net.chain) {
      payments = await connectPayments(
        { rpcUrl: net.chain.rpcUrl, privateKey: net.chain.requestor.privateKey, escrow: paidEscrow(net) },
        escrowVersion,
      );
      say(`requestor ${payments.account} pays in test GLM through escrow ${payments.escrow}`);
    }
    const identity = Identity.fromSeed(randomBytes(32));
    const inputDir = join(work, "input");
    await (await import("node:fs/promises")).mkdir(inputDir);
    await (await import("node:fs/promises")).writeFile(
      join(inputDir, "numbers.txt"),
      `${Array.from({ length: 1000 }, (_, i) => i + 1).join("\n")}\n`,
    );
    const qube = await sealQube(
      {
        image: "airqube/busybox:latest",
        command: [
          "sh",
          "-c",
          "awk '{ s += $1 } END { print s }' /input/numbers.txt > /output/sum.txt; sha256sum /input/numbers.txt | cut -d' ' -f1 > /output/input.sha256",
        ],
        inputDir,
        outputs: ["input.sha256", "sum.txt"],
        limits: { wallTimeMs: 30_000, memoryBytes: 64 * 1024 * 1024, scratchBytes: 16 * 1024 * 1024 },
        redundancy: { mode: "fixed", k: 3, quorum: 2 },
      },
      identity,
    );
    say(`qube ${qube.spec.id}: sum of 1..1000 on 3 independent providers, inputs sealed to each`);
    market = await Libp2pMarket.connect({ identity, bootstrap: [net.bootstrap] });
    requestor = new Requestor({ market, dataDir: join(work, "requestor"), ...(payments ? { payments } : {}) });
    const progress = progressReporter({ json, replicas: 3 });
    const outputDir = join(work, "output");
    const result = await requestor.run(qube, { outputDir, onProgress: progress.onProgress });
    progress.stop();
    if (json) process.stdout.write(`${JSON.stringify({ event: "result", ...result })}\n`);
    if (result.status !== "verified") {
      say(`no consensus: ${result.reason ?? ""}`);
      return 1;
    }
    const sum = (await readFile(join(outputDir, "sum.txt"), "utf8")).trim();
    say(`VERIFIED by ${result.agreeing.length} providers: sum = ${sum} (expected 500500)`);
    say(`  outputs root ${result.outputsRoot}`);
    for (const answer of result.answers)
      say(`  ${answer.provider} signed statement over ${answer.outputsRoot.slice(0, 23)}…`);
    if (net.chain) {
      const names = new Map(net.providers.map((p) => [p.payout?.toLowerCase(), p.peerId]));
      names.set(net.chain.requestor.address.toLowerCase(), "requestor (refund)");
      for (const report of result.payments ?? []) for (const line of describePayment(report, names)) say(line);
    }
    const settled = !net.chain || (result.payments ?? []).every((p) => p.status === "settled");
    return sum === "500500" && settled ? 0 : 1;
  } catch (error) {
    return reportError(error, json);
  } finally {
    requestor?.close();
    payments?.dispose();
    await market?.close();
    await net?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

/** The flags of a paid `airqube run` on this devnet (the requestor key stays in its file). */
function paidRunArgs(net: Devnet): string[] {
  const chain = net.chain!;
  return [
    "--rpc-url",
    chain.rpcUrl,
    "--escrow",
    paidEscrow(net),
    ...(chain.escrowVersion === 2 ? ["--escrow-version", "v2"] : []),
    "--payment-key-file",
    chain.requestorKeyFile,
  ];
}

/** The escrow the devnet's providers are paid through (v1's, or v2's with `--escrow-version v2`). */
function paidEscrow(net: Devnet): string {
  return net.chain!.escrowVersion === 2 ? net.chain!.escrowV2 : net.chain!.escrow;
}

/** `--escrow-version v1|v2` of `devnet up` and `demo`. */
function escrowVersionOption(): Option {
  return new Option(
    "--escrow-version <v>",
    "with the chain: pay the providers through escrow v2 (AirqubeEscrowV2: standing deposits, signed statements)",
  ).choices(["v1", "v2"]);
}

/** What `devnet up` writes to the profile for the requestor commands. */
function profileOf(net: Devnet): DevnetProfile {
  return {
    version: 1,
    pid: process.pid,
    dir: net.dir,
    bootstrap: net.bootstrap,
    dataDir: join(net.dir, "requestor"),
    ...(net.chain
      ? {
          chain: {
            rpcUrl: net.chain.rpcUrl,
            chainId: net.chain.chainId,
            escrow: paidEscrow(net),
            token: net.chain.token,
            paymentKeyFile: net.chain.requestorKeyFile,
            ...(net.chain.escrowVersion === 2 ? { escrowVersion: "v2" as const } : {}),
          },
        }
      : {}),
  };
}

/** Every variable a requestor needs for this devnet: the bootstrap, and to pay, the chain, escrow and key file. */
function devnetEnv(net: Devnet): Record<string, string> {
  return { AIRQUBE_BOOTSTRAP: net.bootstrap, ...(net.chain ? paidRunEnv(net) : {}) };
}

/** The same as environment variables. */
function paidRunEnv(net: Devnet): Record<string, string> {
  const chain = net.chain!;
  return {
    [PAYMENT_ENV.rpcUrl]: chain.rpcUrl,
    [PAYMENT_ENV.escrow]: paidEscrow(net),
    ...(chain.escrowVersion === 2 ? { AIRQUBE_ESCROW_VERSION: "v2" } : {}),
    [PAYMENT_ENV.keyFile]: chain.requestorKeyFile,
  };
}
