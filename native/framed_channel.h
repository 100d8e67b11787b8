// The addon's one framed byte stream (framed_channel.cc): what a Connection,
// the pool's forked workers and a manager's links send and receive over.
#pragma once

#include <napi.h>

namespace mp {

// The Channel class (src/native.ts NativeChannel), for connection.cc's exports.
Napi::Function DefineChannel(Napi::Env env);

}  // namespace mp
