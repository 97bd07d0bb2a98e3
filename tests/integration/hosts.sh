# SPDX-License-Identifier: MIT
# "Hosts" made of network namespaces, for the suites that need more than one.
# shellcheck shell=bash
#
#   hosts_make TAG   host A (vmmA$TAG) and host B (vmmB$TAG), joined by a veth pair:
#                    the replication link, ra$TAG 10.77.0.1 in A, rb$TAG 10.77.0.2 in B
#   hosts_add_lan    a client (vmmC$TAG) and a LAN: in A and in B a bridge holding a
#                    persistent tap (tpa$TAG, tpb$TAG: the VMMs' --net) and a veth to the
#                    client's bridge brc$TAG, on which the client listens.  A frame from the
#                    guest reaches the client from whichever host runs it; the client's
#                    bridge learns which port the guest's MAC is behind (lan_port_of)
#   hosts_destroy    removes all of it (also on a half-made set)
# The 4-hex TAG keeps interface names within 15 characters and runs apart.

hosts_make() {
	HOSTS_TAG=$1
	NSA=vmmA$1 NSB=vmmB$1 NSC=
	ip netns add $NSA && ip netns add $NSB || return 1
	ip -n $NSA link set lo up && ip -n $NSB link set lo up &&
		ip link add ra$1 netns $NSA type veth peer name rb$1 netns $NSB &&
		ip -n $NSA addr add 10.77.0.1/24 dev ra$1 && ip -n $NSB addr add 10.77.0.2/24 dev rb$1 &&
		ip -n $NSA link set ra$1 up && ip -n $NSB link set rb$1 up
}

# lan_side NS SUFFIX: bridge br$SUFFIX with tap tp$SUFFIX and veth l$SUFFIX -> c$SUFFIX in the client
lan_side() {
	local ns=$1 s=$2$HOSTS_TAG
	ip -n "$ns" link add br$s type bridge && ip -n "$ns" tuntap add mode tap name tp$s &&
		ip -n "$ns" link set tp$s master br$s &&
		ip link add l$s netns "$ns" type veth peer name c$s netns $NSC &&
		ip -n "$ns" link set l$s master br$s && ip -n $NSC link set c$s master brc$HOSTS_TAG &&
		for dev in br$s tp$s l$s; do ip -n "$ns" link set $dev up || return 1; done &&
		ip -n $NSC link set c$s up
}

hosts_add_lan() {
	NSC=vmmC$HOSTS_TAG
	ip netns add $NSC && ip -n $NSC link set lo up &&
		ip -n $NSC link add brc$HOSTS_TAG type bridge &&
		ip -n $NSC link set brc$HOSTS_TAG up &&
		lan_side $NSA a && lan_side $NSB b
}

# lan_port_of MAC: the client bridge's port the MAC was last seen behind (ca$TAG: host A)
lan_port_of() {
	bridge -n $NSC fdb show br brc$HOSTS_TAG 2>/dev/null | awk -v m="$1" '$1 == m { print $3; exit }'
}

hosts_destroy() {
	local ns
	for ns in $NSA $NSB $NSC; do ip netns del "$ns" 2>/dev/null; done
	return 0
}
