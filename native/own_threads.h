// Threads this addon starts itself (waiters blocked in waitpid() or a futex
// wait). They hold no lock while they block, so they do not make fork()
// unsafe: the fork warning leaves them out of its count.
#pragma once

#include <atomic>

namespace mp {

extern std::atomic<int> g_ownThreads;

// Counts the current thread as one of ours for its lifetime: create one at the
// top of the body of every thread the addon starts.
class OwnThreadScope {
 public:
  OwnThreadScope() { g_ownThreads.fetch_add(1); }
  ~OwnThreadScope() { g_ownThreads.fetch_sub(1); }
  OwnThreadScope(const OwnThreadScope&) = delete;
  OwnThreadScope& operator=(const OwnThreadScope&) = delete;
};

}  // namespace mp
