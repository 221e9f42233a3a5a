// The kernel meter without JavaScript: load, attach, pin, read, detach.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <linux/types.h>
#include "ubia.h"

struct ubia_bpf;
struct bpf_link;
struct ring_buffer;

namespace ubia {

// An error whose message says what is wrong and what to do about it.
struct MeterError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct MeterOptions {
  std::string pin_dir = "/sys/fs/bpf/ubia";
  uint32_t flow_capacity = UBIA_MAX_FLOWS;
  // Leave the socket-layer (payload) hooks out, as on a kernel without them: for hosts
  // that want the lower overhead, and to test the fallback on kernels that have them.
  bool wire_only = false;
  // Fold the sockets' pending counts before each read (once per 50 ms). Off: the caller
  // folds with fold(), as often as it needs fresh totals.
  bool fold_on_read = true;
};

struct Hook {
  std::string name;
  bool active;
  std::string detail;
};

template <typename K, typename V>
struct Entry {
  K key;
  V value;
};

struct IfaceEntry {
  uint32_t ifindex;
  std::string name;
  ubia_iface value;
};

class Meter {
 public:
  explicit Meter(const MeterOptions &opts);
  ~Meter();
  Meter(const Meter &) = delete;
  Meter &operator=(const Meter &) = delete;

  std::vector<Entry<ubia_user_key, ubia_counters>> read_users() const;
  std::vector<Entry<ubia_proc_key, ubia_counters>> read_processes() const;
  std::vector<Entry<uint64_t, ubia_flow>> read_flows() const;
  std::vector<IfaceEntry> read_interfaces();
  std::vector<uint64_t> read_stats() const;
  // Removes the entries of processes whose final values user space has recorded.
  size_t forget_processes(const std::set<uint32_t> &tgids);
  // Removes a flow whose final record user space has taken from the map (ring buffer
  // was full when it ended).
  void forget_flow(uint64_t cookie);
  // Moves every open socket's pending counts into the user, process and flow maps (the
  // ubia_fold_tcp and ubia_fold_udp iterators: ~1 us per open socket).
  void fold() const;
  // Attaches the tc counters to interfaces that appeared since the last call.
  void attach_new_interfaces();

  // Events: the ring buffer's fd becomes readable; consume() calls the handler per event.
  int events_fd() const;
  int consume(const std::function<void(const ubia_event &)> &handler);

  const std::vector<Hook> &hooks() const { return hooks_; }
  bool resumed() const { return resumed_; }
  const std::string &mode() const { return mode_; }
  const std::string &pin_dir() const { return opts_.pin_dir; }

  // Keeps everything attached and pinned (the kernel goes on counting) unless detach.
  void close(bool detach);

 private:
  void prepare_pin_dir();
  void load_and_attach();
  void probe_features();
  void attach_all();
  void attach_tc(uint32_t ifindex, const std::string &name);
  void fold_if_stale() const;
  void map_user_slots(size_t used) const;

  MeterOptions opts_;
  ubia_bpf *skel_ = nullptr;
  ring_buffer *rb_ = nullptr;
  // the fold iterators (TCP, UDP): this process's own, not pinned
  bpf_link *fold_links_[2] = {nullptr, nullptr};
  // mmap of the user_slots in use (grows with them: reads map more as users come)
  mutable const ubia_user_slot *user_slots_ = nullptr;
  mutable size_t user_slots_len_ = 0;
  mutable std::chrono::steady_clock::time_point last_fold_{};
  int cgroup_fd_ = -1;
  int tc_ingress_fd_ = -1;
  int tc_egress_fd_ = -1;
  bool resumed_ = false;
  bool closed_ = false;
  std::string mode_;
  std::vector<Hook> hooks_;
  std::set<uint32_t> tc_done_;
  std::map<uint32_t, std::string> tc_failed_;
  const std::function<void(const ubia_event &)> *handler_ = nullptr;
};

// Detaches everything a meter pinned under pin_dir (links, tc filters) and removes the
// pins, with no meter loaded: for `ubia detach` and package removal.
void detach_pinned(const std::string &pin_dir);

// CLOCK_BOOTTIME nanoseconds (what the BPF programs stamp) to epoch milliseconds, with
// the clocks' offset taken once (a read converts 10,000s of stamps).
class BootClock {
 public:
  BootClock();
  double epoch_ms(uint64_t boot_ns) const { return (double(boot_ns) + offset_ns_) / 1e6; }

 private:
  double offset_ns_;
};

}  // namespace ubia
