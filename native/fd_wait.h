// What fd_wait.cc shares with connection.cc: waiting for descriptors, with or
// without the event loop, across fork().
#pragma once

#include <poll.h>

#include <cstddef>
#include <cstdint>

#include <napi.h>
#include <uv.h>

namespace mp {

// Waits until one of `entries` has its events (an error or a hang-up counts);
// returns how many have, 0 once `timeoutMs` has passed (negative or infinite:
// no limit). Retries EINTR with the time left.
int PollUntil(Napi::Env env, pollfd* entries, size_t count, double timeoutMs);

// A count that changes in every forked child (pthread_atfork): cheaper than
// getpid(), which is a system call, on every read.
uint32_t ProcessGeneration();

// One descriptor watched from the event loop of the process that started the
// watch: in a forked child, the parent's watch stops the first time it fires
// there (the child's own reads are not the parent's). The uv_poll_t is made on
// the first Start() and its memory goes once libuv is done with it (Close()).
class LoopPoll {
 public:
  // `events`: what the descriptor is ready for (UV_READABLE, UV_WRITABLE); a
  // negative `status` is an error (the watch has stopped).
  using Callback = void (*)(void* owner, int status, int events);

  LoopPoll(void* owner, Callback onReady) : owner_(owner), onReady_(onReady) {}
  ~LoopPoll() { Close(); }
  LoopPoll(const LoopPoll&) = delete;
  LoopPoll& operator=(const LoopPoll&) = delete;

  // Watches `fd` for `events` (UV_READABLE, UV_WRITABLE) on `loop`, for this
  // process; a started watch changes to `events`.
  void Start(Napi::Env env, uv_loop_t* loop, int fd, int events);
  void Stop();
  // Whether a started watch keeps the event loop alive.
  void SetRef(bool ref);
  // Ends the watch for good; before its descriptor is closed.
  void Close();
  bool started() const { return started_; }

 private:
  static void OnPoll(uv_poll_t* handle, int status, int events);
  void ApplyRef();

  void* owner_;
  Callback onReady_;
  uv_poll_t* handle_ = nullptr;
  bool started_ = false;
  int events_ = 0;
  bool ref_ = true;
  uint32_t generation_ = 0;
};

}  // namespace mp
