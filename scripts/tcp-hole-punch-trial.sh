#!/usr/bin/env bash
# Why Airqube's peers behind two NATs stay on the relay: a trial of TCP hole punching on this kernel (as root).
#
# Two hosts, A and B, each behind its own router doing nftables masquerade (a NAT that drops unsolicited
# inbound connections, like a home router), the routers on one bridge. Addresses exist only inside the
# namespaces made here (10.78.0.0/24 outside, 192.168.71/72.0/24 inside), deleted on exit. It shows that
#  1. the kernel punches: A and B dialling each other's router at once, each FROM ITS OWN FIXED PORT (the port
#     the other side was told), meet in one TCP connection (simultaneous open through both NATs);
#  2. from fresh ephemeral source ports the same dials never meet (each NAT maps a new port and drops the
#     other's SYN), and that is all Node.js can do while a listener holds the port: net.connect with the
#     listener's localPort fails with EADDRINUSE (Node has no SO_REUSEPORT for client sockets), which is why
#     js-libp2p's identify ignores every observed TCP address (js-libp2p issue 2620) and DCUtR has no address
#     to punch with.
# Usage: sudo bash scripts/tcp-hole-punch-trial.sh   (needs ip, nft, python3, node; about 30 s)
set -u
P=aqhp$$
cleanup() {
  for ns in a b n1 n2 br; do
    ip netns pids "$P-$ns" 2>/dev/null | xargs -r kill -9
    ip netns del "$P-$ns" 2>/dev/null
  done
}
trap cleanup EXIT
for ns in br n1 n2 a b; do ip netns add "$P-$ns" && ip -n "$P-$ns" link set lo up || exit 1; done
ip -n "$P-br" link add br0 type bridge && ip -n "$P-br" link set br0 up
for i in 1 2; do
  r=n$i h=$([ "$i" = 1 ] && echo a || echo b)
  ip -n "$P-br" link add "v-$r" type veth peer name wan0 netns "$P-$r"
  ip -n "$P-br" link set "v-$r" master br0 up
  ip -n "$P-$r" addr add "10.78.0.$i/24" dev wan0 && ip -n "$P-$r" link set wan0 up
  ip -n "$P-$r" link add lan0 type veth peer name lan0 netns "$P-$h"
  ip -n "$P-$r" addr add "192.168.7$i.1/24" dev lan0 && ip -n "$P-$r" link set lan0 up
  ip -n "$P-$h" addr add "192.168.7$i.2/24" dev lan0 && ip -n "$P-$h" link set lan0 up
  ip -n "$P-$h" route add default via "192.168.7$i.1"
  ip netns exec "$P-$r" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$P-$r" nft -f - <<'NFT'
table ip aqnat {
  chain forward { type filter hook forward priority 0; policy drop;
    iifname "lan0" oifname "wan0" accept
    ct state established,related accept
  }
  chain input { type filter hook input priority 0; policy accept;
    iifname "wan0" ct state new drop
  }
  chain postrouting { type nat hook postrouting priority 100;
    oifname "wan0" masquerade
  }
}
NFT
done

# dial HOST:PORT for up to 8 s, from local port LPORT (0: a fresh ephemeral port each try)
dial='
import socket, sys, time
lport, host, port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
end = time.time() + 8
while time.time() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", lport))
    s.settimeout(3)
    try:
        s.connect((host, port))
        s.sendall(b"hi")
        print("  connected: local %s:%d, remote %s:%d, got %r" % (s.getsockname() + s.getpeername() + (s.recv(2),)))
        time.sleep(0.5)
        sys.exit(0)
    except OSError as e:
        err = e
        s.close()
        time.sleep(0.2)
print("  never connected (%s)" % err)
sys.exit(1)
'
echo "A 192.168.71.2 behind 10.78.0.1, B 192.168.72.2 behind 10.78.0.2"
echo "1. both dial at once from fixed ports (A 5555 -> 10.78.0.2:6666, B 6666 -> 10.78.0.1:5555):"
ip netns exec "$P-a" python3 -c "$dial" 5555 10.78.0.2 6666 &
ip netns exec "$P-b" python3 -c "$dial" 6666 10.78.0.1 5555 &
wait
echo "2. both dial at once from fresh ephemeral ports (what a js-libp2p node can do):"
ip netns exec "$P-a" python3 -c "$dial" 0 10.78.0.2 6666 &
ip netns exec "$P-b" python3 -c "$dial" 0 10.78.0.1 5555 &
wait
echo "3. Node.js: dialling from the port its own listener holds:"
ip netns exec "$P-a" node -e '
const net = require("node:net");
const server = net.createServer().listen(5555, () => {
  net.connect({ host: "10.78.0.2", port: 6666, localPort: 5555 })
    .on("error", (e) => { console.log(`  ${e.code}`); server.close(); })
    .on("connect", () => { console.log("  connected"); process.exit(0); });
});'
