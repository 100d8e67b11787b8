// Whether a thread of any process still runs: how a waiter tells that the
// thread it depends on died (a robust lock's holder, futex.cc; a queue's
// reserve lock holder, assembler or sleeper, queue_ring.cc).
#pragma once

#include <sys/types.h>

namespace mp {

// False once thread `tid` has ended: gone, or a zombie not yet reaped (where
// /proc can tell). Never false for a live thread.
bool ThreadAlive(pid_t tid);

}  // namespace mp
