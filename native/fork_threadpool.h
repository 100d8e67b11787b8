// What fork.cc needs of fork_threadpool.cc.
#pragma once

#include <uv.h>

namespace mp {

// In a forked child, once it has its own epoll (uv_loop_fork): the parent's
// thread-pool work stays the parent's (see fork_threadpool.cc). Returns 0 or
// a libuv error code.
int ForgetParentThreadPoolWork(uv_loop_t* loop);

}  // namespace mp
