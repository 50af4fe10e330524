/**
 * The address flags shared by the commands that run a libp2p node (`provider start`, `run`): `--listen`,
 * `--announce` and `--append-announce`, each repeatable, defined and read once here.
 */
import type { Command } from "commander";

/** Commander's collector of a repeatable option. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** What the address flags hold (commander's camel-cased names). */
export interface AddressFlags {
  listen?: string[];
  announce?: string[];
  appendAnnounce?: string[];
}

/**
 * Adds `--listen MA`, `--announce MA` and `--append-announce MA` (repeatable) to a command; `listenHelp`
 * describes `--listen` (its default differs between a provider and a requestor). The addresses themselves are
 * checked by the node (src/net/node.ts checkNodeAddresses): syntax, loopback outside public mode, and whether
 * this host can bind them.
 *
 * @example
 * addAddressOptions(program.command("run"), "public mode: listen address (repeatable)");
 */
export function addAddressOptions(command: Command, listenHelp: string): Command {
  return command
    .option("--listen <multiaddr>", listenHelp, collect)
    .option(
      "--announce <multiaddr>",
      "public mode: address announced instead of the listen addresses (repeatable)",
      collect,
    )
    .option(
      "--append-announce <multiaddr>",
      "public mode: address announced besides the listen addresses (repeatable)",
      collect,
    );
}

/**
 * The node options the address flags select (absent flags stay absent).
 *
 * @example
 * createNode({ identity, ...addressOptionsFrom(flags) });
 */
export function addressOptionsFrom(flags: AddressFlags): AddressFlags {
  return {
    ...(flags.listen ? { listen: flags.listen } : {}),
    ...(flags.announce ? { announce: flags.announce } : {}),
    ...(flags.appendAnnounce ? { appendAnnounce: flags.appendAnnounce } : {}),
  };
}
