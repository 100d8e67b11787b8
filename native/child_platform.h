// V8's background work in a forked child, on threads of ours: see
// child_platform.cc.
#pragma once

#include <v8-platform.h>

namespace mp {

// In the parent, before a fork (done once): false when this platform's worker
// tasks cannot be redirected here (another C++ ABI, no symbols).
bool PrepareWorkerRedirect(v8::Platform* platform);
// Why PrepareWorkerRedirect() said no (null before it was asked, or when it said yes).
const char* WorkerRedirectFailure();
// In a child of the first generation: false when the parent could not prepare it.
bool RedirectWorkerTasks(v8::Platform* platform);
// Around a fork from a child: the pool's thread runs no task across it.
void PauseChildWorkers();
void ResumeChildWorkers();  // in the child that forked
void ForgetChildWorkers();  // in its new child, where the thread is not

}  // namespace mp
