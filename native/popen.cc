// What the start methods of Process need from the system beyond fork() and
// waitpid() (src/popen/*.ts):
//
//   escapeToLoop(callback)   in a forked child: leave the parent's JS stack.
//   prepareEscape()          in the parent, before the fork: ready it.
//   isRunningMicrotasks()    whether the current JS runs inside a microtask.
//   pipe() -> [readFd, writeFd]   a blocking pipe, for the forkserver's
//       synchronous requests (start() must know the child's pid at once).
//
// Why escapeToLoop: Process.start() forks inside the caller's JS code. Python's
// child runs the target inside start() and leaves through os._exit(), so none
// of the caller's code after start() ever runs in the child. A JS target that
// returns a Promise needs the child's event loop, which runs only once the JS
// stack is empty. Returning or throwing out of start() would run the caller's
// code (its catch blocks, its test runner) in the child. Terminating the
// execution (as the vm module does on a timeout) unwinds every JS frame without
// running a catch or a finally block, and drops the microtasks the parent had
// queued; the callback then starts the target on a fresh stack.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include <node.h>
#include <uv.h>
#include <v8.h>

#include "errors.h"
#include "escape.h"
#include "modules.h"

namespace mp {

namespace {
unsigned int g_escapeCount = 0;
}  // namespace

unsigned int EscapeCount() { return g_escapeCount; }

namespace {

// The callback waiting for the next turn of the loop. It lives as long as the
// process: a forked child leaves through _exit().
struct Escape {
  uv_prepare_t prepare{};
  napi_env env = nullptr;
  Napi::FunctionReference callback;
  napi_async_context asyncContext = nullptr;
  v8::MicrotaskQueue* queue = nullptr;  // set while a checkpoint is being unwound
  bool used = false;                    // escapeToLoop() was called with it
  bool called = false;
};

// The escape a child will use, made ready in the parent before the fork (see
// prepareEscape): what the child does not write, it does not copy.
Escape* g_escape = nullptr;

Escape* PreparedEscape(Napi::Env env) {
  if (g_escape != nullptr && !g_escape->used) return g_escape;
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "escapeToLoop: no event loop");
  auto escape = std::make_unique<Escape>();
  escape->env = env;
  napi_value resourceName = Napi::String::New(env, "node-multiprocessing:forked-child");
  if (napi_async_init(env, nullptr, resourceName, &escape->asyncContext) != napi_ok) {
    throw Napi::Error::New(env, "escapeToLoop: napi_async_init failed");
  }
  if (int err = uv_prepare_init(loop, &escape->prepare)) ThrowErrno(env, -err, "uv_prepare_init");
  escape->prepare.data = escape.get();
  g_escape = escape.release();  // lives as long as the process (see Escape)
  return g_escape;
}

// The callback, once: it starts the child's own work.
void CallOnce(Escape* escape, bool fromLoop) {
  if (escape->called) return;
  escape->called = true;
  Napi::Env env(escape->env);
  Napi::HandleScope scope(env);
  napi_value result;
  if (fromLoop) {
    // napi_make_callback drains the nextTick and microtask queues afterwards,
    // as Node does after each of its own callbacks.
    napi_make_callback(escape->env, escape->asyncContext, env.Global(), escape->callback.Value(), 0, nullptr, &result);
  } else {
    // Inside Node's own code that ran the checkpoint, which is over: the
    // microtasks the callback queues (an async target's) run now, not at the
    // checkpoint after some later callback of the loop.
    napi_call_function(escape->env, env.Global(), escape->callback.Value(), 0, nullptr, &result);
    v8::Isolate::GetCurrent()->PerformMicrotaskCheckpoint();
  }
}

// Inside a microtask, the termination ends the microtask and empties the
// queue (the parent's pending microtasks are gone), then V8 calls this as the
// checkpoint returns to the code that ran it: Node's (its timers and nextTick
// queue run microtasks between callbacks, its callback scopes after them).
// The termination is cancelled (V8 would keep the isolate terminating, and
// Node's timers would retry their callback for ever) and the callback runs
// here, before any other callback of the parent's can: a target that returns
// at once leaves the child without one.
void OnMicrotasksCompleted(v8::Isolate* isolate, void* data) {
  auto* escape = static_cast<Escape*>(data);
  escape->queue->RemoveMicrotasksCompletedCallback(OnMicrotasksCompleted, data);
  if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  CallOnce(escape, false);
}

// Outside a microtask, the termination ends with the outermost JS frame and
// the callback runs at the next prepare phase. The handle then stays active
// and referenced: the child's loop must stay alive until the child leaves
// through _exit(). (A callback of Node's cut short by the termination may have
// left a count of live handles wrong, e.g. the timers'.)
void OnPrepare(uv_prepare_t* handle) {
  auto* escape = static_cast<Escape*>(handle->data);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (!escape->called && isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
  CallOnce(escape, true);
}

// escapeToLoop(callback): terminates the JS execution on the current stack and
// calls `callback` once it is unwound: at the end of the microtask checkpoint
// when called inside a microtask, otherwise at the next turn of the event
// loop. The caller must enter JS code that checks for interrupts at once (a
// loop).
Napi::Value EscapeToLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowUsage(env, "escapeToLoop(callback: Function)");
  Escape* escape = PreparedEscape(env);
  escape->used = true;
  escape->callback = Napi::Persistent(info[0].As<Napi::Function>());
  if (int err = uv_prepare_start(&escape->prepare, OnPrepare)) ThrowErrno(env, -err, "uv_prepare_start");
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::MicrotaskQueue* queue = isolate->GetCurrentContext()->GetMicrotaskQueue();
  if (queue != nullptr && queue->IsRunningMicrotasks()) {
    escape->queue = queue;
    queue->AddMicrotasksCompletedCallback(OnMicrotasksCompleted, escape);
  }
  g_escapeCount++;
  isolate->TerminateExecution();
  return env.Undefined();
}

// prepareEscape(): in the parent, just before a fork, readies the escape the
// child may need.
Napi::Value PrepareEscape(const Napi::CallbackInfo& info) {
  PreparedEscape(info.Env());
  return info.Env().Undefined();
}

// Inside a microtask, a termination also drops the microtasks queued after it,
// those of a target already called included: the caller then calls the
// target only after escaping.
Napi::Value IsRunningMicrotasks(const Napi::CallbackInfo& info) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::MicrotaskQueue* queue = isolate->GetCurrentContext()->GetMicrotaskQueue();
  return Napi::Boolean::New(info.Env(), queue != nullptr && queue->IsRunningMicrotasks());
}

// pipe() -> [readFd, writeFd]: both ends blocking and close-on-exec.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int fds[2];
#ifdef __linux__
  if (pipe2(fds, O_CLOEXEC) < 0) ThrowErrno(info.Env(), "pipe2");
#else
  if (pipe(fds) < 0) ThrowErrno(info.Env(), "pipe");
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
  Napi::Array pair = Napi::Array::New(info.Env(), 2);
  pair.Set(0u, Napi::Number::New(info.Env(), fds[0]));
  pair.Set(1u, Napi::Number::New(info.Env(), fds[1]));
  return pair;
}

}  // namespace

void InitPopen(Napi::Env env, Napi::Object exports) {
  exports.Set("escapeToLoop", Napi::Function::New(env, EscapeToLoop, "escapeToLoop"));
  exports.Set("prepareEscape", Napi::Function::New(env, PrepareEscape, "prepareEscape"));
  exports.Set("isRunningMicrotasks", Napi::Function::New(env, IsRunningMicrotasks, "isRunningMicrotasks"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
}

}  // namespace mp
