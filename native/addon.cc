// Entry point: each concern registers its own exports.
#include <napi.h>

#include "modules.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mp::InitFork(env, exports);
  mp::InitWait(env, exports);
  mp::InitShm(env, exports);
  mp::InitFutex(env, exports);
  mp::InitPopen(env, exports);
  mp::InitInternals(env, exports);
  mp::InitConnection(env, exports);
  mp::InitFdWait(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(multiprocessing, Init)
