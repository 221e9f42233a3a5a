// JavaScript face of the meter: converts the shared structs of bpf/ubia.h into plain
// objects (field names as in src/kernel/types.ts) and streams ring-buffer events to a
// callback from a libuv poll handle, so the event loop never blocks on the kernel.
#include <arpa/inet.h>
#include <napi.h>
#include <uv.h>

#include <memory>

#include "meter.h"

namespace ubia {
namespace {

std::string comm_string(const char (&comm)[UBIA_COMM_LEN]) {
  return std::string(comm, strnlen(comm, UBIA_COMM_LEN));
}

const char *scope_name(uint32_t scope) { return scope == UBIA_SCOPE_LOOPBACK ? "loopback" : "external"; }

void set_counters(Napi::Object &o, const ubia_counters &c) {
  Napi::Env env = o.Env();
  o.Set("rxBytes", Napi::Number::New(env, double(c.rx_bytes)));
  o.Set("txBytes", Napi::Number::New(env, double(c.tx_bytes)));
  o.Set("rxPackets", Napi::Number::New(env, double(c.rx_packets)));
  o.Set("txPackets", Napi::Number::New(env, double(c.tx_packets)));
  o.Set("rxPayloadBytes", Napi::Number::New(env, double(c.rx_payload)));
  o.Set("txPayloadBytes", Napi::Number::New(env, double(c.tx_payload)));
}

Napi::Object wire_object(Napi::Env env, const ubia_wire &w) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rxBytes", Napi::Number::New(env, double(w.rx_bytes)));
  o.Set("txBytes", Napi::Number::New(env, double(w.tx_bytes)));
  o.Set("rxPackets", Napi::Number::New(env, double(w.rx_packets)));
  o.Set("txPackets", Napi::Number::New(env, double(w.tx_packets)));
  return o;
}

std::string address(uint8_t family, const uint8_t (&a)[16]) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a, buf, sizeof buf);
  return buf;
}

Napi::Object flow_object(Napi::Env env, uint64_t cookie, const ubia_flow &f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("cookie", Napi::BigInt::New(env, cookie));
  o.Set("family", Napi::Number::New(env, f.family));
  o.Set("protocol", Napi::Number::New(env, f.protocol));
  o.Set("localAddress", address(f.family, f.local_addr));
  o.Set("localPort", Napi::Number::New(env, f.local_port));
  o.Set("remoteAddress", address(f.family, f.remote_addr));
  o.Set("remotePort", Napi::Number::New(env, f.remote_port));
  o.Set("uid", Napi::Number::New(env, f.owner.uid));
  o.Set("gid", Napi::Number::New(env, f.owner.gid));
  o.Set("pid", Napi::Number::New(env, f.owner.tgid));
  o.Set("comm", comm_string(f.owner.comm));
  o.Set("cgroupId", Napi::BigInt::New(env, uint64_t(f.owner.cgroup_id)));
  o.Set("scope", scope_name(f.scope));
  o.Set("firstSeenMs", Napi::Number::New(env, boot_ns_to_epoch_ms(f.first_ns)));
  o.Set("lastSeenMs", Napi::Number::New(env, boot_ns_to_epoch_ms(f.last_ns ? f.last_ns : f.first_ns)));
  set_counters(o, f.c);
  return o;
}

class MeterWrap : public Napi::ObjectWrap<MeterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Meter",
                       {
                           InstanceMethod("readUsers", &MeterWrap::ReadUsers),
                           InstanceMethod("readProcesses", &MeterWrap::ReadProcesses),
                           InstanceMethod("readFlows", &MeterWrap::ReadFlows),
                           InstanceMethod("readInterfaces", &MeterWrap::ReadInterfaces),
                           InstanceMethod("readStats", &MeterWrap::ReadStats),
                           InstanceMethod("forgetProcesses", &MeterWrap::ForgetProcesses),
                           InstanceMethod("forgetFlow", &MeterWrap::ForgetFlow),
                           InstanceMethod("status", &MeterWrap::Status),
                           InstanceMethod("onEvents", &MeterWrap::OnEvents),
                           InstanceMethod("pollEvents", &MeterWrap::PollEvents),
                           InstanceMethod("close", &MeterWrap::Close),
                       });
  }

  explicit MeterWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<MeterWrap>(info) {
    MeterOptions opts;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      if (o.Has("pinDir") && o.Get("pinDir").IsString()) opts.pin_dir = o.Get("pinDir").As<Napi::String>();
      if (o.Has("flowCapacity") && o.Get("flowCapacity").IsNumber())
        opts.flow_capacity = o.Get("flowCapacity").As<Napi::Number>().Uint32Value();
    }
    try {
      meter_ = std::make_unique<Meter>(opts);
    } catch (const MeterError &e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

  ~MeterWrap() override { StopPoll(); }

 private:
  Meter &meter(Napi::Env env) {
    if (!meter_) throw Napi::Error::New(env, "the meter is closed");
    return *meter_;
  }

  Napi::Value ReadUsers(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto rows = meter(env).read_users();
    Napi::Array out = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("uid", Napi::Number::New(env, rows[i].key.uid));
      o.Set("scope", scope_name(rows[i].key.scope));
      set_counters(o, rows[i].value);
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value ReadProcesses(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto rows = meter(env).read_processes();
    Napi::Array out = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("uid", Napi::Number::New(env, rows[i].key.uid));
      o.Set("pid", Napi::Number::New(env, rows[i].key.tgid));
      o.Set("comm", comm_string(rows[i].key.comm));
      o.Set("scope", scope_name(rows[i].key.scope));
      set_counters(o, rows[i].value);
      out.Set(i, o);
    }
    return out;
  }

  // Active flows, plus flows that ended while the ring buffer was full (ended: true).
  Napi::Value ReadFlows(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto rows = meter(env).read_flows();
    Napi::Array out = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object o = flow_object(env, rows[i].key, rows[i].value);
      o.Set("ended", Napi::Boolean::New(env, rows[i].value.ended));
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value ReadInterfaces(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto rows = meter(env).read_interfaces();
    Napi::Array out = Napi::Array::New(env, rows.size());
    for (size_t i = 0; i < rows.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("ifindex", Napi::Number::New(env, rows[i].ifindex));
      o.Set("name", rows[i].name);
      o.Set("total", wire_object(env, rows[i].value.total));
      o.Set("attributed", wire_object(env, rows[i].value.attributed));
      o.Set("unattributed", wire_object(env, rows[i].value.unattributed));
      out.Set(i, o);
    }
    return out;
  }

  Napi::Value ReadStats(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    auto s = meter(env).read_stats();
    Napi::Object o = Napi::Object::New(env);
    auto n = [&](uint64_t v) { return Napi::Number::New(env, double(v)); };
    o.Set("userOverflows", n(s[UBIA_STAT_USER_OVERFLOW]));
    o.Set("processOverflows", n(s[UBIA_STAT_PROC_OVERFLOW]));
    o.Set("flowOverflows", n(s[UBIA_STAT_FLOW_OVERFLOW]));
    o.Set("interfaceOverflows", n(s[UBIA_STAT_IFACE_OVERFLOW]));
    o.Set("eventsDropped", n(s[UBIA_STAT_EVENTS_DROPPED]));
    ubia_wire w{s[UBIA_STAT_UNATTR_RX_BYTES], s[UBIA_STAT_UNATTR_TX_BYTES], s[UBIA_STAT_UNATTR_RX_PACKETS],
                s[UBIA_STAT_UNATTR_TX_PACKETS]};
    o.Set("unattributed", wire_object(env, w));
    return o;
  }

  Napi::Value ForgetProcesses(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    std::set<uint32_t> tgids;
    Napi::Array a = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) tgids.insert(a.Get(i).As<Napi::Number>().Uint32Value());
    return Napi::Number::New(env, double(meter(env).forget_processes(tgids)));
  }

  Napi::Value ForgetFlow(const Napi::CallbackInfo &info) {
    bool lossless;
    meter(info.Env()).forget_flow(info[0].As<Napi::BigInt>().Uint64Value(&lossless));
    return info.Env().Undefined();
  }

  Napi::Value Status(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Meter &m = meter(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("mode", m.mode());
    o.Set("pinDir", m.pin_dir());
    o.Set("resumed", Napi::Boolean::New(env, m.resumed()));
    Napi::Array hooks = Napi::Array::New(env, m.hooks().size());
    for (size_t i = 0; i < m.hooks().size(); i++) {
      Napi::Object h = Napi::Object::New(env);
      h.Set("name", m.hooks()[i].name);
      h.Set("active", Napi::Boolean::New(env, m.hooks()[i].active));
      h.Set("detail", m.hooks()[i].detail);
      hooks.Set(i, h);
    }
    o.Set("hooks", hooks);
    return o;
  }

  // Converts whatever the ring buffer holds into an array of event objects.
  Napi::Array Drain(Napi::Env env) {
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    std::function<void(const ubia_event &)> handler = [&](const ubia_event &e) {
      Napi::Object o = Napi::Object::New(env);
      if (e.kind == UBIA_EV_FLOW_ENDED) {
        o.Set("kind", "flowEnded");
        o.Set("flow", flow_object(env, e.cookie, e.flow));
      } else if (e.kind == UBIA_EV_PROC_EXITED) {
        o.Set("kind", "processExited");
        o.Set("pid", Napi::Number::New(env, e.tgid));
        o.Set("exitedMs", Napi::Number::New(env, boot_ns_to_epoch_ms(e.ns)));
      } else {
        return;
      }
      out.Set(n++, o);
    };
    meter(env).consume(handler);
    return out;
  }

  // Synchronous drain, for callers that poll (and for tests that need ordering).
  Napi::Value PollEvents(const Napi::CallbackInfo &info) { return Drain(info.Env()); }

  // onEvents(cb): cb(events[]) runs on the event loop whenever the ring buffer has data.
  Napi::Value OnEvents(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Meter &m = meter(env);
    StopPoll();
    callback_ = Napi::Persistent(info[0].As<Napi::Function>());
    uv_loop_t *loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    poll_ = new uv_poll_t;
    poll_->data = this;
    env_ = env;
    if (uv_poll_init(loop, poll_, m.events_fd()) != 0) {
      delete poll_;
      poll_ = nullptr;
      throw Napi::Error::New(env, "cannot watch the event ring buffer");
    }
    uv_poll_start(poll_, UV_READABLE, [](uv_poll_t *h, int status, int) {
      auto *self = static_cast<MeterWrap *>(h->data);
      if (status < 0 || !self->meter_) return;
      Napi::HandleScope scope(self->env_);
      Napi::Array events = self->Drain(self->env_);
      if (events.Length() > 0) self->callback_.MakeCallback(self->env_.Global(), {events});
    });
    // never keep the process alive just for events
    uv_unref(reinterpret_cast<uv_handle_t *>(poll_));
    return env.Undefined();
  }

  void StopPoll() {
    if (!poll_) return;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t *>(poll_), [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
    poll_ = nullptr;
    callback_.Reset();
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    bool detach = info.Length() > 0 && info[0].ToBoolean().Value();
    StopPoll();
    if (meter_) meter_->close(detach);
    meter_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<Meter> meter_;
  Napi::FunctionReference callback_;
  uv_poll_t *poll_ = nullptr;
  Napi::Env env_ = Napi::Env(nullptr);
};

}  // namespace

Napi::Function DefineMeter(Napi::Env env) { return MeterWrap::Define(env); }

}  // namespace ubia
