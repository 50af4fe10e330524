/**
 * Address policy of a node: which multiaddrs it may listen on, announce and dial, in the devnet (loopback
 * only) and in public mode (real hosts). Pure functions of the address text, plus a pre-flight bind check
 * that turns `EADDRNOTAVAIL` and `EADDRINUSE` into user errors before a provider spends time on its escape
 * suite.
 */
import { createServer } from "node:net";
import { multiaddr } from "@multiformats/multiaddr";
import { UserError } from "../qube/errors.js";

/** Where an address leads: decides whether a public-mode node may dial or announce it. */
export type AddressScope = "loopback" | "private" | "link-local" | "unspecified" | "public" | "dns";

/**
 * Public-mode address policy. `allowPrivate` dials RFC 1918 / ULA / CGNAT / link-local addresses (a LAN, or
 * tests in network namespaces); `allowLoopback` dials and announces loopback (tests on one machine only).
 */
export interface AddressPolicy {
  public: boolean;
  allowPrivate?: boolean;
  allowLoopback?: boolean;
}

const LOOPBACK = /^\/(ip4\/127\.\d+\.\d+\.\d+|ip6\/::1)\//;

function ipv4Scope(ip: string): AddressScope {
  const parts = ip.split(".").map(Number);
  const [a = 0, b = 0] = parts;
  if (a === 127) return "loopback";
  if (a === 0) return "unspecified";
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127))
    return "private";
  if (a === 169 && b === 254) return "link-local";
  // multicast, reserved and broadcast are never peers
  if (a >= 224) return "unspecified";
  return "public";
}

function ipv6Scope(ip: string): AddressScope {
  const lower = ip.toLowerCase();
  if (lower === "::1") return "loopback";
  if (lower === "::") return "unspecified";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (mapped?.[1]) return ipv4Scope(mapped[1]);
  if (/^fe[89ab]/.test(lower)) return "link-local";
  if (/^f[cd]/.test(lower)) return "private";
  if (/^ff/.test(lower)) return "unspecified";
  return "public";
}

/** The scope of a multiaddr's first network component (for a relayed address: the relay's). */
export function addressScope(address: string): AddressScope {
  for (const component of multiaddr(address).getComponents()) {
    if (component.name === "ip4" && component.value) return ipv4Scope(component.value);
    if (component.name === "ip6" && component.value) return ipv6Scope(component.value);
    if (component.name.startsWith("dns")) return component.value === "localhost" ? "loopback" : "dns";
  }
  return "unspecified";
}

/** True for 127.0.0.0/8 and ::1 multiaddrs. */
export function isLoopbackAddress(address: string): boolean {
  return LOOPBACK.test(address);
}

/**
 * Whether a node under `policy` may dial `address`. The devnet dials loopback only; public mode never dials
 * unspecified, multicast or (unless allowed) loopback, private and link-local addresses: a hostile offer must
 * not make a requestor dial its own ports or its LAN.
 *
 * @example
 * mayDial("/ip4/127.0.0.1/tcp/4001", { public: true }); // false
 */
export function mayDial(address: string, policy: AddressPolicy): boolean {
  let scope: AddressScope;
  try {
    scope = addressScope(address);
  } catch {
    return false;
  }
  if (!policy.public) return scope === "loopback";
  switch (scope) {
    case "public":
    case "dns":
      return true;
    case "loopback":
      return policy.allowLoopback === true;
    case "private":
    case "link-local":
      return policy.allowPrivate === true || policy.allowLoopback === true;
    default:
      return false;
  }
}

/** Whether a public-mode node announces `address` (a wildcard listener's loopback address never is). */
export function mayAnnounce(address: string, policy: AddressPolicy): boolean {
  const scope = addressScope(address);
  if (scope === "unspecified") return false;
  if (!policy.public) return true;
  return scope !== "loopback" || policy.allowLoopback === true;
}

/** Parses a multiaddr given by a user, with a clear error. */
export function parseMultiaddr(text: string): string {
  try {
    return multiaddr(text).toString();
  } catch (error) {
    throw new UserError("ADDRESS_INVALID", "Not a multiaddr", { details: text, cause: error });
  }
}

/** Refuses any address that is not on loopback (the devnet). */
export function assertLoopback(addresses: string[], what: string): void {
  for (const address of addresses) {
    if (!LOOPBACK.test(address)) {
      throw new UserError("ADDRESS_NOT_LOOPBACK", `${what} must be on loopback (127.0.0.0/8 or ::1)`, {
        details: `${address}; pass --public on a real deployment (public mode)`,
      });
    }
  }
}

/**
 * Checks that every TCP listen address can be bound here, by binding and closing it at once. Turns the
 * kernel's refusals into user errors: `ADDRESS_UNAVAILABLE` (no such address on this host, EADDRNOTAVAIL),
 * `ADDRESS_IN_USE` (EADDRINUSE), `ADDRESS_FORBIDDEN` (EACCES). Addresses other than /ip4|ip6/…/tcp[/ws] are
 * left to libp2p.
 *
 * @example
 * await preflightListen(["/ip4/0.0.0.0/tcp/4001"]);
 */
export async function preflightListen(addresses: string[]): Promise<void> {
  for (const address of addresses) {
    const parts = multiaddr(address).getComponents();
    const ip = parts[0];
    const tcp = parts[1];
    const rest = parts.slice(2);
    const plain = rest.length === 0 || (rest.length === 1 && (rest[0]?.name === "ws" || rest[0]?.name === "wss"));
    if (!ip || !tcp || (ip.name !== "ip4" && ip.name !== "ip6") || tcp.name !== "tcp" || !plain) continue;
    const host = ip.value ?? "";
    const port = Number(tcp.value ?? "0");
    await new Promise<void>((resolve, reject) => {
      const server = createServer();
      server.once("error", (error: NodeJS.ErrnoException) => {
        const known: Record<string, [string, string]> = {
          EADDRNOTAVAIL: ["ADDRESS_UNAVAILABLE", "This host has no such listen address"],
          EADDRINUSE: ["ADDRESS_IN_USE", "The listen port is already in use"],
          EACCES: ["ADDRESS_FORBIDDEN", "Not allowed to listen on this port"],
        };
        const [code, message] = known[error.code ?? ""] ?? ["ADDRESS_UNUSABLE", "Cannot listen on this address"];
        reject(
          new UserError(code, message, {
            details: `${address}: ${error.code ?? error.message}; pick an address of this host (ip addr) or --listen /ip4/0.0.0.0/tcp/PORT`,
            cause: error,
          }),
        );
      });
      server.listen({ host, port, exclusive: true }, () => server.close(() => resolve()));
    });
  }
}
