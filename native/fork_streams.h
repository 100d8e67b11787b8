// What fork.cc needs of fork_streams.cc.
#pragma once

#include <uv.h>

namespace mp {

// In a forked child, once it has its own epoll (uv_loop_fork) and before its
// loop runs: the parent's pending socket and pipe writes, connects and
// shutdowns stay the parent's (see fork_streams.cc).
void ForgetParentStreamRequests(uv_loop_t* loop);

// In a Process child, before its target runs: the parent's sockets, servers,
// pipes, TTYs and UDP sockets (stdout and stderr aside) are watched no more
// and keep the loop alive no more (see fork_streams.cc).
void QuietParentHandles(uv_loop_t* loop);

}  // namespace mp
