#!/bin/bash
# Captures the request bytes natpmpc (Debian package natpmpc) sends and
# writes them as annotated goldens next to this script. Everything runs in a
# throwaway network namespace that is deleted on exit, failure included;
# no packet leaves it.
#
#   [ natpmpc ] --udp--> 10.200.0.1:5351 [ capture (fake gateway) ]
#   both inside netns pmpcap-$$; 10.200.0.1/24 on pmp0, a veth whose peer
#   pmp1 is in the same namespace (dummy links may be unavailable)
#
# Usage, as root from the repository root: bash natpmp/testdata/capture.sh
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"

gw=10.200.0.1
ns=pmpcap-$$
dir=$(cd "$(dirname "$0")" && pwd)
ver=$(dpkg-query -W -f='${Version}' natpmpc)
work=$(mktemp -d)
pid=

cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

go build -o "$work/capture" ./natpmp/testdata/capture

ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add pmp0 type veth peer name pmp1
ip -n "$ns" link set pmp1 up
ip -n "$ns" addr add "$gw/24" dev pmp0
ip -n "$ns" link set pmp0 up
ip -n "$ns" route add default dev pmp0

ip netns exec "$ns" "$work/capture" -listen "$gw:5351" >"$work/packets" 2>"$work/capture.err" &
pid=$!
for _ in $(seq 50); do
	grep -q listening "$work/capture.err" && break
	sleep 0.1
done

date=$(date -u +%F)
prov="provenance: captured from Debian natpmpc $ver in a netns (natpmp/testdata/capture.sh) on $date"

# run NAME ARGS... runs natpmpc and saves the last request it sent as
# natpmpc-20150609-NAME.txt (for -a, natpmpc first asks for the address).
run() {
	local name=$1
	shift
	local before
	before=$(wc -l <"$work/packets")
	echo "\$ natpmpc -g $gw${*:+ $*}" >>"$work/output"
	ip netns exec "$ns" timeout 30 natpmpc -g "$gw" "$@" >>"$work/output" 2>&1
	sed -n "$((before + 1)),\$p" "$work/packets" | sed 's/^/  sent: /' >>"$work/output"
	tail -n 1 "$work/packets" |
		"$work/capture" -annotate -provenance "$prov: natpmpc -g $gw${*:+ $*}" >"$dir/natpmpc-20150609-$name.txt"
}

run address
run map-udp -a 1234 5678 udp 3600
run map-tcp-delete -a 1234 5678 tcp 0
run delete-all -a 0 0 udp 0

{
	echo "# $prov"
	echo "# natpmpc's own output against the fake gateway (natpmp/testdata/capture), with the hex it sent"
	cat "$work/output"
} >"$dir/natpmpc-20150609-session.log"
cat "$dir/natpmpc-20150609-session.log"
