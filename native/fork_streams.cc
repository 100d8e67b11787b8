// The parent's socket and pipe requests, in a forked child.
//
// A stream (a TCP socket, a pipe, a TTY) keeps what the kernel would not take
// at once in libuv's write queue, and writes it when the descriptor becomes
// writable; a finished write waits in the completed queue for its callback; a
// uv_shutdown() waits for the queue to empty; a connect waits for the socket
// to become writable. fork() copies all of it into the child, whose loop would
// carry it on as its own, on the descriptors it shares with the parent:
// - the peer would get the queued bytes twice, the two copies interleaved (4
//   MiB written to a slow reader arrived as 4.6 MiB, garbled);
// - the child would shut the shared socket down as soon as its copy of the
//   queue ran dry, under the feet of the parent, still writing;
// - the child would run the parent's callbacks: a 'drain' handler that writes
//   the next chunk, a 'connect' handler that sends a request, once more.
// So the child forgets them, as it forgets the parent's thread-pool work
// (fork_threadpool.cc): they are the parent's, which completes them once. The
// child never runs their callbacks (its copy of the JS stream waits for them
// for ever) and its loop is not kept alive by them (fork.cc's LoopEndWatcher
// counts them as lost). stdout and stderr are the exception: the parent
// flushed them before the fork, and their requests complete in the child too,
// so that the child's own output flows behind them.
//
// A Process child (a Pool worker, a manager's server) goes further: it runs
// its target only, as Python's does, so the parent's sockets, servers, pipes
// and stdin fall silent in it (QuietParentHandles): its loop would otherwise
// read from them (whichever process reads first gets the bytes: a Pool worker
// answered two thirds of its parent's HTTP requests) and accept on the
// parent's listening sockets.
//
// This reads libuv's stream and watcher fields from Node's own uv.h, as
// fork.cc does, and does what libuv's own uv__io_stop() would do to stop
// watching, without its system calls: a child's new epoll has none of the
// parent's descriptors (uv_loop_fork() only queued them, to be added at its
// next poll, and the epoll deletes a descriptor it reports that nobody
// watches), so taking a watcher out of the loop is all it takes.
#include "fork_streams.h"

#include <poll.h>

#include "loop_handles.h"

namespace mp {
namespace {

bool IsEmpty(const uv__queue& queue) { return queue.next == &queue; }

void MakeEmpty(uv__queue* queue) {
  queue->next = queue;
  queue->prev = queue;
}

// Takes `node` out of whatever queue holds it (a no-op for a node alone).
void Unlink(uv__queue* node) {
  node->prev->next = node->next;
  node->next->prev = node->prev;
  MakeEmpty(node);
}

// The child no longer waits for `events` on `watcher`; if it waited for
// nothing else, its descriptor leaves the loop.
void StopWatching(uv_loop_t* loop, uv__io_t* watcher, unsigned int events) {
  // A completed write's callback was due on the next turn (uv__io_feed).
  Unlink(&watcher->pending_queue);
  watcher->pevents &= ~events;
  if (watcher->pevents != 0 || watcher->fd < 0 || static_cast<unsigned int>(watcher->fd) >= loop->nwatchers) return;
  Unlink(&watcher->watcher_queue);
  watcher->events = 0;
  if (loop->watchers[watcher->fd] == watcher) {
    loop->watchers[watcher->fd] = nullptr;
    loop->nfds--;
  }
}

bool HasParentRequests(const uv_stream_t* stream) {
  return !IsEmpty(stream->write_queue) || !IsEmpty(stream->write_completed_queue) || stream->connect_req != nullptr ||
         stream->shutdown_req != nullptr;
}

void ForgetRequestsOf(uv_loop_t* loop, uv_stream_t* stream) {
  MakeEmpty(&stream->write_queue);
  MakeEmpty(&stream->write_completed_queue);
  stream->write_queue_size = 0;
  // libuv reads a pending connect and shutdown from these fields alone.
  stream->connect_req = nullptr;
  stream->shutdown_req = nullptr;
  StopWatching(loop, &stream->io_watcher, POLLOUT);
}

uv__io_t* WatcherOf(uv_handle_t* handle) {
  if (IsStream(handle)) return &reinterpret_cast<uv_stream_t*>(handle)->io_watcher;
  if (handle->type == UV_UDP) return &reinterpret_cast<uv_udp_t*>(handle)->io_watcher;
  return nullptr;
}

}  // namespace

void ForgetParentStreamRequests(uv_loop_t* loop) {
  ForEachHandle(loop, [loop](uv_handle_t* handle) {
    if (!IsStream(handle) || IsStdoutOrStderr(handle)) return;
    auto* stream = reinterpret_cast<uv_stream_t*>(handle);
    if (HasParentRequests(stream)) ForgetRequestsOf(loop, stream);
  });
}

void QuietParentHandles(uv_loop_t* loop) {
  ForEachHandle(loop, [loop](uv_handle_t* handle) {
    uv__io_t* watcher = WatcherOf(handle);
    if (watcher == nullptr || uv_is_closing(handle) || IsStdoutOrStderr(handle)) return;
    StopWatching(loop, watcher, watcher->pevents);
    uv_unref(handle);
  });
}

}  // namespace mp
