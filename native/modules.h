// The concerns of the addon, one source file each.
#pragma once

#include <napi.h>

namespace mp {

void InitFork(Napi::Env env, Napi::Object exports);   // fork.cc: fork() made safe inside Node
void InitWait(Napi::Env env, Napi::Object exports);   // wait.cc: waitpid, kill, pids, _exit
void InitShm(Napi::Env env, Napi::Object exports);    // shm.cc: POSIX shared memory mappings
void InitFutex(Napi::Env env, Napi::Object exports);  // futex.cc: process-shared waits
void InitPopen(Napi::Env env, Napi::Object exports);  // popen.cc: what Process start methods need
void InitInternals(Napi::Env env, Napi::Object exports);  // internals.cc: Node's internals, checked
void InitConnection(Napi::Env env, Napi::Object exports);  // connection.cc: pipes, fd passing, framed_channel.cc's streams
void InitFdWait(Napi::Env env, Napi::Object exports);  // fd_wait.cc: waiting for descriptors (connection.wait)
void InitSocket(Napi::Env env, Napi::Object exports);  // socket.cc: Listener and Client sockets
void InitQueueRing(Napi::Env env, Napi::Object exports);  // queue_ring.cc: a Queue's items in shared memory
void InitPoolLink(Napi::Env env, Napi::Object exports);  // pool_link.cc: a forked pool worker's mailboxes

}  // namespace mp
