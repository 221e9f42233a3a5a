// For test/bpf-tc.test.ts: runs one of ubia's tc programs over synthetic frames with
// BPF_PROG_TEST_RUN (as Cilium's bpf/tests do), so the per-interface counting rule is
// tested without a network. Only that program is loaded from the object (with the maps it
// uses, fresh: counts start at zero); it prints the interface's counters as JSON.
//   tc-run OBJECT PROGRAM IFINDEX HEXFRAME...
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ubia.h"

static int fail(const char *what, const char *detail) {
  fprintf(stderr, "tc-run: %s: %s\n", what, detail);
  return 1;
}

static size_t unhex(const char *hex, unsigned char *out, size_t cap) {
  size_t n = strlen(hex) / 2;
  if (n > cap) return 0;
  for (size_t i = 0; i < n; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
  return n;
}

static void print_wire(const char *name, const struct ubia_wire *w) {
  printf("\"%s\":{\"rxBytes\":%llu,\"txBytes\":%llu,\"rxPackets\":%llu,\"txPackets\":%llu}", name,
         (unsigned long long)w->rx_bytes, (unsigned long long)w->tx_bytes, (unsigned long long)w->rx_packets,
         (unsigned long long)w->tx_packets);
}

int main(int argc, char **argv) {
  if (argc < 5) return fail("usage", "tc-run OBJECT PROGRAM IFINDEX HEXFRAME...");
  struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
  if (!obj) return fail("cannot open", argv[1]);
  struct bpf_program *prog, *wanted = NULL;
  bpf_object__for_each_program(prog, obj) {
    int match = strcmp(bpf_program__name(prog), argv[2]) == 0;
    bpf_program__set_autoload(prog, match);
    if (match) wanted = prog;
  }
  if (!wanted) return fail("no such program in the object", argv[2]);
  if (bpf_object__load(obj)) return fail("loading failed (run as root)", argv[2]);
  __u32 ifindex = (__u32)atoi(argv[3]);

  printf("{\"retvals\":[");
  for (int i = 4; i < argc; i++) {
    unsigned char frame[2048];
    size_t n = unhex(argv[i], frame, sizeof frame);
    if (!n) return fail("bad frame", argv[i]);
    struct __sk_buff ctx = {.ifindex = ifindex};
    LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = frame, .data_size_in = (__u32)n, .ctx_in = &ctx,
                .ctx_size_in = sizeof ctx, .repeat = 1);
    if (bpf_prog_test_run_opts(bpf_program__fd(wanted), &run)) return fail("BPF_PROG_TEST_RUN failed", argv[i]);
    printf("%s%u", i > 4 ? "," : "", run.retval);
  }
  printf("],");

  // ifaces is per-CPU: the frames ran on whichever CPU, so sum them
  int cpus = libbpf_num_possible_cpus();
  struct ubia_iface *per_cpu = calloc((size_t)cpus, sizeof *per_cpu);
  struct ubia_iface sum = {0};
  struct bpf_map *ifaces = bpf_object__find_map_by_name(obj, "ifaces");
  if (!ifaces || !per_cpu) return fail("no map", "ifaces");
  if (bpf_map_lookup_elem(bpf_map__fd(ifaces), &ifindex, per_cpu) == 0) {
    for (int c = 0; c < cpus; c++) {
      struct ubia_wire *parts[] = {&sum.total, &sum.unattributed};
      struct ubia_wire *from[] = {&per_cpu[c].total, &per_cpu[c].unattributed};
      for (int k = 0; k < 2; k++) {
        parts[k]->rx_bytes += from[k]->rx_bytes;
        parts[k]->tx_bytes += from[k]->tx_bytes;
        parts[k]->rx_packets += from[k]->rx_packets;
        parts[k]->tx_packets += from[k]->tx_packets;
      }
    }
  }
  print_wire("total", &sum.total);
  printf(",");
  print_wire("unattributed", &sum.unattributed);
  printf("}\n");
  free(per_cpu);
  bpf_object__close(obj);
  return 0;
}
