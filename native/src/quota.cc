// Loads quota enforcement (bpf/quota.bpf.c), pins its maps under <pin_dir>/quota/maps so
// verdicts survive agent restarts, and while at least one verdict exists attaches its
// connect/sendmsg programs (links pinned under <pin_dir>/quota/links) and places its
// packet programs in the meter's call slots (the meter's pinned egress_calls and
// ingress_calls; the meter's packet programs tail-call them for uids in quota_uids, the
// meter's uid filter, which this object re-uses). `ubia detach` removes <pin_dir> whole,
// this with it.
#include "quota.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "quota.skel.h"

namespace ubia {
namespace {

uint64_t boot_now_ns() {
  timespec ts;
  clock_gettime(CLOCK_BOOTTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// Every key of a map (the tries and the verdicts are small: up to a few thousand).
template <typename K>
std::vector<K> map_keys(int fd) {
  std::vector<K> out;
  K key{}, next{};
  bool first = true;
  while (bpf_map_get_next_key(fd, first ? nullptr : &key, &next) == 0) {
    out.push_back(next);
    key = next;
    first = false;
  }
  return out;
}

// Makes the trie hold exactly `want`: adds first, then removes the rest, so that an
// exemption in both the old and the new set never lapses.
template <typename K>
void replace_trie(int fd, const std::vector<K> &want) {
  const uint8_t one = 1;
  auto same = [](const K &a, const K &b) { return memcmp(&a, &b, sizeof(K)) == 0; };
  for (const K &k : want)
    if (bpf_map_update_elem(fd, &k, &one, BPF_ANY) != 0) fail_bpf("adding a quota exemption failed", errno);
  for (const K &k : map_keys<K>(fd)) {
    bool wanted = false;
    for (const K &w : want) wanted = wanted || same(k, w);
    if (!wanted) bpf_map_delete_elem(fd, &k);
  }
}

}  // namespace

QuotaEnforcer::QuotaEnforcer(const std::string &pin_dir) : dir_(pin_dir + "/quota"), meter_maps_(pin_dir + "/maps") {
  cgroup_fd_ = begin_load();
  make_pin_dir(pin_dir);
  mkdir_p(dir_);
  lock_fd_ = lock_dir(dir_, "another process enforces quotas with the pin directory " + dir_ +
                                ": stop it (one agent per agent.pin_dir)");
  try {
    load();
    rebuild_filter();  // bits of verdicts the kernel expired while nobody listed them go
    resume_links();
    // the slots may hold an earlier load's packet programs: sync_attachment replaces them
    // in one update when a verdict wants them (no moment without a check for a limited
    // user); otherwise they go here
    if (!any_verdict()) remove_packet_programs();
    sync_attachment();
  } catch (...) {
    close(false);
    throw;
  }
}

QuotaEnforcer::~QuotaEnforcer() { close(false); }

void QuotaEnforcer::load() {
  // Pinned state of another layout cannot be read by this build: start afresh (the
  // caller sets its verdicts again; until then nobody is limited).
  std::string config_pin = dir_ + "/maps/quota_config";
  if (exists(config_pin)) {
    int fd = bpf_obj_get(config_pin.c_str());
    ubia_quota_config c{};
    uint32_t zero = 0;
    bool same = fd >= 0 && bpf_map_lookup_elem(fd, &zero, &c) == 0 && c.abi_version == UBIA_QUOTA_ABI_VERSION;
    if (fd >= 0) ::close(fd);
    if (!same) remove_tree(dir_, true);
  }
  mkdir_p(dir_ + "/maps");
  mkdir_p(dir_ + "/links");

  // The packet checks run inside the meter's packet programs: its uid filter and call
  // slots must be pinned (the agent opens the meter first).
  auto meter_pin = [&](const char *name) {
    std::string pin = meter_maps_ + "/" + name;
    if (!exists(pin))
      throw MeterError("quota enforcement needs the meter of this pin directory (" + pin +
                       " is not pinned): open the meter first; quotas act on packets inside its programs");
    return pin;
  };
  const std::string uid_filter = meter_pin("quota_uids");
  const std::string calls[2] = {meter_pin("egress_calls"), meter_pin("ingress_calls")};
  for (int i = 0; i < 2; i++) {
    calls_fd_[i] = bpf_obj_get(calls[i].c_str());
    if (calls_fd_[i] < 0) fail_bpf("opening " + calls[i] + " failed", errno);
  }

  skel_ = quota_bpf__open();
  if (!skel_) fail_bpf("opening the quota BPF object failed", errno);
  pin_maps_in(skel_->obj, dir_ + "/maps");
  // the meter's uid filter: libbpf re-uses the pinned map (and refuses one of another shape)
  bpf_map__set_pin_path(skel_->maps.quota_uids, uid_filter.c_str());
  int err = load_without_signals([&] { return quota_bpf__load(skel_); });
  if (err) fail_bpf("loading the quota BPF programs failed", err);

  uint32_t zero = 0;
  int cfd = bpf_map__fd(skel_->maps.quota_config);
  ubia_quota_config c{};
  bpf_map_lookup_elem(cfd, &zero, &c);
  c.abi_version = UBIA_QUOTA_ABI_VERSION;
  bpf_map_update_elem(cfd, &zero, &c, BPF_ANY);
}

namespace {
// The programs attached to the cgroup and their link pins, in attach order.
std::vector<bpf_program *> programs(quota_bpf *skel) {
  auto *p = &skel->progs;
  return {p->ubia_quota_connect4, p->ubia_quota_connect6, p->ubia_quota_sendmsg4, p->ubia_quota_sendmsg6};
}
}  // namespace

// The packet programs in (or out of) the meter's call slots. Each change re-patches the
// meter's jitted tail calls, so it is made only when the slots' state changes.
void QuotaEnforcer::place_packet_programs() {
  const uint32_t slot = UBIA_CALL_QUOTA;
  bpf_program *progs[2] = {skel_->progs.ubia_quota_egress, skel_->progs.ubia_quota_ingress};
  for (int i = 0; i < 2; i++) {
    int fd = bpf_program__fd(progs[i]);
    if (bpf_map_update_elem(calls_fd_[i], &slot, &fd, BPF_ANY) != 0)
      fail_bpf(std::string("placing ") + bpf_program__name(progs[i]) + " in the meter's call slots failed", errno);
  }
  placed_ = true;
}

void QuotaEnforcer::remove_packet_programs() {
  const uint32_t slot = UBIA_CALL_QUOTA;
  for (int fd : calls_fd_)
    if (fd >= 0) bpf_map_delete_elem(fd, &slot);  // ENOENT: not there
  placed_ = false;
}

// Links an earlier agent pinned: held, and switched to this load's programs (a new
// build's code takes over; the maps are the same pinned ones).
void QuotaEnforcer::resume_links() {
  for (bpf_program *prog : programs(skel_)) {
    std::string pin = dir_ + "/links/" + bpf_program__name(prog);
    if (!exists(pin)) continue;
    bpf_link *link = bpf_link__open(pin.c_str());
    if (!link) fail_bpf("opening " + pin + " failed", errno);
    links_.push_back({pin, link});
    int err = bpf_link__update_program(link, prog);
    if (err) fail_bpf("replacing the program of " + pin + " failed", err);
  }
}

bool QuotaEnforcer::any_verdict() const {
  uint32_t first;
  return bpf_map_get_next_key(bpf_map__fd(skel_->maps.verdicts), nullptr, &first) == 0;
}

void QuotaEnforcer::sync_attachment() {
  const bool wanted = any_verdict();
  if (wanted && !placed_) place_packet_programs();
  if (!wanted && placed_) remove_packet_programs();
  if (wanted && links_.size() < programs(skel_).size()) {
    for (bpf_program *prog : programs(skel_)) {
      std::string pin = dir_ + "/links/" + bpf_program__name(prog);
      if (exists(pin)) continue;
      bpf_link *link = bpf_program__attach_cgroup(prog, cgroup_fd_);
      if (!link) fail_bpf(std::string("attaching ") + bpf_program__name(prog) + " failed", errno);
      links_.push_back({pin, link});
      int err = bpf_link__pin(link, pin.c_str());
      if (err) fail_bpf("pinning " + pin + " failed", err);
    }
  } else if (!wanted && !links_.empty()) {
    // unpinning and closing the last reference detaches
    for (auto &l : links_) {
      unlink(l.first.c_str());
      bpf_link__destroy(l.second);
    }
    links_.clear();
  }
}

namespace {
// The uid filter's word and bit of a uid (as quota_uid_marked in bpf/quota_uids.h computes
// them).
uint32_t filter_word(uint32_t uid) { return (uid >> 6) & (UBIA_QUOTA_FILTER_WORDS - 1); }
uint64_t filter_bit(uint32_t uid) { return uint64_t(1) << (uid & 63); }
}  // namespace

// Makes the uid filter hold exactly the bits of the verdicts there are (one pass over
// them, then the words that change).
void QuotaEnforcer::rebuild_filter() {
  std::vector<uint64_t> want(UBIA_QUOTA_FILTER_WORDS, 0);
  for (uint32_t uid : map_keys<uint32_t>(bpf_map__fd(skel_->maps.verdicts))) want[filter_word(uid)] |= filter_bit(uid);
  const int ffd = bpf_map__fd(skel_->maps.quota_uids);
  for (uint32_t word = 0; word < UBIA_QUOTA_FILTER_WORDS; word++) {
    uint64_t bits = 0;
    bpf_map_lookup_elem(ffd, &word, &bits);
    if (bits != want[word] && bpf_map_update_elem(ffd, &word, &want[word], BPF_ANY) != 0)
      fail_bpf("updating the quota uid filter failed", errno);
  }
}

void QuotaEnforcer::set(uint32_t uid, const ubia_quota_verdict &v) {
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.verdicts), &uid, &v, BPF_ANY) != 0)
    fail_bpf("storing the quota verdict of uid " + std::to_string(uid) + " failed", errno);
  // the verdict first, then its bit: a packet that sees the bit finds the verdict. Only
  // this process writes the filter (the flock on the directory), so read-modify-write is safe.
  const int ffd = bpf_map__fd(skel_->maps.quota_uids);
  const uint32_t word = filter_word(uid);
  uint64_t bits = 0;
  bpf_map_lookup_elem(ffd, &word, &bits);
  bits |= filter_bit(uid);
  if (bpf_map_update_elem(ffd, &word, &bits, BPF_ANY) != 0) fail_bpf("updating the quota uid filter failed", errno);
  sync_attachment();
}

void QuotaEnforcer::forget(uint32_t uid) {
  bpf_map_delete_elem(bpf_map__fd(skel_->maps.verdicts), &uid);
  for (uint32_t egress : {0u, 1u}) {
    ubia_quota_bucket_key k{uid, egress};
    bpf_map_delete_elem(bpf_map__fd(skel_->maps.buckets), &k);
  }
}

void QuotaEnforcer::clear(uint32_t uid) {
  forget(uid);
  rebuild_filter();
  sync_attachment();
}

std::vector<std::pair<uint32_t, ubia_quota_verdict>> QuotaEnforcer::list() {
  const int fd = bpf_map__fd(skel_->maps.verdicts);
  const uint64_t now = boot_now_ns();
  std::vector<std::pair<uint32_t, ubia_quota_verdict>> out;
  bool forgot = false;
  for (uint32_t uid : map_keys<uint32_t>(fd)) {
    ubia_quota_verdict v{};
    bool gone = bpf_map_lookup_elem(fd, &uid, &v) != 0;  // expired in the kernel meanwhile
    if (!gone && v.until_boot_ns > now) {
      out.push_back({uid, v});
      continue;
    }
    forget(uid);
    forgot = true;
  }
  if (forgot) rebuild_filter();
  sync_attachment();
  return out;
}

void QuotaEnforcer::set_exemptions(const std::vector<ubia_quota_cidr4> &v4, const std::vector<ubia_quota_cidr6> &v6,
                                   bool local_services) {
  if (v4.size() > UBIA_QUOTA_MAX_EXEMPT || v6.size() > UBIA_QUOTA_MAX_EXEMPT)
    throw MeterError("too many quota exemptions: at most " + std::to_string(UBIA_QUOTA_MAX_EXEMPT) + " IPv4 and as many IPv6 prefixes");
  replace_trie(bpf_map__fd(skel_->maps.exempt_v4), v4);
  replace_trie(bpf_map__fd(skel_->maps.exempt_v6), v6);
  uint32_t zero = 0;
  ubia_quota_config c{UBIA_QUOTA_ABI_VERSION, local_services ? 1u : 0u};
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.quota_config), &zero, &c, BPF_ANY) != 0)
    fail_bpf("storing the quota exemptions failed", errno);
}

void QuotaEnforcer::close(bool detach) {
  if (closed_) return;
  closed_ = true;
  for (auto &l : links_) bpf_link__destroy(l.second);  // closes our fd; the pin keeps it attached
  links_.clear();
  // kept in the meter's pinned slots (with the verdicts), unless everything goes
  if (detach && skel_) remove_packet_programs();
  for (int &fd : calls_fd_)
    if (fd >= 0) ::close(fd), fd = -1;
  if (skel_) quota_bpf__destroy(skel_);
  skel_ = nullptr;
  for (int *fd : {&cgroup_fd_, &lock_fd_})
    if (*fd >= 0) ::close(*fd), *fd = -1;
  if (detach) remove_tree(dir_);
}

}  // namespace ubia
