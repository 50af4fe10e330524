/**
 * `airqube bootnode`: a long-running rendezvous and relay node for a public Airqube network. It keeps its
 * identity in a key file (its peer id is part of every bootstrap address, so it must survive restarts), relays
 * offer gossip, answers offer queries, and runs a circuit relay v2 server for providers behind NAT.
 */
import { type Command, Option } from "commander";
import { startBootstrapPeer } from "../net/bootstrap-peer.js";
import { loadOrCreateKeyFile } from "../net/keys.js";
import { UserError } from "../qube/errors.js";
import { type AddressFlags, addAddressOptions, collect } from "./address-options.js";
import { cliLogger } from "./logger.js";
import { reportError } from "./output.js";

interface BootnodeFlags extends AddressFlags {
  keyFile: string;
  bootstrap?: string[];
  public?: boolean;
  allowPrivateAddrs?: boolean;
  allowLoopbackAddrs?: boolean;
  relay: boolean;
  json?: boolean;
}

export function registerBootnodeCommand(program: Command): void {
  addAddressOptions(
    program
      .command("bootnode")
      .description("run a bootstrap node: the rendezvous, offer relay and circuit relay of a public network")
      .requiredOption("--key-file <file>", "the node's identity (created on first start, mode 0600): keep it"),
    "listen address (repeatable; e.g. /ip4/0.0.0.0/tcp/4001)",
  )
    .option("--bootstrap <multiaddr>", "another bootnode of the same network (repeatable)", collect)
    .option("--public", "public mode: non-loopback addresses, circuit relay server, per-host rate limits")
    .option("--allow-private-addrs", "public mode: also dial private-range addresses (a LAN)")
    .addOption(new Option("--allow-loopback-addrs", "public mode: also dial and announce loopback (tests)").hideHelp())
    .option("--no-relay", "do not run the circuit relay server")
    .option("--json", "print { peerId, addresses } as one JSON line once listening")
    .addHelpText(
      "after",
      "\nExample (a public host):\n  airqube bootnode --public --key-file /var/lib/airqube/bootnode.key \\\n" +
        "    --listen /ip4/0.0.0.0/tcp/4001 --announce /dns4/boot.example.org/tcp/4001\n" +
        "  Providers and requestors then pass --public --bootstrap /dns4/boot.example.org/tcp/4001/p2p/PEER_ID.",
    )
    .action(async (flags: BootnodeFlags) => {
      process.exitCode = await bootnode(flags);
    });
}

async function bootnode(flags: BootnodeFlags): Promise<number> {
  const logger = cliLogger("bootnode");
  try {
    const listen = flags.listen ?? ["/ip4/127.0.0.1/tcp/4001"];
    if (!flags.public && (flags.announce || flags.appendAnnounce) && !flags.json)
      logger.warn("announce addresses outside public mode must be loopback");
    const identity = loadOrCreateKeyFile(flags.keyFile);
    const peer = await startBootstrapPeer({
      identity,
      listen,
      ...(flags.bootstrap ? { bootstrap: flags.bootstrap } : {}),
      ...(flags.announce ? { announce: flags.announce } : {}),
      ...(flags.appendAnnounce ? { appendAnnounce: flags.appendAnnounce } : {}),
      ...(flags.public ? { public: true } : {}),
      ...(flags.allowPrivateAddrs ? { allowPrivate: true } : {}),
      ...(flags.allowLoopbackAddrs ? { allowLoopback: true } : {}),
      relay: Boolean(flags.public) && flags.relay,
    });
    const addresses = peer.node.getMultiaddrs().map((ma) => ma.toString());
    if (addresses.length === 0) {
      await peer.stop();
      throw new UserError("ADDRESS_NONE_ANNOUNCED", "The bootnode has no address to announce", {
        details: `listening on ${listen.join(", ")}; pass --announce with this host's public address`,
      });
    }
    if (flags.json) process.stdout.write(`${JSON.stringify({ peerId: identity.peerId, addresses })}\n`);
    else {
      process.stdout.write(`bootnode ${identity.peerId} ready${flags.public ? " (public mode, relay on)" : ""}\n`);
      for (const address of addresses) process.stdout.write(`  bootstrap address ${address}\n`);
      process.stdout.write("  press Ctrl-C to stop\n");
    }
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGINT", () => resolve("SIGINT"));
      process.once("SIGTERM", () => resolve("SIGTERM"));
    });
    logger.info({ signal, peers: peer.node.getPeers().length }, "stopping");
    await peer.stop();
    return 0;
  } catch (error) {
    return reportError(error, Boolean(flags.json));
  }
}
