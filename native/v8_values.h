// napi_value and v8::Local<v8::Value> are one and the same in Node's
// implementation of N-API; these two are the only places that rely on it, for
// what N-API cannot do: a buffer whose memory is freed synchronously on detach
// (shm.cc), a function compiled before it is called (fork.cc).
#pragma once

#include <node_api.h>
#include <v8.h>

#include <cstring>

namespace mp {

static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>), "napi_value is a v8::Local");

inline v8::Local<v8::Value> ToV8(napi_value value) {
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &value, sizeof(value));
  return local;
}

inline napi_value FromV8(v8::Local<v8::Value> local) {
  napi_value value;
  std::memcpy(&value, static_cast<void*>(&local), sizeof(value));
  return value;
}

}  // namespace mp
