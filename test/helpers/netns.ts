/**
 * Network-namespace topologies standing in for separate hosts (see ../shared/design/NETWORK-TRIAL.md):
 * one bridge namespace as "the internet", one namespace per host joined to it by a veth pair, addresses from
 * 10.77.0.0/24 only inside those namespaces (no default route, nothing routed to the machine's own
 * interfaces), and optionally hosts behind a NAT router namespace (nftables masquerade, 192.168.77.0/24
 * inside). Every namespace is deleted afterwards, even when a test fails or the process exits.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";

export interface Host {
  /** The namespace's name. */
  ns: string;
  /** The host's address (inside its namespace). */
  ip: string;
}

export interface Topology {
  hosts: Record<string, Host>;
  /** Starts a process inside a host's namespace (stdout/stderr piped). */
  spawn(host: string, command: string, args: string[], env?: Record<string, string>): ChildProcess;
  /** Runs a command inside a host's namespace and returns its stdout. */
  exec(host: string, command: string, args: string[]): string;
  /** Kills every process left in the namespaces and deletes them. */
  destroy(): void;
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

/** Why namespace tests cannot run here, or undefined when they can (root, `ip netns`, and `nft` for NAT). */
export function netnsUnavailable(options: { nat?: boolean } = {}): string | undefined {
  if (process.getuid?.() !== 0) return "network-namespace tests need root";
  const probe = `aqprobe${process.pid}`;
  try {
    ip("netns", "add", probe);
    ip("netns", "del", probe);
  } catch (error) {
    return `ip netns is unavailable: ${(error as Error).message.split("\n")[0]}`;
  }
  if (options.nat && !["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].some((p) => existsSync(p)))
    return "nft (nftables) is not installed: run scripts/setup.sh";
  return undefined;
}

const created = new Set<string>();
function deleteNamespace(ns: string): void {
  try {
    for (const pid of ip("netns", "pids", ns).split(/\s+/).filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
  } catch {}
  try {
    ip("netns", "del", ns);
  } catch {}
  created.delete(ns);
}
// a test run that dies between set-up and teardown still leaves nothing behind
process.once("exit", () => {
  for (const ns of [...created]) deleteNamespace(ns);
});

/**
 * Builds the topology: `direct` hosts on the bridge (10.77.0.1, .2, ...), `natted` hosts behind one router
 * (192.168.77.2, .3, ..., the router's outer address 10.77.0.254). `wan` replaces the bridge's /24 (its first
 * three octets): 203.0.113 (TEST-NET-3, RFC 5737: reserved for documentation, never routed anywhere) gives the
 * hosts addresses that the address policy counts as public, for a requestor in public mode without
 * --allow-private-addrs (test/net/hostile-offer-netns.test.ts). Either way the addresses exist only inside the
 * namespaces.
 *
 * @example
 * const net = createTopology(["boot", "b", "c", "d"], ["e"]);
 * try { net.spawn("b", "node", [...]); } finally { net.destroy(); }
 */
export function createTopology(direct: string[], natted: string[] = [], wan = "10.77.0"): Topology {
  const prefix = `aq${process.pid % 100000}`;
  const bridge = `${prefix}-br`;
  const hosts: Record<string, Host> = {};
  const addNs = (ns: string) => {
    ip("netns", "add", ns);
    created.add(ns);
    ip("-n", ns, "link", "set", "lo", "up");
  };
  const topology: Topology = {
    hosts,
    spawn(host, command, args, env = {}) {
      const h = hosts[host];
      if (!h) throw new Error(`no host ${host}`);
      return spawn("ip", ["netns", "exec", h.ns, command, ...args], {
        env: { ...process.env, ...env },
        stdio: ["ignore", "pipe", "pipe"],
      });
    },
    exec(host, command, args) {
      const h = hosts[host];
      if (!h) throw new Error(`no host ${host}`);
      return execFileSync("ip", ["netns", "exec", h.ns, command, ...args], {
        stdio: ["ignore", "pipe", "pipe"],
      }).toString();
    },
    destroy() {
      for (const ns of [...created].filter((n) => n.startsWith(`${prefix}-`))) deleteNamespace(ns);
    },
  };
  try {
    addNs(bridge);
    ip("-n", bridge, "link", "add", "br0", "type", "bridge");
    ip("-n", bridge, "link", "set", "br0", "up");
    const plug = (name: string, ns: string, address: string) => {
      // both ends are created inside the bridge namespace and one moves to the host: nothing touches the
      // machine's own namespace
      ip("-n", bridge, "link", "add", `v-${name}`, "type", "veth", "peer", "name", "wan0", "netns", ns);
      ip("-n", bridge, "link", "set", `v-${name}`, "master", "br0", "up");
      ip("-n", ns, "addr", "add", `${address}/24`, "dev", "wan0");
      ip("-n", ns, "link", "set", "wan0", "up");
    };
    direct.forEach((name, i) => {
      const ns = `${prefix}-${name}`;
      addNs(ns);
      plug(name, ns, `${wan}.${i + 1}`);
      hosts[name] = { ns, ip: `${wan}.${i + 1}` };
    });
    if (natted.length > 0) {
      const router = `${prefix}-nat`;
      addNs(router);
      plug("nat", router, `${wan}.254`);
      hosts.router = { ns: router, ip: `${wan}.254` };
      ip("-n", router, "link", "add", "lanbr", "type", "bridge");
      ip("-n", router, "addr", "add", "192.168.77.1/24", "dev", "lanbr");
      ip("-n", router, "link", "set", "lanbr", "up");
      natted.forEach((name, i) => {
        const ns = `${prefix}-${name}`;
        addNs(ns);
        ip("-n", router, "link", "add", `l-${name}`, "type", "veth", "peer", "name", "lan0", "netns", ns);
        ip("-n", router, "link", "set", `l-${name}`, "master", "lanbr", "up");
        const address = `192.168.77.${i + 2}`;
        ip("-n", ns, "addr", "add", `${address}/24`, "dev", "lan0");
        ip("-n", ns, "link", "set", "lan0", "up");
        // the only route out is the router (and the router only reaches the bridge's subnet)
        ip("-n", ns, "route", "add", "default", "via", "192.168.77.1");
        hosts[name] = { ns, ip: address };
      });
      execFileSync("ip", ["netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      const rules = [
        "table ip aqnat {",
        "  chain forward { type filter hook forward priority 0; policy drop;",
        '    iifname "lanbr" oifname "wan0" accept',
        "    ct state established,related accept",
        "  }",
        "  chain postrouting { type nat hook postrouting priority 100;",
        '    oifname "wan0" masquerade',
        "  }",
        "}",
      ].join("\n");
      execFileSync("ip", ["netns", "exec", router, "nft", "-f", "-"], { input: rules });
    }
  } catch (error) {
    topology.destroy();
    throw error;
  }
  return topology;
}

/** Resolves with the first stdout line of `child` that parses as JSON and satisfies `match`. */
export function jsonLine<T>(child: ChildProcess, match: (value: T) => boolean, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let buffer = "";
    let stderr = "";
    const timer = setTimeout(() => reject(new Error(`timed out; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-8000);
    });
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        try {
          const value = JSON.parse(line) as T;
          if (match(value)) {
            clearTimeout(timer);
            resolve(value);
          }
        } catch {}
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before the expected line; stderr: ${stderr.slice(-2000)}`));
    });
  });
}
