// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/*
 * ubia's kernel meter. Two metering points, as LINUBIA had, plus a check:
 *  - socket layer: payload bytes (the socket's own TCP counters, or per call in the
 *    precise mode);
 *  - wire layer (cgroup_skb on the cgroup v2 root): every IP packet of a local socket,
 *    L3 bytes and on-the-wire packet counts, attributed to the socket's owner;
 *  - interfaces (tc clsact): what each interface carried, split into packets with and
 *    without a local user socket, so attribution can be checked against the total.
 * The wire layer's programs are also where quota enforcement (bpf/quota.bpf.c) sees a
 * packet: a uid with a verdict is handed to its program by a tail call (enforce_quota).
 * All counters are monotonic; user space computes deltas and removes entries only after
 * it has read their final values (or received them through the ring buffer).
 *
 * The per-packet and per-call paths add to counters in the socket's own storage
 * (socks); those are folded into the per-user, per-process and per-flow maps when
 * user space reads (the ubia_census and ubia_fold iterators), when the socket changes
 * owner or scope, and when it ends. Shared hash entries are thus touched once per socket
 * per read, not once per packet from every CPU.
 *
 * Two modes. Default: no program runs per send/recv call; TCP payload is read from the
 * socket's own counters at the fold, other payload from the datagrams at the packet
 * hooks, and a socket's bytes go to the process sending on it or, at a fold, the newest
 * holding it (see other_sender, adopt_holder). Precise
 * (Linux 6.3+): the socket-length tracepoints count each call's payload for the process
 * making it. Everything but those tracepoints needs only Linux 5.10 with BTF.
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
#define SOCK_STREAM 1
#define SOCK_RAW 3
#define RCV_SHUTDOWN 1
#define SEND_SHUTDOWN 2
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define PF_KTHREAD 0x00200000
#define LOOPBACK_IFINDEX 1 /* fixed for every network namespace since Linux 4.0 */
#define TC_ACT_UNSPEC (-1) /* let later tc filters run: we only count */
#define E2BIG 7
#define ENOMEM 12

#include "wire.h"
/* the quota's uid filter, this object's map: checked in the programs that run for every
 * packet anyway, so that users without a verdict pay one array read and no second
 * program at the cgroup hooks (docs/performance.md, "Quota enforcement on users without a
 * quota") */
#include "quota_uids.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the loader: inode of the host's network namespace. Per-interface figures are
 * kept for its interfaces only (ifindex numbers repeat across namespaces): a socket
 * notes at creation whether it lives there. */
const volatile __u32 host_netns_ino = 0;
/* slots of user_slots (the loader sizes the map to match; tests load a small table) */
const volatile __u32 max_users = UBIA_MAX_USERS;
extern unsigned long CONFIG_HZ __kconfig;

/* Set by the loader. precise: payload from the per-call tracepoints (Linux 6.3+), each
 * call's bytes to the process making it; default: TCP payload from the socket's own
 * counters at the fold, other payload from the datagrams. */
const volatile bool precise = false;
/* Set by the loader: peer flows one unconnected socket may have (agent.unconnected_peers). */
const volatile __u32 max_peers = UBIA_MAX_PEERS;

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

/* What the fold's census saw: which processes hold a file of each socket. LRU: entries
 * of sockets gone since are simply pushed out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, UBIA_MAX_CENSUS);
	__type(key, __u64);
	__type(value, struct ubia_holders);
} census SEC(".maps");

/* Unconnected sockets with peer flows whose last close has run: user space ends their
 * peer flows at its next flow read (a BPF program cannot walk a hash map on Linux 5.10)
 * and removes the mark. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, UBIA_MAX_PEER_ENDS);
	__type(key, __u64);
	__type(value, __u8);
} peer_ends SEC(".maps");

/* What the packet programs tail-call, one array per hook (tail calls may not cross
 * attach types on newer kernels), slots as enum ubia_packet_call: the peer-flow programs
 * (ubia_peers_out/in) for unconnected sockets, which the loader places (counted inline,
 * the peer flows made the packet programs' branches too many for the verifier); and
 * quota enforcement's packet programs (bpf/quota.bpf.c), which its loader places while a
 * verdict exists. An empty slot: the call falls through and the packet passes. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, UBIA_PACKET_CALLS);
	__type(key, __u32);
	__type(value, __u32);
} egress_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, UBIA_PACKET_CALLS);
	__type(key, __u32);
	__type(value, __u32);
} ingress_calls SEC(".maps");

/* Which indexes of user_slots are taken (see claim_slot). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, UBIA_MAX_USERS);
	__type(key, __u32);
	__type(value, __u8);
} slot_claims SEC(".maps");

/* The meter's own state (struct ubia_meta): mmap-ed by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ubia_meta);
} meta SEC(".maps");

static __always_inline struct ubia_meta *meta_entry(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&meta, &zero);
}

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

static __always_inline void counters_add(struct ubia_counters *c, const struct ubia_counters *d)
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

/* Claims a free slot of user_slots. Linux 5.10 has no atomic fetch-and-add or exchange
 * for BPF (5.12): the insert into slot_claims (BPF_NOEXIST, atomic per key) decides which
 * CPU gets an index; the loser tries the next one. The count of slots handed out is
 * then raised by a plain atomic add, so user space reads up to it.
 * The count is read once: re-read after a lost race (a CPU that claimed and counted
 * meanwhile) the loser would skip the index after the winner's, leave a hole, and the
 * count would stop one short of the last slot claimed: that user unread until the next
 * new user came. From one base, the claimed indexes stay 0..count-1 without a gap. */
static __always_inline bool claim_slot(struct ubia_meta *m, __u32 *slot)
{
	__u8 one = 1;
	__u32 base = *(volatile __u32 *)&m->user_slots_used;
	for (int i = 0; i < 4; i++) {
		__u32 n = base + i;
		if (n >= max_users)
			return false;
		if (bpf_map_update_elem(&slot_claims, &n, &one, BPF_NOEXIST) == 0) {
			__sync_fetch_and_add(&m->user_slots_used, 1);
			*slot = n;
			return true;
		}
	}
	return false; /* four other CPUs claimed at once: the bytes count as overflow */
}

/* The (uid, scope)'s slot, taken from the free ones when it has none yet. */
static __always_inline struct ubia_counters *user_counters(const struct ubia_user_key *uk)
{
	__u32 *idx = bpf_map_lookup_elem(&user_index, uk);
	if (!idx) {
		__u32 zero = 0, n;
		struct ubia_meta *m = bpf_map_lookup_elem(&meta, &zero);
		if (!m || !claim_slot(m, &n))
			return NULL;
		struct ubia_user_slot *slot = bpf_map_lookup_elem(&user_slots, &n);
		if (!slot)
			return NULL;
		slot->key = *uk;
		/* another CPU may have indexed this user meanwhile: then its slot counts and
		 * this one stays unused (used = 0, never shown). `used` is stored after the key
		 * (in program order; x86 keeps stores in order) */
		if (bpf_map_update_elem(&user_index, uk, &n, BPF_NOEXIST) == 0) {
			asm volatile("" ::: "memory");
			slot->used = 1;
		}
		idx = bpf_map_lookup_elem(&user_index, uk);
		if (!idx)
			return NULL;
	}
	struct ubia_user_slot *slot = bpf_map_lookup_elem(&user_slots, idx);
	return slot ? &slot->c : NULL;
}

static __always_inline void count_user_and_process(const struct ubia_owner *o, __u32 scope,
						    const struct ubia_counters *d)
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
		stat_add(UBIA_STAT_OVERFLOW_RX_BYTES, d->rx_bytes);
		stat_add(UBIA_STAT_OVERFLOW_TX_BYTES, d->tx_bytes);
		stat_add(UBIA_STAT_OVERFLOW_RX_PACKETS, d->rx_packets);
		stat_add(UBIA_STAT_OVERFLOW_TX_PACKETS, d->tx_packets);
		stat_add(UBIA_STAT_OVERFLOW_RX_PAYLOAD, d->rx_payload);
		stat_add(UBIA_STAT_OVERFLOW_TX_PAYLOAD, d->tx_payload);
	}

	struct ubia_proc_key pk = { .uid = o->uid, .tgid = o->tgid, .scope = scope, .cgroup_id = o->cgroup_id };
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

/* ---- owners ---------------------------------------------------------------------- */

/* The calling process as an owner. Only where the program type offers these helpers:
 * socket creation and release (cgroup/sock), tracing programs. */
static __always_inline void owner_from_current(struct ubia_owner *o)
{
	__u64 ug = bpf_get_current_uid_gid();
	o->uid = (__u32)ug;
	o->gid = ug >> 32;
	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

/* A task seen by an iterator as an owner (no helper knows it: it is not current). */
static __always_inline void owner_from_task(struct ubia_owner *o, struct task_struct *t)
{
	o->uid = BPF_CORE_READ(t, cred, uid.val);
	o->gid = BPF_CORE_READ(t, cred, gid.val);
	o->tgid = BPF_CORE_READ(t, tgid);
	o->cgroup_id = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	BPF_CORE_READ_INTO(&o->comm, t, comm);
}

/* When a process started (its leader's start: the census's clock). */
static __always_inline __u64 process_start(struct task_struct *t)
{
	return BPF_CORE_READ(t, group_leader, start_time);
}

/* A new owner for the socket, started at `started`, keeping when the socket was first
 * seen. */
static __always_inline void set_owner(struct ubia_sock *s, const struct ubia_owner *o, __u64 started)
{
	__u64 created = s->owner.created_ns;
	s->owner = *o;
	s->owner.created_ns = created ? created : bpf_ktime_get_boot_ns();
	s->owner_known = 1;
	s->owner_started_ns = started;
	mark_metered(o->tgid);
}

/* ---- flows ----------------------------------------------------------------------- */

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

/* A 4-byte field of a packet hook's socket, loaded where it is: the verifier allows no
 * arithmetic on a socket pointer, which clang would otherwise use to share code between
 * loads of neighbouring fields. */
#define SOCK_FIELD(sk, field) (*(volatile __u32 *)&(sk)->field)

/* Endpoints from the packet hooks' view of the socket (no probe reads per packet). */
/* (The protocol comes from the caller's one read of it: clang otherwise merges that
 * load with this one through a register offset, which the verifier refuses.) */
static __always_inline void fill_endpoints(struct ubia_endpoints *f, struct bpf_sock *sk, __u8 protocol,
					   bool unconnected)
{
	f->protocol = protocol;
	f->unconnected = unconnected;
	f->local_port = SOCK_FIELD(sk, src_port);
	/* network order in the low 16 bits; read whole, as Linux 5.10 requires */
	f->remote_port = bpf_ntohs((__u16)SOCK_FIELD(sk, dst_port));
	__u32 *l = (__u32 *)f->local_addr, *r = (__u32 *)f->remote_addr;
	if (SOCK_FIELD(sk, family) == AF_INET) {
		f->family = 4;
		l[0] = SOCK_FIELD(sk, src_ip4);
		r[0] = SOCK_FIELD(sk, dst_ip4);
	} else {
		f->family = 6;
		l[0] = SOCK_FIELD(sk, src_ip6[0]);
		l[1] = SOCK_FIELD(sk, src_ip6[1]);
		l[2] = SOCK_FIELD(sk, src_ip6[2]);
		l[3] = SOCK_FIELD(sk, src_ip6[3]);
		r[0] = SOCK_FIELD(sk, dst_ip6[0]);
		r[1] = SOCK_FIELD(sk, dst_ip6[1]);
		r[2] = SOCK_FIELD(sk, dst_ip6[2]);
		r[3] = SOCK_FIELD(sk, dst_ip6[3]);
	}
}

static __always_inline void flow_add(struct ubia_flow *f, const struct ubia_owner *o, __u32 scope,
				     const struct ubia_counters *d, __u64 last_ns)
{
	counters_add(&f->c, d);
	if (f->last_ns < last_ns)
		f->last_ns = last_ns;
	/* written only on change: every CPU touching this socket shares the cache line */
	if (f->owner.tgid != o->tgid || f->owner.uid != o->uid || f->owner.cgroup_id != o->cgroup_id)
		f->owner = *o;
	if (f->scope != scope)
		f->scope = scope;
}

/* A connected socket's flow is its socket's whole life, keyed by the socket's cookie (made at the socket's
 * first counted packet, so that every fold finds it): it ends once (end_flow) and is
 * never made again. */
static __always_inline void count_flow(__u64 cookie, const struct ubia_endpoints *ep, struct ubia_sock *s,
				       const struct ubia_owner *o, __u32 scope,
				       const struct ubia_counters *d, __u64 first_ns, __u64 last_ns)
{
	if (s->flow_state == UBIA_FLOW_ENDED)
		return;
	struct ubia_flow *f = bpf_map_lookup_elem(&flows, &cookie);
	if (!f) {
		if (s->flow_state == UBIA_FLOW_OVERFLOW)
			return;
		struct ubia_flow nf = {};
		nf.ep = *ep;
		nf.owner = *o;
		nf.scope = scope;
		nf.released = s->released;
		nf.first_ns = first_ns;
		nf.sock_cookie = cookie;
		long err = bpf_map_update_elem(&flows, &cookie, &nf, BPF_NOEXIST);
		if (err == -E2BIG || err == -ENOMEM) {
			/* the per-user and per-process totals still have these bytes */
			stat_add(UBIA_STAT_FLOW_OVERFLOW, 1);
			s->flow_state = UBIA_FLOW_OVERFLOW;
			return;
		}
		f = bpf_map_lookup_elem(&flows, &cookie);
		if (!f)
			return;
		s->flow_state = UBIA_FLOW_TRACKED;
	} else if (f->ep.family == 0 && ep->family != 0) {
		/* counted (precise mode: a call) before its first packet told the endpoints */
		f->ep = *ep;
	}
	flow_add(f, o, scope, d, last_ns);
}

static __always_inline void count_pending(struct ubia_sock *s, const struct ubia_counters *d)
{
	__u64 now = bpf_jiffies64();
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

static __always_inline bool counters_zero(const struct ubia_counters *c)
{
	return !(c->rx_bytes | c->tx_bytes | c->rx_packets | c->tx_packets | c->rx_payload | c->tx_payload);
}

/* Takes what a pending counter holds: subtracts exactly what it read (an atomic add of
 * the negative, which Linux 5.10 has; exchange is 5.12), so what other CPUs add meanwhile
 * stays for the next fold. */
static __always_inline __u64 take(__u64 *counter)
{
	__u64 v = *(volatile __u64 *)counter;
	if (v)
		__sync_fetch_and_add(counter, -v);
	return v;
}

/* Moves what a socket counted since the last fold (its pending counts, and the TCP
 * payload `tcp` the caller took from the socket's own counters) to its owner's user,
 * process and flow entries. Every increment lands in exactly one fold, whichever CPUs
 * count meanwhile. Two folds of one socket at once (the agent's fold meeting the
 * socket's last close on another CPU, a window of a few hundred nanoseconds) would both
 * take what they read: that socket's unfolded bytes would count twice. */
static __always_inline void fold(__u64 cookie, struct ubia_sock *s, const struct ubia_counters *tcp)
{
	struct ubia_counters d = *tcp;
	struct ubia_counters *p = &s->pending;
	/* most sockets are idle between two reads: plain loads spare them the atomics */
	if (!counters_zero(p)) {
		d.rx_bytes = take(&p->rx_bytes);
		d.tx_bytes = take(&p->tx_bytes);
		d.rx_packets = take(&p->rx_packets);
		d.tx_packets = take(&p->tx_packets);
		d.rx_payload += take(&p->rx_payload);
		d.tx_payload += take(&p->tx_payload);
	}
	if (counters_zero(&d))
		return;
	count_user_and_process(&s->owner, s->scope, &d);
	if (s->ep.unconnected)
		return; /* its flows are its peers', counted at the packets */
	__u64 now_ns = bpf_ktime_get_boot_ns();
	__u64 now_jiffies = bpf_jiffies64();
	count_flow(cookie, &s->ep, s, &s->owner, s->scope, &d,
		   jiffies_boot_ns(s->first_jiffies ? s->first_jiffies : now_jiffies, now_jiffies, now_ns),
		   jiffies_boot_ns(s->last_jiffies ? s->last_jiffies : now_jiffies, now_jiffies, now_ns));
}

/* ---- TCP payload from the socket's own counters ------------------------------------ */

/* What the process took from and handed to a TCP socket so far, exact at the byte:
 *  taken  = bytes_received - (rcv_nxt - copied_seq)   [received less still unread]
 *           - 1 once the peer's FIN is consumed (it moved copied_seq and counted in
 *             bytes_received, but carries no byte);
 *  handed = bytes_acked + (write_seq - snd_una)        [acked plus written, not yet acked]
 *           - 1 for our SYN (active opens: an accepted socket's bytes_acked starts after
 *             it) - 1 for our FIN (write_seq moves past it at shutdown/close).
 * MSG_PEEK moves no copied_seq; splice and sendfile move write_seq like write() does.
 * The fields change under us (no socket lock here): each pair is read in the order the
 * kernel writes the other way round (bytes_* before the sequence they follow), so a
 * torn read can only count less, never more, and the fold keeps the highest figure:
 * what a torn read left out the next fold counts. `btf`: sk is the kernel's BTF type
 * (the fold's iterators), read by direct loads (volatile: in this order); else (a
 * cgroup/sock context at the last close) by probed reads, a helper call each (~30 ns
 * here, the most of an idle TCP socket's fold). A constant at every call: one of the two
 * is compiled. */
#define TCP_FIELD(tp, btf, field) ((btf) ? *(volatile typeof((tp)->field) *)&(tp)->field : BPF_CORE_READ(tp, field))

static __always_inline void tcp_payload(void *sk, bool btf, const struct ubia_sock *s, __s64 *taken, __s64 *handed)
{
	struct tcp_sock *tp = sk;
	__u64 received = TCP_FIELD(tp, btf, bytes_received);
	__u32 rcv_nxt = TCP_FIELD(tp, btf, rcv_nxt);
	__u32 copied = TCP_FIELD(tp, btf, copied_seq);
	__u64 acked = TCP_FIELD(tp, btf, bytes_acked);
	__u32 snd_una = TCP_FIELD(tp, btf, snd_una);
	__u8 shutdown = BPF_CORE_READ_BITFIELD_PROBED(&tp->inet_conn.icsk_inet.sk, sk_shutdown);
	__u32 write_seq = TCP_FIELD(tp, btf, write_seq);

	__s32 unread = (__s32)(rcv_nxt - copied);
	*taken = (__s64)received - unread;
	if ((shutdown & RCV_SHUTDOWN) && unread == 0)
		*taken -= 1; /* the FIN, consumed */
	*handed = (__s64)acked + (__s32)(write_seq - snd_una);
	if (!s->passive && *handed > 0)
		*handed -= 1; /* our SYN */
	if (shutdown & SEND_SHUTDOWN)
		*handed -= 1; /* our FIN */
}

/* The TCP payload since the last fold, into d (the socket's highest figures kept). */
static __always_inline void tcp_payload_delta(void *sk, bool btf, struct ubia_sock *s, struct ubia_counters *d)
{
	__s64 taken, handed;
	tcp_payload(sk, btf, s, &taken, &handed);
	if (s->tcp_baseline) {
		/* predates the agent: what it moved before is not ours to count */
		s->tcp_baseline = 0;
		s->tcp_rx_folded = taken > 0 ? taken : 0;
		s->tcp_tx_folded = handed > 0 ? handed : 0;
		return;
	}
	if (taken > (__s64)s->tcp_rx_folded) {
		d->rx_payload = taken - s->tcp_rx_folded;
		s->tcp_rx_folded = taken;
	}
	if (handed > (__s64)s->tcp_tx_folded) {
		d->tx_payload = handed - s->tcp_tx_folded;
		s->tcp_tx_folded = handed;
	}
}

/* ---- socket owner ---------------------------------------------------------------- */

/* Is this socket of the host's network namespace? (Probed: the context is a struct sock.) */
static __always_inline bool in_host_netns(void *sk)
{
	return BPF_CORE_READ((struct sock *)sk, __sk_common.skc_net.net, ns.inum) == host_netns_ino;
}

SEC("cgroup/sock_create")
int ubia_sock_create(struct bpf_sock *ctx)
{
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s)
		return 1;
	struct ubia_owner o = {};
	owner_from_current(&o);
	set_owner(s, &o, process_start((struct task_struct *)bpf_get_current_task()));
	s->host_netns = in_host_netns(ctx);
	return 1;
}

/* The last close (cgroup/sock_release, before TCP sends its FIN): the TCP payload is
 * final now (nobody can read or write any more); everything goes to the owner. Not the
 * closing process: the last to close is often not the one that did the I/O (sshd's
 * monitor outlives the session child). */
static __always_inline void fold_at_release(struct bpf_sock *ctx, __u64 cookie, struct ubia_sock *s)
{
	struct ubia_counters tcp = {};
	if (!precise && ctx->protocol == IPPROTO_TCP && ctx->type == SOCK_STREAM && ctx->state != BPF_TCP_LISTEN)
		tcp_payload_delta(ctx, false, s, &tcp);
	/* the owner closing it from another cgroup than the last fold saw: it moved since,
	 * and what this fold books was counted there */
	if (s->owner_known && s->owner.tgid == bpf_get_current_pid_tgid() >> 32)
		s->owner.cgroup_id = bpf_get_current_cgroup_id();
	s->released = 1;
	fold(cookie, s, &tcp);
}

/* ---- socket layer: payload, per call (precise mode) -------------------------------- */

/* Is the current task the socket's owner? The cheap uid/tgid check spares the full owner
 * look-up on every call. */
static __always_inline bool current_owns(const struct ubia_sock *s)
{
	/* direct loads through the task's BTF type: the uid/gid helper costs ~20 ns here */
	struct task_struct *t = bpf_get_current_task_btf();
	/* and in the same cgroup: a process moved to another one (systemd, Slurm) books its
	 * calls from then on there */
	return s->owner_known && s->owner.tgid == t->tgid && s->owner.uid == t->cred->uid.val &&
	       s->owner.cgroup_id == bpf_get_current_cgroup_id();
}

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

	struct ubia_counters d = {};
	if (rx)
		d.rx_payload = ret;
	else
		d.tx_payload = ret;
	__u32 scope = is_loopback_addr(sk, family) ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	struct ubia_owner cur = {};
	if (!s) {
		/* the totals still have the bytes; the flow (its endpoints are the packet
		 * hooks' to take) does not */
		owner_from_current(&cur);
		count_user_and_process(&cur, scope, &d);
		return;
	}
	/* the flow's key: made now, before anything of the socket is pending for a fold */
	__u64 cookie = bpf_get_socket_cookie(sk);
	/* the process doing the I/O owns the socket from now on; what was counted so far
	 * stays with the previous owner */
	if (!current_owns(s)) {
		struct ubia_counters none = {};
		fold(cookie, s, &none);
		owner_from_current(&cur);
		set_owner(s, &cur, process_start(bpf_get_current_task_btf()));
	}
	if (!s->scope_known) {
		/* until its first packet tells the interface, the address tells the scope */
		s->scope = scope;
		s->scope_known = 1;
	}
	count_pending(s, &d);
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

/* A datagram's payload: its length less the IP and UDP headers (a GSO datagram has one
 * set of headers for all its segments). */
static __always_inline __u64 datagram_payload(struct __sk_buff *skb)
{
	__u8 proto = 0;
	__u32 hdr = header_bytes(skb, 0, &proto);
	return skb->len > hdr ? skb->len - hdr : 0;
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

/* The socket a packet counts for, or NULL when no user socket is behind it: time-wait
 * sockets and none at all. A request socket (SYN-ACK) counts for its listener. Only
 * helpers of Linux 5.10's cgroup_skb and tc programs. */
static __always_inline struct bpf_sock *packet_sock(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return NULL;
	struct bpf_sock *full = bpf_sk_fullsock(sk);
	return full ? full : bpf_get_listener_sock(sk);
}

/* The kernel's own sockets send its replies (TCP resets, ICMP, neighbour discovery):
 * raw control sockets, made without cgroup/sock_create, so without storage. */
static __always_inline bool kernel_control_sock(struct bpf_sock *sk)
{
	return sk->type == SOCK_RAW && !bpf_sk_storage_get(&socks, sk, 0, 0);
}

/* A packet's wire figures as counters of its socket. */
static __always_inline struct ubia_counters wire_counts(bool egress, __u64 bytes, __u64 packets)
{
	struct ubia_counters d = {};
	if (egress) {
		d.tx_bytes = bytes;
		d.tx_packets = packets;
	} else {
		d.rx_bytes = bytes;
		d.rx_packets = packets;
	}
	return d;
}

static __always_inline void count_unattributed(bool egress, __u64 bytes, __u64 packets)
{
	stat_add(egress ? UBIA_STAT_UNATTR_TX_BYTES : UBIA_STAT_UNATTR_RX_BYTES, bytes);
	stat_add(egress ? UBIA_STAT_UNATTR_TX_PACKETS : UBIA_STAT_UNATTR_RX_PACKETS, packets);
}

/* Storage for a socket that has none: one that predates the agent (its uid is all we
 * know until a process holding it is seen), or a kernel socket of a tunnel or a network
 * file system (its uid: root). */
static __always_inline struct ubia_sock *adopt_socket(struct __sk_buff *skb, struct bpf_sock *sk, bool listener)
{
	struct ubia_sock *s = bpf_sk_storage_get(&socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!s || s->owner.created_ns)
		return s;
	s->owner.uid = bpf_get_socket_uid(skb);
	s->owner.created_ns = bpf_ktime_get_boot_ns();
	/* what it moved before the agent came is not ours to count; a listener's clones
	 * start afresh */
	s->tcp_baseline = !listener;
	s->host_netns = 1; /* most likely; its interface figures may land on another's ifindex */
	return s;
}

/* Default mode: is this packet sent from inside a process's send (or receive: ACKs)
 * call, by another process than the owner, or by the owner under another uid? TCP
 * transmits from process context only with the socket lock owned by the caller (from
 * softirq only when no process holds it); UDP and the rest send synchronously from
 * sendmsg. The current task is reached through bpf_get_current_task (Linux 5.8 for
 * packet programs): bpf_get_current_uid_gid is refused there before 6.14. The uid
 * counts: a fold may have given the socket to a root daemon's child before it
 * setuid()s to the user it serves (inetd, sshd), and its sends after must be the
 * user's. */
static __always_inline struct task_struct *other_sender(struct bpf_sock *sk, const struct ubia_sock *s)
{
	if (sk->protocol == IPPROTO_TCP) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
		if (!tp || !tp->inet_conn.icsk_inet.sk.sk_lock.owned)
			return NULL;
	}
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = BPF_CORE_READ(t, tgid);
	if (s->owner_known && tgid == s->owner.tgid && BPF_CORE_READ(t, cred, uid.val) == s->owner.uid)
		return NULL;
	if (BPF_CORE_READ(t, flags) & PF_KTHREAD)
		return NULL;
	/* the agent's own fold: the TCP iterator locks each socket, and what the socket's
	 * backlog sends when the iterator unlocks it leaves in the agent's context */
	struct ubia_meta *m = meta_entry();
	if (m && tgid == m->reader_tgid)
		return NULL;
	return t;
}

/* The sender takes the socket over, with everything not yet folded: what it wrote
 * before this packet is already in the socket's counters (a write() moves write_seq
 * before its first segment leaves), so the previous owner must not get it. */
static __always_inline void sender_takes_over(struct ubia_sock *s, struct task_struct *t)
{
	struct ubia_owner o = {};
	owner_from_task(&o, t);
	set_owner(s, &o, process_start(t));
}

/* A packet of a socket its process has closed (TCP still sending): nothing may stay
 * pending in storage that dies with the socket. Its TCP flow has ended at TCP_CLOSE:
 * what the socket sends after it (the reset of a close with unread data) is in no flow. */
static __always_inline void count_released(struct bpf_sock *sk, __u8 protocol, struct ubia_sock *s, __u64 cookie,
					   __u32 scope, const struct ubia_counters *d)
{
	count_user_and_process(&s->owner, scope, d);
	if (protocol == IPPROTO_TCP && sk->state == BPF_TCP_CLOSE)
		return;
	struct ubia_endpoints ep = s->ep;
	if (ep.family == 0)
		fill_endpoints(&ep, sk, protocol, false);
	__u64 now = bpf_ktime_get_boot_ns();
	count_flow(cookie, &ep, s, &s->owner, scope, d, now, now);
}

/* Is the socket unconnected: not TCP and no remote address (dst_port alone would call a
 * connected ping or raw socket unconnected)? Its flows are then one per peer. */
static __always_inline bool unconnected(struct bpf_sock *sk, __u8 protocol)
{
	if (protocol == IPPROTO_TCP)
		return false;
	if (SOCK_FIELD(sk, family) == AF_INET)
		return SOCK_FIELD(sk, dst_ip4) == 0;
	return (SOCK_FIELD(sk, dst_ip6[0]) | SOCK_FIELD(sk, dst_ip6[1]) | SOCK_FIELD(sk, dst_ip6[2]) |
		SOCK_FIELD(sk, dst_ip6[3])) == 0;
}

/* A datagram's endpoints from its headers (the cgroup_skb data starts at the IP header):
 * an unconnected socket's peer is in the packet, not in the socket, and so is the local
 * address it was sent from or to (the socket's may be the wildcard). IPv4 fragments
 * after the first carry no ports. */
static __always_inline bool packet_endpoints(struct __sk_buff *skb, bool egress, struct ubia_endpoints *ep)
{
	__u32 l4off;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return false;
		ep->family = 4;
		ep->protocol = ip.protocol;
		__builtin_memcpy(ep->local_addr, egress ? &ip.saddr : &ip.daddr, 4);
		__builtin_memcpy(ep->remote_addr, egress ? &ip.daddr : &ip.saddr, 4);
		if (ip.frag_off & bpf_htons(0x1fff))
			return true;
		l4off = ip.ihl * 4;
	} else {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)))
			return false;
		ep->family = 6;
		ep->protocol = ip6.nexthdr;
		__builtin_memcpy(ep->local_addr, egress ? &ip6.saddr : &ip6.daddr, 16);
		__builtin_memcpy(ep->remote_addr, egress ? &ip6.daddr : &ip6.saddr, 16);
		l4off = sizeof(ip6);
	}
	__be16 ports[2];
	if ((ep->protocol == IPPROTO_UDP || ep->protocol == IPPROTO_UDPLITE) &&
	    !bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports))) {
		ep->local_port = bpf_ntohs(egress ? ports[0] : ports[1]);
		ep->remote_port = bpf_ntohs(egress ? ports[1] : ports[0]);
	}
	return true;
}

static __always_inline __u64 mix64(__u64 h)
{
	/* MurmurHash3's 64-bit finaliser */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* A peer flow's key: a digest of the socket's cookie and the peer's address, port and
 * protocol, top bit set (cookies count up from 1 and never reach it). Two peers meet in
 * one key with a chance of 2^-63 per pair. */
static __always_inline __u64 peer_key(__u64 cookie, const struct ubia_endpoints *ep)
{
	__u32 r[4];
	__builtin_memcpy(r, ep->remote_addr, sizeof(r));
	__u64 h = mix64(cookie);
	h = mix64(h ^ ((__u64)r[0] << 32 | r[1]));
	h = mix64(h ^ ((__u64)r[2] << 32 | r[3]));
	h = mix64(h ^ ((__u64)ep->family << 32 | (__u64)ep->protocol << 16 | ep->remote_port));
	return h | (1ULL << 63);
}

/* An unconnected socket's datagram, straight into the flow of its peer (remote address
 * and port): the pending counts cannot tell peers apart (the user and process totals
 * still come from them). One flow per peer up to max_peers; datagrams of peers beyond
 * count in no flow (UBIA_STAT_PEER_OVERFLOW). The flow's payload is the datagram's in
 * both modes. */
static __always_inline void count_peer(struct __sk_buff *skb, struct ubia_sock *s, __u64 cookie, __u32 scope,
				       const struct ubia_counters *d, __u64 payload, bool egress)
{
	struct ubia_endpoints ep = {};
	if (!packet_endpoints(skb, egress, &ep))
		return;
	struct ubia_counters fc = *d;
	if (egress)
		fc.tx_payload = payload;
	else
		fc.rx_payload = payload;
	__u64 key = peer_key(cookie, &ep);
	__u64 now = bpf_ktime_get_boot_ns();
	struct ubia_flow *f = bpf_map_lookup_elem(&flows, &key);
	if (!f) {
		if (s->peers >= max_peers) {
			stat_add(UBIA_STAT_PEER_OVERFLOW, 1);
			return;
		}
		struct ubia_flow nf = {};
		nf.ep = ep;
		nf.owner = s->owner;
		nf.scope = scope;
		nf.first_ns = now;
		nf.sock_cookie = cookie;
		long err = bpf_map_update_elem(&flows, &key, &nf, BPF_NOEXIST);
		if (err == -E2BIG || err == -ENOMEM) {
			stat_add(UBIA_STAT_FLOW_OVERFLOW, 1);
			return;
		}
		if (err == 0)
			__sync_fetch_and_add(&s->peers, 1);
		f = bpf_map_lookup_elem(&flows, &key);
		if (!f)
			return;
	}
	flow_add(f, &s->owner, scope, &fc, now);
}

/* A packet of an open socket: into its pending counts, for the owner the default mode's
 * rule names. An unconnected socket's (s->ep.unconnected) the caller then counts into
 * its peer's flow too (count_peer, through a tail call). */
static __always_inline void count_open(struct bpf_sock *sk, __u8 protocol, struct ubia_sock *s, __u64 cookie,
				       __u32 scope, const struct ubia_counters *d, bool egress)
{
	if (egress && !precise) {
		struct task_struct *t = other_sender(sk, s);
		if (t)
			sender_takes_over(s, t);
	}
	/* Rare changes fold what is pending first, so that it is counted as it was: a new
	 * scope (a route moved), or connect() and connect(AF_UNSPEC) undoing it (counted in
	 * the socket's flow, or in its peers'); the endpoints are then taken again. Nothing
	 * is kept in a register across the fold: each flag live past it doubles the states
	 * the verifier walks. */
	if ((s->scope_known && s->scope != scope) ||
	    (s->ep.family && s->ep.unconnected != unconnected(sk, protocol))) {
		struct ubia_counters none = {};
		fold(cookie, s, &none);
		s->ep.family = 0;
	}
	if (!s->scope_known || s->scope != scope) {
		s->scope = scope;
		s->scope_known = 1;
	}
	if (!s->ep.family) /* at the first packet: a closing socket loses its port */
		fill_endpoints(&s->ep, sk, protocol, unconnected(sk, protocol));
	count_pending(s, d);
}

static __always_inline void *packet_calls(bool egress)
{
	return egress ? (void *)&egress_calls : (void *)&ingress_calls;
}

/* The packet's fate: quota enforcement's program decides it when the socket's uid
 * (sk_uid: whose traffic a quota limits, see bpf/quota.bpf.c) has a verdict; otherwise,
 * or with no quota program in place, it passes. Counted before: what a quota drops was
 * sent or received by the user all the same. */
static __always_inline int enforce_quota(struct __sk_buff *skb, bool egress, __u32 sk_uid)
{
	if (quota_uid_marked(sk_uid))
		bpf_tail_call(skb, packet_calls(egress), UBIA_CALL_QUOTA);
	return 1;
}

/* The socket's uid, kept in its storage: bpf_get_socket_uid costs ≈ 14 ns a call here
 * (BPF_PROG_TEST_RUN: ubia_egress 116 → 132 ns with one call a packet), a storage read
 * nothing. A socket's sk_uid is set when it is made and never changes. */
static __always_inline __u32 socket_uid(struct __sk_buff *skb, struct ubia_sock *s)
{
	if (!s->sk_uid_known) {
		s->sk_uid = bpf_get_socket_uid(skb);
		s->sk_uid_known = 1;
	}
	return s->sk_uid;
}

static __always_inline int count_wire(struct __sk_buff *skb, bool egress)
{
	__u16 family = skb->family;
	if (family != AF_INET && family != AF_INET6)
		return 1;
	__u64 bytes, packets;
	wire_size(skb, 0, skb->len, &bytes, &packets);

	struct bpf_sock *sk = packet_sock(skb);
	if (!sk || kernel_control_sock(sk)) {
		count_unattributed(egress, bytes, packets);
		return 1;
	}
	bool listener = sk->state == BPF_TCP_LISTEN;
	struct ubia_sock *s = adopt_socket(skb, sk, listener);
	if (!s) {
		/* no memory for storage: the socket's uid, straight into the totals */
		struct ubia_owner fallback = { .uid = bpf_get_socket_uid(skb) };
		struct ubia_counters d = wire_counts(egress, bytes, packets);
		count_user_and_process(&fallback, UBIA_SCOPE_EXTERNAL, &d);
		return enforce_quota(skb, egress, fallback.uid);
	}

	__u32 ifindex = skb->ifindex;
	__u32 scope = ifindex == LOOPBACK_IFINDEX ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL;
	struct ubia_counters d = wire_counts(egress, bytes, packets);
	/* payload of what is not TCP: the datagram's. TCP's comes from the socket at the
	 * fold; in the precise mode every protocol's comes from the calls. */
	__u8 protocol = sk->protocol;
	if (!precise && protocol != IPPROTO_TCP) {
		__u64 payload = datagram_payload(skb);
		if (egress)
			d.tx_payload = payload;
		else
			d.rx_payload = payload;
	}

	if (listener) {
		/* handshakes count straight for the listener's owner, in no flow: a listener
		 * holds no pending counts for its accepted sockets to inherit */
		if (!s->passive)
			s->passive = 1; /* its clones are passive opens */
		count_user_and_process(&s->owner, scope, &d);
	} else {
		/* the flow's key: made at the first packet, before anything is pending for a
		 * fold (the fold reads it from the socket: it cannot make one on Linux 5.10) */
		__u64 cookie = bpf_get_socket_cookie(skb);
		if (s->released)
			count_released(sk, protocol, s, cookie, scope, &d);
		else
			count_open(sk, protocol, s, cookie, scope, &d, egress);
	}
	if (ifindex != LOOPBACK_IFINDEX && s->host_netns) {
		struct ubia_iface *ifc = iface_entry(ifindex);
		if (ifc)
			wire_add(&ifc->attributed, egress, bytes, packets);
	}
	/* read back from storage, not carried in a register: a flag live to here would
	 * double the states the verifier walks */
	if (s->ep.unconnected)
		bpf_tail_call(skb, packet_calls(egress), UBIA_CALL_PEERS);
	return enforce_quota(skb, egress, socket_uid(skb, s));
}

/* The peer-flow programs: an unconnected socket's packet into its peer's flow (the
 * packet programs counted everything else and tail-call these). */
static __always_inline int count_peer_packet(struct __sk_buff *skb, bool egress)
{
	struct bpf_sock *sk = packet_sock(skb);
	if (!sk)
		return 1;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, sk, 0, 0);
	if (!s)
		return enforce_quota(skb, egress, bpf_get_socket_uid(skb));
	if (s->released)
		return enforce_quota(skb, egress, socket_uid(skb, s));
	__u64 bytes, packets;
	wire_size(skb, 0, skb->len, &bytes, &packets);
	struct ubia_counters d = wire_counts(egress, bytes, packets);
	__u32 scope = skb->ifindex == LOOPBACK_IFINDEX ? UBIA_SCOPE_LOOPBACK : UBIA_SCOPE_EXTERNAL;
	count_peer(skb, s, bpf_get_socket_cookie(skb), scope, &d, datagram_payload(skb), egress);
	return enforce_quota(skb, egress, socket_uid(skb, s));
}

SEC("cgroup_skb/egress")
int ubia_peers_out(struct __sk_buff *skb)
{
	return count_peer_packet(skb, true);
}

SEC("cgroup_skb/ingress")
int ubia_peers_in(struct __sk_buff *skb)
{
	return count_peer_packet(skb, false);
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
	if (egress) {
		struct bpf_sock *sk = packet_sock(skb);
		attributable = sk && !kernel_control_sock(sk);
	} else {
		attributable = ingress_has_socket(skb, v4);
	}

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

/* A TCP flow ends once, at the later of two moments: its socket's last close (its
 * process can read and write no more) and TCP_CLOSE (the kernel sends nothing more of
 * it). A socket can reach CLOSE while its process still holds it (the peer's FIN after
 * our shutdown(SHUT_WR), a reset), and the process may still read what had arrived:
 * the last close ends such a flow. One that is closed first (the kernel still sending
 * what was written) ends here; the last close marks its flow entry released. No socket
 * storage here: tracing programs may use it from Linux 5.11 on only. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(ubia_sock_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	if (newstate != TCP_CLOSE || sk->sk_protocol != IPPROTO_TCP)
		return 0;
	__u16 family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	/* the packet hooks made the cookie at the first packet: a socket without one never
	 * counted a packet, so it has no flow */
	__u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		return 0;
	struct ubia_flow *f = bpf_map_lookup_elem(&flows, &cookie);
	if (f && f->released)
		end_flow(cookie, NULL);
	return 0;
}

/* The last close: the socket's final fold (see fold_at_release). Everything but TCP ends
 * here; TCP when it is CLOSE already, else at TCP_CLOSE (ubia_sock_set_state). */
SEC("cgroup/sock_release")
int ubia_sock_release(struct bpf_sock *ctx)
{
	if (ctx->family != AF_INET && ctx->family != AF_INET6)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct ubia_sock *s = bpf_sk_storage_get(&socks, ctx, 0, 0);
	if (s)
		fold_at_release(ctx, cookie, s);
	if (s && s->peers) {
		/* its peer flows: final now, ended by user space (it can walk the flow table) */
		__u8 one = 1;
		if (bpf_map_update_elem(&peer_ends, &cookie, &one, BPF_ANY))
			stat_add(UBIA_STAT_EVENTS_DROPPED, 1); /* they stay listed as active */
	}
	if (ctx->protocol == IPPROTO_TCP && ctx->state != BPF_TCP_CLOSE) {
		struct ubia_flow *f = bpf_map_lookup_elem(&flows, &cookie);
		if (f)
			f->released = 1;
		/* reached CLOSE on another CPU before the mark: then nobody else ends it (both
		 * may, within a few nanoseconds: the second finds the entry gone) */
		asm volatile("" ::: "memory");
		if (ctx->state != BPF_TCP_CLOSE)
			return 1;
	}
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

/* ---- the fold: census, then every socket's storage ---------------------------------- */

/* A fold begins with its first pass's first call: the census's, or in the precise mode
 * (no census) the fold's own. */
static __always_inline void begin_fold(struct bpf_iter_meta *it, bool first_pass)
{
	struct ubia_meta *m;
	if (first_pass && it->seq_num == 0 && (m = meta_entry()))
		__sync_fetch_and_add(&m->fold_gen, 1);
}

/* First pass of a fold (default mode): which processes hold a file of each socket. Run
 * by user space (reading an iterator fd) right before ubia_fold. Sockets are told by
 * their inode type and reached by probed reads (bpf_sock_from_file is Linux 5.11). The
 * file and task are the iterator's BTF pointers: their fields are direct loads, a probed
 * read (a helper call) only where the type ends (private_data). A holder seen again (same
 * process and uid as at the last fold, the common case) only has its entry's fold
 * generation moved on, in place: the owner's reads and the LRU map's update (a new node
 * per update) made most of the census's cost, ~0.7 µs per socket file. Its gid, comm and
 * cgroup stay as the census first saw them (a holder's identity is its process, and the
 * uid, which decides the user, is compared). */
SEC("iter/task_file")
int ubia_census(struct bpf_iter__task_file *ctx)
{
	begin_fold(ctx->meta, true);
	struct ubia_meta *m = meta_entry();
	struct file *file = ctx->file;
	struct task_struct *task = ctx->task;
	if (!m || !file || !task)
		return 0;
	if ((file->f_inode->i_mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct sock *sk = BPF_CORE_READ((struct socket *)file->private_data, sk);
	if (!sk)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;

	__u64 key = (__u64)sk;
	__u32 gen = m->fold_gen;
	__u64 started = task->group_leader->start_time;
	__u32 tgid = task->tgid;
	__u32 uid = task->cred->uid.val;
	struct ubia_holders *h = bpf_map_lookup_elem(&census, &key);
	if (h && h->gen == gen && h->started_ns >= started)
		return 0; /* a newer holder (or this one, through another thread or descriptor) */
	if (h && h->started_ns == started && h->newest.tgid == tgid && h->newest.uid == uid) {
		h->gen = gen; /* the holder of the last fold */
		return 0;
	}
	struct ubia_holders seen = { .gen = gen, .started_ns = started };
	owner_from_task(&seen.newest, task);
	if (h)
		*h = seen;
	else
		bpf_map_update_elem(&census, &key, &seen, BPF_ANY);
	return 0;
}

/* The default mode's owner rule at a fold (with other_sender at the packet hooks): a
 * socket goes to the newest process holding a file of it (the latest started), with
 * everything not yet folded. That is the process serving the connection in the inetd
 * and sshd patterns (a child of the accepting daemon), the service in socket activation,
 * the receiver of a descriptor passed over SCM_RIGHTS, and a child that inherited it; no
 * race with when the others close their copies. The owner seen under another uid (the
 * inetd child after its setuid()) takes it over again as that uid. A holder older than
 * the owner does not take it: the owner has closed its copy or ended (sshd's monitor
 * outlives the session child that did the I/O), and what is pending is the owner's; an
 * older holder that sends or reads takes it at the packet hooks. A socket nobody holds
 * (closed but still sending, not yet accepted, in flight over SCM_RIGHTS) stays with its
 * owner. Only sockets of the census's map capacity are followed. */
static __always_inline void adopt_holder(struct sock *sk, struct ubia_sock *s, __u32 gen)
{
	__u64 key = (__u64)sk;
	struct ubia_holders *h = bpf_map_lookup_elem(&census, &key);
	if (!h || h->gen != gen)
		return;
	bool same_process = s->owner_known && h->newest.tgid == s->owner.tgid;
	if (!same_process && h->started_ns < s->owner_started_ns)
		return;
	if (!same_process || h->newest.uid != s->owner.uid)
		set_owner(s, &h->newest, h->started_ns);
	else if (h->newest.cgroup_id != s->owner.cgroup_id)
		/* the owner moved to another cgroup (systemd, Slurm, a container runtime):
		 * what this fold books goes to the new one, what earlier folds booked stays
		 * with the old; comm stays as the owner took the socket */
		s->owner.cgroup_id = h->newest.cgroup_id;
}

/* Second pass of a fold: the owner rule, the TCP payload from the socket's counters,
 * then the pending counts into the totals. Once per socket per fold. */
static __always_inline void fold_socket(struct sock *sk, struct ubia_sock *s)
{
	struct ubia_meta *m = meta_entry();
	if (!m || s->fold_gen == m->fold_gen)
		return;
	s->fold_gen = m->fold_gen;
	/* direct loads: every iterator hands over a BTF socket pointer (a probed read is a
	 * helper call, ~30 ns here) */
	bool tcp = sk->sk_protocol == IPPROTO_TCP && sk->sk_type == SOCK_STREAM;
	if (tcp && sk->__sk_common.skc_state == TCP_LISTEN)
		return; /* a listener holds nothing to fold, and its clones copy it */
	struct ubia_counters payload = {};
	if (!precise) {
		adopt_holder(sk, s, m->fold_gen);
		/* the TCP socket's own type, for the verifier (udp_sock in ubia_fold_udp) */
		struct tcp_sock *tp = tcp && !s->released ? bpf_skc_to_tcp_sock(sk) : NULL;
		if (tp)
			tcp_payload_delta(tp, true, s, &payload);
	}
	fold(sk->__sk_common.skc_cookie.counter, s, &payload);
}

/* The fold's second pass through the socket storage map (Linux 5.9+; tracing programs
 * may not look socket storage up before 5.11, but this iterator hands the value over):
 * every socket with storage, with a file or not, in any network namespace. */
SEC("iter/bpf_sk_storage_map")
int ubia_fold_storage(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	begin_fold(ctx->meta, precise);
	struct sock *sk = ctx->sk;
	struct ubia_sock *s = ctx->value;
	if (sk && s)
		fold_socket(sk, s);
	return 0;
}

/* The same through the TCP and UDP socket tables (Linux 5.9+), where the kernel refuses
 * map iterators (EPERM, as this project's 6.18 does): the sockets of the agent's network
 * namespace; others fold at their last close. (A walk of the processes' files would
 * reach every namespace, but 6.18 hands it only an untrusted sock->sk, which socket
 * storage refuses.) */
SEC("iter/tcp")
int ubia_fold_tcp(struct bpf_iter__tcp *ctx)
{
	begin_fold(ctx->meta, precise);
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc); /* no request or time-wait sockets */
	if (!tp)
		return 0;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, tp, 0, 0);
	if (s)
		fold_socket((struct sock *)tp, s);
	return 0;
}

SEC("iter/udp")
int ubia_fold_udp(struct bpf_iter__udp *ctx)
{
	struct udp_sock *u = ctx->udp_sk;
	if (!u)
		return 0;
	struct ubia_sock *s = bpf_sk_storage_get(&socks, u, 0, 0);
	if (s)
		fold_socket((struct sock *)u, s);
	return 0;
}
