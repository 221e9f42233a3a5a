// Loads ubia's eBPF programs, attaches them, pins maps and links under the pin directory
// so the kernel keeps counting while the agent restarts, and reads the maps in batches.
#include "meter.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bpf_util.h"
#include "ubia.skel.h"

namespace ubia {
namespace {

// tc filter identity: lets a restarted agent recognise (and a detach remove) its own
// filters among others on the same clsact qdisc. The priority is derived from the pin
// directory, so that meters with different pin directories (tests) keep apart.
constexpr uint32_t kTcHandle = 0x0b1a;

uint32_t tc_priority(const std::string &pin_dir) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (unsigned char c : pin_dir) h = (h ^ c) * 16777619u;
  return 0x1000 + h % 0xe000;
}

uint32_t prog_id(int prog_fd) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(prog_fd, &info, &len) == 0 ? info.id : 0;
}

bool btf_has(const btf *vmlinux, const char *name, int kind) {
  return vmlinux && btf__find_by_name_kind(vmlinux, name, kind) > 0;
}

std::string read_first_line(const std::string &path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

// Batch-reads a hash map; for per-CPU maps sums every CPU's copy.
template <typename K, typename V>
std::vector<Entry<K, V>> read_map(int fd, bool percpu) {
  std::vector<Entry<K, V>> out;
  const int ncpu = percpu ? libbpf_num_possible_cpus() : 1;
  const size_t vsz = percpu ? ((sizeof(V) + 7) / 8) * 8 : sizeof(V);
  constexpr uint32_t kBatch = 4096;
  std::vector<K> keys(kBatch);
  std::vector<uint8_t> vals(kBatch * vsz * ncpu);
  K in_batch{}, out_batch{};
  bool first = true;
  for (;;) {
    uint32_t count = kBatch;
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, keys.data(),
                                   vals.data(), &count, nullptr);
    int e = err ? errno : 0;
    if (err && e != ENOENT) throw MeterError("reading a BPF map failed: " + errno_text(e));
    for (uint32_t i = 0; i < count; i++) {
      Entry<K, V> entry{keys[i], V{}};
      if (percpu) {
        for (int c = 0; c < ncpu; c++) {
          const auto *v = reinterpret_cast<const uint64_t *>(&vals[(i * ncpu + c) * vsz]);
          auto *sum = reinterpret_cast<uint64_t *>(&entry.value);
          for (size_t w = 0; w < sizeof(V) / 8; w++) sum[w] += v[w];
        }
      } else {
        memcpy(&entry.value, &vals[i * vsz], sizeof(V));
      }
      out.push_back(entry);
    }
    if (e == ENOENT) break;
    in_batch = out_batch;
    first = false;
  }
  return out;
}

}  // namespace

Meter::Meter(const MeterOptions &opts) : opts_(opts) {
  cgroup_fd_ = begin_load();
  prepare_pin_dir();
  try {
    load_and_attach();
  } catch (...) {
    // leave nothing half-made behind; pinned state of a running meter stays untouched
    if (!resumed_) detach_pinned(opts_.pin_dir, true);
    close(false);
    throw;
  }
}

// The fold's ways through every socket, best first. The truth is what loads: Debian's
// 5.10 to 7.3 walk the storage map; this project's 6.18 refuses map iterators (EPERM),
// and there the TCP and UDP iterators serve (sockets of the agent's network namespace;
// others fold at their last close).
namespace {
constexpr FoldRoute kFoldRoutes[] = {FoldRoute::StorageMap, FoldRoute::Sockets};

const char *fold_route_name(FoldRoute r) {
  switch (r) {
    case FoldRoute::StorageMap: return "iter/bpf_sk_storage_map";
    case FoldRoute::Sockets: return "iter/tcp + iter/udp";
  }
  return "?";
}
}  // namespace

void Meter::load_and_attach() {
  std::string refused;
  for (FoldRoute route : kFoldRoutes) {
    fold_route_ = route;
    g_libbpf_log.clear();
    int err = open_and_load();
    if (err == 0) break;
    bool fold_refused = g_libbpf_log.find("prog 'ubia_fold_") != std::string::npos;
    if (!fold_refused || route == kFoldRoutes[std::size(kFoldRoutes) - 1]) fail_bpf("loading the BPF programs failed", err);
    refused += std::string(fold_route_name(route)) + " (" + errno_text(err) + "), ";
    ubia_bpf__destroy(skel_);
    skel_ = nullptr;
  }
  if (!refused.empty())
    for (Hook &h : hooks_)
      if (h.name == "fold") h.detail += " (this kernel refused " + refused.substr(0, refused.size() - 2) + ")";
  // the ABI version marks the pinned state as ours; the slot count of resumed state stays
  // (each field written alone: see struct ubia_meta)
  void *meta = mmap(nullptr, sizeof(ubia_meta), PROT_READ | PROT_WRITE, MAP_SHARED, bpf_map__fd(skel_->maps.meta), 0);
  if (meta == MAP_FAILED) fail_bpf("mapping the meter's meta map failed", errno);
  meta_ = static_cast<volatile ubia_meta *>(meta);
  meta_->abi_version = UBIA_ABI_VERSION;
  if (resumed_ && meta_->precise != uint32_t(opts_.precise)) {
    // the pinned programs count in the other mode: attach this load's instead (the maps,
    // and with them every counter, stay)
    remove_tree(opts_.pin_dir + "/links");
    mkdir_p(opts_.pin_dir + "/links");
  }
  meta_->precise = opts_.precise;
  meta_->reader_tgid = getpid();

  map_user_slots(meta_->user_slots_used);

  attach_all();

  // The fold iterators are this process's own (not pinned): nothing runs them but our
  // reads. The census (default mode) walks every process's files; the fold walks every
  // socket's storage.
  if (!opts_.precise) {
    census_link_ = bpf_program__attach_iter(skel_->progs.ubia_census, nullptr);
    if (!census_link_) fail_bpf("attaching the census iterator failed", errno);
  }
  auto attach_fold = [&](bpf_program *prog, const bpf_iter_attach_opts *o) {
    bpf_link *link = bpf_program__attach_iter(prog, o);
    if (!link) fail_bpf(std::string("attaching the fold iterator ") + bpf_program__name(prog) + " failed", errno);
    fold_links_.push_back(link);
  };
  switch (fold_route_) {
    case FoldRoute::StorageMap: {
      union bpf_iter_link_info socks_map = {};
      socks_map.map.map_fd = bpf_map__fd(skel_->maps.socks);
      DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, iter_opts, .link_info = &socks_map, .link_info_len = sizeof(socks_map));
      attach_fold(skel_->progs.ubia_fold_storage, &iter_opts);
      break;
    }
    case FoldRoute::Sockets:
      attach_fold(skel_->progs.ubia_fold_tcp, nullptr);
      attach_fold(skel_->progs.ubia_fold_udp, nullptr);
      break;
  }

  rb_ = ring_buffer__new(
      bpf_map__fd(skel_->maps.events),
      [](void *ctx, void *data, size_t size) -> int {
        auto *self = static_cast<Meter *>(ctx);
        if (self->handler_ && size >= sizeof(ubia_event))
          (*self->handler_)(*static_cast<const ubia_event *>(data));
        return 0;
      },
      this, nullptr);
  if (!rb_) fail_bpf("opening the event ring buffer failed", errno);
}

// Opens the object, configures it for this kernel and the fold route, and loads it.
int Meter::open_and_load() {
  skel_ = ubia_bpf__open();
  if (!skel_) fail_bpf("opening the BPF object failed", errno);
  struct stat ns;
  if (stat("/proc/self/ns/net", &ns) == 0) skel_->rodata->host_netns_ino = ns.st_ino;
  probe_features();

  // Maps live under <pin>/maps; libbpf re-uses a pinned map when its definition matches.
  std::string maps_dir = opts_.pin_dir + "/maps";
  if (resumed_) {
    // keep the flow and user tables' sizes the pinned ones have, whatever the config says now
    auto pinned_size = [&](const char *name, uint32_t &size) {
      int fd = bpf_obj_get((maps_dir + "/" + name).c_str());
      if (fd < 0) return;
      bpf_map_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) size = info.max_entries;
      ::close(fd);
    };
    pinned_size("flows", opts_.flow_capacity);
    pinned_size("user_slots", opts_.user_capacity);
  }
  bpf_map__set_max_entries(skel_->maps.flows, opts_.flow_capacity);
  bpf_map__set_max_entries(skel_->maps.user_slots, opts_.user_capacity);
  bpf_map__set_max_entries(skel_->maps.user_index, opts_.user_capacity);
  bpf_map__set_max_entries(skel_->maps.slot_claims, opts_.user_capacity);
  skel_->rodata->max_users = opts_.user_capacity;
  skel_->rodata->max_peers = opts_.max_peers;
  pin_maps_in(skel_->obj, maps_dir);
  return load_without_signals([&] { return ubia_bpf__load(skel_); });
}

Meter::~Meter() { close(false); }

void Meter::prepare_pin_dir() {
  make_pin_dir(opts_.pin_dir);
  lock_fd_ = lock_dir(opts_.pin_dir, "another ubia agent is metering with the pin directory " + opts_.pin_dir +
                                         ": stop it, or give this agent another agent.pin_dir");
  std::string meta_pin = opts_.pin_dir + "/maps/meta";
  if (exists(meta_pin)) {
    int fd = bpf_obj_get(meta_pin.c_str());
    ubia_meta meta{};
    uint32_t zero = 0;
    bool same = fd >= 0 && bpf_map_lookup_elem(fd, &zero, &meta) == 0 && meta.abi_version == UBIA_ABI_VERSION;
    if (fd >= 0) ::close(fd);
    if (same) {
      resumed_ = true;
    } else {
      // another layout: its counters cannot be read by this build; start afresh
      detach_pinned(opts_.pin_dir, true);
    }
  } else {
    // nothing or half-written state from an interrupted start; also detaches tc filters
    // an earlier meter of this pin directory left on interfaces
    detach_pinned(opts_.pin_dir, true);
  }
  mkdir_p(opts_.pin_dir + "/maps");
  mkdir_p(opts_.pin_dir + "/links");
  mkdir_p(opts_.pin_dir + "/progs");
}

void Meter::probe_features() {
  // Pick the hooks this kernel offers, by the tracepoints' BTF types. The rest of the
  // meter needs Linux 5.10 with BTF.
  btf *vmlinux = btf__load_vmlinux_btf();
  const bool has_len = btf_has(vmlinux, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) &&
                       btf_has(vmlinux, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF);
  const bool has_state = btf_has(vmlinux, "btf_trace_inet_sock_set_state", BTF_KIND_TYPEDEF);
  const bool has_exit = btf_has(vmlinux, "btf_trace_sched_process_exit", BTF_KIND_TYPEDEF);
  btf__free(vmlinux);
  const bool precise = opts_.precise && has_len;
  opts_.precise = precise;
  skel_->rodata->precise = precise;

  hooks_.clear();
  auto hook = [&](const char *name, bool available, bool active, std::string detail) {
    hooks_.push_back({name, available, active, std::move(detail)});
  };
  hook("cgroup/sock_create", true, true, "socket owner (uid, gid, pid, comm, cgroup) at creation");
  hook("cgroup/sock_release", true, true, "last close: the socket's final TCP payload; end of UDP and other non-TCP flows");
  hook("cgroup_skb/egress", true, true, precise ? "wire bytes and packets sent, per socket" : "wire bytes and packets sent, per socket; payload of datagrams (UDP, ICMP, …); a process sending on a socket takes it over");
  hook("cgroup_skb/ingress", true, true, precise ? "wire bytes and packets received, per socket" : "wire bytes and packets received, per socket; payload of datagrams (UDP, ICMP, …)");
  hook("iter/task_file (census)", true, !precise, precise ? "not needed in the precise mode (the process doing the I/O owns the socket)"
                                                 : "fold census: the newest process holding each socket takes it over at the fold");
  std::string fold_detail = std::string("fold by ") + fold_route_name(fold_route_) + ": " +
                            (precise ? "moves every socket's pending counts into the totals"
                                     : "every TCP socket's payload from its own counters (bytes_received/acked, sequence numbers), pending counts into the totals");
  if (fold_route_ == FoldRoute::Sockets)
    fold_detail += "; sockets of other network namespaces and raw sockets fold at their last close";
  hook("fold", true, true, fold_detail);
  std::string len_detail;
  if (precise)
    len_detail = "precise mode: payload of every send/recv call, for the process making it";
  else if (has_len)
    len_detail = "available; not used in the default mode (meter_mode = \"precise\" counts each call for the process making it, at ~2.7 % of 64-byte TCP throughput for the dispatch alone)";
  else
    len_detail = "kernel lacks the sock_send_length/sock_recv_length tracepoints (Linux < 6.3): only the default mode — a socket shared by processes counts for one holder at each fold, not per call";
  hook("tp_btf/sock_send_length", has_len, precise, len_detail);
  hook("tp_btf/sock_recv_length", has_len, precise, len_detail);
  hook("tp_btf/inet_sock_set_state", has_state, has_state, has_state ? "end of TCP flows (after the last byte the kernel sends)"
                                                                     : "kernel lacks the inet_sock_set_state tracepoint: TCP flows end when their socket's storage is folded last");
  hook("tp_btf/sched_process_exit", has_exit, has_exit, has_exit ? "exited processes, so their entries can be removed"
                                                                 : "kernel lacks the sched_process_exit tracepoint: exited processes are found by /proc");
  hook("tc/clsact", true, true, "per-interface totals, to check attribution against");

  bpf_program__set_autoload(skel_->progs.ubia_send_length, precise);
  bpf_program__set_autoload(skel_->progs.ubia_recv_length, precise);
  bpf_program__set_autoload(skel_->progs.ubia_census, !precise);
  bpf_program__set_autoload(skel_->progs.ubia_fold_storage, fold_route_ == FoldRoute::StorageMap);
  bpf_program__set_autoload(skel_->progs.ubia_fold_tcp, fold_route_ == FoldRoute::Sockets);
  bpf_program__set_autoload(skel_->progs.ubia_fold_udp, fold_route_ == FoldRoute::Sockets);
  bpf_program__set_autoload(skel_->progs.ubia_sock_set_state, has_state);
  bpf_program__set_autoload(skel_->progs.ubia_process_exit, has_exit);
  mode_ = precise ? "precise" : "default";
}

void Meter::attach_all() {
  std::string links = opts_.pin_dir + "/links/";
  auto attach = [&](bpf_program *prog, bool cgroup) {
    std::string pin = links + bpf_program__name(prog);
    if (!bpf_program__autoload(prog)) {
      unlink(pin.c_str());  // attached by an earlier agent that used it: detach
      return;
    }
    // Held as well as pinned: the attachment outlives a removed pin directory, and
    // repin() can put the pin back.
    if (exists(pin)) {  // attached by an earlier agent: the kernel kept counting
      bpf_link *held = bpf_link__open(pin.c_str());
      if (!held) fail_bpf("opening " + pin + " failed", errno);
      links_.push_back({pin, held});
      return;
    }
    bpf_link *link = cgroup ? bpf_program__attach_cgroup(prog, cgroup_fd_) : bpf_program__attach(prog);
    if (!link) fail_bpf(std::string("attaching ") + bpf_program__name(prog) + " failed", errno);
    links_.push_back({pin, link});
    int err = bpf_link__pin(link, pin.c_str());
    if (err) fail_bpf(std::string("pinning ") + pin + " failed", err);
  };
  auto *p = &skel_->progs;
  attach(p->ubia_sock_create, true);
  attach(p->ubia_sock_release, true);
  attach(p->ubia_egress, true);
  attach(p->ubia_ingress, true);
  attach(p->ubia_send_length, false);
  attach(p->ubia_recv_length, false);
  attach(p->ubia_sock_set_state, false);
  attach(p->ubia_process_exit, false);

  // tc programs are pinned as programs: a restarted agent attaches the same ones to
  // interfaces that appear later.
  auto tc_prog = [&](bpf_program *prog) {
    std::string pin = opts_.pin_dir + "/progs/" + bpf_program__name(prog);
    if (!exists(pin)) {
      int err = bpf_program__pin(prog, pin.c_str());
      if (err) fail_bpf("pinning " + pin + " failed", err);
    }
    int fd = bpf_obj_get(pin.c_str());
    if (fd < 0) fail_bpf("opening " + pin + " failed", errno);
    return fd;
  };
  tc_ingress_fd_ = tc_prog(p->ubia_tc_ingress);
  tc_egress_fd_ = tc_prog(p->ubia_tc_egress);
  attach_new_interfaces();

  // The peer-flow programs the packet programs tail-call (unconnected sockets), this
  // load's: a resumed meter's pinned packet programs call them too, with this start's
  // agent.unconnected_peers.
  auto tail = [&](bpf_map *calls, bpf_program *prog) {
    uint32_t slot = UBIA_CALL_PEERS;
    int fd = bpf_program__fd(prog);
    if (bpf_map_update_elem(bpf_map__fd(calls), &slot, &fd, BPF_ANY) != 0)
      fail_bpf(std::string("installing ") + bpf_program__name(prog) + " failed", errno);
  };
  tail(skel_->maps.egress_calls, p->ubia_peers_out);
  tail(skel_->maps.ingress_calls, p->ubia_peers_in);
}

void Meter::attach_tc(uint32_t ifindex, const std::string &name) {
  for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
    bpf_tc_hook hook{};
    hook.sz = sizeof(hook);
    hook.ifindex = ifindex;
    hook.attach_point = point;
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST) {
      tc_failed_[ifindex] = name + ": creating the clsact qdisc failed: " + errno_text(err);
      return;
    }
    bpf_tc_opts opts{};
    opts.sz = sizeof(opts);
    opts.handle = kTcHandle;
    opts.priority = tc_priority(opts_.pin_dir);
    const int prog_fd = point == BPF_TC_INGRESS ? tc_ingress_fd_ : tc_egress_fd_;
    // Our handle and priority hold our program when an earlier agent resumed the same
    // pins; when the pins were lost meanwhile they hold an older program counting into
    // maps nobody reads: replace it.
    bool taken = bpf_tc_query(&hook, &opts) == 0;
    if (taken && opts.prog_id == prog_id(prog_fd)) continue;
    opts.prog_id = 0;
    opts.flags = taken ? BPF_TC_F_REPLACE : 0;
    opts.prog_fd = prog_fd;
    err = bpf_tc_attach(&hook, &opts);
    if (err) {
      tc_failed_[ifindex] = name + ": attaching the tc counter failed: " + errno_text(err);
      return;
    }
  }
  tc_failed_.erase(ifindex);
  tc_done_.insert(ifindex);
}

void Meter::attach_new_interfaces() {
  struct if_nameindex *ifs = if_nameindex();
  if (!ifs) return;
  std::set<uint32_t> present;
  for (struct if_nameindex *i = ifs; i->if_index; i++) {
    present.insert(i->if_index);
    if (tc_done_.count(i->if_index)) continue;
    // Only interfaces with an Ethernet header (Ethernet, veth, bridges, bonds): the tc
    // counter finds the IP header at offset 14. Not loopback: its traffic never leaves
    // the host, and two more programs on every local packet would cost throughput.
    std::string type = read_first_line(std::string("/sys/class/net/") + i->if_name + "/type");
    if (type != "1") {
      tc_done_.insert(i->if_index);
      continue;
    }
    attach_tc(i->if_index, i->if_name);
  }
  if_freenameindex(ifs);
  for (auto it = tc_done_.begin(); it != tc_done_.end();)
    it = present.count(*it) ? std::next(it) : tc_done_.erase(it);
}

// One fold serves the reads of one poll (users, then processes and flows): what is
// counted meanwhile stays pending for the next read.
void Meter::fold_if_stale() const {
  if (!opts_.fold_on_read || std::chrono::steady_clock::now() - last_fold_ < std::chrono::milliseconds(50)) return;
  fold();
}

// Runs the census (default mode) and the fold route's iterators: reading an iterator's
// (empty) output is what runs it. The maps read next then hold everything counted up to
// now.
void Meter::fold() const {
  last_fold_ = std::chrono::steady_clock::now();
  if (census_link_) run_iterator(census_link_);
  for (bpf_link *link : fold_links_) run_iterator(link);
}

void Meter::run_iterator(bpf_link *link) const {
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) fail_bpf("running the fold iterator failed", errno);
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR)) {
  }
  int err = n < 0 ? errno : 0;
  ::close(fd);
  if (err) fail_bpf("running the fold iterator failed", err);
}

// Maps the user slots in use, rounded up to kSlotsPerMapping: the whole array (4 MiB for
// 65,536 users) would count in the agent's resident memory, all of it, from the start.
void Meter::map_user_slots(size_t used) const {
  constexpr size_t kSlotsPerMapping = 4096;
  const size_t max = bpf_map__max_entries(skel_->maps.user_slots);
  const size_t slots = std::min(max, (used / kSlotsPerMapping + 1) * kSlotsPerMapping);
  const size_t len = slots * sizeof(ubia_user_slot);
  if (user_slots_ && len <= user_slots_len_) return;
  void *mem = mmap(nullptr, len, PROT_READ, MAP_SHARED, bpf_map__fd(skel_->maps.user_slots), 0);
  if (mem == MAP_FAILED) fail_bpf("mapping the user counters into memory failed", errno);
  if (user_slots_) munmap(const_cast<ubia_user_slot *>(user_slots_), user_slots_len_);
  user_slots_ = static_cast<const ubia_user_slot *>(mem);
  user_slots_len_ = len;
}

std::vector<Entry<ubia_user_key, ubia_counters>> Meter::read_users() const {
  fold_if_stale();
  const uint32_t used = meta_->user_slots_used;
  map_user_slots(used);
  const size_t n = std::min<size_t>(used, user_slots_len_ / sizeof(ubia_user_slot));
  std::vector<Entry<ubia_user_key, ubia_counters>> out;
  out.reserve(n);
  for (size_t i = 0; i < n; i++) {
    // `used` is set (with a full barrier) only after the key is final
    const volatile ubia_user_slot &slot = user_slots_[i];
    if (!slot.used) continue;
    const volatile uint64_t *c = reinterpret_cast<const volatile uint64_t *>(&slot.c);
    ubia_counters v{c[0], c[1], c[2], c[3], c[4], c[5]};
    out.push_back({ubia_user_key{slot.key.uid, slot.key.scope}, v});
  }
  return out;
}

std::vector<Entry<ubia_proc_key, ubia_counters>> Meter::read_processes() const {
  fold_if_stale();
  return read_map<ubia_proc_key, ubia_counters>(bpf_map__fd(skel_->maps.proc_totals), false);
}

// Active flows; ended is set on those that ended while the ring buffer was full and on
// the peer flows of unconnected sockets whose last close has run (in peer_ends: the
// kernel cannot walk the flow table to end them). The marks read go: their sockets'
// peer flows are final, and the caller hands them over as ended now.
std::vector<Entry<uint64_t, ubia_flow>> Meter::read_flows() const {
  fold_if_stale();
  const int ends_fd = bpf_map__fd(skel_->maps.peer_ends);
  std::set<uint64_t> closed;
  for (auto &e : read_map<uint64_t, uint8_t>(ends_fd, false)) closed.insert(e.key);
  auto rows = read_map<uint64_t, ubia_flow>(bpf_map__fd(skel_->maps.flows), false);
  for (auto &r : rows)
    if (r.key != r.value.sock_cookie && closed.count(r.value.sock_cookie)) r.value.ended = 1;
  for (uint64_t cookie : closed) bpf_map_delete_elem(ends_fd, &cookie);
  return rows;
}

std::vector<IfaceEntry> Meter::read_interfaces() {
  attach_new_interfaces();
  std::vector<IfaceEntry> out;
  for (auto &e : read_map<uint32_t, ubia_iface>(bpf_map__fd(skel_->maps.ifaces), true)) {
    char name[IF_NAMESIZE] = "";
    if (!if_indextoname(e.key, name)) continue;  // gone; its ifindex may be re-used
    out.push_back({e.key, name, e.value});
  }
  return out;
}

std::vector<uint64_t> Meter::read_stats() const {
  const int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> out(UBIA_STAT_MAX, 0);
  std::vector<uint64_t> per(ncpu);
  int fd = bpf_map__fd(skel_->maps.stats);
  for (uint32_t i = 0; i < UBIA_STAT_MAX; i++) {
    if (bpf_map_lookup_elem(fd, &i, per.data()) != 0) continue;
    for (int c = 0; c < ncpu; c++) out[i] += per[c];
  }
  return out;
}

size_t Meter::forget_processes(const std::set<uint32_t> &tgids) {
  if (tgids.empty()) return 0;
  int fd = bpf_map__fd(skel_->maps.proc_totals);
  std::vector<ubia_proc_key> doomed;
  ubia_proc_key key{}, next{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    if (tgids.count(next.tgid)) doomed.push_back(next);
    key = next;
    first = false;
  }
  for (auto &k : doomed) bpf_map_delete_elem(fd, &k);
  int tfd = bpf_map__fd(skel_->maps.metered_tgids);
  for (uint32_t t : tgids) bpf_map_delete_elem(tfd, &t);
  return doomed.size();
}

void Meter::forget_flow(uint64_t cookie) { bpf_map_delete_elem(bpf_map__fd(skel_->maps.flows), &cookie); }

int Meter::events_fd() const { return ring_buffer__epoll_fd(rb_); }

int Meter::consume(const std::function<void(const ubia_event &)> &handler) {
  handler_ = &handler;
  int n = ring_buffer__consume(rb_);
  handler_ = nullptr;
  return n;
}

// Every pin this meter made or resumed, with the fd it pins.
std::vector<std::pair<std::string, int>> Meter::pins() const {
  std::vector<std::pair<std::string, int>> out;
  bpf_map *map;
  bpf_object__for_each_map(map, skel_->obj) {
    if (const char *path = bpf_map__pin_path(map)) out.push_back({path, bpf_map__fd(map)});
  }
  for (auto &l : links_) out.push_back({l.first, bpf_link__fd(l.second)});
  out.push_back({opts_.pin_dir + "/progs/" + bpf_program__name(skel_->progs.ubia_tc_ingress), tc_ingress_fd_});
  out.push_back({opts_.pin_dir + "/progs/" + bpf_program__name(skel_->progs.ubia_tc_egress), tc_egress_fd_});
  return out;
}

std::vector<std::string> Meter::missing_pins() const {
  std::vector<std::string> out;
  for (auto &p : pins())
    if (!exists(p.first)) out.push_back(p.first);
  return out;
}

// The pin directory was removed (or some pins in it) while we run: the programs still
// count (we hold the links and maps), but a restarted agent would find nothing. Pin again
// from the fds we hold, and lock the new directory.
size_t Meter::repin() {
  mkdir_p(opts_.pin_dir + "/maps");
  mkdir_p(opts_.pin_dir + "/links");
  mkdir_p(opts_.pin_dir + "/progs");
  int fd = lock_dir(opts_.pin_dir, "another ubia agent took the pin directory " + opts_.pin_dir + " while it was gone");
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = fd;
  size_t n = 0;
  for (auto &p : pins()) {
    if (exists(p.first)) continue;
    if (bpf_obj_pin(p.second, p.first.c_str()) != 0) fail_bpf("pinning " + p.first + " again failed", errno);
    n++;
  }
  return n;
}

void detach_pinned(const std::string &pin_dir, bool meter_only) {
  libbpf_set_print(libbpf_print);  // "no such filter" on interfaces without ours is expected
  // Unpinning drops the last reference to each link: the kernel detaches the programs.
  if (meter_only)
    for (const char *sub : {"/maps", "/links", "/progs"}) remove_tree(pin_dir + sub);
  else
    remove_tree(pin_dir);
  struct if_nameindex *ifs = if_nameindex();
  if (!ifs) return;
  for (struct if_nameindex *i = ifs; i->if_index; i++) {
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      bpf_tc_hook hook{};
      hook.sz = sizeof(hook);
      hook.ifindex = i->if_index;
      hook.attach_point = point;
      bpf_tc_opts opts{};
      opts.sz = sizeof(opts);
      opts.handle = kTcHandle;
      opts.priority = tc_priority(pin_dir);
      bpf_tc_detach(&hook, &opts);
    }
  }
  if_freenameindex(ifs);
}

void Meter::close(bool detach) {
  if (closed_) return;
  closed_ = true;
  if (rb_) ring_buffer__free(rb_);
  rb_ = nullptr;
  if (census_link_) bpf_link__destroy(census_link_);
  census_link_ = nullptr;
  for (bpf_link *link : fold_links_) bpf_link__destroy(link);
  fold_links_.clear();
  if (user_slots_) munmap(const_cast<ubia_user_slot *>(user_slots_), user_slots_len_);
  user_slots_ = nullptr;
  if (meta_) {
    meta_->reader_tgid = 0;  // the pid may come to another process
    munmap(const_cast<ubia_meta *>(meta_), sizeof(ubia_meta));
  }
  meta_ = nullptr;
  for (auto &l : links_) bpf_link__destroy(l.second);  // closes our fd; the pin keeps it attached
  links_.clear();
  for (int *fd : {&tc_ingress_fd_, &tc_egress_fd_, &cgroup_fd_, &lock_fd_})
    if (*fd >= 0) ::close(*fd), *fd = -1;
  if (skel_) ubia_bpf__destroy(skel_);
  skel_ = nullptr;
  if (detach) detach_pinned(opts_.pin_dir);
}

}  // namespace ubia
