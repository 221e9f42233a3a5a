// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/*
 * Programs that do nothing, at the hooks ubia.bpf.c counts at on the data path: what the
 * hook set itself costs the traffic (the kernel's dispatch to an attached program),
 * whatever a meter does there. `npm run bench:overhead` measures it beside ubia, as the
 * floor no meter at these hooks can go below. Not part of the meter.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tp_btf/sock_send_length")
int BPF_PROG(floor_send_length, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(floor_recv_length, struct sock *sk, int ret, int flags)
{
	return 0;
}

SEC("cgroup_skb/egress")
int floor_egress(struct __sk_buff *skb)
{
	return 1;
}

SEC("cgroup_skb/ingress")
int floor_ingress(struct __sk_buff *skb)
{
	return 1;
}

SEC("tc")
int floor_tc_ingress(struct __sk_buff *skb)
{
	return -1; /* TC_ACT_UNSPEC, as ubia's */
}

SEC("tc")
int floor_tc_egress(struct __sk_buff *skb)
{
	return -1;
}
