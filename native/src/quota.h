// Quota enforcement without JavaScript: loads bpf/quota.bpf.c, holds the verdicts and
// exemptions in maps pinned under <pin_dir>/quota, and puts the programs in place only
// while at least one verdict exists. Needs the meter of the same pin directory: the
// packet programs run as its tail calls.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bpf_util.h"
#include "ubia.h"

struct quota_bpf;
struct bpf_link;

namespace ubia {

class QuotaEnforcer {
 public:
  // pin_dir: the agent's agent.pin_dir; everything goes into its quota/ subdirectory
  explicit QuotaEnforcer(const std::string &pin_dir);
  ~QuotaEnforcer();
  QuotaEnforcer(const QuotaEnforcer &) = delete;
  QuotaEnforcer &operator=(const QuotaEnforcer &) = delete;

  // Replaces the uid's verdict (its token buckets stay: a repeated set changes nothing).
  void set(uint32_t uid, const ubia_quota_verdict &v);
  void clear(uint32_t uid);
  // The verdicts in force; expired ones are removed on the way.
  std::vector<std::pair<uint32_t, ubia_quota_verdict>> list();
  // Replaces the exempt destinations and the local-services switch.
  void set_exemptions(const std::vector<ubia_quota_cidr4> &v4, const std::vector<ubia_quota_cidr6> &v6,
                      bool local_services);
  // Whether the programs are in place: the packet programs in the meter's call slots,
  // the connect/sendmsg programs attached.
  bool attached() const { return placed_; }
  // Keeps verdicts, exemptions and attached programs pinned unless detach.
  void close(bool detach);

 private:
  void load();
  void resume_links();
  // Puts the programs in place when a verdict exists, takes them away when none does.
  void sync_attachment();
  void place_packet_programs();
  void remove_packet_programs();
  bool any_verdict() const;
  void forget(uint32_t uid);
  void rebuild_filter();

  std::string dir_;
  std::string meter_maps_;  // the meter's pinned maps: the uid filter and the call slots
  quota_bpf *skel_ = nullptr;
  int calls_fd_[2] = {-1, -1};  // the meter's egress_calls, ingress_calls
  bool placed_ = false;         // the packet programs are in the call slots
  int cgroup_fd_ = -1;
  int lock_fd_ = -1;
  bool closed_ = false;
  // every attached program's link, pinned and held (pin path, link)
  std::vector<std::pair<std::string, bpf_link *>> links_;
};

}  // namespace ubia
