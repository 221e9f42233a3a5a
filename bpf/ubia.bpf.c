// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/*
 * ubia's kernel meter. Two metering points, as LINUBIA had, plus a check:
 *  - socket layer (tp_btf/sock_{send,recv}_length): payload bytes, in the context of the
 *    process doing the I/O, so uid/pid/comm are exact;
 *  - wire layer (cgroup_skb on the cgroup v2 root): every IP packet of a local socket,
 *    L3 bytes and on-the-wire packet counts, attributed to the socket's owner;
 *  - interfaces (tc clsact): what each interface carried, split into packets with and
 *    without a local user socket, so attribution can be checked against the total.
 * All counters are monotonic; user space computes deltas and removes entries only after
 * it has read their final values (or received them through the ring buffer).
 *
 * The per-packet and per-call paths add to counters in the socket's own storage
 * (socks); those are folded into the per-user, per-process and per-flow maps when
 * user space reads (the ubia_fold iterator), when the socket changes owner or scope, and
 * when it ends. Shared hash entries are thus touched once per socket per read, not once
 * per packet from every CPU.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "ubia.h"

#define AF_INET 2
#define AF_INET6 10
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_HLEN 14
#define MSG_PEEK 2
#define LOOPBACK_IFINDEX 1 /* fixed for every network namespace since Linux 4.0 */
#define TC_ACT_UNSPEC (-1) /* let later tc filters run: we only count */
#define E2BIG 7
#define ENOMEM 12

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader: inode of the host's network namespace. Per-interface figures are
 * kept for its interfaces only (ifindex numbers repeat across namespaces). */
const volatile __u32 host_netns_ino = 0;
extern unsigned long CONFIG_HZ __kconfig;

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct ubia_sock);
} socks SEC(".maps");

/* Per-user totals never evict: a user that finds no free slot is counted as an overflow
 * and its bytes go to the unattributed stats. Shared (atomic adds at folds) rather than
 * per-CPU: a per-CPU hash without preallocation could not hold more than ~56k entries
 * here (the per-CPU allocator ran dry: ENOMEM), and a preallocated one costs
 * max_entries x CPUs. user_index finds a (uid, scope)'s slot in user_slots. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UBIA_MAX_USERS);
	__type(key, struct ubia_user_key);
	__type(value, __u32);
} user_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, UBIA_MAX_USERS);
	__type(key, __u32);
	__type(value, struct ubia_user_slot);
} user_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UBIA_MAX_PROCS);
	__type(key, struct ubia_proc_key);
	__type(value, struct ubia_counters);
} proc_totals SEC(".maps");

/* Processes that have entries in proc_totals, so that only their exits are reported. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, UBIA_MAX_PROCS);
	__type(key, __u32);
	__type(value, __u8);
} metered_tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, UBIA_MAX_FLOWS);
	__type(key, __u64);
	__type(value, struct ubia_flow);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, UBIA_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct ubia_iface);
} ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, UBIA_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, UBIA_RINGBUF_BYTES);
} events SEC(".maps");

/* Written by user space: the ABI version of the pinned state. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ubia_meta);
} meta SEC(".maps");

static __always_inline void stat_add(__u32 idx, __u64 v)
{
	__u64 *p = bpf_map_lookup_elem(&stats, &idx);
	if (p)
		*p += v;
}

/* Look up a counter entry, creating it when absent. NULL means the map is full
 * (counted by the caller). */
static __always_inline struct ubia_counters *counters_entry(void *map, const void *key)
{
	struct ubia_counters zero = {};
	struct ubia_counters *c = bpf_map_lookup_elem(map, key);
	if (c)
		return c;
	/* BPF_NOEXIST: another CPU may have inserted it meanwhile; then just look again */
	bpf_map_update_elem(map, key, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(map, key);
}

struct delta {
	__u64 rx_bytes, tx_bytes, rx_packets, tx_packets, rx_payload, tx_payload;
};

static __always_inline void counters_add(struct ubia_counters *c, const struct delta *d)
{
	if (d->rx_bytes)
		__sync_fetch_and_add(&c->rx_bytes, d->rx_bytes);
	if (d->tx_bytes)
		__sync_fetch_and_add(&c->tx_bytes, d->tx_bytes);
	if (d->rx_packets)
		__sync_fetch_and_add(&c->rx_packets, d->rx_packets);
	if (d->tx_packets)
		__sync_fetch_and_add(&c->tx_packets, d->tx_packets);
	if (d->rx_payload)
		__sync_fetch_and_add(&c->rx_payload, d->rx_payload);
	if (d->tx_payload)
		__sync_fetch_and_add(&c->tx_payload, d->tx_payload);
}

/* Report this process's exit (sched_process_exit), so that user space reads its final
 * figures and removes its entries. Marked when it comes to own a socket, since what its
 * sockets counted may be folded into its entry only later. */
static __always_inline void mark_metered(__u32 tgid)
{
	__u8 one = 1;
	if (tgid && !bpf_map_lookup_elem(&metered_tgids, &tgid))
		bpf_map_update_elem(&metered_tgids, &tgid, &one, BPF_ANY);
}

/* The (uid, scope)'s slot, taken from the free ones when it has none yet. */
static __always_inline struct ubia_counters *user_counters(const struct ubia_user_key *uk)
{
	__u32 *idx = bpf_map_lookup_elem(&user_index, uk);
	if (!idx) {
		__u32 zero = 0;
		struct ubia_meta *m = bpf_map_lookup_elem(&meta, &zero);
		if (!m || m->user_slots_used >= UBIA_MAX_USERS)
			return NULL; /* full: no atomic add, so the count cannot wrap */
		__u32 n = __sync_fetch_and_add(&m->user_slots_used, 1);
		struct ubia_user_slot *slot = bpf_map_lookup_elem(&user_slots, &n);
		if (!slot)
			return NULL;
		slot->key = *uk;
		/* another CPU may have indexed this user meanwhile: then its slot counts and
		 * this one stays unused (used = 0, never shown) */
		if (bpf_map_update_elem(&user_index, uk, &n, BPF_NOEXIST) == 0)
			__sync_lock_test_and_set(&slot->used, 1); /* a full barrier: key is final */
		idx = bpf_map_lookup_elem(&user_index, uk);
		if (!idx)
			return NULL;
	}
	struct ubia_user_slot *slot = bpf_map_lookup_elem(&user_slots, idx);
	return slot ? &slot->c : NULL;
}

static __always_inline void count_user_and_process(const struct ubia_owner *o, __u32 scope,
						    const struct delta *d)
{
	struct ubia_user_key uk = { .uid = o->uid, .scope = scope };
	struct ubia_counters *c = user_counters(&uk);
	if (c) {
		counters_add(c, d);
	} else {
		/* never silently: the bytes stay visible as unattributed */
		stat_add(UBIA_STAT_USER_OVERFLOW, 1);
		stat_add(UBIA_STAT_UNATTR_RX_BYTES, d->rx_bytes);
		stat_add(UBIA_STAT_UNATTR_TX_BYTES, d->tx_bytes);
		stat_add(UBIA_STAT_UNATTR_RX_PACKETS, d->rx_packets);
		stat_add(UBIA_STAT_UNATTR_TX_PACKETS, d->tx_packets);
	}

	struct ubia_proc_key pk = { .uid = o->uid, .tgid = o->tgid, .scope = scope };
	__builtin_memcpy(pk.comm, o->comm, sizeof(pk.comm));
	c = bpf_map_lookup_elem(&proc_totals, &pk);
	if (!c) {
		c = counters_entry(&proc_totals, &pk);
		if (!c) {
			stat_add(UBIA_STAT_PROC_OVERFLOW, 1);
			return;
		}
		mark_metered(o->tgid);
	}
	counters_add(c, d);
}

static __always_inline void owner_from_current(struct ubia_owner *o)
{
	__u64 ug = bpf_get_current_uid_gid();
	o->uid = (__u32)ug;
	o->gid = ug >> 32;
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline bool is_loopback_addr(struct sock *sk, __u16 family)
{
	if (family == AF_INET) {
		__u32 daddr = bpf_ntohl(BPF_CORE_READ(sk, __sk_common.skc_daddr));
		return (daddr >> 24) == 127;
	}
	struct in6_addr a = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
	if (a.in6_u.u6_addr32[0] == 0 && a.in6_u.u6_addr32[1] == 0) {
		if (a.in6_u.u6_addr32[2] == 0 && a.in6_u.u6_addr32[3] == bpf_htonl(1))
			return true; /* ::1 */
		if (a.in6_u.u6_addr32[2] == bpf_htonl(0xffff))
			return (bpf_ntohl(a.in6_u.u6_addr32[3]) >> 24) == 127; /* ::ffff:127.x */
	}
	return false;
}

static __always_inline void fill_endpoints(struct ubia_endpoints *f, struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	f->protocol = BPF_CORE_READ(sk, sk_protocol);
	f->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	f->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		f->family = 4;
		BPF_CORE_READ_INTO((__u32 *)f->local_addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)f->remote_addr, sk, __sk_common.skc_daddr);
	} else {
		f->family = 6;
		BPF_CORE_READ_INTO((struct in6_addr *)f->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO((struct in6_addr *)f->remote_addr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline void count_flow(__u64 cookie, const struct ubia_endpoints *ep, struct ubia_sock *s,
				       const struct ubia_owner *o, __u32 scope,
				       const struct delta *d, __u64 first_ns, __u64 last_ns)
{
	if (s && s->flow_state == UBIA_FLOW_ENDED)
		return;
	struct ubia_flow *f = bpf_map_lookup_elem(&flows, &cookie);
	if (!f) {
		if (s && s->flow_state == UBIA_FLOW_OVERFLOW)
			return;
		struct ubia_flow nf = {};
		nf.ep = *ep;
		nf.owner = *o;
		nf.scope = scope;
		nf.first_ns = first_ns;
		long err = bpf_map_update_elem(&flows, &cookie, &nf, BPF_NOEXIST);
		if (err == -E2BIG || err == -ENOMEM) {
			/* the per-user and per-process totals still have these bytes */
			stat_add(UBIA_STAT_FLOW_OVERFLOW, 1);
			if (s)
				s->flow_state = UBIA_FLOW_OVERFLOW;
			return;
		}
		f = bpf_map_lookup_elem(&flows, &cookie);
		if (!f)
			return;
		if (s)
			s->flow_state = UBIA_FLOW_TRACKED;
	} else if (f->ep.remote_port == 0 && ep->remote_port != 0) {
		/* connect() after the first packet (UDP) */
		f->ep = *ep;
	}
	counters_add(&f->c, d);
	if (f->last_ns < last_ns)
		f->last_ns = last_ns;
	/* written only on change: every CPU touching this socket shares the cache line */
	if (f->owner.tgid != o->tgid || f->owner.uid != o->uid)
		f->owner = *o;
	if (f->scope != scope)
		f->scope = scope;
}

/* Counts with no socket storage to hold them (it could not be allocated) go straight
 * into the shared maps. */
static __always_inline void count_direct(__u64 cookie, struct sock *sk, const struct ubia_owner *o,
					 __u32 scope, const struct delta *d)
{
	__u64 now = bpf_ktime_get_boot_ns();
	struct ubia_endpoints ep = {};
	fill_endpoints(&ep, sk);
	count_user_and_process(o, scope, d);
	count_flow(cookie, &ep, NULL, o, scope, d, now, now);
}

static __always_inline void count_pending(struct sock *sk, struct ubia_sock *s, const struct delta *d)
{
	__u64 now = bpf_jiffies64();
	/* unconnected until now (UDP connect() after the first packet) */
	if (s->ep.remote_port == 0)
		fill_endpoints(&s->ep, sk);
	counters_add(&s->pending, d);
	if (!s->first_jiffies)
		s->first_jiffies = now;
	if (s->last_jiffies != now) /* spare the shared cache line a write */
		s->last_jiffies = now;
}

/* A jiffies stamp as CLOCK_BOOTTIME nanoseconds, by its distance from now. */
static __always_inline __u64 jiffies_boot_ns(__u64 j, __u64 now_jiffies, __u64 now_ns)
{
	return now_ns - (now_jiffies - j) * (1000000000ULL / CONFIG_HZ);
}

/* Moves what a socket counted since the last fold to its owner's user, process and flow
 * entries. The exchange hands each increment to exactly one fold, whichever CPUs fold
 * and count at the same time. */
static __always_inline void fold(__u64 cookie, struct ubia_sock *s)
{
	struct ubia_counters *p = &s->pending;
	/* most sockets are idle between two reads: plain loads spare them six exchanges */
	if (!(p->rx_bytes | p->tx_bytes | p->rx_packets | p->tx_packets | p->rx_payload | p->tx_payload))
		return;
	struct delta d = {
		.rx_bytes = __sync_lock_test_and_set(&s->pending.rx_bytes, 0),
		.tx_bytes = __sync_lock_test_and_set(&s->pending.tx_bytes, 0),
		.rx_packets = __sync_lock_test_and_set(&s->pending.rx_packets, 0),
		.tx_packets = __sync_lock_test_and_set(&s->pending.tx_packets, 0),
		.rx_payload = __sync_lock_test_and_set(&s->pending.rx_payload, 0),
		.tx_payload = __sync_lock_test_and_set(&s->pending.tx_payload, 0),
	};
	if (!(d.rx_bytes | d.tx_bytes | d.rx_packets | d.tx_packets | d.rx_payload | d.tx_payload))
		return;
	__u64 now_ns = bpf_ktime_get_boot_ns();
	__u64 now_jiffies = bpf_jiffies64();
	count_user_and_process(&s->owner, s->scope, &d);
	count_flow(cookie, &s->ep, s, &s->owner, s->scope, &d,
		   jiffies_boot_ns(s->first_jiffies, now_jiffies, now_ns),
		   jiffies_boot_ns(s->last_jiffies, now_jiffies, now_ns));
}

/* Is the current task the socket's owner? The cheap uid/tgid check spares the full owner
 * look-up on every call. */
static __always_inline bool current_owns(const struct ubia_sock *s)
{
	/* direct loads through the task's BTF type: the uid/gid helper costs ~20 ns here */
	struct task_struct *t = bpf_get_current_task_btf();
	return s->owner_known && s->owner.tgid == t->tgid && s->owner.uid == t->cred->uid.val;
}

/* The current task takes the socket over (fork, SCM_RIGHTS). What was counted so far is
 * folded first: it stays with the previous owner. The caller computes the cookie only
 * when the owner changes (a helper call the per-packet path need not pay). */
static __always_inline void take_over(__u64 cookie, struct ubia_sock *s)
{
	fold(cookie, s);
	__u64 created = s->owner.created_ns;
	owner_from_current(&s->owner);
	s->owner.created_ns = created ? created : bpf_ktime_get_boot_ns();
	s->owner_known = 1;
	mark_metered(s->owner.tgid);
}

/* ---- socket owner ---------------------------------------------------------------- */

SEC("cgroup/sock_create")
int ubia_sock_create(struct bpf_sock *ctx)
{
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 1;
	owner_from_current(&s->owner);
	s->owner.created_ns = bpf_ktime_get_boot_ns();
	s->owner_known = 1;
	mark_metered(s->owner.tgid);
	return 1;
}

/* ---- socket layer: payload ------------------------------------------------------- */

static __always_inline void count_payload(struct sock *sk, int ret, int flags, bool rx)
{
	if (ret <= 0)
		return; /* errors and EAGAIN moved nothing */
	if (rx && (flags & MSG_PEEK))
		return; /* the real read that follows counts the bytes */
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return;
	if (BPF_CORE_READ_BITFIELD(sk, sk_kern_sock))
		return; /* kernel sockets (NFS, tunnels) have no user behind the call */

	struct delta d = {};
	if (rx)
		d.rx_payload = ret;
	else
		d.tx_payload = ret;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		struct ubia_owner cur = {};
		owner_from_current(&cur);
		count_direct(bpf_get_socket_cookie(sk), sk, &cur,
			     is_loopback_addr(sk, family) ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL, &d);
		return;
	}
	/* the process doing the I/O owns the socket from now on */
	if (!current_owns(s))
		take_over(bpf_get_socket_cookie(sk), s);
	if (!s->scope_known) {
		/* until its first packet tells the interface, the address tells the scope */
		s->scope = is_loopback_addr(sk, family) ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL;
		s->scope_known = 1;
	}
	count_pending(sk, s, &d);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ubia_send_length, struct sock *sk, int ret, int flags)
{
	count_payload(sk, ret, flags, false);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ubia_recv_length, struct sock *sk, int ret, int flags)
{
	count_payload(sk, ret, flags, true);
	return 0;
}

/* ---- wire layer ------------------------------------------------------------------ */

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
	__u32 hdr = 0;
	__u8 proto = 0;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;
		if (bpf_skb_load_bytes(skb, l3off, &vihl, 1))
			return;
		hdr = (vihl & 0xf) * 4;
		bpf_skb_load_bytes(skb, l3off + 9, &proto, 1);
	} else {
		hdr = 40;
		bpf_skb_load_bytes(skb, l3off + 6, &proto, 1);
	}
	if (proto == IPPROTO_TCP) {
		__u8 doff;
		if (bpf_skb_load_bytes(skb, l3off + hdr + 12, &doff, 1))
			return;
		hdr += (doff >> 4) * 4;
	} else if (proto == IPPROTO_UDP) {
		hdr += 8;
	}
	*bytes += (__u64)(segs - 1) * hdr;
}

static __always_inline struct ubia_iface *iface_entry(__u32 ifindex)
{
	struct ubia_iface zero = {};
	struct ubia_iface *v = bpf_map_lookup_elem(&ifaces, &ifindex);
	if (v)
		return v;
	if (bpf_map_update_elem(&ifaces, &ifindex, &zero, BPF_NOEXIST) == -E2BIG)
		stat_add(UBIA_STAT_IFACE_OVERFLOW, 1);
	return bpf_map_lookup_elem(&ifaces, &ifindex);
}

static __always_inline void wire_add(struct ubia_wire *w, bool egress, __u64 bytes, __u64 packets)
{
	if (egress) {
		w->tx_bytes += bytes;
		w->tx_packets += packets;
	} else {
		w->rx_bytes += bytes;
		w->rx_packets += packets;
	}
}

/* The full socket a packet belongs to for accounting, or NULL when no user socket is
 * behind it: kernel sockets (RSTs for closed ports, ICMP errors, ND) and time-wait
 * sockets. A request socket (SYN-ACK) counts for its listener. */
static __always_inline struct sock *accountable_sock(struct sk_buff *kskb)
{
	/* direct loads through BTF pointers (no probe-read helper calls): this runs for
	 * every packet */
	struct sock *sk = kskb->sk;
	if (!sk)
		return NULL;
	__u8 state = sk->__sk_common.skc_state;
	if (state == TCP_TIME_WAIT)
		return NULL;
	if (state == TCP_NEW_SYN_RECV) /* the listener is behind a union: give it its type back */
		sk = bpf_rdonly_cast(BPF_CORE_READ(sk, __sk_common.skc_listener),
				     bpf_core_type_id_kernel(struct sock));
	if (!sk || BPF_CORE_READ_BITFIELD(sk, sk_kern_sock))
		return NULL;
	return sk;
}

/* Is the packet being sent from inside the owner's send call, so that the current task
 * is the sender? TCP sends from process context with the socket lock owned by the
 * caller (transmissions from softirq happen only when no process owns it); UDP sends
 * synchronously from the sendmsg call. */
static __always_inline bool sending_in_process_context(struct sock *sk)
{
	__u16 proto = sk->sk_protocol;
	if (proto == IPPROTO_UDP)
		return true;
	return proto == IPPROTO_TCP && sk->sk_lock.owned;
}

static __always_inline void count_unattributed(bool egress, __u64 bytes, __u64 packets)
{
	stat_add(egress ? UBIA_STAT_UNATTR_TX_BYTES : UBIA_STAT_UNATTR_RX_BYTES, bytes);
	stat_add(egress ? UBIA_STAT_UNATTR_TX_PACKETS : UBIA_STAT_UNATTR_RX_PACKETS, packets);
}

static __always_inline int count_wire(struct __sk_buff *skb, bool egress)
{
	__u16 family = skb->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u64 bytes, packets;
	wire_size(skb, 0, skb->len, &bytes, &packets);

	struct sock *ksk = accountable_sock(kskb);
	struct bpf_sock *bsk = skb->sk;
	if (bsk) {
		struct bpf_sock *full = bpf_sk_fullsock(bsk);
		bsk = full ? full : bpf_get_listener_sock(bsk);
	}
	if (!ksk || !bsk) {
		count_unattributed(egress, bytes, packets);
		return 1;
	}

	__u32 ifindex = skb->ifindex;
	__u32 scope = ifindex == LOOPBACK_IFINDEX ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL;
	struct delta d = {};
	if (egress) {
		d.tx_bytes = bytes;
		d.tx_packets = packets;
	} else {
		d.rx_bytes = bytes;
		d.rx_packets = packets;
	}
	struct ubia_sock *s = bpf_sk_storage_get(&socks, bsk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s) {
		struct ubia_owner fallback = { .uid = bpf_get_socket_uid(skb) };
		count_direct(bpf_get_socket_cookie(skb), ksk, &fallback, scope, &d);
	} else if (ksk->__sk_common.skc_state == TCP_LISTEN) {
		/* handshakes count straight for the listener's owner: a listener holds no
		 * pending counts for its accepted sockets to inherit */
		count_direct(bpf_get_socket_cookie(skb), ksk, &s->owner, scope, &d);
	} else {
		if (egress && sending_in_process_context(ksk)) {
			/* the sender is current: a socket passed to another process (fork,
			 * SCM_RIGHTS) counts for the new sender from its first packet on */
			if (!current_owns(s))
				take_over(bpf_get_socket_cookie(skb), s);
		} else if (!s->owner_known && !s->owner.created_ns) {
			/* socket predates the agent: its uid is all we know until it does I/O */
			s->owner.uid = bpf_get_socket_uid(skb);
			s->owner.created_ns = bpf_ktime_get_boot_ns();
		}
		if (!s->scope_known || s->scope != scope) {
			/* a socket's scope changes rarely (a route moved): what it counted before
			 * keeps the old scope */
			if (s->scope_known)
				fold(bpf_get_socket_cookie(skb), s);
			s->scope = scope;
			s->scope_known = 1;
		}
		count_pending(ksk, s, &d);
	}

	if (ifindex != LOOPBACK_IFINDEX && ksk->__sk_common.skc_net.net->ns.inum == host_netns_ino) {
		struct ubia_iface *ifc = iface_entry(ifindex);
		if (ifc)
			wire_add(&ifc->attributed, egress, bytes, packets);
	}
	return 1;
}

SEC("cgroup_skb/egress")
int ubia_egress(struct __sk_buff *skb)
{
	return count_wire(skb, true);
}

SEC("cgroup_skb/ingress")
int ubia_ingress(struct __sk_buff *skb)
{
	return count_wire(skb, false);
}

/* ---- interfaces (tc) ------------------------------------------------------------- */

/* Will the stack deliver this incoming packet to a user socket (so that the cgroup
 * ingress program counts it)? Asked of the socket tables, as the stack itself will. */
static __always_inline bool ingress_has_socket(struct __sk_buff *skb, bool v4)
{
	struct bpf_sock_tuple t = {};
	__u32 tlen;
	__u32 l4off;
	__u8 proto;
	if (v4) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
			return false;
		if (ip.frag_off & bpf_htons(0x1fff))
			return false; /* later fragments carry no ports */
		proto = ip.protocol;
		t.ipv4.saddr = ip.saddr;
		t.ipv4.daddr = ip.daddr;
		l4off = ETH_HLEN + ip.ihl * 4;
		tlen = sizeof(t.ipv4);
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return false;
		proto = ip6.nexthdr;
		__builtin_memcpy(t.ipv6.saddr, &ip6.saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, &ip6.daddr, 16);
		l4off = ETH_HLEN + sizeof(ip6);
		tlen = sizeof(t.ipv6);
	}
	__be16 ports[2];
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return false;
	if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)))
		return false;
	if (v4) {
		t.ipv4.sport = ports[0];
		t.ipv4.dport = ports[1];
	} else {
		t.ipv6.sport = ports[0];
		t.ipv6.dport = ports[1];
	}
	if (proto == IPPROTO_TCP) {
		struct bpf_sock *sk = bpf_skc_lookup_tcp(skb, &t, tlen, BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return false;
		bool live = sk->state != BPF_TCP_TIME_WAIT;
		bpf_sk_release(sk);
		return live;
	}
	struct bpf_sock *sk = bpf_sk_lookup_udp(skb, &t, tlen, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

static __always_inline int count_iface(struct __sk_buff *skb, bool egress)
{
	bool v4 = skb->protocol == bpf_htons(ETH_P_IP);
	if (!v4 && skb->protocol != bpf_htons(ETH_P_IPV6))
		return TC_ACT_UNSPEC;
	__u64 l3len;
	if (skb->gso_segs > 1) {
		l3len = skb->len - ETH_HLEN;
	} else if (v4) {
		/* the IP length, not skb->len: Ethernet pads short frames */
		__be16 tot;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 2, &tot, 2))
			return TC_ACT_UNSPEC;
		l3len = bpf_ntohs(tot);
	} else {
		__be16 plen;
		if (bpf_skb_load_bytes(skb, ETH_HLEN + 4, &plen, 2))
			return TC_ACT_UNSPEC;
		l3len = bpf_ntohs(plen) + 40;
	}
	__u64 bytes, packets;
	wire_size(skb, ETH_HLEN, l3len, &bytes, &packets);

	bool attributable;
	if (egress)
		attributable = accountable_sock(bpf_cast_to_kern_ctx(skb)) != NULL;
	else
		attributable = ingress_has_socket(skb, v4);

	struct ubia_iface *ifc = iface_entry(skb->ifindex);
	if (!ifc)
		return TC_ACT_UNSPEC;
	wire_add(&ifc->total, egress, bytes, packets);
	if (!attributable)
		wire_add(&ifc->unattributed, egress, bytes, packets);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int ubia_tc_ingress(struct __sk_buff *skb)
{
	return count_iface(skb, false);
}

SEC("tc")
int ubia_tc_egress(struct __sk_buff *skb)
{
	return count_iface(skb, true);
}

/* ---- ends: flows and processes --------------------------------------------------- */

/* Hand a flow's final record to user space, then remove it. If the ring buffer is full
 * the entry stays, marked ended, and user space sweeps it from the map. */
static __always_inline void end_flow(__u64 cookie, struct ubia_sock *s)
{
	if (s)
		s->flow_state = UBIA_FLOW_ENDED;
	struct ubia_flow *f = bpf_map_lookup_elem(&flows, &cookie);
	if (!f)
		return;
	f->ended = 1;
	struct ubia_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		stat_add(UBIA_STAT_EVENTS_DROPPED, 1);
		return;
	}
	e->kind = UBIA_EV_FLOW_ENDED;
	e->tgid = 0;
	e->ns = bpf_ktime_get_boot_ns();
	e->cookie = cookie;
	__builtin_memcpy(&e->flow, f, sizeof(e->flow));
	bpf_ringbuf_submit(e, 0);
	bpf_map_delete_elem(&flows, &cookie);
}

/* TCP ends when the socket reaches CLOSE: after close() the kernel may still be sending
 * what the process wrote, and those bytes belong to the flow. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ubia_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate != TCP_CLOSE || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct sock *ksk = (struct sock *)sk;
	__u64 cookie = bpf_get_socket_cookie(ksk);
	struct ubia_sock *s = bpf_sk_storage_get(&socks, ksk, 0, 0);
	if (s)
		fold(cookie, s);
	end_flow(cookie, s);
	return 0;
}

/* Everything but TCP ends when the process releases it; TCP too if it never left CLOSE.
 * A TCP socket closed while still sending lives on without a file, out of the fold
 * iterator's reach: folding here puts everything its process did in the totals at once,
 * and only what the kernel sends after close() waits for TCP_CLOSE. */
SEC("cgroup/sock_release")
int ubia_sock_release(struct bpf_sock *ctx)
{
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct ubia_sock *s = bpf_sk_storage_get(&socks, ctx, 0, 0);
	if (s)
		fold(cookie, s);
	if (ctx->protocol == IPPROTO_TCP && ctx->state != BPF_TCP_CLOSE)
		return 1;
	end_flow(cookie, s);
	return 1;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(ubia_process_exit, struct task_struct *task)
{
	/* only when the whole thread group is gone (do_exit has dropped signal->live) */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	__u32 tgid = task->tgid;
	if (!bpf_map_lookup_elem(&metered_tgids, &tgid))
		return 0;
	struct ubia_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		/* the entry stays; user space notices the process is gone on its own */
		stat_add(UBIA_STAT_EVENTS_DROPPED, 1);
		return 0;
	}
	bpf_map_delete_elem(&metered_tgids, &tgid);
	__builtin_memset(e, 0, sizeof(*e));
	e->kind = UBIA_EV_PROC_EXITED;
	e->tgid = tgid;
	e->ns = bpf_ktime_get_boot_ns();
	bpf_ringbuf_submit(e, 0);
	return 0;
}

/* Run by user space (reads of iterator fds) before it reads the user, process and flow
 * maps: fold the pending counts of every TCP and UDP socket of the reader's network
 * namespace. (iter/task_file, which visits every process's files in every namespace,
 * cannot reach a socket's storage on current kernels: sock->sk is an untrusted pointer
 * that bpf_sk_storage_get refuses; map iterators are refused here.) Sockets of other
 * network namespaces fold when they end or change owner or scope: late, never lost. */
SEC("iter/tcp")
int ubia_fold_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc); /* NULL for request and time-wait sockets */
	if (!tp)
		return 0;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, tp, 0, 0);
	if (s)
		fold(bpf_get_socket_cookie(tp), s);
	return 0;
}

SEC("iter/udp")
int ubia_fold_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *udp = ctx->udp_sk;
	if (!udp)
		return 0;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, udp, 0, 0);
	if (s)
		fold(bpf_get_socket_cookie(udp), s);
	return 0;
}
