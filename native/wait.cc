// waitpid() and friends: reaping children, sending signals, process ids.
//
// Only the pids the caller names are ever reaped: libuv reaps just the children
// it spawned itself, so forked children stay zombies until the user waits for
// them, as the kernel makes them, and child_process keeps working beside them.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <utility>
#include <vector>

#include <uv.h>

#include "errors.h"
#include "modules.h"
#include "own_threads.h"
#include "unique_fd.h"
#include "wait.h"

namespace mp {
namespace {

pid_t WaitpidRetrying(pid_t pid, int* status, int flags) {
  pid_t result;
  do {
    result = waitpid(pid, status, flags);
  } while (result < 0 && errno == EINTR);
  return result;
}

Napi::Array PidStatus(Napi::Env env, pid_t pid, int status) {
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, pid));
  pair.Set(1u, Napi::Number::New(env, status));
  return pair;
}

// A pidfd becomes readable when the process ends: the sentinel of Linux >= 5.3.
int OpenPidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  int fd;
  do {
    fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  } while (fd < 0 && errno == EINTR);
  return fd;
#else
  errno = ENOSYS;
  return -1;
#endif
}

// ECHILD now, rather than after waiting for a process that is not ours.
void CheckIsChild(Napi::Env env, pid_t pid) {
  siginfo_t info{};
  int result;
  do {
    result = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  } while (result < 0 && errno == EINTR);
  if (result < 0) ThrowErrno(env, "waitpid");
}

// waitpid(pid, flags) -> [pid, status]; [0, 0] with WNOHANG and nothing ready.
Napi::Value Waitpid(const Napi::CallbackInfo& info) {
  const char* usage = "waitpid(pid: number, flags: number)";
  pid_t pid = IntArg(info, 0, usage);
  int flags = IntArg(info, 1, usage);
  int status = 0;
  pid_t result = WaitpidRetrying(pid, &status, flags);
  if (result < 0) ThrowErrno(info.Env(), "waitpid");
  return PidStatus(info.Env(), result, status);
}

void SleepMs(long ms) {
  timespec delay{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&delay, &delay) < 0 && errno == EINTR) {
  }
}

// A point in time on the monotonic clock, in nanoseconds (uv_hrtime()).
uint64_t DeadlineAfter(double timeoutMs) { return uv_hrtime() + static_cast<uint64_t>(timeoutMs * 1e6); }

// The milliseconds poll() should wait for `deadline`: rounded up (a wait of
// 0.5 ms is not a wait of none), at most what an int holds (poll() comes back
// early then, and is called again).
int PollMsUntil(uint64_t deadline) {
  const uint64_t now = uv_hrtime();
  if (now >= deadline) return 0;
  const uint64_t ms = (deadline - now + 999999u) / 1000000u;
  return static_cast<int>(std::min<uint64_t>(ms, INT_MAX));
}

// Where there is no pidfd: poll with WNOHANG, backing off up to 10 ms.
pid_t WaitpidPolling(pid_t pid, int* status, uint64_t deadline) {
  long pause = 1;
  for (;;) {
    pid_t result = WaitpidRetrying(pid, status, WNOHANG);
    if (result != 0) return result;
    const int left = PollMsUntil(deadline);
    if (left == 0) return result;
    SleepMs(std::min<long>(pause, left));
    pause = std::min(pause * 2, 10L);
  }
}

// Waits until `pidfd` is readable (the child ended) or `deadline` passes.
bool PollPidfd(int pidfd, uint64_t deadline) {
  pollfd ready{pidfd, POLLIN, 0};
  for (;;) {
    const int polled = poll(&ready, 1, PollMsUntil(deadline));
    if (polled > 0) return true;
    if (polled < 0 && errno != EINTR) return false;
    if (polled == 0 && uv_hrtime() >= deadline) return true;
  }
}

// Beyond ~30 years is as good as never (and keeps the deadline from
// overflowing), as in futex.cc.
constexpr double kForeverMs = 1e12;

// waitpidTimeout(pid, timeoutMs) -> [pid, status], or [0, 0] when the child is
// still running after timeoutMs (fractions count). A negative, infinite or
// huge timeout waits for ever.
Napi::Value WaitpidTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "waitpidTimeout(pid: number > 0, timeoutMs: number)";
  pid_t pid = IntArg(info, 0, usage);
  if (pid <= 0 || info.Length() < 2 || !info[1].IsNumber()) ThrowUsage(env, usage);
  double timeoutMs = info[1].As<Napi::Number>().DoubleValue();
  int status = 0;
  if (!(timeoutMs >= 0) || timeoutMs > kForeverMs) {
    pid_t result = WaitpidRetrying(pid, &status, 0);
    if (result < 0) ThrowErrno(env, "waitpid");
    return PidStatus(env, result, status);
  }
  CheckIsChild(env, pid);
  const uint64_t deadline = DeadlineAfter(timeoutMs);
  UniqueFd pidfd(OpenPidfd(pid));
  pid_t result;
  if (pidfd.get() < 0) {
    result = WaitpidPolling(pid, &status, deadline);
  } else {
    if (!PollPidfd(pidfd.get(), deadline)) ThrowErrno(env, "poll");
    result = WaitpidRetrying(pid, &status, WNOHANG);
  }
  if (result < 0) ThrowErrno(env, "waitpid");
  return PidStatus(env, result, status);
}

// --- Children watched by the event loop -----------------------------------
//
// Every child that Process.join(), waitpidAsync() or the forkserver waits for
// without blocking, where Linux gives pidfds (>= 5.3): its pidfd, polled by the
// main thread's event loop, and one JS function for all their reports
// (setChildExitHandler). A child costs a pidfd and, once the loop is about to
// wait, a poll handle: no JS object, reference or async context of its own. A
// child reaped before the loop waits (start(); joinSync()) never has a handle.
class ChildWatch {
 public:
  // The watch of the calling thread's loop, if it is the one that has one.
  static ChildWatch* Of(Napi::Env env) { return instance_ != nullptr && instance_->env_ == static_cast<napi_env>(env) ? instance_ : nullptr; }

  // setChildExitHandler(onExit(error, pid, status)) -> boolean: makes onExit
  // the report of every child watched; false where there is no such watch
  // (no pidfds, or a thread other than the first to ask: a worker's).
  static Napi::Value SetHandler(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) ThrowUsage(env, "setChildExitHandler(onExit: Function)");
    if (!HasPidfds()) return Napi::Boolean::New(env, false);
    if (instance_ == nullptr) instance_ = new ChildWatch(env);  // lives as long as its environment
    if (instance_->env_ != static_cast<napi_env>(env)) return Napi::Boolean::New(env, false);
    instance_->onExit_ = Napi::Persistent(info[0].As<Napi::Function>());
    return Napi::Boolean::New(env, true);
  }

  // watchChild(pid, keepAlive) -> boolean: reports `pid` to the handler when
  // it ends, reaped. False when this thread has no watch or `pid` is watched
  // already: the caller then waits another way. ECHILD for a pid that is not
  // a child of this process.
  static Napi::Value Watch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto [pid, keepAlive] = PidAndFlag(info, "watchChild(pid: number, keepAlive: boolean)");
    ChildWatch* watch = Of(env);
    if (watch == nullptr || pid <= 0 || watch->Find(pid) != watch->children_.end()) return Napi::Boolean::New(env, false);
    CheckIsChild(env, pid);
    UniqueFd pidfd(OpenPidfd(pid));
    if (pidfd.get() < 0) ThrowErrno(env, "pidfd_open");
    auto child = std::make_unique<Child>();
    child->pid = pid;
    child->fd = pidfd.release();
    child->keepAlive = keepAlive;
    watch->children_.push_back(child.release());
    watch->PollSoon();
    return Napi::Boolean::New(env, true);
  }

  // unwatchChild(pid): stops watching `pid` (left unreaped); nothing if it is not watched.
  static Napi::Value Unwatch(const Napi::CallbackInfo& info) {
    pid_t pid = IntArg(info, 0, "unwatchChild(pid: number)");
    if (ChildWatch* watch = Of(info.Env())) watch->Remove(pid);
    return info.Env().Undefined();
  }

  // keepChildAlive(pid, keepAlive): whether waiting for `pid` keeps the event loop alive.
  static Napi::Value KeepAlive(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto [pid, keepAlive] = PidAndFlag(info, "keepChildAlive(pid: number, keepAlive: boolean)");
    ChildWatch* watch = Of(env);
    if (watch == nullptr) return env.Undefined();
    auto found = watch->Find(pid);
    if (found == watch->children_.end()) return env.Undefined();
    Child* child = *found;
    child->keepAlive = keepAlive;
    if (child->polling) SetRef(&child->poll, child->keepAlive);
    watch->UpdatePrepare();
    return env.Undefined();
  }

  // In a forked child, once it has its own epoll (uv_loop_fork): the parent's
  // children are not its own. Nothing is written when nothing is watched.
  static void ForgetParentChildren() {
    ChildWatch* watch = instance_;
    if (watch == nullptr) return;
    if (watch->preparing_) {
      uv_prepare_stop(&watch->prepare_);
      watch->preparing_ = false;
    }
    if (watch->children_.empty()) return;
    for (Child* child : watch->children_) Release(child);
    watch->children_.clear();
  }

 private:
  struct Child {
    uv_poll_t poll{};
    pid_t pid = 0;
    int fd = -1;
    bool keepAlive = true;
    bool polling = false;  // the poll handle is initialised
  };

  explicit ChildWatch(Napi::Env env) : env_(env) {
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "setChildExitHandler: no event loop");
    if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:waitpid"), &asyncContext_) != napi_ok) {
      throw Napi::Error::New(env, "setChildExitHandler: napi_async_init failed");
    }
    if (int err = uv_prepare_init(loop_, &prepare_)) {
      napi_async_destroy(env, asyncContext_);
      ThrowErrno(env, -err, "uv_prepare_init");
    }
    prepare_.data = this;
    // The watch belongs to this environment's loop: a worker thread's ends
    // with the worker, whose loop must then have no handle of ours left.
    napi_add_env_cleanup_hook(env, OnEnvironmentEnd, this);
  }

  // The environment ends: its children are no longer watched (left
  // unreaped), the handles close, and another environment may take the watch.
  static void OnEnvironmentEnd(void* data) {
    auto* watch = static_cast<ChildWatch*>(data);
    if (instance_ == watch) instance_ = nullptr;
    for (Child* child : watch->children_) Release(child);
    watch->children_.clear();
    watch->onExit_.Reset();
    napi_async_destroy(watch->env_, watch->asyncContext_);
    uv_close(reinterpret_cast<uv_handle_t*>(&watch->prepare_),
             [](uv_handle_t* closed) { delete static_cast<ChildWatch*>(closed->data); });
  }

  static std::pair<pid_t, bool> PidAndFlag(const Napi::CallbackInfo& info, const char* usage) {
    pid_t pid = IntArg(info, 0, usage);
    if (info.Length() < 2 || !info[1].IsBoolean()) ThrowUsage(info.Env(), usage);
    return {pid, info[1].As<Napi::Boolean>().Value()};
  }

  static bool HasPidfds() {
    static const bool has = [] {
      UniqueFd own(OpenPidfd(getpid()));
      return own.get() >= 0;
    }();
    return has;
  }

  static void SetRef(uv_poll_t* poll, bool ref) {
    if (ref) uv_ref(reinterpret_cast<uv_handle_t*>(poll));
    else uv_unref(reinterpret_cast<uv_handle_t*>(poll));
  }

  std::vector<Child*>::iterator Find(pid_t pid) {
    return std::find_if(children_.begin(), children_.end(), [pid](const Child* child) { return child->pid == pid; });
  }

  // The polls start just before the loop next waits for events.
  void PollSoon() {
    if (!preparing_) {
      uv_prepare_start(&prepare_, OnPrepare);  // cannot fail on an initialised handle
      preparing_ = true;
    }
    UpdatePrepare();
  }

  // The prepare handle runs while a child has no poll yet (a child forked
  // later then has nothing to stop), and keeps the loop alive while one that
  // must keep it has none.
  void UpdatePrepare() {
    if (!preparing_) return;
    bool waiting = false;
    bool keep = false;
    for (const Child* child : children_) {
      waiting = waiting || !child->polling;
      keep = keep || (!child->polling && child->keepAlive);
    }
    if (!waiting) {
      uv_prepare_stop(&prepare_);
      preparing_ = false;
    } else if (keep) {
      uv_ref(reinterpret_cast<uv_handle_t*>(&prepare_));
    } else {
      uv_unref(reinterpret_cast<uv_handle_t*>(&prepare_));
    }
  }

  static void OnPrepare(uv_prepare_t* prepare) {
    auto* watch = static_cast<ChildWatch*>(prepare->data);
    uv_prepare_stop(prepare);
    watch->preparing_ = false;
    std::vector<std::pair<pid_t, int>> failed;
    for (Child* child : watch->children_) {
      if (child->polling) continue;
      int err = uv_poll_init(watch->loop_, &child->poll, child->fd);
      if (err == 0) {
        child->poll.data = child;
        child->polling = true;
        err = uv_poll_start(&child->poll, UV_READABLE, OnReadable);
        if (err == 0) SetRef(&child->poll, child->keepAlive);
      }
      if (err != 0) failed.emplace_back(child->pid, -err);
    }
    for (const auto& [pid, err] : failed) watch->Report(pid, 0, err, "uv_poll_start");
  }

  // The child ended: reap it, stop watching it (its pidfd closed: a caller
  // counting its fds in the report sees none left over) and report it.
  static void OnReadable(uv_poll_t* poll, int status, int) {
    Child* child = static_cast<Child*>(poll->data);
    int waitStatus = 0;
    pid_t pid = WaitpidRetrying(child->pid, &waitStatus, WNOHANG);
    if (pid == 0 && status >= 0) return;  // spurious wake-up: still running
    const int err = pid < 0 ? errno : (status < 0 ? -status : 0);
    instance_->Report(child->pid, waitStatus, err, "waitpid");
  }

  void Report(pid_t pid, int status, int err, const char* syscall) {
    Remove(pid);
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    Napi::Value error = err != 0 ? ErrnoError(env, err, syscall).Value() : env.Null();
    napi_value args[] = {error, Napi::Number::New(env, pid), Napi::Number::New(env, status)};
    CallFromLoop(env, asyncContext_, onExit_.Value(), 3, args);
  }

  void Remove(pid_t pid) {
    auto found = Find(pid);
    if (found == children_.end()) return;
    Child* child = *found;
    children_.erase(found);
    Release(child);
    UpdatePrepare();
  }

  // uv_close() takes the fd out of the epoll set at once, while it is still
  // open (no other fd of the same number can be hit); the fd can then be
  // closed at once too, and the memory goes in the close callback.
  static void Release(Child* child) {
    if (child->polling) {
      uv_close(reinterpret_cast<uv_handle_t*>(&child->poll),
               [](uv_handle_t* closed) { delete static_cast<Child*>(closed->data); });
      close(child->fd);
    } else {
      close(child->fd);
      delete child;
    }
  }

  static inline ChildWatch* instance_ = nullptr;

  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  uv_prepare_t prepare_{};
  bool preparing_ = false;
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onExit_;
  std::vector<Child*> children_;
};

// new ExitWatcher(pid, onExit(error, pid, status)): reaps `pid` when it ends,
// without blocking the event loop, where the loop cannot watch it (see
// ChildWatch): for pid -1 ("any child"), without pidfds, or in a worker
// thread. A thread blocked in waitpid() reports through a thread-safe
// function, never the libuv thread pool. ref()/unref() say whether the wait
// keeps the event loop alive; close() stops watching (and leaves the child
// unreaped, unless the thread has reaped it already).
class ExitWatcher : public Napi::ObjectWrap<ExitWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ExitWatcher",
                       {InstanceMethod<&ExitWatcher::Ref>("ref"), InstanceMethod<&ExitWatcher::Unref>("unref"),
                        InstanceMethod<&ExitWatcher::Close>("close")});
  }

  ExitWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ExitWatcher>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new ExitWatcher(pid: number, onExit: Function)";
    pid_ = IntArg(info, 0, usage);
    if (info.Length() < 2 || !info[1].IsFunction()) ThrowUsage(env, usage);
    if (pid_ > 0) CheckIsChild(env, pid_);
    onExit_ = Napi::Persistent(info[1].As<Napi::Function>());
    asyncContext_ = std::make_unique<Napi::AsyncContext>(env, "node-multiprocessing:waitpid");
    tsfn_ = Napi::ThreadSafeFunction::New(env, onExit_.Value(), "node-multiprocessing:waitpid", 0, 1);
    // The thread outlives a closed watcher; it reaches the watcher only through
    // this shared state, which StopWatching() disconnects (on the main thread).
    threadState_ = std::make_shared<ThreadState>();
    threadState_->owner = this;
    AddTeardownHook(env, threadState_);
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive while watching
    try {
      StartWaiterThread();
    } catch (const std::system_error& error) {
      RemoveTeardownHook(env, *threadState_);
      StopWatching();
      tsfn_.Release();
      ThrowErrno(env, error.code().value(), "pthread_create");
    }
  }

  ~ExitWatcher() override { StopWatching(); }

 private:
  struct ThreadResult {
    pid_t pid;
    int status;
    int err;
  };

  // Shared by the watcher, its waiter thread and the environment's teardown.
  // Node frees a thread-safe function when its environment ends (a worker
  // thread exiting), whatever threads still hold it: a waiter still blocked in
  // waitpid() then must not touch it. The teardown hook, registered after the
  // function so that it runs before Node's own, says so under the mutex.
  struct ThreadState {
    ExitWatcher* owner;
    std::mutex mutex;
    bool envAlive = true;
    void* teardownHook = nullptr;  // the hook's argument, while registered
  };
  using TeardownBox = std::shared_ptr<ThreadState>;

  static void OnEnvTeardown(void* arg) {
    auto* box = static_cast<TeardownBox*>(arg);
    {
      std::lock_guard<std::mutex> lock((*box)->mutex);
      (*box)->envAlive = false;
      (*box)->teardownHook = nullptr;
    }
    delete box;
  }

  static void AddTeardownHook(Napi::Env env, const std::shared_ptr<ThreadState>& state) {
    auto* box = new TeardownBox(state);
    napi_status status = napi_add_env_cleanup_hook(env, OnEnvTeardown, box);
    if (status != napi_ok) {
      delete box;
      NAPI_THROW_VOID(Napi::Error::New(env, "napi_add_env_cleanup_hook failed"));
    }
    state->teardownHook = box;
  }

  // On the environment's thread, once the waiter can no longer race its teardown.
  static void RemoveTeardownHook(napi_env env, ThreadState& state) {
    void* hook = nullptr;
    {
      std::lock_guard<std::mutex> lock(state.mutex);
      hook = state.teardownHook;
      state.teardownHook = nullptr;
    }
    if (hook == nullptr) return;
    napi_remove_env_cleanup_hook(env, OnEnvTeardown, hook);
    delete static_cast<TeardownBox*>(hook);
  }

  void StartWaiterThread() {
    StartOwnThread([pid = pid_, tsfn = tsfn_, state = threadState_]() mutable {
      auto* result = new ThreadResult{0, 0, 0};
      result->pid = WaitpidRetrying(pid, &result->status, 0);
      result->err = result->pid < 0 ? errno : 0;
      auto deliver = [state](Napi::Env env, Napi::Function, ThreadResult* data) {
        ThreadResult copy = *data;
        delete data;
        if (env == nullptr) return;
        RemoveTeardownHook(env, *state);
        if (state->owner != nullptr) state->owner->Report(env, copy);
      };
      std::lock_guard<std::mutex> lock(state->mutex);
      if (!state->envAlive) {
        delete result;  // the environment is gone, and its thread-safe function with it
        return;
      }
      if (tsfn.NonBlockingCall(result, deliver) != napi_ok) delete result;
      tsfn.Release();
    });
  }

  // Called from the event loop, not from JS: CallFromLoop runs the callback as
  // Node runs its own (async hooks, then the nextTick and microtask queues).
  void Report(Napi::Env env, ThreadResult result) {
    Napi::Function onExit = onExit_.Value();
    std::unique_ptr<Napi::AsyncContext> context = std::move(asyncContext_);
    StopWatching();
    Napi::Value error = result.err ? ErrnoError(env, result.err, "waitpid").Value() : env.Null();
    napi_value args[] = {error, Napi::Number::New(env, result.pid), Napi::Number::New(env, result.status)};
    CallFromLoop(env, *context, onExit, 3, args);
  }

  void StopWatching() {
    if (threadState_) {
      threadState_->owner = nullptr;
      threadState_.reset();
      tsfn_.Unref(Env());
    }
    if (!self_.IsEmpty()) self_.Reset();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (threadState_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (threadState_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopWatching();
    return info.Env().Undefined();
  }

  pid_t pid_ = 0;
  Napi::FunctionReference onExit_;
  std::unique_ptr<Napi::AsyncContext> asyncContext_;
  Napi::ObjectReference self_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<ThreadState> threadState_;
};

Napi::Value Kill(const Napi::CallbackInfo& info) {
  const char* usage = "kill(pid: number, signal: number)";
  pid_t pid = IntArg(info, 0, usage);
  int signal = IntArg(info, 1, usage);
  if (kill(pid, signal) < 0) ThrowErrno(info.Env(), "kill");
  return info.Env().Undefined();
}

Napi::Value GetPid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), getpid()); }
Napi::Value GetPpid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), getppid()); }

// The wait-status macros of <sys/wait.h>, exactly as the C library defines them.
template <bool (*Test)(int)>
Napi::Value StatusTest(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Test(IntArg(info, 0, "WIF*(status: number)")));
}
template <int (*Field)(int)>
Napi::Value StatusField(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), Field(IntArg(info, 0, "W*(status: number)")));
}
bool IfExited(int status) { return WIFEXITED(status); }
bool IfSignaled(int status) { return WIFSIGNALED(status); }
bool IfStopped(int status) { return WIFSTOPPED(status); }
int ExitStatus(int status) { return WEXITSTATUS(status); }
int TermSig(int status) { return WTERMSIG(status); }
int StopSig(int status) { return WSTOPSIG(status); }

}  // namespace

void ForgetParentChildren() { ChildWatch::ForgetParentChildren(); }

void InitWait(Napi::Env env, Napi::Object exports) {
  exports.Set("waitpid", Napi::Function::New(env, Waitpid, "waitpid"));
  exports.Set("waitpidTimeout", Napi::Function::New(env, WaitpidTimeout, "waitpidTimeout"));
  exports.Set("ExitWatcher", ExitWatcher::Define(env));
  exports.Set("setChildExitHandler", Napi::Function::New(env, ChildWatch::SetHandler, "setChildExitHandler"));
  exports.Set("watchChild", Napi::Function::New(env, ChildWatch::Watch, "watchChild"));
  exports.Set("unwatchChild", Napi::Function::New(env, ChildWatch::Unwatch, "unwatchChild"));
  exports.Set("keepChildAlive", Napi::Function::New(env, ChildWatch::KeepAlive, "keepChildAlive"));
  exports.Set("kill", Napi::Function::New(env, Kill, "kill"));
  exports.Set("getpid", Napi::Function::New(env, GetPid, "getpid"));
  exports.Set("getppid", Napi::Function::New(env, GetPpid, "getppid"));
  exports.Set("WIFEXITED", Napi::Function::New(env, StatusTest<IfExited>, "WIFEXITED"));
  exports.Set("WIFSIGNALED", Napi::Function::New(env, StatusTest<IfSignaled>, "WIFSIGNALED"));
  exports.Set("WIFSTOPPED", Napi::Function::New(env, StatusTest<IfStopped>, "WIFSTOPPED"));
  exports.Set("WEXITSTATUS", Napi::Function::New(env, StatusField<ExitStatus>, "WEXITSTATUS"));
  exports.Set("WTERMSIG", Napi::Function::New(env, StatusField<TermSig>, "WTERMSIG"));
  exports.Set("WSTOPSIG", Napi::Function::New(env, StatusField<StopSig>, "WSTOPSIG"));
  exports.Set("WNOHANG", Napi::Number::New(env, WNOHANG));
  exports.Set("WUNTRACED", Napi::Number::New(env, WUNTRACED));
}

}  // namespace mp
