// ubia's native addon: the kernel meter, quota enforcement and a few system calls.
#include <bpf/bpf.h>
#include <napi.h>
#include <unistd.h>

#include "meter.h"

namespace ubia {
Napi::Function DefineMeter(Napi::Env env);
Napi::Function DefineQuota(Napi::Env env);
void DefineSystem(Napi::Env env, Napi::Object exports);
}  // namespace ubia

namespace {

Napi::Value DetachPinned(const Napi::CallbackInfo &info) {
  ubia::detach_pinned(info[0].As<Napi::String>());
  return info.Env().Undefined();
}

// The kernel id of a pinned map (undefined when nothing is pinned there): processes
// holding it open show it as map_id in /proc/PID/fdinfo, which is how `ubia detach`
// tells pins still in use.
Napi::Value PinnedMapId(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return env.Undefined();
  bpf_map_info map{};
  __u32 len = sizeof(map);
  int err = bpf_obj_get_info_by_fd(fd, &map, &len);
  close(fd);
  return err == 0 ? Napi::Number::New(env, map.id) : env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Meter", ubia::DefineMeter(env));
  exports.Set("QuotaEnforcer", ubia::DefineQuota(env));
  exports.Set("detachPinned", Napi::Function::New(env, DetachPinned));
  exports.Set("pinnedMapId", Napi::Function::New(env, PinnedMapId));
  exports.Set("abiVersion", Napi::Number::New(env, UBIA_ABI_VERSION));
  ubia::DefineSystem(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ubia_native, Init)
