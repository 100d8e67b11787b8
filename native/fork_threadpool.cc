// The parent's libuv thread-pool work, in a forked child.
//
// libuv's thread pool is one per process: a queue of work (`wq` in libuv's
// threadpool.c) that its threads take in turn. A thread that finishes a piece
// puts it on its loop's done queue (loop->wq) and wakes the loop (wq_async),
// whose thread then runs the callback. fs calls, dns.lookup(), crypto and zlib
// jobs all go this way, and many are chains: fs.appendFile() is an open(),
// whose callback queues the write(), whose callback queues the close().
//
// fork() copies the queues but none of the threads, and the child shares the
// parent's open files (and their offsets). Each piece of the parent's work in
// flight at the instant of the fork is in one of three states:
// - queued: libuv's own pthread_atfork handler makes the child's first use of
//   the pool start a new pool, with an empty queue. It never runs in the child.
// - running on a parent thread: it never finishes in the child.
// - finished, its callback not yet run: it waits in the child's copy of
//   loop->wq, and the child would run the callback the next time a piece of
//   its own work finishes. The child would carry the parent's chain on as its
//   own: the line of an appendFile() written twice, a writeFile() doubled, the
//   parent's readFile() short of what the child read from the shared offset.
// So the child empties its copy of loop->wq: every piece is the parent's, and
// completes there, once. The requests stay counted in the child's loop
// (loop->active_reqs); fork.cc's LoopEndWatcher leaves them out.
//
// This reads libuv's loop fields from Node's own uv.h, as fork.cc does.
#include "fork_threadpool.h"

namespace mp {

int ForgetParentThreadPoolWork(uv_loop_t* loop) {
  // A parent thread may have held the lock of the done queue at the instant of
  // the fork, putting work on it: the child's copy of the lock stays held for
  // ever (the first callback of the child's own would hang) and the queue's
  // links may be half-written. Both start anew.
  if (int err = uv_mutex_init(&loop->wq_mutex)) return err;
  loop->wq.next = &loop->wq;
  loop->wq.prev = &loop->wq;
  return 0;
}

}  // namespace mp
