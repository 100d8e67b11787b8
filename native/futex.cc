// Process-shared waits on 32-bit words of shared memory: the kernel primitive
// under Lock, RLock, Semaphore, Condition, Event and Barrier (src/synchronize.ts).
//
// The words live in MAP_SHARED memory that several processes map, so every
// futex call here is a *shared* one (no FUTEX_PRIVATE_FLAG): the kernel keys
// the wait queue on the page, not on this process's address.
//
//   futexWait(array, index, expected, timeoutMs) -> 'ok' | 'not-equal' | 'timed-out'
//       blocks the calling thread (the Sync twins).
//   futexWake(array, index, count) -> number of waiters woken.
//   gettid() -> the calling thread's id: the owner a Lock records in its word.
//   threadAlive(tid) -> false once that thread has ended (gone, or a zombie
//       not yet reaped): how a waiter tells that a lock's holder died.
//   new FutexWaiter(array, index, expected, timeoutMs, onDone(error, result))
//       the same wait on a thread of its own, reported through a
//       ThreadSafeFunction: it never blocks the event loop and never takes a
//       slot of libuv's thread pool. ref()/unref() say whether the pending wait
//       keeps the event loop alive; cancel() ends it without a report.
//
// NODE_MULTIPROCESSING_NO_FUTEX_WAITV=1 makes the asynchronous waits use the
// fallback of kernels without futex_waitv (< 5.16), so that tests cover it.
//
// A negative (or infinite) timeout waits for ever. Like every futex wait, a
// wait may also end early without the word having changed ('ok'): callers
// re-check their condition in a loop.
//
// macOS has no futex: every call there throws an Error with code ENOSYS (the
// private __ulock_wait API would be the way; Linux is the target).
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <system_error>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "errors.h"
#include "modules.h"
#include "own_threads.h"
#include "thread_alive.h"

namespace mp {
namespace {

enum class WaitResult { kOk, kNotEqual, kTimedOut, kCancelled };

const char* ResultName(WaitResult result) {
  switch (result) {
    case WaitResult::kOk:
      return "ok";
    case WaitResult::kNotEqual:
      return "not-equal";
    case WaitResult::kTimedOut:
      return "timed-out";
    case WaitResult::kCancelled:
      return "cancelled";
  }
  return "ok";
}

// An absolute CLOCK_MONOTONIC time: retries after EINTR keep the same end.
struct Deadline {
  bool forever = true;
  timespec at{};
};

Deadline DeadlineAfter(double timeoutMs) {
  Deadline deadline;
  // Beyond ~30 years is as good as never, and keeps tv_sec from overflowing.
  if (!(timeoutMs >= 0) || timeoutMs > 1e12) return deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline.at);
  const auto wholeMs = static_cast<int64_t>(timeoutMs);
  const auto extraNs = static_cast<int64_t>((timeoutMs - static_cast<double>(wholeMs)) * 1e6);
  int64_t nanos = deadline.at.tv_nsec + (wholeMs % 1000) * 1000000 + extraNs;
  deadline.at.tv_sec += static_cast<time_t>(wholeMs / 1000 + nanos / 1000000000);
  deadline.at.tv_nsec = static_cast<long>(nanos % 1000000000);
  deadline.forever = false;
  return deadline;
}

// State shared by a FutexWaiter (main thread) and its waiting thread.
struct WaitState {
  int32_t* address = nullptr;
  int32_t expected = 0;
  Deadline deadline;
  // Set to 1 by cancel(); a futex word of this process only.
  std::atomic<uint32_t> cancelWord{0};
  // Where futex_waitv is missing, the bit of the wait's bitset that cancel()
  // wakes on the shared word (see WaitCancellable).
  uint32_t cancelBit = 0;
  // Guards tsfnAlive: the thread must not touch a finalized ThreadSafeFunction.
  std::mutex mutex;
  bool tsfnAlive = true;
};

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t), "the cancel word must be a plain 32-bit word");

// ---------------------------------------------------------------------------
// The system calls. Each returns 0 or a positive errno value.

#ifdef __linux__

// Synchronous waits sleep on bit 0 only, so that cancelling an asynchronous
// wait (which wakes one of bits 1..31 where futex_waitv is missing) never
// wakes them. Plain FUTEX_WAKE matches every bit.
constexpr uint32_t kSyncBit = 1u;

long Futex(void* address, int op, uint32_t value, const timespec* timeout, uint32_t bitset) {
  return syscall(SYS_futex, address, op, value, timeout, nullptr, bitset);
}

int WaitUntil(int32_t* address, int32_t expected, const Deadline& deadline, uint32_t bitset) {
  for (;;) {
    long result = Futex(address, FUTEX_WAIT_BITSET, static_cast<uint32_t>(expected),
                        deadline.forever ? nullptr : &deadline.at, bitset);
    if (result == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

int Wake(void* address, int op, int count, uint32_t bitset, int* woken) {
  long result = Futex(address, op, static_cast<uint32_t>(count), nullptr, bitset);
  if (result < 0) return errno;
  *woken = static_cast<int>(result);
  return 0;
}

WaitResult FromErrno(int err, int* failure) {
  if (err == 0) return WaitResult::kOk;
  if (err == EAGAIN) return WaitResult::kNotEqual;
  if (err == ETIMEDOUT) return WaitResult::kTimedOut;
  *failure = err;
  return WaitResult::kOk;
}

// futex_waitv (Linux >= 5.16) sleeps on the shared word and on the private
// cancel word at once, so cancel() can never be missed.
std::atomic<bool> g_haveWaitv{true};

#ifdef SYS_futex_waitv
int WaitEither(WaitState& state) {
  futex_waitv waiters[2] = {};
  waiters[0].val = static_cast<uint32_t>(state.expected);
  waiters[0].uaddr = reinterpret_cast<uintptr_t>(state.address);
  waiters[0].flags = FUTEX_32;
  waiters[1].val = 0;
  waiters[1].uaddr = reinterpret_cast<uintptr_t>(&state.cancelWord);
  waiters[1].flags = FUTEX_32 | FUTEX_PRIVATE_FLAG;
  for (;;) {
    long result = syscall(SYS_futex_waitv, waiters, 2, 0, state.deadline.forever ? nullptr : &state.deadline.at,
                          CLOCK_MONOTONIC);
    if (result >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}
#else
int WaitEither(WaitState&) { return ENOSYS; }
#endif

// The wait of a FutexWaiter's thread. `*failure` gets the errno of a failed call.
WaitResult WaitCancellable(WaitState& state, int* failure) {
  if (g_haveWaitv.load()) {
    int err = WaitEither(state);
    if (err != ENOSYS) {
      if (state.cancelWord.load() != 0) return WaitResult::kCancelled;
      return FromErrno(err, failure);
    }
    g_haveWaitv.store(false);
  }
  // Older kernels: sleep on the shared word with a bitset of our own. A
  // cancel() that lands between this check and the sleep is missed; the thread
  // then ends when the word changes or at its deadline.
  if (state.cancelWord.load() != 0) return WaitResult::kCancelled;
  int err = WaitUntil(state.address, state.expected, state.deadline, state.cancelBit);
  if (state.cancelWord.load() != 0) return WaitResult::kCancelled;
  return FromErrno(err, failure);
}

// Wakes the thread of a cancelled wait. Returns 0 or an errno value.
int WakeCancelled(WaitState& state) {
  int woken = 0;
  if (g_haveWaitv.load()) return Wake(&state.cancelWord, FUTEX_WAKE_PRIVATE, 1, 0, &woken);
  return Wake(state.address, FUTEX_WAKE_BITSET, INT_MAX, state.cancelBit, &woken);
}

#else  // no futex on this system

constexpr uint32_t kSyncBit = 1u;
int WaitUntil(int32_t*, int32_t, const Deadline&, uint32_t) { return ENOSYS; }
int Wake(void*, int, int, uint32_t, int*) { return ENOSYS; }
WaitResult FromErrno(int err, int* failure) {
  *failure = err;
  return WaitResult::kOk;
}
WaitResult WaitCancellable(WaitState&, int* failure) {
  *failure = ENOSYS;
  return WaitResult::kOk;
}
int WakeCancelled(WaitState&) { return 0; }
constexpr int FUTEX_WAKE = 1;

#endif

// ---------------------------------------------------------------------------
// Arguments: the cheap guard (src/synchronize.ts checks everything first).

// The address of element `index` of the Int32Array argument 0. Plain N-API
// calls, one each: this runs on every contended acquire and release.
int32_t* WordAddress(const Napi::CallbackInfo& info, const char* usage) {
  napi_env env = info.Env();
  napi_typedarray_type type = napi_uint8_array;
  size_t length = 0;
  void* data = nullptr;
  double index = -1;
  if (info.Length() < 2 || napi_get_typedarray_info(env, info[0], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_int32_array || napi_get_value_double(env, info[1], &index) != napi_ok) {
    ThrowUsage(info.Env(), usage);
  }
  // A detached buffer has length 0: every index is out of range.
  if (!(index >= 0) || index >= static_cast<double>(length) || index != std::floor(index)) ThrowUsage(info.Env(), usage);
  int32_t* address = static_cast<int32_t*>(data) + static_cast<size_t>(index);
  if (reinterpret_cast<uintptr_t>(address) % alignof(int32_t) != 0) ThrowErrno(info.Env(), EINVAL, "futex");
  return address;
}

double TimeoutArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::Number>().DoubleValue();
}

Napi::String ResultString(Napi::Env env, WaitResult result) { return Napi::String::New(env, ResultName(result)); }

// futexWait(array, index, expected, timeoutMs): blocks this thread while
// array[index] === expected, until woken or timeoutMs passed.
Napi::Value FutexWait(const Napi::CallbackInfo& info) {
  const char* usage = "futexWait(array: Int32Array, index: number, expected: number, timeoutMs: number)";
  int32_t* address = WordAddress(info, usage);
  int32_t expected = IntArg(info, 2, usage);
  Deadline deadline = DeadlineAfter(TimeoutArg(info, 3, usage));
  int failure = 0;
  WaitResult result = FromErrno(WaitUntil(address, expected, deadline, kSyncBit), &failure);
  if (failure != 0) ThrowErrno(info.Env(), failure, "futex");
  return ResultString(info.Env(), result);
}

// futexWake(array, index, count) -> how many waiters were woken.
Napi::Value FutexWake(const Napi::CallbackInfo& info) {
  const char* usage = "futexWake(array: Int32Array, index: number, count: number >= 0)";
  int32_t* address = WordAddress(info, usage);
  int32_t count = IntArg(info, 2, usage);
  if (count < 0) ThrowUsage(info.Env(), usage);
  int woken = 0;
  if (int err = Wake(address, FUTEX_WAKE, count, 0, &woken)) ThrowErrno(info.Env(), err, "futex");
  return Napi::Number::New(info.Env(), woken);
}

// ---------------------------------------------------------------------------
// Owners: a robust lock records its holder's thread id; a waiter asks whether
// that thread still lives.

#ifdef __linux__
pid_t CurrentTid() { return static_cast<pid_t>(syscall(SYS_gettid)); }
#else
pid_t CurrentTid() { return getpid(); }
#endif

Napi::Value GetTid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), CurrentTid()); }

// threadAlive(tid): see the top of this file.
Napi::Value ThreadAliveJs(const Napi::CallbackInfo& info) {
  const char* usage = "threadAlive(tid: number > 0)";
  int32_t tid = IntArg(info, 0, usage);
  if (tid <= 0) ThrowUsage(info.Env(), usage);
  return Napi::Boolean::New(info.Env(), ThreadAlive(static_cast<pid_t>(tid)));
}

// ---------------------------------------------------------------------------

// new FutexWaiter(array, index, expected, timeoutMs, onDone(error, result)):
// an asynchronous futexWait. The waiter holds the array (so the mapping stays
// while the thread sleeps on it) and itself alive until it reports or is
// cancelled; the thread outlives a cancelled waiter only as long as the
// futex call takes to return.
class FutexWaiter : public Napi::ObjectWrap<FutexWaiter> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FutexWaiter",
                       {InstanceMethod<&FutexWaiter::Ref>("ref"), InstanceMethod<&FutexWaiter::Unref>("unref"),
                        InstanceMethod<&FutexWaiter::Cancel>("cancel")});
  }

  FutexWaiter(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FutexWaiter>(info) {
    Napi::Env env = info.Env();
    const char* usage =
        "new FutexWaiter(array: Int32Array, index: number, expected: number, timeoutMs: number, onDone: Function)";
    auto state = std::make_shared<WaitState>();
    state->address = WordAddress(info, usage);
    state->expected = IntArg(info, 2, usage);
    state->deadline = DeadlineAfter(TimeoutArg(info, 3, usage));
    if (info.Length() < 5 || !info[4].IsFunction()) ThrowUsage(env, usage);
    state->cancelBit = NextCancelBit();
    array_ = Napi::Persistent(info[0].As<Napi::Object>());
    onDone_ = Napi::Persistent(info[4].As<Napi::Function>());
    tsfn_ = Napi::ThreadSafeFunction::New(env, onDone_.Value(), "node-multiprocessing:futex", 0, 1,
                                          [state](Napi::Env) {
                                            std::lock_guard<std::mutex> lock(state->mutex);
                                            state->tsfnAlive = false;
                                          });
    state_ = state;
    Start(env);
    self_ = Napi::Persistent(info.This().As<Napi::Object>());  // alive while waiting
  }

  // Only reached with a wait pending when the environment is torn down: the
  // ThreadSafeFunction may be gone already, so only the thread is told.
  ~FutexWaiter() override {
    if (!state_) return;
    *owner_ = nullptr;
    state_->cancelWord.store(1);
    WakeCancelled(*state_);
  }

 private:
  struct Outcome {
    WaitResult result;
    int err;
  };

  // Bits 1..31 in turn, for kernels without futex_waitv.
  static uint32_t NextCancelBit() {
    static std::atomic<uint32_t> next{0};
    return 2u << (next.fetch_add(1) % 31);
  }

  void Start(Napi::Env env) {
    std::shared_ptr<WaitState> state = state_;
    Napi::ThreadSafeFunction tsfn = tsfn_;
    // The thread reaches the waiter only through `owner`, cleared by Stop()
    // on the main thread.
    owner_ = std::make_shared<FutexWaiter*>(this);
    try {
      StartOwnThread([state, tsfn, owner = owner_]() mutable {
        int err = 0;
        WaitResult result = WaitCancellable(*state, &err);
        std::lock_guard<std::mutex> lock(state->mutex);
        if (!state->tsfnAlive) return;  // the environment is being torn down
        auto* outcome = new Outcome{result, err};
        auto report = [owner](Napi::Env env, Napi::Function, Outcome* data) {
          Outcome copy = *data;
          delete data;
          if (env != nullptr && *owner != nullptr) (*owner)->Report(env, copy);
        };
        if (tsfn.NonBlockingCall(outcome, report) != napi_ok) delete outcome;
        tsfn.Release();
      });
    } catch (const std::system_error& error) {
      tsfn_.Release();
      state_.reset();
      ThrowErrno(env, error.code().value(), "pthread_create");
    }
  }

  void Report(Napi::Env env, Outcome outcome) {
    Napi::Function onDone = onDone_.Value();
    Stop(false);
    if (outcome.result == WaitResult::kCancelled) return;
    Napi::Value error = outcome.err ? ErrnoError(env, outcome.err, "futex").Value() : env.Null();
    onDone.Call({error, ResultString(env, outcome.result)});
  }

  // Ends the wait (on the main thread): with `wake`, the sleeping thread is
  // woken and told it was cancelled.
  void Stop(bool wake) {
    if (!state_) return;
    if (wake) {
      state_->cancelWord.store(1);
      WakeCancelled(*state_);  // best effort: a failure leaves the thread to its deadline
    }
    *owner_ = nullptr;
    tsfn_.Unref(Env());
    state_.reset();
    array_.Reset();
    if (!self_.IsEmpty()) self_.Reset();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (state_) tsfn_.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (state_) tsfn_.Unref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Stop(true);
    return info.Env().Undefined();
  }

  Napi::ObjectReference array_;
  Napi::FunctionReference onDone_;
  Napi::ObjectReference self_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<WaitState> state_;
  std::shared_ptr<FutexWaiter*> owner_;
};

}  // namespace

void InitFutex(Napi::Env env, Napi::Object exports) {
#ifdef __linux__
  // Tests run the fallback of kernels older than 5.16 on newer ones too.
  const char* noWaitv = std::getenv("NODE_MULTIPROCESSING_NO_FUTEX_WAITV");
  if (noWaitv != nullptr && std::strcmp(noWaitv, "1") == 0) g_haveWaitv.store(false);
#endif
  exports.Set("futexWait", Napi::Function::New(env, FutexWait, "futexWait"));
  exports.Set("futexWake", Napi::Function::New(env, FutexWake, "futexWake"));
  exports.Set("FutexWaiter", FutexWaiter::Define(env));
  exports.Set("gettid", Napi::Function::New(env, GetTid, "gettid"));
  exports.Set("threadAlive", Napi::Function::New(env, ThreadAliveJs, "threadAlive"));
}

}  // namespace mp
