// The few system calls Node lacks: NSS look-ups (so LDAP/SSSD users resolve), the peer
// credentials and groups of a unix socket, and sd_notify without spawning systemd-notify.
#include <errno.h>
#include <grp.h>
#include <napi.h>
#include <pwd.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

namespace ubia {
namespace {

// getpwuid_r/getgrnam_r want a buffer whose size they may find too small (ERANGE).
template <typename F>
int with_growing_buffer(F call) {
  for (size_t size = 1024; size <= (1 << 20); size *= 4) {
    std::vector<char> buf(size);
    int err = call(buf);
    if (err != ERANGE) return err;
  }
  return ERANGE;
}

Napi::Value UserName(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uid_t uid = info[0].As<Napi::Number>().Uint32Value();
  std::string name;
  bool found = false;
  with_growing_buffer([&](std::vector<char> &buf) {
    passwd pw, *res = nullptr;
    int err = getpwuid_r(uid, &pw, buf.data(), buf.size(), &res);
    if (err == 0 && res) {
      name = res->pw_name;
      found = true;
    }
    return err;
  });
  return found ? Napi::String::New(env, name) : env.Undefined();
}

// getpwnam_r: the uid and primary gid of a user name, for `-u NAME` and group roles.
Napi::Value UserByName(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  Napi::Value result = env.Undefined();
  with_growing_buffer([&](std::vector<char> &buf) {
    passwd pw, *res = nullptr;
    int err = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &res);
    if (err == 0 && res) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("uid", Napi::Number::New(env, res->pw_uid));
      o.Set("gid", Napi::Number::New(env, res->pw_gid));
      result = o;
    }
    return err;
  });
  return result;
}

// getpwuid_r: the primary gid of a uid (a group's members include those whose primary
// group it is, who are not listed in its member list).
Napi::Value PrimaryGroup(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  uid_t uid = info[0].As<Napi::Number>().Uint32Value();
  Napi::Value result = env.Undefined();
  with_growing_buffer([&](std::vector<char> &buf) {
    passwd pw, *res = nullptr;
    int err = getpwuid_r(uid, &pw, buf.data(), buf.size(), &res);
    if (err == 0 && res) result = Napi::Number::New(env, res->pw_gid);
    return err;
  });
  return result;
}

Napi::Value GroupMembers(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  Napi::Value result = env.Undefined();
  with_growing_buffer([&](std::vector<char> &buf) {
    group gr, *res = nullptr;
    int err = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &res);
    if (err == 0 && res) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("gid", Napi::Number::New(env, res->gr_gid));
      Napi::Array members = Napi::Array::New(env);
      for (uint32_t i = 0; res->gr_mem && res->gr_mem[i]; i++) members.Set(i, res->gr_mem[i]);
      o.Set("members", members);
      result = o;
    }
    return err;
  });
  return result;
}

Napi::Value PeerCredentials(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    throw Napi::Error::New(env, std::string("SO_PEERCRED failed: ") + strerror(errno));
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  // SO_PEERGROUPS (Linux 4.13): the supplementary groups the peer had when it connected,
  // so a role granted to a group follows the process's real credentials
  std::vector<gid_t> groups(64);
  socklen_t glen = groups.size() * sizeof(gid_t);
  while (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) != 0) {
    if (errno != ERANGE || glen <= groups.size() * sizeof(gid_t))
      throw Napi::Error::New(env, std::string("SO_PEERGROUPS failed: ") + strerror(errno));
    groups.resize(glen / sizeof(gid_t));
  }
  Napi::Array list = Napi::Array::New(env);
  for (uint32_t i = 0; i < glen / sizeof(gid_t); i++) list.Set(i, Napi::Number::New(env, groups[i]));
  o.Set("groups", list);
  return o;
}

// sd_notify(3): one datagram to $NOTIFY_SOCKET; '@' starts an abstract-namespace name.
Napi::Value SdNotify(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string state = info[0].As<Napi::String>();
  const char *path = getenv("NOTIFY_SOCKET");
  if (!path || !*path) return Napi::Boolean::New(env, false);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  size_t plen = strlen(path);
  if (plen >= sizeof(addr.sun_path) || (path[0] != '/' && path[0] != '@'))
    throw Napi::Error::New(env, std::string("NOTIFY_SOCKET is not a usable socket address: ") + path);
  memcpy(addr.sun_path, path, plen);
  if (path[0] == '@') addr.sun_path[0] = 0;
  socklen_t alen = offsetof(sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Napi::Error::New(env, std::string("sd_notify: socket: ") + strerror(errno));
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr), alen);
  int err = errno;
  close(fd);
  if (n < 0) throw Napi::Error::New(env, std::string("sd_notify to ") + path + ": " + strerror(err));
  return Napi::Boolean::New(env, true);
}

}  // namespace

void DefineSystem(Napi::Env env, Napi::Object exports) {
  exports.Set("userName", Napi::Function::New(env, UserName));
  exports.Set("userByName", Napi::Function::New(env, UserByName));
  exports.Set("primaryGroup", Napi::Function::New(env, PrimaryGroup));
  exports.Set("groupMembers", Napi::Function::New(env, GroupMembers));
  exports.Set("peerCredentials", Napi::Function::New(env, PeerCredentials));
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify));
}

}  // namespace ubia
