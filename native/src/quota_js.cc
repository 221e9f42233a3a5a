// JavaScript face of quota enforcement: verdicts as plain objects (field names as in
// src/kernel/native.ts NativeQuotaEnforcer), wall-clock ends converted to the boot-time
// clock the programs compare against.
#include <napi.h>

#include <cstring>
#include <memory>

#include "quota.h"

namespace ubia {
namespace {

const char *action_name(uint32_t action) { return action == UBIA_QUOTA_BLOCK ? "block" : "throttle"; }

// [{ prefixLength, address: Uint8Array(N) }] → trie keys
template <typename K>
std::vector<K> cidr_keys(Napi::Env env, Napi::Value value) {
  std::vector<K> out;
  Napi::Array a = value.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    Napi::Uint8Array addr = o.Get("address").As<Napi::Uint8Array>();
    K k{};
    if (addr.ByteLength() != sizeof(k.addr)) throw Napi::Error::New(env, "quota exemption: address of the wrong family");
    k.prefixlen = o.Get("prefixLength").As<Napi::Number>().Uint32Value();
    memcpy(k.addr, addr.Data(), sizeof(k.addr));
    out.push_back(k);
  }
  return out;
}

class QuotaWrap : public Napi::ObjectWrap<QuotaWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "QuotaEnforcer",
                       {
                           InstanceMethod("set", &QuotaWrap::Set),
                           InstanceMethod("clear", &QuotaWrap::Clear),
                           InstanceMethod("list", &QuotaWrap::List),
                           InstanceMethod("setExemptions", &QuotaWrap::SetExemptions),
                           InstanceMethod("attached", &QuotaWrap::Attached),
                           InstanceMethod("close", &QuotaWrap::Close),
                       });
  }

  explicit QuotaWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<QuotaWrap>(info) {
    enforcer_ = std::make_unique<QuotaEnforcer>(info[0].As<Napi::Object>().Get("pinDir").As<Napi::String>());
  }

 private:
  QuotaEnforcer &enforcer(Napi::Env env) {
    if (!enforcer_) throw Napi::Error::New(env, "the quota enforcer is closed");
    return *enforcer_;
  }

  // set({ uid, action: 'block' | 'throttle', rateBytes, burstBytes, untilMs })
  Napi::Value Set(const Napi::CallbackInfo &info) {
    Napi::Object o = info[0].As<Napi::Object>();
    ubia_quota_verdict v{};
    std::string action = o.Get("action").As<Napi::String>();
    v.action = action == "block" ? UBIA_QUOTA_BLOCK : UBIA_QUOTA_THROTTLE;
    v.rate_bytes = uint64_t(o.Get("rateBytes").As<Napi::Number>().DoubleValue());
    v.burst_bytes = uint64_t(o.Get("burstBytes").As<Napi::Number>().DoubleValue());
    const double until_ms = o.Get("untilMs").As<Napi::Number>().DoubleValue();
    v.until_epoch_ms = uint64_t(until_ms);
    v.until_boot_ns = BootClock().boot_ns(until_ms);
    enforcer(info.Env()).set(o.Get("uid").As<Napi::Number>().Uint32Value(), v);
    return info.Env().Undefined();
  }

  Napi::Value Clear(const Napi::CallbackInfo &info) {
    enforcer(info.Env()).clear(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }

  // [{ uid, action, rateBytes, burstBytes, untilMs }]: untilMs as the caller gave it
  Napi::Value List(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto verdicts = enforcer(env).list();
    Napi::Array out = Napi::Array::New(env, verdicts.size());
    for (size_t i = 0; i < verdicts.size(); i++) {
      const ubia_quota_verdict &v = verdicts[i].second;
      Napi::Object o = Napi::Object::New(env);
      o.Set("uid", Napi::Number::New(env, verdicts[i].first));
      o.Set("action", action_name(v.action));
      o.Set("rateBytes", Napi::Number::New(env, double(v.rate_bytes)));
      o.Set("burstBytes", Napi::Number::New(env, double(v.burst_bytes)));
      o.Set("untilMs", Napi::Number::New(env, double(v.until_epoch_ms)));
      out.Set(uint32_t(i), o);
    }
    return out;
  }

  // setExemptions(v4: Cidr[], v6: Cidr[], localServices)
  Napi::Value SetExemptions(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    enforcer(env).set_exemptions(cidr_keys<ubia_quota_cidr4>(env, info[0]), cidr_keys<ubia_quota_cidr6>(env, info[1]),
                                 info[2].ToBoolean().Value());
    return env.Undefined();
  }

  Napi::Value Attached(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), enforcer(info.Env()).attached());
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (enforcer_) enforcer_->close(info.Length() > 0 && info[0].ToBoolean().Value());
    enforcer_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<QuotaEnforcer> enforcer_;
};

}  // namespace

Napi::Function DefineQuota(Napi::Env env) { return QuotaWrap::Define(env); }

}  // namespace ubia
