// What fork.cc needs of wait.cc.
#pragma once

namespace mp {

// In a forked child, once it has its own epoll (uv_loop_fork): stops watching
// the children its parent was watching (see ChildWatch in wait.cc).
void ForgetParentChildren();

}  // namespace mp
