// Windows has no fork(), waitpid(), POSIX shared memory or futexes: the addon
// builds there with no exports, and the library runs on child_process alone
// (src/native.ts never loads it on win32).
#include "escape.h"
#include "modules.h"

namespace mp {

void InitFork(Napi::Env, Napi::Object) {}
void InitWait(Napi::Env, Napi::Object) {}
void InitShm(Napi::Env, Napi::Object) {}
void InitFutex(Napi::Env, Napi::Object) {}
void InitPopen(Napi::Env, Napi::Object) {}
void InitInternals(Napi::Env, Napi::Object) {}
void InitConnection(Napi::Env, Napi::Object) {}
void InitFdWait(Napi::Env, Napi::Object) {}
void InitSocket(Napi::Env, Napi::Object) {}
void InitQueueRing(Napi::Env, Napi::Object) {}
void InitPoolLink(Napi::Env, Napi::Object) {}

unsigned int EscapeCount() { return 0; }

}  // namespace mp
