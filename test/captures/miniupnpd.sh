#!/usr/bin/env bash
# Captures what Debian's miniupnpd-nftables answers to NAT-PMP and PCP
# requests, for berth's golden vectors and for comparing behaviour.
#
#   ns mcap-lan (192.168.77.10) ──veth── ns mcap-rtr: miniupnpd (lan 192.168.77.1, wan 11.22.33.2) ──veth── ns mcap-wan (11.22.33.1)
#
# The WAN side uses 11.22.33.0/24 because miniupnpd 2.3.1 refuses to serve
# a reserved external address (TEST-NET, RFC 1918) and has no option to allow
# one; the addresses exist only inside these namespaces and no packet is sent
# to them.
#
# Run as root: test/captures/miniupnpd.sh OUTDIR. Needs iproute2, nftables,
# miniupnpd-nftables and python3. Every namespace and process it makes is
# removed on exit, also on failure. Traffic stays inside the namespaces.
set -euo pipefail
out=${1:?usage: miniupnpd.sh OUTDIR}
mkdir -p "$out"
tag=mcap$$
lan=$tag-lan rtr=$tag-rtr wan=$tag-wan
work=$(mktemp -d)
cleanup() {
	[ -f "$work/pid" ] && kill "$(cat "$work/pid")" 2>/dev/null || true
	for n in "$lan" "$rtr" "$wan"; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
for n in "$lan" "$rtr" "$wan"; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add l0 netns "$lan" type veth peer name l1 netns "$rtr"
ip link add w0 netns "$rtr" type veth peer name w1 netns "$wan"
ip -n "$lan" addr add 192.168.77.10/24 dev l0
ip -n "$rtr" addr add 192.168.77.1/24 dev l1
ip -n "$rtr" addr add 11.22.33.2/24 dev w0
ip -n "$wan" addr add 11.22.33.1/24 dev w1
for p in "$lan l0" "$rtr l1" "$rtr w0" "$wan w1"; do set -- $p; ip -n "$1" link set "$2" up; done
ip -n "$lan" route add default via 192.168.77.1
ip -n "$rtr" route add default via 11.22.33.1
cat >"$work/miniupnpd.conf" <<CONF
ext_ifname=w0
listening_ip=l1
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
min_lifetime=120
max_lifetime=86400
uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07d
upnp_table_name=filter
upnp_nat_table_name=filter
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 192.168.77.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
CONF
# miniupnpd-nftables expects its table and chains to exist. Debian's
# /etc/miniupnpd/nft_init.sh would make them but sources a file the package
# does not ship (miniupnpd_functions.sh), so they are made here.
ip netns exec "$rtr" nft -f - <<'NFT'
table inet filter {
	chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
	chain prerouting_miniupnpd { }
	chain postrouting_miniupnpd { }
}
NFT
ip netns exec "$rtr" miniupnpd -d -f "$work/miniupnpd.conf" -P "$work/pid" >"$out/miniupnpd.log" 2>&1 &
sleep 2
# Each case: name and request hex. The client writes "name request reply" lines.
ip netns exec "$lan" python3 - "$out/replies.txt" <<'PY'
import socket, sys, binascii
nonce = bytes(range(1, 13))
client = socket.inet_pton(socket.AF_INET6, "::ffff:192.168.77.10")
def pcp_map(proto, iport, sport, life, opts=b""):
    hdr = bytes([2, 1, 0, 0]) + life.to_bytes(4, "big") + client
    body = nonce + bytes([proto, 0, 0, 0]) + iport.to_bytes(2, "big") + sport.to_bytes(2, "big") + socket.inet_pton(socket.AF_INET6, "::ffff:0.0.0.0")
    return hdr + body + opts
cases = [
    ("natpmp-address", bytes([0, 0])),
    ("natpmp-map-udp", bytes([0, 1, 0, 0]) + (5000).to_bytes(2, "big") + (6000).to_bytes(2, "big") + (3600).to_bytes(4, "big")),
    ("natpmp-delete-udp", bytes([0, 1, 0, 0]) + (5000).to_bytes(2, "big") + (6000).to_bytes(2, "big") + (0).to_bytes(4, "big")),
    ("natpmp-opcode3", bytes([0, 3])),
    ("natpmp-version1", bytes([1, 0])),
    ("pcp-announce", bytes([2, 0, 0, 0]) + (0).to_bytes(4, "big") + client),
    ("pcp-map-udp", pcp_map(17, 5000, 6000, 3600)),
    ("pcp-map-delete", pcp_map(17, 5000, 6000, 0)),
    ("pcp-version1", bytes([1, 1, 0, 0]) + bytes(56)),
    # Last: miniupnpd answers a refused port only after searching every
    # other allowed port through nftables, which takes a long time.
    ("pcp-map-tcp-privileged", pcp_map(6, 22, 22, 3600)),
    ("natpmp-map-tcp-privileged", bytes([0, 2, 0, 0]) + (22).to_bytes(2, "big") + (22).to_bytes(2, "big") + (3600).to_bytes(4, "big")),
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
with open(sys.argv[1], "w") as f:
    for name, req in cases:
        s.sendto(req, ("192.168.77.1", 5351))
        try:
            rep, _ = s.recvfrom(2048)
        except socket.timeout:
            rep = b""
        f.write(f"{name} {binascii.hexlify(req).decode()} {binascii.hexlify(rep).decode()}\n")
PY
echo "replies in $out/replies.txt"
