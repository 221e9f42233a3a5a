// Helpers both loaders (the meter, quota enforcement) share: libbpf's log and the
// errors made from it, pin directories, the cgroup v2 root.
#include "bpf_util.h"

#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

namespace ubia {

// libbpf's messages, to explain a failed load. A verifier log arrives as one message
// of up to megabytes: kept whole here, so that its end (the reason) survives.
std::string g_libbpf_log;

int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(nullptr, 0, fmt, ap);
  if (n > 0) {
    std::string buf(size_t(n) + 1, '\0');
    vsnprintf(buf.data(), buf.size(), fmt, again);
    buf.resize(size_t(n));
    g_libbpf_log += buf;
  }
  va_end(again);
  if (g_libbpf_log.size() > (4u << 20)) g_libbpf_log.erase(0, g_libbpf_log.size() - (4u << 20));
  return 0;
}

// The verifier's reason for rejecting a program: which program, and the last lines of
// its log (the log walks the program from the start; the failing check is at the end).
static std::string verifier_reason(const std::string &log) {
  const std::string end_mark = "-- END PROG LOAD LOG --";
  size_t end = log.rfind(end_mark);
  if (end == std::string::npos) return "";
  size_t line_start = log.rfind('\n', end);
  size_t begin = log.rfind("-- BEGIN PROG LOAD LOG --", end);
  if (begin == std::string::npos) return "";
  // "libbpf: prog 'NAME': -- BEGIN PROG LOAD LOG --"
  size_t name_at = log.rfind("prog '", begin);
  std::string name = name_at == std::string::npos ? "?" : log.substr(name_at + 6, log.find('\'', name_at + 6) - name_at - 6);
  std::string body = log.substr(begin, (line_start == std::string::npos ? end : line_start) - begin);
  std::vector<std::string> lines;
  std::stringstream ss(body);
  for (std::string l; std::getline(ss, l);)
    if (!l.empty() && l.find("LOAD LOG --") == std::string::npos) lines.push_back(l);
  constexpr size_t kLast = 6;
  std::string out = "the verifier rejected program " + name + ":";
  for (size_t i = lines.size() > kLast ? lines.size() - kLast : 0; i < lines.size(); i++) out += "\n  " + lines[i];
  return out;
}

std::string errno_text(int err) { return strerror(err < 0 ? -err : err); }

// Is this capability in the process's effective set (/proc/self/status CapEff)?
static bool has_capability(int cap) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> cap) & 1;
  return false;
}

[[noreturn]] void fail_bpf(const std::string &what, int err) {
  constexpr int kCapPerfmon = 38, kCapBpf = 39;
  int e = err < 0 ? -err : err;
  std::string msg = what + ": " + errno_text(e);
  if (e == EPERM || e == EACCES)
    msg += ". BPF not permitted: run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"
           " (CAP_SYS_ADMIN only to mount bpffs on /sys/fs/bpf when it is not mounted)";
  else if (e == EINVAL && has_capability(kCapBpf) && !has_capability(kCapPerfmon))
    msg += ". The verifier refuses ubia's tracing programs and socket-storage access without"
           " CAP_PERFMON: grant it (with CAP_BPF and CAP_NET_ADMIN)";
  std::string reason = verifier_reason(g_libbpf_log);
  if (!reason.empty()) {
    msg += "\n" + reason;
  } else if (!g_libbpf_log.empty()) {
    // no verifier log: libbpf's last words say what failed
    std::string tail = g_libbpf_log.size() > 1500 ? g_libbpf_log.substr(g_libbpf_log.size() - 1500)
                                                  : g_libbpf_log;
    msg += "\nlibbpf: " + tail;
  }
  throw MeterError(msg);
}

std::string cgroup2_mount() {
  // The cgroup v2 hierarchy may sit at /sys/fs/cgroup or, on hybrid hosts, at
  // /sys/fs/cgroup/unified: read the mount table, never assume.
  std::ifstream mounts("/proc/self/mounts");
  std::string dev, dir, type, rest;
  while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
    if (type == "cgroup2") return dir;
  throw MeterError("no cgroup v2 hierarchy is mounted: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified) or boot with systemd.unified_cgroup_hierarchy");
}

static bool is_bpffs(const std::string &path) {
  struct statfs st;
  return statfs(path.c_str(), &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

void mkdir_p(const std::string &path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += "/" + part;
    if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST)
      throw MeterError("cannot create " + cur + ": " + errno_text(errno) +
                       (errno == EACCES || errno == EPERM ? " (run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)" : ""));
  }
}

bool exists(const std::string &path) { return access(path.c_str(), F_OK) == 0; }

void remove_tree(const std::string &path, bool keep_top) {
  DIR *d = opendir(path.c_str());
  if (!d) return;
  while (dirent *e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    std::string p = path + "/" + n;
    if (e->d_type == DT_DIR)
      remove_tree(p);
    else
      unlink(p.c_str());
  }
  closedir(d);
  if (!keep_top) rmdir(path.c_str());
}

// An exclusive flock on a pin directory: two processes loading into one pin directory
// would each re-pin what the other removed. `busy` says who holds it and what to do.
int lock_dir(const std::string &dir, const std::string &busy) {
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw MeterError("cannot open the pin directory " + dir + ": " + errno_text(errno));
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) throw MeterError(busy);
    throw MeterError("cannot lock the pin directory " + dir + ": " + errno_text(e));
  }
  return fd;
}

void make_pin_dir(const std::string &pin_dir) {
  // /sys/fs/bpf is not mounted on every fresh machine: mount bpffs when it is missing.
  std::string parent = pin_dir.substr(0, pin_dir.rfind('/'));
  if (parent.empty()) parent = "/";
  if (!is_bpffs(parent)) {
    if (parent != "/sys/fs/bpf")
      throw MeterError("pin directory's parent " + parent + " is not a BPF filesystem: mount one there (mount -t bpf bpf " + parent + ")");
    mkdir_p(parent);
    // with the kernel's default mode, as `mount -t bpf bpf /sys/fs/bpf` does: the mount is
    // shared with every other BPF user of the host; our pin directory itself is 0700
    if (mount("bpf", parent.c_str(), "bpf", 0, nullptr) != 0)
      throw MeterError("cannot mount bpffs on " + parent + ": " + errno_text(errno) + " (run as root or mount it: mount -t bpf bpf " + parent + ")");
  }
  mkdir_p(pin_dir);
}

void pin_maps_in(bpf_object *obj, const std::string &maps_dir) {
  bpf_map *map;
  bpf_object__for_each_map(map, obj) {
    std::string name = bpf_map__name(map);
    if (name.find('.') != std::string::npos) continue;  // .rodata/.bss are per load
    bpf_map__set_pin_path(map, (maps_dir + "/" + name).c_str());
  }
}

BootClock::BootClock() {
  timespec real, boot;
  clock_gettime(CLOCK_REALTIME, &real);
  clock_gettime(CLOCK_BOOTTIME, &boot);
  offset_ns_ = (real.tv_sec - boot.tv_sec) * 1e9 + (real.tv_nsec - boot.tv_nsec);
}

}  // namespace ubia
