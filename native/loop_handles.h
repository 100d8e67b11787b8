// Reading a libuv loop's handles from Node's own uv.h (the fork code's need).
#pragma once

#include <unistd.h>

#include <cstddef>

#include <uv.h>

namespace mp {

// Visits every handle of `loop`, read only. uv_walk() moves every handle's
// queue links as it goes: a write to every page that holds a handle, each a
// copy-on-write fault in a child (and in the parent after each fork).
template <typename Visit>
void ForEachHandle(uv_loop_t* loop, Visit visit) {
  const auto* queue = static_cast<const uv__queue*>(static_cast<void*>(&loop->handle_queue));
  for (const uv__queue* q = queue->next; q != queue; q = q->next) {
    visit(reinterpret_cast<uv_handle_t*>(reinterpret_cast<char*>(const_cast<uv__queue*>(q)) -
                                         offsetof(uv_handle_t, handle_queue)));
  }
}

// Whether `handle` is a uv_stream_t: a TCP socket, a pipe or a TTY.
inline bool IsStream(const uv_handle_t* handle) {
  return handle->type == UV_TCP || handle->type == UV_NAMED_PIPE || handle->type == UV_TTY;
}

// The descriptor of a handle on stdout or stderr, else -1: their
// queued writes are flushed by the parent before a fork and completed in the
// child too.
inline int StdioOutputFd(const uv_handle_t* handle) {
  uv_os_fd_t fd;
  return uv_fileno(handle, &fd) == 0 && (fd == STDOUT_FILENO || fd == STDERR_FILENO) ? fd : -1;
}

inline bool IsStdoutOrStderr(const uv_handle_t* handle) { return StdioOutputFd(handle) >= 0; }

}  // namespace mp
