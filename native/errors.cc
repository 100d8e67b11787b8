#include "errors.h"

#include "escape.h"

#include <cerrno>
#include <cstring>
#include <string>

#include <uv.h>
#include <v8.h>

namespace mp {

namespace {

// "ECHILD" for ECHILD. glibc names every errno; libuv only those it uses itself.
const char* ErrnoName(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  if (const char* name = strerrorname_np(err)) return name;
#endif
  return uv_err_name(-err);  // libuv's codes on Unix are the negated errno values
}

}  // namespace

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* code = ErrnoName(err);
  std::string message = std::string(code) + ": " + std::strerror(err) + ", " + syscall;
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall) {
  ThrowErrno(env, errno, syscall);
}

void ThrowErrno(Napi::Env env, int err, const char* syscall) {
  throw ErrnoError(env, err, syscall);
}

void ThrowUsage(Napi::Env env, const char* usage) {
  throw Napi::TypeError::New(env, std::string("Usage: ") + usage);
}

void CallFromLoop(napi_env env, napi_async_context context, napi_value fn, size_t argc, const napi_value* argv) {
  const unsigned int escapes = EscapeCount();
  napi_value global;
  napi_value result;
  if (napi_get_global(env, &global) == napi_ok &&
      napi_make_callback(env, context, global, fn, argc, argv, &result) == napi_ok) {
    return;
  }
  if (v8::Isolate::GetCurrent()->IsExecutionTerminating()) return;
  bool pending = false;
  napi_value error;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending ||
      napi_get_and_clear_last_exception(env, &error) != napi_ok) {
    return;
  }
  // Cut short by a forked child leaving its parent's stack: not an error.
  if (EscapeCount() != escapes) return;
  napi_fatal_exception(env, error);
}

int32_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::Number>().Int32Value();
}

}  // namespace mp
