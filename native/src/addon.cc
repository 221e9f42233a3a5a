// ubia's native addon: the kernel meter and a few system calls.
#include <napi.h>

#include "meter.h"

namespace ubia {
Napi::Function DefineMeter(Napi::Env env);
void DefineSystem(Napi::Env env, Napi::Object exports);
}  // namespace ubia

namespace {

Napi::Value DetachPinned(const Napi::CallbackInfo &info) {
  ubia::detach_pinned(info[0].As<Napi::String>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Meter", ubia::DefineMeter(env));
  exports.Set("detachPinned", Napi::Function::New(env, DetachPinned));
  exports.Set("abiVersion", Napi::Number::New(env, UBIA_ABI_VERSION));
  ubia::DefineSystem(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(ubia_native, Init)
