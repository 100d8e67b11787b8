// What the addon takes from Node beyond its public API, checked in the Node it
// runs in, each where it is used:
//   - libuv's private fields (the loop's handle and request queues, a stream's
//     write queue): fork.cc reads them from the uv.h it was built with. The
//     sizes libuv reports for its own types must be the headers' sizes, or
//     fork() refuses (ENOSYS) rather than read the wrong bytes.
//   - Node's platform vtable (child_platform.cc): where its posting functions
//     are not where V8's headers put them, forked children go without a
//     thread for V8's background work (no TurboFan there) and say nothing;
//     the parent warns once (src/os.ts, from missingInternals()).
//   - V8's flags storage (fork.cc, fact 6): used only where the vtable is
//     missing; without it the child sets its flags itself.
//   - Node's timer and tick queues, found through the inspector by
//     src/popen/pending.ts, and the async id stack (src/popen/fork.ts), are
//     checked on the JS side.
#include "internals.h"

#include <node.h>
#include <uv.h>
#include <v8-version.h>
#include <v8.h>

#include <string>

#include "child_platform.h"
#include "modules.h"

namespace mp {

static_assert(UV_VERSION_MAJOR == 1, "fork.cc reads libuv 1.x's private fields");

const char* LibuvLayoutMismatch() {
  static const char* const mismatch = []() -> const char* {
    if (uv_loop_size() != sizeof(uv_loop_t)) return "uv_loop_t";
    if (uv_handle_size(UV_NAMED_PIPE) != sizeof(uv_pipe_t)) return "uv_pipe_t";
    if (uv_handle_size(UV_TTY) != sizeof(uv_tty_t)) return "uv_tty_t";
    if (uv_handle_size(UV_TCP) != sizeof(uv_tcp_t)) return "uv_tcp_t";
    if (uv_handle_size(UV_UDP) != sizeof(uv_udp_t)) return "uv_udp_t";
    if (uv_req_size(UV_WRITE) != sizeof(uv_write_t)) return "uv_write_t";
    return nullptr;
  }();
  return mismatch;
}

namespace {

v8::Platform* CurrentPlatform() {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  node::Environment* nodeEnv = node::GetCurrentEnvironment(isolate->GetCurrentContext());
  return nodeEnv == nullptr ? nullptr : node::GetMultiIsolatePlatform(nodeEnv);
}

std::string BuiltWith() {
  using std::to_string;
  return std::string("the addon was built against Node ") + NODE_VERSION_STRING + " (V8 " + to_string(V8_MAJOR_VERSION) +
         "." + to_string(V8_MINOR_VERSION) + ", libuv " + to_string(UV_VERSION_MAJOR) + "." + to_string(UV_VERSION_MINOR) +
         "." + to_string(UV_VERSION_PATCH) + ")";
}

Napi::Value MissingInternals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array missing = Napi::Array::New(env);
  auto add = [&](const std::string& line) { missing.Set(missing.Length(), line); };
  if (const char* type = LibuvLayoutMismatch()) {
    add(std::string("fork() and the fork and forkserver start methods: this Node's libuv (") + uv_version_string() +
        ") lays out " + type + " otherwise than " + BuiltWith());
  }
  v8::Platform* platform = CurrentPlatform();
  if (platform != nullptr && !PrepareWorkerRedirect(platform)) {
    add(std::string("optimised code in forked children (V8's background compiles have no thread there): ") +
        WorkerRedirectFailure() + "; " + BuiltWith());
  }
  return missing;
}

}  // namespace

void InitInternals(Napi::Env env, Napi::Object exports) {
  exports.Set("missingInternals", Napi::Function::New(env, MissingInternals, "missingInternals"));
}

}  // namespace mp
