// Entry point: each concern registers its own exports.
#ifndef _WIN32
#include <dlfcn.h>
#endif

#include <napi.h>

#include "modules.h"

namespace {

// The addon stays loaded until the process ends. A worker thread that loads
// it when the main thread never did unloads it (dlclose) at the worker's exit,
// while V8 still holds backing stores whose deleters are our code (shared
// memory mappings): the whole process then dies in ~BackingStore. Our
// threads (waiters) may also outlive an environment for a moment.
void StayLoaded() {
#ifndef _WIN32
  static const bool pinned = [] {
    Dl_info self{};
    if (dladdr(reinterpret_cast<void*>(&StayLoaded), &self) == 0 || self.dli_fname == nullptr) return false;
    // Another reference, never dropped, marked never to be unloaded.
    return dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != nullptr;
  }();
  (void)pinned;
#endif
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  StayLoaded();
  mp::InitFork(env, exports);
  mp::InitWait(env, exports);
  mp::InitShm(env, exports);
  mp::InitFutex(env, exports);
  mp::InitPopen(env, exports);
  mp::InitInternals(env, exports);
  mp::InitConnection(env, exports);
  mp::InitFdWait(env, exports);
  mp::InitSocket(env, exports);
  mp::InitQueueRing(env, exports);
  mp::InitPoolLink(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(multiprocessing, Init)
