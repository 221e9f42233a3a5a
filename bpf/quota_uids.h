/* SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0) */
/*
 * The quota's uid filter, shared by the meter (bpf/ubia.bpf.c), whose packet programs
 * test it for every packet, and quota enforcement (bpf/quota.bpf.c), whose loader re-uses
 * the meter's pinned map and sets a uid's bit with its verdict (UBIA_QUOTA_FILTER_WORDS
 * in ubia.h). Include after vmlinux.h, the libbpf helpers and ubia.h.
 */
#ifndef UBIA_QUOTA_UIDS_H
#define UBIA_QUOTA_UIDS_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, UBIA_QUOTA_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} quota_uids SEC(".maps");

/* May the uid have a verdict? No: what every other user's packet costs. */
static __always_inline bool quota_uid_marked(__u32 uid)
{
	__u32 word = (uid >> 6) & (UBIA_QUOTA_FILTER_WORDS - 1);
	__u64 *bits = bpf_map_lookup_elem(&quota_uids, &word);
	return bits && ((*bits >> (uid & 63)) & 1);
}

#endif /* UBIA_QUOTA_UIDS_H */
