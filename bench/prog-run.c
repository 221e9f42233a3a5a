// Times ubia_egress of two ubia.bpf.o builds (old, new) with BPF_PROG_TEST_RUN, interleaved
// A B B A ... on one synthetic Ethernet+IPv4+UDP frame (the kernel pulls the Ethernet header
// for cgroup_skb: the program sees the IP header first; its dummy socket gets storage at the
// first run, so every run takes the whole counting path, which the maps printed show).
// The first object loaded tends to run a few ns faster: run both orders.
// Run by bench/prog-run.sh (`npm run bench:prog -- REV`):
//   prog-run OLD.o NEW.o PAIRS REPEAT IFINDEX [mark|arp]
//   mark: set uid 0's bit in NEW's quota_uids (prog array slot left empty: tail-call miss)
//   arp:  an ARP frame instead (skb->family AF_UNSPEC: the program's first early return)
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ubia.h"

struct side {
  const char *name;
  struct bpf_object *obj;
  int fd;
};

static void die(const char *what, const char *detail) {
  fprintf(stderr, "prog-run: %s: %s\n", what, detail);
  exit(1);
}

static void load(struct side *s, const char *path, const char *name) {
  s->name = name;
  s->obj = bpf_object__open_file(path, NULL);
  if (!s->obj) die("cannot open", path);
  struct bpf_program *prog, *wanted = NULL;
  bpf_object__for_each_program(prog, s->obj) {
    int match = strcmp(bpf_program__name(prog), "ubia_egress") == 0;
    bpf_program__set_autoload(prog, match);
    if (match) wanted = prog;
  }
  if (!wanted || bpf_object__load(s->obj)) die("load failed", path);
  s->fd = bpf_program__fd(wanted);
  struct bpf_prog_info info = {0};
  __u32 len = sizeof info;
  bpf_obj_get_info_by_fd(s->fd, &info, &len);
  printf("%s: %s id %u xlated %u insns, jited %u bytes\n", name, path, info.id, info.xlated_prog_len / 8,
         info.jited_prog_len);
}

static unsigned char frame[14 + 20 + 8 + 64];
static size_t frame_len;

static void build_frame(int arp) {
  memset(frame, 0, sizeof frame);
  unsigned char *eth = frame, *ip = frame + 14, *udp = ip + 20;
  memcpy(eth, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01", 12);
  if (arp) { /* ARP request: 28 bytes */
    eth[12] = 0x08, eth[13] = 0x06;
    memcpy(ip, "\x00\x01\x08\x00\x06\x04\x00\x01", 8);
    frame_len = 14 + 28;
    return;
  }
  eth[12] = 0x08, eth[13] = 0x00;
  unsigned short tot = 20 + 8 + 64;
  ip[0] = 0x45, ip[2] = tot >> 8, ip[3] = tot & 0xff, ip[8] = 64, ip[9] = 17;
  memcpy(ip + 12, "\xc6\x12\x00\x01\xc6\x12\x00\x02", 8); /* 198.18.0.1 -> 198.18.0.2 */
  unsigned sum = 0;
  for (int i = 0; i < 20; i += 2) sum += ip[i] << 8 | ip[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  sum = ~sum & 0xffff;
  ip[10] = sum >> 8, ip[11] = sum & 0xff;
  udp[0] = 0x30, udp[1] = 0x39, udp[2] = 0x00, udp[3] = 0x35, udp[4] = 0, udp[5] = 8 + 64;
  frame_len = 14 + tot;
}

static __u32 run(struct side *s, __u32 repeat, __u32 ifindex, __u32 *retval) {
  struct __sk_buff ctx = {.ifindex = ifindex};
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = frame, .data_size_in = (__u32)frame_len, .ctx_in = &ctx,
              .ctx_size_in = sizeof ctx, .repeat = repeat);
  if (bpf_prog_test_run_opts(s->fd, &o)) die("BPF_PROG_TEST_RUN failed", s->name);
  *retval = o.retval;
  return o.duration;
}

static void report_maps(struct side *s, __u32 ifindex) {
  int cpus = libbpf_num_possible_cpus();
  struct ubia_iface *pc = calloc(cpus, sizeof *pc);
  __u64 tx = 0, txb = 0;
  if (bpf_map_lookup_elem(bpf_object__find_map_fd_by_name(s->obj, "ifaces"), &ifindex, pc) == 0)
    for (int c = 0; c < cpus; c++) tx += pc[c].attributed.tx_packets, txb += pc[c].attributed.tx_bytes;
  __u64 *st = calloc(cpus, sizeof *st), sums[UBIA_STAT_MAX] = {0};
  int sfd = bpf_object__find_map_fd_by_name(s->obj, "stats");
  for (__u32 k = 0; k < UBIA_STAT_MAX; k++)
    if (bpf_map_lookup_elem(sfd, &k, st) == 0)
      for (int c = 0; c < cpus; c++) sums[k] += st[c];
  printf("%s maps: ifaces[%u].attributed tx_packets %llu tx_bytes %llu; stats nonzero:", s->name, ifindex,
         (unsigned long long)tx, (unsigned long long)txb);
  for (int k = 0; k < UBIA_STAT_MAX; k++)
    if (sums[k]) printf(" [%d]=%llu", k, (unsigned long long)sums[k]);
  printf("\n");
  free(pc), free(st);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  double *c = malloc(n * sizeof *c);
  memcpy(c, v, n * sizeof *c);
  qsort(c, n, sizeof *c, cmp_d);
  double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
  free(c);
  return m;
}

int main(int argc, char **argv) {
  if (argc < 6) die("usage", "prog-run OLD.o NEW.o PAIRS REPEAT IFINDEX [mark|arp]");
  int pairs = atoi(argv[3]);
  __u32 repeat = (__u32)atoi(argv[4]), ifindex = (__u32)atoi(argv[5]);
  const char *mode = argc > 6 ? argv[6] : "";
  build_frame(strcmp(mode, "arp") == 0);
  struct side old, new;
  load(&old, argv[1], "old");
  load(&new, argv[2], "new");
  if (strcmp(mode, "mark") == 0) {
    __u32 word = 0;
    __u64 bits = 1; /* uid 0: word 0, bit 0 */
    if (bpf_map_update_elem(bpf_object__find_map_fd_by_name(new.obj, "quota_uids"), &word, &bits, BPF_ANY))
      die("cannot set", "quota_uids[0]");
    printf("new: quota_uids[0] = 1 (uid 0 marked), egress_calls[%d] empty\n", UBIA_CALL_QUOTA);
  }
  __u32 rv;
  /* one single run each, then the side effects it left (the path it took) */
  run(&old, 1, ifindex, &rv), printf("old: single run retval %u\n", rv);
  run(&new, 1, ifindex, &rv), printf("new: single run retval %u\n", rv);
  report_maps(&old, ifindex), report_maps(&new, ifindex);

  double *o = calloc(pairs, sizeof *o), *n = calloc(pairs, sizeof *n), *r = calloc(pairs, sizeof *r);
  for (int p = 0; p < pairs; p++) {
    __u32 ro, rn;
    if (p % 2 == 0) o[p] = run(&old, repeat, ifindex, &ro), n[p] = run(&new, repeat, ifindex, &rn);
    else n[p] = run(&new, repeat, ifindex, &rn), o[p] = run(&old, repeat, ifindex, &ro);
    r[p] = n[p] / o[p];
    printf("pair %2d (%s): old %.0f ns new %.0f ns new/old %.4f retvals %u %u\n", p, p % 2 ? "B A" : "A B", o[p],
           n[p], r[p], ro, rn);
  }
  report_maps(&old, ifindex), report_maps(&new, ifindex);
  double rmin = r[0], rmax = r[0];
  for (int p = 1; p < pairs; p++) rmin = r[p] < rmin ? r[p] : rmin, rmax = r[p] > rmax ? r[p] : rmax;
  double mo = median(o, pairs), mn = median(n, pairs), mr = median(r, pairs);
  printf("median ns/run: old %.0f new %.0f diff %+.0f; new/old median of pairs %.4f (min %.4f max %.4f); "
         "ratio of medians %.4f\n",
         mo, mn, mn - mo, mr, rmin, rmax, mn / mo);
  return 0;
}
