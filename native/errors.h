// One error shape crosses the native boundary: an Error with the errno name in
// `code`, the (negative, as in Node) errno in `errno` and the call in `syscall`.
#pragma once

#include <napi.h>

namespace mp {

// Builds the Error for a failed system call; `err` is a positive errno value.
Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall);

// Throws ErrnoError(env, errno, syscall) as a C++ exception that node-addon-api
// turns into a JS exception at the boundary.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall);
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char* syscall);

// A TypeError for arguments that fail the cheap C++ guard ("Usage: ...").
[[noreturn]] void ThrowUsage(Napi::Env env, const char* usage);

// Calls `fn` from the event loop (a libuv callback, not from JS) as Node calls
// its own callbacks: in `context`, then the nextTick and microtask queues. An
// exception it throws goes to Node's uncaught-exception handling, as one
// thrown by a timer callback would; nothing escapes as a C++ exception. A
// JS execution being terminated is left to finish.
void CallFromLoop(napi_env env, napi_async_context context, napi_value fn, size_t argc = 0,
                  const napi_value* argv = nullptr);

// Reads argument `i` as a 32-bit integer or throws a usage TypeError.
int32_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* usage);

}  // namespace mp
