// JavaScript face of the meter: converts the shared structs of bpf/ubia.h into plain
// objects (field names as in src/kernel/types.ts) and streams ring-buffer events to a
// callback from a libuv poll handle, so the event loop never blocks on the kernel.
#include <arpa/inet.h>
#include <napi.h>
#include <uv.h>

#include <memory>
#include <string_view>
#include <unordered_map>

#include "meter.h"

namespace ubia {
namespace {

const char *scope_name(uint32_t scope) { return scope == UBIA_SCOPE_LOOPBACK ? "loopback" : "external"; }

// Tables cross into JS as columns (typed arrays; strings dictionary-encoded), not as an object
// per row: creating 65,536 objects property by property through Node-API took ~270 ms,
// columns take a few. src/kernel/index.ts turns them into rows.
class Columns {
 public:
  Columns(Napi::Env env, size_t n) : env_(env), obj_(Napi::Object::New(env)), n_(n) {
    obj_.Set("length", Napi::Number::New(env, double(n)));
  }
  template <typename F>
  void number(const char *name, F get) {
    Napi::Float64Array a = Napi::Float64Array::New(env_, n_);
    for (size_t i = 0; i < n_; i++) a[i] = double(get(i));
    obj_.Set(name, a);
  }
  template <typename F>
  void bigint(const char *name, F get) {
    Napi::BigUint64Array a = Napi::BigUint64Array::New(env_, n_);
    for (size_t i = 0; i < n_; i++) a[i] = get(i);
    obj_.Set(name, a);
  }
  // Dictionary-encoded: { codes: Uint32Array, values: string[] } with one JS string per
  // distinct value (a few comms, two scopes), not one per row. Rows are told apart by
  // their raw bytes (key: a view into the rows, alive while the columns are built);
  // format makes the string only for the first row of each distinct value.
  template <typename Key, typename Format>
  void dict(const char *name, Key key, Format format) {
    std::unordered_map<std::string_view, uint32_t> index;
    Napi::Uint32Array codes = Napi::Uint32Array::New(env_, n_);
    std::vector<size_t> first_rows;
    for (size_t i = 0; i < n_; i++) {
      auto [it, added] = index.try_emplace(key(i), uint32_t(first_rows.size()));
      if (added) first_rows.push_back(i);
      codes[i] = it->second;
    }
    Napi::Array vals = Napi::Array::New(env_, first_rows.size());
    for (size_t k = 0; k < first_rows.size(); k++) vals.Set(uint32_t(k), format(first_rows[k]));
    Napi::Object col = Napi::Object::New(env_);
    col.Set("codes", codes);
    col.Set("values", vals);
    obj_.Set(name, col);
  }
  template <typename F>
  void scope(F get) {
    dict("scope", [&](size_t i) { return std::string_view(scope_name(get(i))); },
         [&](size_t i) { return std::string(scope_name(get(i))); });
  }
  template <typename F>
  void comm(F get) {
    auto view = [&](size_t i) {
      const char(&c)[UBIA_COMM_LEN] = get(i);
      return std::string_view(c, strnlen(c, UBIA_COMM_LEN));
    };
    dict("comm", view, [&](size_t i) { return std::string(view(i)); });
  }
  template <typename F>
  void counters(F get) {
    number("rxBytes", [&](size_t i) { return get(i).rx_bytes; });
    number("txBytes", [&](size_t i) { return get(i).tx_bytes; });
    number("rxPackets", [&](size_t i) { return get(i).rx_packets; });
    number("txPackets", [&](size_t i) { return get(i).tx_packets; });
    number("rxPayloadBytes", [&](size_t i) { return get(i).rx_payload; });
    number("txPayloadBytes", [&](size_t i) { return get(i).tx_payload; });
  }
  Napi::Object value() const { return obj_; }

 private:
  Napi::Env env_;
  Napi::Object obj_;
  size_t n_;
};

Napi::Object wire_object(Napi::Env env, const ubia_wire &w) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("rxBytes", Napi::Number::New(env, double(w.rx_bytes)));
  o.Set("txBytes", Napi::Number::New(env, double(w.tx_bytes)));
  o.Set("rxPackets", Napi::Number::New(env, double(w.rx_packets)));
  o.Set("txPackets", Napi::Number::New(env, double(w.tx_packets)));
  return o;
}

Napi::Object traffic_object(Napi::Env env, const ubia_counters &c) {
  Napi::Object o = wire_object(env, ubia_wire{c.rx_bytes, c.tx_bytes, c.rx_packets, c.tx_packets});
  o.Set("rxPayloadBytes", Napi::Number::New(env, double(c.rx_payload)));
  o.Set("txPayloadBytes", Napi::Number::New(env, double(c.tx_payload)));
  return o;
}

std::string address(uint8_t family, const uint8_t (&a)[16]) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family == 4 ? AF_INET : AF_INET6, a, buf, sizeof buf);
  return buf;
}

// An address's bytes: 4 for IPv4, 16 for IPv6, so the two families never compare equal.
std::string_view address_bytes(uint8_t family, const uint8_t (&a)[16]) {
  return std::string_view(reinterpret_cast<const char *>(a), family == 4 ? 4 : 16);
}

// One flow's columns; events carry few flows, reads many.
template <typename Get>
void flow_columns(Columns &c, Get get) {
  const BootClock clock;
  auto ep = [&](size_t i) -> const ubia_endpoints & { return get(i).second.ep; };
  c.bigint("cookie", [&](size_t i) { return get(i).first; });
  c.number("family", [&](size_t i) { return ep(i).family; });
  c.number("protocol", [&](size_t i) { return ep(i).protocol; });
  c.dict("localAddress", [&](size_t i) { return address_bytes(ep(i).family, ep(i).local_addr); },
         [&](size_t i) { return address(ep(i).family, ep(i).local_addr); });
  c.number("localPort", [&](size_t i) { return ep(i).local_port; });
  c.dict("remoteAddress", [&](size_t i) { return address_bytes(ep(i).family, ep(i).remote_addr); },
         [&](size_t i) { return address(ep(i).family, ep(i).remote_addr); });
  c.number("remotePort", [&](size_t i) { return ep(i).remote_port; });
  c.number("uid", [&](size_t i) { return get(i).second.owner.uid; });
  c.number("gid", [&](size_t i) { return get(i).second.owner.gid; });
  c.number("pid", [&](size_t i) { return get(i).second.owner.tgid; });
  c.comm([&](size_t i) -> const char(&)[UBIA_COMM_LEN] { return get(i).second.owner.comm; });
  c.bigint("cgroupId", [&](size_t i) { return uint64_t(get(i).second.owner.cgroup_id); });
  c.scope([&](size_t i) { return get(i).second.scope; });
  c.number("firstSeenMs", [&](size_t i) { return clock.epoch_ms(get(i).second.first_ns); });
  c.number("lastSeenMs", [&](size_t i) {
    const ubia_flow &f = get(i).second;
    return clock.epoch_ms(f.last_ns ? f.last_ns : f.first_ns);
  });
  c.counters([&](size_t i) -> const ubia_counters & { return get(i).second.c; });
}

class MeterWrap : public Napi::ObjectWrap<MeterWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Meter",
                       {
                           InstanceMethod("fold", &MeterWrap::Fold),
                           InstanceMethod("readUsers", &MeterWrap::ReadUsers),
                           InstanceMethod("readProcesses", &MeterWrap::ReadProcesses),
                           InstanceMethod("readFlows", &MeterWrap::ReadFlows),
                           InstanceMethod("readInterfaces", &MeterWrap::ReadInterfaces),
                           InstanceMethod("readStats", &MeterWrap::ReadStats),
                           InstanceMethod("forgetProcesses", &MeterWrap::ForgetProcesses),
                           InstanceMethod("forgetFlow", &MeterWrap::ForgetFlow),
                           InstanceMethod("status", &MeterWrap::Status),
                           InstanceMethod("missingPins", &MeterWrap::MissingPins),
                           InstanceMethod("repin", &MeterWrap::Repin),
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
      if (o.Has("precise") && o.Get("precise").IsBoolean()) opts.precise = o.Get("precise").As<Napi::Boolean>().Value();
      if (o.Has("userCapacity") && o.Get("userCapacity").IsNumber())
        opts.user_capacity = o.Get("userCapacity").As<Napi::Number>().Uint32Value();
      if (o.Has("foldOnRead") && o.Get("foldOnRead").IsBoolean()) opts.fold_on_read = o.Get("foldOnRead").As<Napi::Boolean>().Value();
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

  Napi::Value Fold(const Napi::CallbackInfo &info) {
    meter(info.Env()).fold();
    return info.Env().Undefined();
  }

  Napi::Value ReadUsers(const Napi::CallbackInfo &info) {
    auto rows = meter(info.Env()).read_users();
    Columns c(info.Env(), rows.size());
    c.number("uid", [&](size_t i) { return rows[i].key.uid; });
    c.scope([&](size_t i) { return rows[i].key.scope; });
    c.counters([&](size_t i) -> const ubia_counters & { return rows[i].value; });
    return c.value();
  }

  Napi::Value ReadProcesses(const Napi::CallbackInfo &info) {
    auto rows = meter(info.Env()).read_processes();
    Columns c(info.Env(), rows.size());
    c.number("uid", [&](size_t i) { return rows[i].key.uid; });
    c.number("pid", [&](size_t i) { return rows[i].key.tgid; });
    c.comm([&](size_t i) -> const char(&)[UBIA_COMM_LEN] { return rows[i].key.comm; });
    c.scope([&](size_t i) { return rows[i].key.scope; });
    // a number, not a BigInt: the agent keys 10,000s of rows by it every poll, and kernfs
    // hands out ids from 1 upwards (2^53 is never reached)
    c.number("cgroupId", [&](size_t i) { return rows[i].key.cgroup_id; });
    c.counters([&](size_t i) -> const ubia_counters & { return rows[i].value; });
    return c.value();
  }

  // Active flows, plus flows that ended while the ring buffer was full (ended: 1).
  Napi::Value ReadFlows(const Napi::CallbackInfo &info) {
    auto rows = meter(info.Env()).read_flows();
    Columns c(info.Env(), rows.size());
    flow_columns(c, [&](size_t i) { return std::pair<uint64_t, const ubia_flow &>(rows[i].key, rows[i].value); });
    c.number("ended", [&](size_t i) { return rows[i].value.ended; });
    return c.value();
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
    ubia_counters beyond{s[UBIA_STAT_OVERFLOW_RX_BYTES],   s[UBIA_STAT_OVERFLOW_TX_BYTES],
                         s[UBIA_STAT_OVERFLOW_RX_PACKETS], s[UBIA_STAT_OVERFLOW_TX_PACKETS],
                         s[UBIA_STAT_OVERFLOW_RX_PAYLOAD], s[UBIA_STAT_OVERFLOW_TX_PAYLOAD]};
    o.Set("beyondUserTable", traffic_object(env, beyond));
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

  Napi::Value MissingPins(const Napi::CallbackInfo &info) {
    std::vector<std::string> missing = meter(info.Env()).missing_pins();
    Napi::Array out = Napi::Array::New(info.Env(), missing.size());
    for (size_t i = 0; i < missing.size(); i++) out.Set(i, missing[i]);
    return out;
  }

  Napi::Value Repin(const Napi::CallbackInfo &info) {
    try {
      return Napi::Number::New(info.Env(), double(meter(info.Env()).repin()));
    } catch (const MeterError &e) {
      throw Napi::Error::New(info.Env(), e.what());
    }
  }

  Napi::Value Status(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Meter &m = meter(env);
    Napi::Object o = Napi::Object::New(env);
    o.Set("mode", m.mode());
    o.Set("pinDir", m.pin_dir());
    o.Set("resumed", Napi::Boolean::New(env, m.resumed()));
    o.Set("flowCapacity", Napi::Number::New(env, m.flow_capacity()));
    Napi::Array hooks = Napi::Array::New(env, m.hooks().size());
    for (size_t i = 0; i < m.hooks().size(); i++) {
      Napi::Object h = Napi::Object::New(env);
      h.Set("name", m.hooks()[i].name);
      h.Set("available", Napi::Boolean::New(env, m.hooks()[i].available));
      h.Set("active", Napi::Boolean::New(env, m.hooks()[i].active));
      h.Set("detail", m.hooks()[i].detail);
      hooks.Set(i, h);
    }
    o.Set("hooks", hooks);
    return o;
  }

  // Takes whatever the ring buffer holds: ended flows and exited processes, as columns.
  Napi::Object Drain(Napi::Env env) {
    std::vector<std::pair<uint64_t, ubia_flow>> ended;
    std::vector<std::pair<uint32_t, double>> exited;
    const BootClock clock;
    std::function<void(const ubia_event &)> handler = [&](const ubia_event &e) {
      if (e.kind == UBIA_EV_FLOW_ENDED) ended.emplace_back(e.cookie, e.flow);
      if (e.kind == UBIA_EV_PROC_EXITED) exited.emplace_back(e.tgid, clock.epoch_ms(e.ns));
    };
    meter(env).consume(handler);
    Napi::Object out = Napi::Object::New(env);
    Columns flows(env, ended.size());
    flow_columns(flows, [&](size_t i) { return std::pair<uint64_t, const ubia_flow &>(ended[i].first, ended[i].second); });
    out.Set("flowsEnded", flows.value());
    Columns procs(env, exited.size());
    procs.number("pid", [&](size_t i) { return exited[i].first; });
    procs.number("exitedMs", [&](size_t i) { return exited[i].second; });
    out.Set("processesExited", procs.value());
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
      Napi::Object events = self->Drain(self->env_);
      self->callback_.MakeCallback(self->env_.Global(), {events});
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
