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
#include "bpf_util.h"
#include "ubia.h"

struct ubia_bpf;
struct bpf_link;
struct ring_buffer;

namespace ubia {

// How the fold reaches every socket's storage (see kFoldRoutes in meter.cc).
enum class FoldRoute { StorageMap, Sockets };

struct MeterOptions {
  // always given by the caller: the agent's agent.pin_dir, whose default the configuration
  // schema (src/config/schema.ts) holds
  std::string pin_dir;
  uint32_t flow_capacity = UBIA_MAX_FLOWS;
  // Count payload per send/recv call (the socket-length tracepoints, Linux 6.3+), for
  // the process making it, instead of from the socket's own counters at the fold. Where
  // the kernel lacks the tracepoints the meter runs in the default mode and says why.
  bool precise = false;
  // slots of the per-user table (a pinned table keeps the size it was made with)
  uint32_t user_capacity = UBIA_MAX_USERS;
  // peer flows one unconnected socket may have (programs attached by this load)
  uint32_t max_peers = UBIA_MAX_PEERS;
  // Fold the sockets' pending counts before each read (once per 50 ms). Off: the caller
  // folds with fold(), as often as it needs fresh totals.
  bool fold_on_read = true;
};

// A kernel hook the meter uses or could use: whether this kernel has it, whether the
// meter uses it now, and what it gives (or what lacking it costs).
struct Hook {
  std::string name;
  bool available;
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
  // Moves every socket's pending counts (and, in the default mode, its TCP payload) into
  // the user, process and flow maps: the ubia_census and ubia_fold iterators.
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

  // Pins of this meter that are gone from the pin directory (removed while we run).
  std::vector<std::string> missing_pins() const;
  // Pins every missing map, link and program again from the fds held; returns how many.
  size_t repin();
  // Flow map size in use: a resumed meter keeps the pinned map's, whatever was asked.
  uint32_t flow_capacity() const { return opts_.flow_capacity; }

  // Keeps everything attached and pinned (the kernel goes on counting) unless detach.
  void close(bool detach);

 private:
  void prepare_pin_dir();
  void load_and_attach();
  int open_and_load();
  void probe_features();
  void attach_all();
  void attach_tc(uint32_t ifindex, const std::string &name);
  void fold_if_stale() const;
  void run_iterator(bpf_link *link) const;
  void map_user_slots(size_t used) const;
  std::vector<std::pair<std::string, int>> pins() const;

  MeterOptions opts_;
  ubia_bpf *skel_ = nullptr;
  ring_buffer *rb_ = nullptr;
  bpf_link *census_link_ = nullptr;
  std::vector<bpf_link *> fold_links_;
  volatile ubia_meta *meta_ = nullptr;  // mmap-ed: see struct ubia_meta
  // mmap of the user_slots in use (grows with them: reads map more as users come)
  mutable const ubia_user_slot *user_slots_ = nullptr;
  mutable size_t user_slots_len_ = 0;
  mutable std::chrono::steady_clock::time_point last_fold_{};
  int cgroup_fd_ = -1;
  int tc_ingress_fd_ = -1;
  int tc_egress_fd_ = -1;
  // flock on the pin directory (one agent per pin directory)
  int lock_fd_ = -1;
  // every link, pinned and held (pin path, link)
  std::vector<std::pair<std::string, bpf_link *>> links_;
  bool resumed_ = false;
  FoldRoute fold_route_ = FoldRoute::StorageMap;
  bool closed_ = false;
  std::string mode_;
  std::vector<Hook> hooks_;
  std::set<uint32_t> tc_done_;
  std::map<uint32_t, std::string> tc_failed_;
  const std::function<void(const ubia_event &)> *handler_ = nullptr;
};

// Detaches everything pinned under pin_dir (the meter's links and tc filters, quota
// enforcement's links) and removes the pins and the directory, with no meter loaded: for
// `ubia detach` and package removal. meter_only (a fresh or failed start of the meter):
// only the meter's pins go; the directory and quota enforcement's verdicts (quota/) stay.
void detach_pinned(const std::string &pin_dir, bool meter_only = false);


}  // namespace ubia
