/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0) */
/*
 * Every struct that crosses the kernel/user boundary: map keys, map values and ring
 * buffer events. Included by bpf/ubia.bpf.c and by the native addon; nothing here may
 * be defined a second time anywhere else (the addon turns these into JS objects).
 *
 * Bump UBIA_ABI_VERSION whenever a layout, a map's size or a map's meaning changes: an
 * agent finding pinned maps of another ABI version does not re-use them.
 */
#ifndef UBIA_H
#define UBIA_H

#define UBIA_ABI_VERSION 10

#ifndef __VMLINUX_H__
#include <linux/bpf.h> /* user space: struct bpf_spin_lock */
#endif

#define UBIA_COMM_LEN 16

/* map sizes; the flow map's size can be changed at load time */
#define UBIA_MAX_USERS 65536
#define UBIA_MAX_PROCS 65536
#define UBIA_MAX_FLOWS 65536
#define UBIA_MAX_IFACES 4096
/* sockets whose holders one fold can tell (the census); more are folded for their owner */
/* unconnected sockets with peer flows whose last close user space has not yet seen */
#define UBIA_MAX_PEER_ENDS 65536
/* default bound of an unconnected socket's peer flows (the loader sets max_peers) */
#define UBIA_MAX_PEERS 128
#define UBIA_MAX_CENSUS 262144
/* ~5,400 events. Mapped twice into the agent (4 MiB made 8 MiB of its resident memory);
 * it is drained as events arrive, and what a burst does not fit waits in the flow table,
 * marked ended, until the next flow read. */
#define UBIA_RINGBUF_BYTES (1024 * 1024)

enum ubia_scope {
	UBIA_SCOPE_EXTERNAL = 0,
	UBIA_SCOPE_LOOPBACK = 1,
};

/* Monotonic counters. Wire bytes are L3 bytes as on the wire (per-segment headers of a
 * GSO/GRO packet included); packets count segments; payload is what the socket layer
 * moved to or from the process (TCP: taken from the socket's own sequence counters at
 * the fold; other protocols: the datagrams less their IP and UDP headers; precise mode:
 * each send/recv call's length). */
struct ubia_counters {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
	__u64 rx_payload;
	__u64 tx_payload;
};

/* Wire-only counters (tc totals, unattributed). */
struct ubia_wire {
	__u64 rx_bytes;
	__u64 tx_bytes;
	__u64 rx_packets;
	__u64 tx_packets;
};

struct ubia_user_key {
	__u32 uid;
	__u32 scope; /* enum ubia_scope */
};

/* The cgroup is in the key so that the agent's totals per (user, cgroup) — systemd unit,
 * Slurm job, container — are a regrouping of the process deltas, exact like them. */
struct ubia_proc_key {
	__u32 uid;
	__u32 tgid; /* 0: socket predates the agent, owner process unknown */
	__u32 scope;
	char comm[UBIA_COMM_LEN];
	__u32 pad;
	__u64 cgroup_id; /* the owner's cgroup v2 id when the counts were folded (0: unknown) */
};

/* Who a socket belongs to: the creator; then, in the default mode, a process sending on
 * it from its own call, or at a fold the newest process holding it; in the precise mode,
 * whichever process last did I/O on it. */
struct ubia_owner {
	__u32 uid;
	__u32 gid;
	__u32 tgid;
	__u32 pad;
	__u64 cgroup_id;
	__u64 created_ns; /* CLOCK_BOOTTIME */
	char comm[UBIA_COMM_LEN];
};

enum ubia_flow_state {
	UBIA_FLOW_NONE = 0,     /* no flow entry yet */
	UBIA_FLOW_TRACKED = 1,  /* entry in the flow map */
	UBIA_FLOW_OVERFLOW = 2, /* the flow map was full when we tried; counted once */
	UBIA_FLOW_ENDED = 3,    /* final record handed over; never re-create */
};

struct ubia_endpoints {
	__u8 family; /* 4 or 6 */
	__u8 protocol;
	__u16 local_port; /* host byte order */
	__u16 remote_port;
	__u8 unconnected; /* the socket has no remote address: its flows are one per peer */
	__u8 pad;
	__u8 local_addr[16]; /* IPv4 in the first 4 bytes */
	__u8 remote_addr[16];
};

/* Socket local storage (cloned to accepted sockets, which thus start as their listener's).
 * The packet and socket-call paths add to `pending`, one cache line the socket owns,
 * instead of to three shared hash entries; folds move it into user_slots, proc_totals
 * and flows with atomic exchanges, so no increment is lost or counted twice. A listener
 * never holds pending counts (its handshake packets are counted directly) nor TCP
 * payload, so a clone copies none. */
struct ubia_sock {
	struct ubia_owner owner;
	__u8 scope;
	__u8 scope_known;
	__u8 flow_state;
	__u8 owner_known; /* 0: owner.uid is the socket's uid only (socket predates the agent) */
	__u8 passive;     /* accepted (cloned from a listener): no SYN of ours in write_seq */
	__u8 released;    /* last close folded: its TCP payload is final */
	__u8 tcp_baseline; /* predates the agent: the first fold takes the TCP counters as they are */
	__u8 host_netns;  /* lives in the host's network namespace: its packets count per interface */
	struct ubia_endpoints ep; /* taken at the first count: a closing socket loses its port */
	struct ubia_counters pending;
	__u64 tcp_rx_folded; /* TCP payload the folds have counted so far, from the socket's */
	__u64 tcp_tx_folded; /* own counters (what the process took / handed over) */
	__u64 first_jiffies; /* of the first and the latest count: jiffies cost nothing to */
	__u64 last_jiffies;  /* read, the boot-time clock ~45 ns a packet */
	__u32 fold_gen;      /* the last fold that visited it (a socket open in several
			      * processes is folded once per fold) */
	__u32 peers;         /* peer flows made for it while unconnected (bounded by max_peers) */
	__u64 owner_started_ns; /* the owner process's start (CLOCK_MONOTONIC, as the kernel
				 * keeps it; 0: unknown): an older holder does not take it at a fold */
	__u32 sk_uid;       /* the socket's own uid (sk_uid: whose traffic a quota limits), */
	__u32 sk_uid_known; /* asked of the kernel at its first packet: once per socket */
};

/* What one fold's census saw of a socket (keyed by the kernel address of its struct
 * sock): the newest of the processes holding a file of it. */
struct ubia_holders {
	__u32 gen; /* the fold that wrote it (ubia_meta.fold_gen) */
	__u32 pad;
	__u64 started_ns; /* the newest holder's start (CLOCK_MONOTONIC, as the kernel keeps it) */
	struct ubia_owner newest;
};

/* A flow: a connected socket's life (keyed by its cookie), or one remote address and
 * port of an unconnected socket (DNS, QUIC, NTP: keyed by a digest of the cookie and the
 * peer, top bit set, so that it never meets a cookie). */
struct ubia_flow {
	struct ubia_endpoints ep;
	__u8 scope;
	__u8 ended;
	__u8 released; /* its socket's last close has run: TCP_CLOSE from now on ends it */
	__u8 pad[5];
	struct ubia_owner owner;
	struct ubia_counters c;
	__u64 first_ns; /* CLOCK_BOOTTIME */
	__u64 last_ns;
	__u64 sock_cookie; /* its socket's: a peer flow ends when its socket is in peer_ends */
};

enum ubia_event_kind {
	UBIA_EV_FLOW_ENDED = 1,
	UBIA_EV_PROC_EXITED = 2,
};

struct ubia_event {
	__u32 kind;
	__u32 tgid;   /* UBIA_EV_PROC_EXITED */
	__u64 ns;     /* CLOCK_BOOTTIME of the event */
	__u64 cookie; /* UBIA_EV_FLOW_ENDED */
	struct ubia_flow flow;
};

/* Per-interface figures, keyed by ifindex in the host's network namespace. The tc
 * programs fill total and unattributed; the cgroup programs fill attributed. */
struct ubia_iface {
	struct ubia_wire total;
	struct ubia_wire attributed;
	struct ubia_wire unattributed;
};

/* Indexes into the per-CPU stats array. */
enum ubia_stat {
	UBIA_STAT_USER_OVERFLOW = 0,
	UBIA_STAT_PROC_OVERFLOW,
	UBIA_STAT_FLOW_OVERFLOW,
	UBIA_STAT_IFACE_OVERFLOW,
	UBIA_STAT_EVENTS_DROPPED,
	UBIA_STAT_UNATTR_RX_BYTES, /* packets on a socket with no user behind it */
	UBIA_STAT_UNATTR_TX_BYTES,
	UBIA_STAT_UNATTR_RX_PACKETS,
	UBIA_STAT_UNATTR_TX_PACKETS,
	/* what users beyond the user table did (their wire bytes are also in UNATTR above;
	 * their payload is counted only here) */
	UBIA_STAT_OVERFLOW_RX_BYTES,
	UBIA_STAT_OVERFLOW_TX_BYTES,
	UBIA_STAT_OVERFLOW_RX_PACKETS,
	UBIA_STAT_OVERFLOW_TX_PACKETS,
	UBIA_STAT_OVERFLOW_RX_PAYLOAD,
	UBIA_STAT_OVERFLOW_TX_PAYLOAD,
	/* datagrams of unconnected sockets to or from a peer beyond max_peers: in the user
	 * and process totals, in no flow */
	UBIA_STAT_PEER_OVERFLOW,
	UBIA_STAT_MAX,
};

/* The meter's own state (map meta, one entry, mmap-able). The programs add to
 * user_slots_used and fold_gen atomically; user space writes its fields (abi_version,
 * precise, reader_tgid) one by one through the mapping, never the whole entry: an update
 * of the entry would undo an add made between its look-up and its write. */
struct ubia_meta {
	__u32 abi_version;
	__u32 user_slots_used; /* slots of user_slots handed out so far (may pass the size) */
	__u32 fold_gen;        /* folds run so far: tells this fold's census from older ones */
	__u32 precise;         /* the attached programs count payload per call (precise mode) */
	__u32 reader_tgid;     /* the agent reading the maps: its folds send no one's packets */
	__u32 pad;
};

/* One user and scope's counters: a slot of the mmap-able user_slots array, so that user
 * space reads 65,536 users straight from memory (a batch look-up of a hash that size
 * takes the kernel ~18 ms here). Users are never evicted: a slot, once taken, is that
 * (uid, scope)'s for the life of the pinned state. */
struct ubia_user_slot {
	struct ubia_user_key key;
	__u32 used; /* set once key is final and the index points here */
	__u32 pad;
	struct ubia_counters c;
};

/* The slots of the packet programs' tail-call arrays (egress_calls, ingress_calls: one
 * array per hook, as tail calls may not cross attach types on newer kernels). */
enum ubia_packet_call {
	UBIA_CALL_PEERS = 0, /* ubia_peers_out/in: an unconnected socket's peer flows (the meter's) */
	UBIA_CALL_QUOTA = 1, /* ubia_quota_egress/ingress: a packet of a uid with a quota verdict
			      * (bpf/quota.bpf.c's, placed by its loader while a verdict exists) */
	UBIA_PACKET_CALLS,
};

/* The layouts both sides compile must agree to the byte (as Android's netd.h checks):
 * a field added without bumping UBIA_ABI_VERSION and these fails to build. */
#ifdef __cplusplus
#define _Static_assert static_assert
#endif
_Static_assert(sizeof(struct ubia_counters) == 48, "ubia_counters layout");
_Static_assert(sizeof(struct ubia_wire) == 32, "ubia_wire layout");
_Static_assert(sizeof(struct ubia_user_key) == 8, "ubia_user_key layout");
_Static_assert(sizeof(struct ubia_proc_key) == 40, "ubia_proc_key layout");
_Static_assert(sizeof(struct ubia_owner) == 48, "ubia_owner layout");
_Static_assert(sizeof(struct ubia_endpoints) == 40, "ubia_endpoints layout");
_Static_assert(sizeof(struct ubia_sock) == 200, "ubia_sock layout");
_Static_assert(sizeof(struct ubia_holders) == 64, "ubia_holders layout");
_Static_assert(sizeof(struct ubia_flow) == 168, "ubia_flow layout");
_Static_assert(sizeof(struct ubia_event) == 192, "ubia_event layout");
_Static_assert(sizeof(struct ubia_iface) == 96, "ubia_iface layout");
_Static_assert(sizeof(struct ubia_meta) == 24, "ubia_meta layout");
_Static_assert(sizeof(struct ubia_user_slot) == 64, "ubia_user_slot layout");

/* ---- quota enforcement (bpf/quota.bpf.c, pinned under <pin_dir>/quota) ------------------
 * A separate object with its own ABI version: the meter's pins and the quota's keep apart,
 * and neither layout change forces the other's state away. Two things are the meter's and
 * shared: the uid filter (quota_uids) and the packet programs' call slots (UBIA_CALL_QUOTA),
 * because the quota's packet checks run inside the meter's packet programs. */
#define UBIA_QUOTA_ABI_VERSION 2
#define UBIA_QUOTA_MAX_VERDICTS 65536
#define UBIA_QUOTA_MAX_EXEMPT 1024
/* The uid filter (the meter's map quota_uids): bit (uid mod 2^18) set when a verdict may
 * exist for the uid, in 4,096 64-bit words (32 KiB). A packet of a user without a verdict
 * costs the meter's packet program this array read, which the verifier inlines, and
 * nothing else; a bit left set by a verdict the kernel expired costs a tail call and a
 * hash look-up until user space clears it. */
#define UBIA_QUOTA_FILTER_WORDS 4096

enum ubia_quota_action {
	UBIA_QUOTA_BLOCK = 1,    /* refuse new connections, drop traffic */
	UBIA_QUOTA_THROTTLE = 2, /* police traffic to rate_bytes per second per direction */
};

/* What the kernel does to one uid's traffic outside the exemptions, until until_boot_ns.
 * Written by user space only; a program finding it expired deletes it. */
struct ubia_quota_verdict {
	__u32 action; /* enum ubia_quota_action */
	__u32 pad;
	__u64 rate_bytes;     /* throttle: wire bytes per second, each direction */
	__u64 burst_bytes;    /* throttle: the token bucket's depth */
	__u64 until_boot_ns;  /* CLOCK_BOOTTIME the verdict ends at (what the programs compare) */
	__u64 until_epoch_ms; /* the same end as the caller gave it (wall clock), for list() */
};

struct ubia_quota_bucket_key {
	__u32 uid;
	__u32 egress; /* 1: sent, 0: received */
};

/* One uid and direction's token bucket, shared by every CPU (all the user's sockets
 * together). Tokens are scaled by 1e9 (byte-seconds per ns) so that refills need no
 * division and lose no fraction: refill = elapsed ns x rate_bytes. */
struct ubia_quota_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tokens_scaled;
	__u64 last_ns; /* CLOCK_MONOTONIC of the last refill */
};

/* Exempt destinations: LPM trie keys (prefix length, then network-order address). */
struct ubia_quota_cidr4 {
	__u32 prefixlen;
	__u8 addr[4];
};
struct ubia_quota_cidr6 {
	__u32 prefixlen;
	__u8 addr[16];
};

struct ubia_quota_config {
	__u32 abi_version;
	__u32 local_services; /* exempt loopback traffic and inbound connections (see quota.bpf.c) */
};

_Static_assert(sizeof(struct ubia_quota_verdict) == 40, "ubia_quota_verdict layout");
_Static_assert(sizeof(struct ubia_quota_bucket_key) == 8, "ubia_quota_bucket_key layout");
_Static_assert(sizeof(struct ubia_quota_bucket) == 24, "ubia_quota_bucket layout");
_Static_assert(sizeof(struct ubia_quota_cidr4) == 8, "ubia_quota_cidr4 layout");
_Static_assert(sizeof(struct ubia_quota_cidr6) == 20, "ubia_quota_cidr6 layout");
_Static_assert(sizeof(struct ubia_quota_config) == 8, "ubia_quota_config layout");

#endif /* UBIA_H */
