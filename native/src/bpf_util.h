// Helpers both loaders (the meter, quota enforcement) share: libbpf's log and the
// errors made from it, pin directories, the cgroup v2 root.
#pragma once

#include <bpf/libbpf.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>

#include <stdexcept>
#include <string>

namespace ubia {

// An error whose message says what is wrong and what to do about it.
struct MeterError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// libbpf's messages since the last clear(): what explains a failed load.
extern std::string g_libbpf_log;
int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap);
std::string errno_text(int err);
// Throws MeterError for a failed BPF operation, with the verifier's reason or libbpf's
// last words and, for permission errors, the capabilities to grant.
[[noreturn]] void fail_bpf(const std::string &what, int err);
// Where the cgroup v2 hierarchy is mounted (throws when it is not).
std::string cgroup2_mount();
void mkdir_p(const std::string &path);
bool exists(const std::string &path);
void remove_tree(const std::string &path, bool keep_top = false);
// Creates pin_dir (mode 0700), mounting bpffs on /sys/fs/bpf when it is not there.
void make_pin_dir(const std::string &pin_dir);
// An exclusive flock on a pin directory; throws MeterError(busy) when another holds it.
int lock_dir(const std::string &dir, const std::string &busy);

// Pins every map of obj (but the per-load .rodata/.bss) as maps_dir/NAME; libbpf re-uses
// a pinned map when its definition matches.
void pin_maps_in(bpf_object *obj, const std::string &maps_dir);

// Runs a skeleton's load with every signal held back. The verifier gives up with EAGAIN
// when a signal is pending, and libbpf retries only a few times: a profiler's SIGPROF, or
// SIGCHLD/SIGHUP arriving at start-up, would fail the load.
template <typename Load>
int load_without_signals(Load load) {
  sigset_t all, before;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &before);
  int err = load();
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return err;
}

// CLOCK_BOOTTIME nanoseconds (what the BPF programs stamp) to epoch milliseconds, with
// the clocks' offset taken once (a read converts 10,000s of stamps).
class BootClock {
 public:
  BootClock();
  double epoch_ms(uint64_t boot_ns) const { return (double(boot_ns) + offset_ns_) / 1e6; }
  // The other way (quota ends): an epoch before boot is boot time 0.
  uint64_t boot_ns(double epoch_ms) const {
    double ns = epoch_ms * 1e6 - offset_ns_;
    return ns <= 0 ? 0 : uint64_t(ns);
  }

 private:
  double offset_ns_;
};

}  // namespace ubia
