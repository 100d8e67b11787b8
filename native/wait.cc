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

#include <cerrno>
#include <memory>
#include <system_error>

#include <uv.h>

#include "errors.h"
#include "modules.h"
#include "own_threads.h"
#include "unique_fd.h"

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

uint64_t NowMs() { return uv_hrtime() / 1000000u; }

// Where there is no pidfd: poll with WNOHANG, backing off up to 10 ms.
pid_t WaitpidPolling(pid_t pid, int* status, double timeoutMs) {
  const uint64_t deadline = NowMs() + static_cast<uint64_t>(timeoutMs);
  long pause = 1;
  for (;;) {
    pid_t result = WaitpidRetrying(pid, status, WNOHANG);
    if (result != 0 || NowMs() >= deadline) return result;
    SleepMs(pause);
    pause = std::min(pause * 2, 10L);
  }
}

// waitpidTimeout(pid, timeoutMs) -> [pid, status], or [0, 0] when the child is
// still running after timeoutMs. A negative timeout waits for ever.
Napi::Value WaitpidTimeout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "waitpidTimeout(pid: number > 0, timeoutMs: number)";
  pid_t pid = IntArg(info, 0, usage);
  if (pid <= 0 || info.Length() < 2 || !info[1].IsNumber()) ThrowUsage(env, usage);
  double timeoutMs = info[1].As<Napi::Number>().DoubleValue();
  int status = 0;
  if (timeoutMs < 0) {
    pid_t result = WaitpidRetrying(pid, &status, 0);
    if (result < 0) ThrowErrno(env, "waitpid");
    return PidStatus(env, result, status);
  }
  CheckIsChild(env, pid);
  UniqueFd pidfd(OpenPidfd(pid));
  pid_t result;
  if (pidfd.get() < 0) {
    result = WaitpidPolling(pid, &status, timeoutMs);
  } else {
    pollfd ready{pidfd.get(), POLLIN, 0};
    const uint64_t deadline = NowMs() + static_cast<uint64_t>(timeoutMs);
    int polled;
    do {
      uint64_t now = NowMs();
      polled = poll(&ready, 1, static_cast<int>(deadline > now ? deadline - now : 0));
    } while (polled < 0 && errno == EINTR);
    if (polled < 0) ThrowErrno(env, "poll");
    result = WaitpidRetrying(pid, &status, WNOHANG);
  }
  if (result < 0) ThrowErrno(env, "waitpid");
  return PidStatus(env, result, status);
}

// new ExitWatcher(pid, onExit(error, pid, status)): reaps `pid` when it ends,
// without blocking the event loop. On Linux a pidfd watched by the loop; where
// there is none (or for pid -1, "any child") a thread blocked in waitpid()
// that reports through a thread-safe function, never the libuv thread pool.
// ref()/unref() say whether the wait keeps the event loop alive; close() stops
// watching (and leaves the child unreaped).
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
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive while watching
    UniqueFd pidfd(pid_ > 0 ? OpenPidfd(pid_) : -1);
    if (pidfd.get() >= 0) {
      WatchPidfd(env, pidfd);
    } else {
      WatchWithThread(env);
    }
  }

  ~ExitWatcher() override { StopWatching(); }

 private:
  struct ThreadResult {
    pid_t pid;
    int status;
    int err;
  };

  struct PollHandle {
    uv_poll_t poll;
    int fd;
    ExitWatcher* owner;
  };

  struct ThreadState {
    ExitWatcher* owner;
  };

  void WatchPidfd(Napi::Env env, UniqueFd& pidfd) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    auto* handle = new PollHandle{{}, pidfd.get(), this};
    if (int err = uv_poll_init(loop, &handle->poll, handle->fd)) {
      delete handle;
      ThrowErrno(env, -err, "uv_poll_init");
    }
    pidfd.release();
    handle->poll.data = handle;
    poll_ = handle;
    if (int err = uv_poll_start(&handle->poll, UV_READABLE, OnPidfdReadable)) {
      StopWatching();
      ThrowErrno(env, -err, "uv_poll_start");
    }
  }

  // The child ended: reap it and report it at once, the pidfd already closed
  // (a caller counting its fds in the callback sees none left over).
  static void OnPidfdReadable(uv_poll_t* poll, int status, int) {
    ExitWatcher* self = static_cast<PollHandle*>(poll->data)->owner;
    int waitStatus = 0;
    pid_t pid = WaitpidRetrying(self->pid_, &waitStatus, WNOHANG);
    int err = pid < 0 ? errno : (status < 0 ? -status : 0);
    if (pid == 0 && err == 0) return;  // spurious wake-up: still running
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    self->Report(env, {pid, waitStatus, err});
  }

  // uv_close() takes the fd out of the epoll set at once (while it is still
  // open, so no other fd of the same number can be hit); the fd can then be
  // closed at once too, and the handle's memory goes in the close callback.
  static void ClosePoll(PollHandle* handle) {
    uv_close(reinterpret_cast<uv_handle_t*>(&handle->poll),
             [](uv_handle_t* closed) { delete static_cast<PollHandle*>(closed->data); });
    close(handle->fd);
  }

  void WatchWithThread(Napi::Env env) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, onExit_.Value(), "node-multiprocessing:waitpid", 0, 1);
    // The thread outlives a closed watcher; it reaches the watcher only through
    // this shared state, which StopWatching() disconnects (on the main thread).
    threadState_ = std::make_shared<ThreadState>(ThreadState{this});
    try {
      StartWaiterThread();
    } catch (const std::system_error& error) {
      threadState_.reset();
      tsfn_.Release();
      ThrowErrno(env, error.code().value(), "pthread_create");
    }
  }

  void StartWaiterThread() {
    StartOwnThread([pid = pid_, tsfn = tsfn_, state = threadState_]() mutable {
      auto* result = new ThreadResult{0, 0, 0};
      result->pid = WaitpidRetrying(pid, &result->status, 0);
      result->err = result->pid < 0 ? errno : 0;
      auto deliver = [state](Napi::Env env, Napi::Function, ThreadResult* data) {
        ThreadResult copy = *data;
        delete data;
        if (env != nullptr && state->owner != nullptr) state->owner->Report(env, copy);
      };
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
    if (poll_ != nullptr) {
      ClosePoll(poll_);
      poll_ = nullptr;
    }
    if (threadState_) {
      threadState_->owner = nullptr;
      threadState_.reset();
      tsfn_.Unref(Env());
    }
    if (!self_.IsEmpty()) self_.Reset();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(&poll_->poll));
    if (threadState_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(&poll_->poll));
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
  PollHandle* poll_ = nullptr;
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

void InitWait(Napi::Env env, Napi::Object exports) {
  exports.Set("waitpid", Napi::Function::New(env, Waitpid, "waitpid"));
  exports.Set("waitpidTimeout", Napi::Function::New(env, WaitpidTimeout, "waitpidTimeout"));
  exports.Set("ExitWatcher", ExitWatcher::Define(env));
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
