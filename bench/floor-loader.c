// For `npm run bench:overhead`: attaches bench/floor.bpf.c (programs that do nothing, at
// ubia's data-path hooks) and detaches it again.
//   floor-loader attach OBJECT PIN_DIR IFINDEX [packets]
//       links pinned under PIN_DIR, tc on IFINDEX; `packets`: the packet hooks only (the
//       default mode's set), without the per-call tracepoints (the precise mode's)
//   floor-loader detach IFINDEX                  the tc filters (rm -r PIN_DIR drops the links)
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TC_HANDLE 0xf1
#define TC_PRIORITY 0xf1

static int tc(int ifindex, enum bpf_tc_attach_point point, int prog_fd) {
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = point);
  LIBBPF_OPTS(bpf_tc_opts, opts, .handle = TC_HANDLE, .priority = TC_PRIORITY);
  if (prog_fd < 0) return bpf_tc_detach(&hook, &opts);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) return err;
  opts.prog_fd = prog_fd;
  return bpf_tc_attach(&hook, &opts);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "detach") == 0) {
    int ifindex = atoi(argv[2]);
    tc(ifindex, BPF_TC_INGRESS, -1);
    tc(ifindex, BPF_TC_EGRESS, -1);
    return 0;
  }
  bool packets_only = argc == 6 && strcmp(argv[5], "packets") == 0;
  if ((argc != 5 && !packets_only) || strcmp(argv[1], "attach") != 0) {
    fprintf(stderr, "usage: floor-loader attach OBJECT PIN_DIR IFINDEX [packets] | detach IFINDEX\n");
    return 2;
  }
  struct bpf_object *obj = bpf_object__open_file(argv[2], NULL);
  struct bpf_program *prog;
  if (obj && packets_only)
    bpf_object__for_each_program(prog, obj) {
      if (strncmp(bpf_program__section_name(prog), "tp_btf/", 7) == 0) bpf_program__set_autoload(prog, false);
    }
  if (!obj || bpf_object__load(obj)) {
    fprintf(stderr, "floor-loader: loading %s failed\n", argv[2]);
    return 1;
  }
  int cgroup = open("/sys/fs/cgroup/unified", O_RDONLY | O_DIRECTORY);
  if (cgroup < 0) cgroup = open("/sys/fs/cgroup", O_RDONLY | O_DIRECTORY);
  int ifindex = atoi(argv[4]);
  bpf_object__for_each_program(prog, obj) {
    const char *name = bpf_program__name(prog);
    if (!bpf_program__autoload(prog)) continue;
    if (strncmp(name, "floor_tc_", 9) == 0) {
      int err = tc(ifindex, strstr(name, "ingress") ? BPF_TC_INGRESS : BPF_TC_EGRESS, bpf_program__fd(prog));
      if (err) {
        fprintf(stderr, "floor-loader: tc on ifindex %d: %s\n", ifindex, strerror(-err));
        return 1;
      }
      continue;
    }
    struct bpf_link *link = strstr(bpf_program__section_name(prog), "cgroup") ? bpf_program__attach_cgroup(prog, cgroup)
                                                                             : bpf_program__attach(prog);
    char pin[512];
    snprintf(pin, sizeof pin, "%s/%s", argv[3], name);
    if (!link || bpf_link__pin(link, pin)) {
      fprintf(stderr, "floor-loader: attaching %s failed\n", name);
      return 1;
    }
  }
  return 0;
}
