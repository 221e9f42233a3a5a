// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/*
 * ubia's quota enforcement: what the kernel does to a user whose quota ran out, decided
 * by user space (src/kernel/quota.ts) and held here with its end, so that it lasts
 * through agent restarts and ends on time with no agent running.
 *
 *  - block: connect() and unconnected sendmsg() of the user's sockets fail with EPERM
 *    (cgroup/connect4/6, cgroup/sendmsg4/6), and every packet of the user's sockets is
 *    dropped (ubia_quota_egress/ingress), so a running transfer stops too;
 *  - throttle: a token bucket per user and direction, shared by all the user's sockets
 *    and CPUs, polices the packets to rate_bytes per second (docs/architecture.md,
 *    "Quota enforcement", has the measurements behind the choice).
 *
 * Whose traffic: the socket's uid (sk_uid: the creator's fsuid, or for an accepted
 * socket its listener's), as bpf_get_socket_uid() gives it; connect() and sendmsg() go
 * by the calling process's uid.
 *
 * Exempt, for both actions: destinations in the exempt_v4/exempt_v6 tries (the peer's
 * address: the destination of what is sent, the source of what is received) and, when
 * quota_config.local_services is set, the services of this host:
 *  - loopback: packets through the loopback interface (every address of this host is
 *    reached through it) and connect()/sendmsg() to 127.0.0.0/8, ::1 and ::ffff:127/104;
 *  - inbound TCP connections: sockets whose local port has a listener on this host
 *    (an accepted connection to a service, such as the user's own SSH login when the
 *    session's sockets are the user's, or a server the user runs).
 *
 * The packet programs are not attached to the cgroup: the meter's packet programs, which
 * run for every packet anyway, read the uid filter (quota_uids, the meter's map, re-used
 * here) and tail-call them for a uid with a verdict (bpf/ubia.bpf.c, enforce_quota); the
 * loader places them in the meter's call slots. So a user without a verdict pays one
 * array read per packet, and no second program at the cgroup hooks. The connect() and
 * sendmsg() programs are attached to the cgroup, from the first verdict to the last.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "ubia.h"
#include "wire.h"
#include "quota_uids.h" /* the meter's map, re-used by the loader */

#define AF_INET 2
#define AF_INET6 10
#define LOOPBACK_IFINDEX 1 /* fixed for every network namespace since Linux 4.0 */
#define BPF_F_CURRENT_NETNS (-1L)
#define NSEC_PER_SEC 1000000000ULL
/* Refills are capped at one second of idle time, so elapsed x rate cannot overflow
 * (rate_bytes up to 18 GB/s); the burst is never more than a second's worth anyway. */
#define MAX_REFILL_NS NSEC_PER_SEC

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UBIA_QUOTA_MAX_VERDICTS);
	__type(key, __u32); /* uid */
	__type(value, struct ubia_quota_verdict);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * UBIA_QUOTA_MAX_VERDICTS);
	__type(key, struct ubia_quota_bucket_key);
	__type(value, struct ubia_quota_bucket);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, UBIA_QUOTA_MAX_EXEMPT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ubia_quota_cidr4);
	__type(value, __u8);
} exempt_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, UBIA_QUOTA_MAX_EXEMPT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct ubia_quota_cidr6);
	__type(value, __u8);
} exempt_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ubia_quota_config);
} quota_config SEC(".maps");

/* The uid's verdict while it lasts. An expired one is removed here, so that the kernel
 * alone ends it at its time (user space's list() also drops expired ones nobody hit). */
static __always_inline struct ubia_quota_verdict *verdict_of(__u32 uid)
{
	if (!quota_uid_marked(uid))
		return NULL;
	struct ubia_quota_verdict *v = bpf_map_lookup_elem(&verdicts, &uid);
	if (!v)
		return NULL;
	if (bpf_ktime_get_boot_ns() < v->until_boot_ns)
		return v;
	bpf_map_delete_elem(&verdicts, &uid);
	struct ubia_quota_bucket_key k = { .uid = uid, .egress = 0 };
	bpf_map_delete_elem(&buckets, &k);
	k.egress = 1;
	bpf_map_delete_elem(&buckets, &k);
	return NULL;
}

static __always_inline bool local_services(void)
{
	__u32 zero = 0;
	struct ubia_quota_config *c = bpf_map_lookup_elem(&quota_config, &zero);
	return c && c->local_services;
}

static __always_inline bool exempt_addr4(__u32 addr_be)
{
	struct ubia_quota_cidr4 key = { .prefixlen = 32 };
	__builtin_memcpy(key.addr, &addr_be, 4);
	if (bpf_map_lookup_elem(&exempt_v4, &key))
		return true;
	/* 127.0.0.0/8 */
	return (bpf_ntohl(addr_be) >> 24) == 127 && local_services();
}

/* An IPv6 destination given as four network-order words (connect/sendmsg). */
static __always_inline bool exempt_addr6(const __u32 w[4])
{
	if (w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff)) /* IPv4-mapped (RFC 4291 §2.5.5.2) */
		return exempt_addr4(w[3]);
	struct ubia_quota_cidr6 key;
	key.prefixlen = 128;
	__builtin_memcpy(key.addr, w, 16);
	if (bpf_map_lookup_elem(&exempt_v6, &key))
		return true;
	return w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == bpf_htonl(1) && local_services();
}

/* connect() and sendmsg() with an address: refused with EPERM (the return value 0)
 * for a blocked user, unless the destination is exempt. */
static __always_inline int allow_call(bool v4, struct bpf_sock_addr *ctx)
{
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	struct ubia_quota_verdict *v = verdict_of(uid);
	if (!v || v->action != UBIA_QUOTA_BLOCK)
		return 1;
	if (v4)
		return exempt_addr4(ctx->user_ip4);
	__u32 w[4] = { ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3] };
	return exempt_addr6(w);
}

SEC("cgroup/connect4")
int ubia_quota_connect4(struct bpf_sock_addr *ctx)
{
	return allow_call(true, ctx);
}

SEC("cgroup/connect6")
int ubia_quota_connect6(struct bpf_sock_addr *ctx)
{
	return allow_call(false, ctx);
}

SEC("cgroup/sendmsg4")
int ubia_quota_sendmsg4(struct bpf_sock_addr *ctx)
{
	return allow_call(true, ctx);
}

SEC("cgroup/sendmsg6")
int ubia_quota_sendmsg6(struct bpf_sock_addr *ctx)
{
	return allow_call(false, ctx);
}

/* Does a listener on this host hold the socket's local port (an inbound connection)?
 * Asked of the socket tables with no remote end, so only a listener can answer. */
static __always_inline bool inbound_tcp(struct __sk_buff *skb, struct bpf_sock *sk)
{
	struct bpf_sock_tuple t = {};
	__u32 size;
	if (sk->family == AF_INET) {
		t.ipv4.daddr = sk->src_ip4;
		t.ipv4.dport = bpf_htons((__u16)sk->src_port);
		size = sizeof(t.ipv4);
	} else {
		t.ipv6.daddr[0] = sk->src_ip6[0];
		t.ipv6.daddr[1] = sk->src_ip6[1];
		t.ipv6.daddr[2] = sk->src_ip6[2];
		t.ipv6.daddr[3] = sk->src_ip6[3];
		t.ipv6.dport = bpf_htons((__u16)sk->src_port);
		size = sizeof(t.ipv6);
	}
	struct bpf_sock *listener = bpf_sk_lookup_tcp(skb, &t, size, BPF_F_CURRENT_NETNS, 0);
	if (!listener)
		return false;
	bpf_sk_release(listener);
	return true;
}

/* Is the packet's peer (destination when sent, source when received) exempt? */
static __always_inline bool exempt_packet(struct __sk_buff *skb, struct bpf_sock *sk, bool egress)
{
	bool local = local_services();
	if (local && skb->ifindex == LOOPBACK_IFINDEX)
		return true;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct ubia_quota_cidr4 key;
		key.prefixlen = 32;
		if (bpf_skb_load_bytes(skb, egress ? 16 : 12, key.addr, 4))
			return false;
		if (bpf_map_lookup_elem(&exempt_v4, &key))
			return true;
	} else {
		/* filled field by field: an initialiser of this size becomes a .rodata copy, and an
		 * object whose .rodata holds no variable has BTF Linux 5.10 refuses (empty DATASEC),
		 * which leaves the buckets' spin lock without BTF */
		struct ubia_quota_cidr6 key;
		key.prefixlen = 128;
		if (bpf_skb_load_bytes(skb, egress ? 24 : 8, key.addr, 16))
			return false;
		if (bpf_map_lookup_elem(&exempt_v6, &key))
			return true;
	}
	return local && sk->protocol == IPPROTO_TCP && inbound_tcp(skb, sk);
}

/* Takes `bytes` from the uid's bucket for this direction; false when it holds too few. */
static __always_inline bool take_tokens(__u32 uid, bool egress, const struct ubia_quota_verdict *v, __u64 bytes)
{
	struct ubia_quota_bucket_key k = { .uid = uid, .egress = egress };
	struct ubia_quota_bucket *b = bpf_map_lookup_elem(&buckets, &k);
	__u64 now = bpf_ktime_get_ns();
	__u64 depth = v->burst_bytes * NSEC_PER_SEC;
	if (!b) {
		struct ubia_quota_bucket fresh = { .tokens_scaled = depth, .last_ns = now };
		bpf_map_update_elem(&buckets, &k, &fresh, BPF_NOEXIST);
		b = bpf_map_lookup_elem(&buckets, &k);
		if (!b)
			return true; /* no room for a bucket: let it pass rather than block by accident */
	}
	bool pass;
	bpf_spin_lock(&b->lock);
	__u64 elapsed = now > b->last_ns ? now - b->last_ns : 0;
	if (elapsed > MAX_REFILL_NS)
		elapsed = MAX_REFILL_NS;
	__u64 tokens = b->tokens_scaled + elapsed * v->rate_bytes;
	if (tokens > depth)
		tokens = depth;
	b->last_ns = now;
	__u64 cost = bytes * NSEC_PER_SEC;
	pass = tokens >= cost;
	b->tokens_scaled = pass ? tokens - cost : tokens;
	bpf_spin_unlock(&b->lock);
	return pass;
}

static __always_inline int enforce(struct __sk_buff *skb, bool egress)
{
	if (skb->family != AF_INET && skb->family != AF_INET6)
		return 1;
	__u32 uid = bpf_get_socket_uid(skb);
	struct ubia_quota_verdict *v = verdict_of(uid);
	if (!v)
		return 1;
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return 1; /* bpf_get_socket_uid gave the overflow uid: nobody's packet */
	sk = bpf_sk_fullsock(sk);
	if (!sk || exempt_packet(skb, sk, egress))
		return 1;
	if (v->action == UBIA_QUOTA_BLOCK)
		return 0;
	__u64 bytes, packets;
	wire_size(skb, 0, skb->len, &bytes, &packets);
	return take_tokens(uid, egress, v, bytes) ? 1 : 0;
}

/* Tail-called by the meter's packet programs (UBIA_CALL_QUOTA), which counted the packet;
 * what these return is its fate. The section names make them cgroup_skb programs of the
 * hook whose call array holds them. */
SEC("cgroup_skb/egress")
int ubia_quota_egress(struct __sk_buff *skb)
{
	return enforce(skb, true);
}

SEC("cgroup_skb/ingress")
int ubia_quota_ingress(struct __sk_buff *skb)
{
	return enforce(skb, false);
}
