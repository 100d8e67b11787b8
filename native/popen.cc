// What the start methods of Process need from the system beyond fork() and
// waitpid() (src/popen/*.ts):
//
//   escapeToLoop(callback)   in a forked child: leave the parent's JS stack.
//   prepareEscape()          in the parent, before the fork: ready it.
//   isRunningMicrotasks()    whether the current JS runs inside a microtask.
//   (pipe(), the blocking pipe of the forkserver's synchronous requests, is
//   connection.cc's streamPipe.)
//   raiseHandled(error)      an uncaught exception, handled: empties Node's
//       stack of async ids in a child escaping from a callback.
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

// The escape of one child: the callback that starts its own work, and what
// runs it once the parent's stack is unwound. It lives as long as the process:
// a forked child leaves through _exit().
struct Escape {
  uv_prepare_t prepare{};
  napi_env env = nullptr;
  Napi::FunctionReference callback;
  napi_async_context asyncContext = nullptr;
  v8::MicrotaskQueue* queue = nullptr;  // the checkpoint running at the fork, if any
  bool used = false;                    // escapeToLoop() was called with it
  bool called = false;
};

void OnMicrotasksCompleted(v8::Isolate* isolate, void* data);

// How deep prepareEscape() walks the stack: deeper frames (deep recursion)
// are left for the child to look up itself.
constexpr int kFramesToWalk = 256;

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

// The microtask queue of the current context when it is running a checkpoint
// (the caller runs inside a microtask), otherwise null.
v8::MicrotaskQueue* RunningMicrotaskQueue(v8::Isolate* isolate) {
  v8::MicrotaskQueue* queue = isolate->GetCurrentContext()->GetMicrotaskQueue();
  return queue != nullptr && queue->IsRunningMicrotasks() ? queue : nullptr;
}

// Hooks the escape to the end of the running checkpoint (V8 ignores a second
// registration of the same pair).
void WatchCheckpoint(Escape* escape, v8::MicrotaskQueue* queue) {
  escape->queue = queue;
  queue->AddMicrotasksCompletedCallback(OnMicrotasksCompleted, escape);
}

void Noop(const Napi::CallbackInfo&) {}

// From the microtasks-completed callback: runs the microtasks queued since.
// V8 up to 12 calls it once the checkpoint is over, and a new checkpoint runs
// them. V8 13 and later call it while the queue still counts as running, and
// a checkpoint then does nothing: a nextTick callback (that does nothing)
// makes Node run its tick queue and, after it, a checkpoint, on the way out of
// whichever of its functions ran this one (each checks the tick queue after
// its checkpoint).
void RunQueuedMicrotasks(Napi::Env env, v8::MicrotaskQueue* queue) {
  if (!queue->IsRunningMicrotasks()) {
    v8::Isolate::GetCurrent()->PerformMicrotaskCheckpoint();
    return;
  }
  try {
    Napi::Object process = env.Global().Get("process").As<Napi::Object>();
    process.Get("nextTick").As<Napi::Function>().Call(process, {Napi::Function::New(env, Noop, "noop")});
  } catch (const Napi::Error&) {
    // Left pending: Node reports it as the uncaught error it is.
  }
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
    RunQueuedMicrotasks(env, escape->queue);
  }
}

// Inside a microtask, the termination ends the microtask and empties the
// queue (the parent's pending microtasks are gone), then V8 calls this as the
// checkpoint returns to the code that ran it: Node's (its timers and nextTick
// queue run microtasks between callbacks, its callback scopes after them).
// The termination is cancelled (V8 would keep the isolate terminating, and
// Node's timers would retry their callback for ever) and the callback runs
// here, before any other callback of the parent's can: a target that returns
// at once leaves the child without one. In the parent, which hooked it before
// forking (prepareEscape), the checkpoint simply ends: the hook goes.
void OnMicrotasksCompleted(v8::Isolate* isolate, void* data) {
  auto* escape = static_cast<Escape*>(data);
  escape->queue->RemoveMicrotasksCompletedCallback(OnMicrotasksCompleted, data);
  if (!escape->used) return;
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

// escapeToLoop(): in a forked child, terminates the JS execution on the
// current stack and calls the callback given to prepareEscape() once it is
// unwound: at the end of the microtask checkpoint when called inside a
// microtask, otherwise at the next turn of the event loop. The caller must
// enter JS code that checks for interrupts at once (a loop).
Napi::Value EscapeToLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (g_escape == nullptr || g_escape->used || g_escape->callback.IsEmpty()) {
    throw Napi::Error::New(env, "escapeToLoop: no escape prepared before the fork (prepareEscape)");
  }
  Escape* escape = g_escape;
  escape->used = true;
  if (int err = uv_prepare_start(&escape->prepare, OnPrepare)) ThrowErrno(env, -err, "uv_prepare_start");
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (v8::MicrotaskQueue* queue = RunningMicrotaskQueue(isolate)) WatchCheckpoint(escape, queue);
  g_escapeCount++;
  isolate->TerminateExecution();
  return env.Undefined();
}

// prepareEscape(callback): in the parent, just before a fork, readies the
// escape the child may need, with the callback that starts the child's work.
// A child pays a copy-on-write fault for every page it writes: whatever the
// escape would write there is written here, once, where it can be. The
// callback's reference is made once. Inside a microtask (where the child will
// escape whatever its target), the checkpoint is hooked now (the hook goes
// when it ends in the parent) and the stack is walked: the unwinding in the
// child then finds its frames' code in V8's cache instead of filling it.
Napi::Value PrepareEscape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowUsage(env, "prepareEscape(callback: Function)");
  Escape* escape = PreparedEscape(env);
  if (escape->callback.IsEmpty()) escape->callback = Napi::Persistent(info[0].As<Napi::Function>());
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  if (v8::MicrotaskQueue* queue = RunningMicrotaskQueue(isolate)) {
    WatchCheckpoint(escape, queue);
    v8::HandleScope scope(isolate);
    v8::StackTrace::CurrentStackTrace(isolate, kFramesToWalk, v8::StackTrace::kScriptId);
  }
  return env.Undefined();
}

// Inside a microtask, a termination also drops the microtasks queued after it,
// those of a target already called included: the caller then calls the
// target only after escaping.
Napi::Value IsRunningMicrotasks(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), RunningMicrotaskQueue(v8::Isolate::GetCurrent()) != nullptr);
}

// raiseHandled(error): raises `error` as an uncaught exception, now, through
// Node's handler (process 'uncaughtException' and its capture callback). The
// caller makes sure something handles it: Node then empties its stack of async
// ids, which nothing else public does (see clearAsyncIdStack in fork.ts).
Napi::Value RaiseHandled(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowUsage(env, "raiseHandled(error: Error)");
  if (napi_fatal_exception(env, info[0]) != napi_ok) throw Napi::Error::New(env, "raiseHandled: napi_fatal_exception failed");
  return env.Undefined();
}

}  // namespace

void InitPopen(Napi::Env env, Napi::Object exports) {
  exports.Set("escapeToLoop", Napi::Function::New(env, EscapeToLoop, "escapeToLoop"));
  exports.Set("prepareEscape", Napi::Function::New(env, PrepareEscape, "prepareEscape"));
  exports.Set("isRunningMicrotasks", Napi::Function::New(env, IsRunningMicrotasks, "isRunningMicrotasks"));
  exports.Set("raiseHandled", Napi::Function::New(env, RaiseHandled, "raiseHandled"));
}

}  // namespace mp
