/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0) */
/*
 * Wire sizes of a packet, shared by the meter (bpf/ubia.bpf.c) and quota enforcement
 * (bpf/quota.bpf.c): both count L3 bytes as they cross the wire. Include after vmlinux.h
 * and the libbpf helpers.
 */
#ifndef UBIA_WIRE_H
#define UBIA_WIRE_H

#ifndef ETH_P_IP
#define ETH_P_IP 0x0800
#endif

/* Bytes of the IP header and, for TCP and UDP, the transport header of the packet at
 * l3off (IPv6 extension headers are not walked: counted as payload). */
static __always_inline __u32 header_bytes(struct __sk_buff *skb, __u32 l3off, __u8 *proto)
{
	__u32 hdr;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, l3off, &vihl, 1))
			return 0;
		hdr = (vihl & 0xf) * 4;
		bpf_skb_load_bytes(skb, l3off + 9, proto, 1);
	} else {
		hdr = 40;
		bpf_skb_load_bytes(skb, l3off + 6, proto, 1);
	}
	if (*proto == IPPROTO_TCP) {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, l3off + hdr + 12, &doff, 1))
			return hdr;
		hdr += (doff >> 4) * 4;
	} else if (*proto == IPPROTO_UDP) {
		hdr += 8;
	}
	return hdr;
}

/* L3 bytes and packets as they cross the wire. A GSO/GRO packet of n segments carries
 * its network+transport headers n times on the wire but once in the skb. */
static __always_inline void wire_size(struct __sk_buff *skb, __u32 l3off, __u64 l3len,
				      __u64 *bytes, __u64 *packets)
{
	__u32 segs = skb->gso_segs;
	*packets = segs ? segs : 1;
	*bytes = l3len;
	if (segs <= 1)
		return;
	__u8 proto = 0;
	*bytes += (__u64)(segs - 1) * header_bytes(skb, l3off, &proto);
}

#endif /* UBIA_WIRE_H */
