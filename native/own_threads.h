// Threads this addon starts itself (waiters blocked in waitpid() or a futex
// wait). They hold no lock while they block, so they do not make fork()
// unsafe: the fork warning leaves them out of its count. A forked child has
// none of them (fork.cc sets the count to 0 there).
#pragma once

#include <atomic>
#include <memory>
#include <thread>
#include <utility>

namespace mp {

extern std::atomic<int> g_ownThreads;

// Counts one thread as ours while it lives.
class OwnThreadScope {
 public:
  OwnThreadScope() { g_ownThreads.fetch_add(1); }
  ~OwnThreadScope() { g_ownThreads.fetch_sub(1); }
  OwnThreadScope(const OwnThreadScope&) = delete;
  OwnThreadScope& operator=(const OwnThreadScope&) = delete;
};

// Starts a detached thread running `body`, counted as ours from before it
// exists (a fork() right after this call must not take it for a stranger's)
// until it ends. Throws std::system_error when no thread can be started.
// Every thread the addon starts goes through here.
template <typename Body>
void StartOwnThread(Body body) {
  auto ours = std::make_unique<OwnThreadScope>();
  std::thread([body = std::move(body), ours = std::move(ours)]() mutable { body(); }).detach();
}

}  // namespace mp
