// V8's background work in a forked child, on threads of ours.
//
// Node's platform runs V8's background tasks (optimising compiles, GC helper
// jobs) on its worker threads, and those are gone in a forked child. Its tasks
// then wait for ever: a function V8 sent off to be optimised stays in baseline
// code for the life of the child, 4x slower than in the parent (measured with
// work done in callbacks, where no loop runs long enough for on-stack
// replacement). Setting V8's flags cannot help: V8 decides on concurrent
// compiles by whether it made a compile thread at start-up.
//
// So the child gives V8 a worker thread again: the platform object's virtual
// functions that post worker tasks are pointed at a small pool of ours. The
// object keeps its class, its state and its other functions; only its vtable
// pointer moves to a copy whose two posting slots differ. This needs the
// Itanium C++ ABI (GCC and Clang), the size of Node's vtable from the
// executable's symbols (glibc) and v8::Platform's posting functions as the V8
// of the headers declares them: CallOnWorkerThread and
// CallDelayedOnWorkerThread up to V8 11 (Node 20), PostTaskOnWorkerThreadImpl
// and PostDelayedTaskOnWorkerThreadImpl from V8 12 (Node 22, 24, 26), which
// also gives them a priority and the poster's source location. Elsewhere the
// child goes without, as before (see fact 6 in fork.cc), and says so once.
#include "child_platform.h"

#include <dlfcn.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#ifdef __GLIBC__
#include <link.h>
#endif

#include <v8-version.h>

#include "own_threads.h"

// The v8::Platform whose posting slots WorkerSlots overrides.
#if V8_MAJOR_VERSION == 11
#define MP_REDIRECT_WORKER_TASKS 1
#define MP_POSTING_WITH_PRIORITY 0
#elif V8_MAJOR_VERSION >= 12
#define MP_REDIRECT_WORKER_TASKS 1
#define MP_POSTING_WITH_PRIORITY 1
#else
#define MP_REDIRECT_WORKER_TASKS 0
#endif

namespace mp {

namespace {

using Clock = std::chrono::steady_clock;

// One thread, started on the first task: a child is one process among many,
// and V8 joins its jobs (the main thread helps), so one is enough.
class ChildWorkers {
 public:
  void Post(std::unique_ptr<v8::Task> task) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->ready.push_back(std::move(task));
    StartIfNeeded();
    state_->changed.notify_all();
  }

  void PostDelayed(std::unique_ptr<v8::Task> task, double seconds) {
    std::lock_guard<std::mutex> lock(state_->mutex);
    const auto due = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    state_->delayed.push_back({due, std::move(task)});
    StartIfNeeded();
    state_->changed.notify_all();
  }

  // Before a fork from this child: returns once the thread runs no task, and
  // keeps it from starting one until Resume() (in the parent) or Forget()
  // (in the new child, where it does not exist).
  void Pause() {
    std::unique_lock<std::mutex> lock(state_->mutex);
    state_->paused = true;
    state_->changed.wait(lock, [this] { return !state_->busy; });
    lock.release();  // held across fork(): the thread cannot be half-way into our queue
  }

  void Resume() {
    state_->paused = false;
    state_->changed.notify_all();
    state_->mutex.unlock();
  }

  // In a new child: the thread stayed in the parent; the tasks queued stay
  // queued, for a thread of this child's.
  void Forget() {
    auto fresh = std::make_unique<State>();
    fresh->ready = std::move(state_->ready);
    fresh->delayed = std::move(state_->delayed);
    state_.release();  // its mutex is held by the parent's copy of this thread: leaked
    state_ = std::move(fresh);
    if (!state_->ready.empty() || !state_->delayed.empty()) StartIfNeeded();
  }

 private:
  struct Delayed {
    Clock::time_point due;
    std::unique_ptr<v8::Task> task;
  };

  struct State {
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<std::unique_ptr<v8::Task>> ready;
    std::vector<Delayed> delayed;
    bool started = false;
    bool busy = false;
    bool paused = false;
  };

  void StartIfNeeded() {
    if (state_->started) return;
    state_->started = true;
    State* state = state_.get();
    StartOwnThread([state] { Work(*state); });
  }

  // Moves the delayed tasks that are due to the ready queue; returns the time
  // the next one is due (or max()).
  static Clock::time_point PromoteDue(State& state) {
    const auto now = Clock::now();
    auto next = Clock::time_point::max();
    for (auto it = state.delayed.begin(); it != state.delayed.end();) {
      if (it->due <= now) {
        state.ready.push_back(std::move(it->task));
        it = state.delayed.erase(it);
      } else {
        next = std::min(next, it->due);
        ++it;
      }
    }
    return next;
  }

  static void Work(State& state) {
    std::unique_lock<std::mutex> lock(state.mutex);
    for (;;) {
      const auto next = PromoteDue(state);
      if (state.paused || state.ready.empty()) {
        if (next == Clock::time_point::max()) state.changed.wait(lock);
        else state.changed.wait_until(lock, next);
        continue;
      }
      std::unique_ptr<v8::Task> task = std::move(state.ready.front());
      state.ready.pop_front();
      state.busy = true;
      lock.unlock();
      task->Run();
      task.reset();
      lock.lock();
      state.busy = false;
      state.changed.notify_all();
    }
  }

  std::unique_ptr<State> state_ = std::make_unique<State>();
};

ChildWorkers* g_workers = nullptr;

#if MP_REDIRECT_WORKER_TASKS
// Stands in for the platform in two slots of the copied vtable. `this` is the
// platform object itself there: these functions use nothing of it.
class WorkerSlots : public v8::Platform {
 public:
#if MP_POSTING_WITH_PRIORITY
  void PostTaskOnWorkerThreadImpl(v8::TaskPriority, std::unique_ptr<v8::Task> task,
                                  const v8::SourceLocation&) override {
    g_workers->Post(std::move(task));
  }
  void PostDelayedTaskOnWorkerThreadImpl(v8::TaskPriority, std::unique_ptr<v8::Task> task, double delay,
                                         const v8::SourceLocation&) override {
    g_workers->PostDelayed(std::move(task), delay);
  }

  // Their names, in the symbols of Node's overrides.
  static constexpr const char* kPostName = "PostTaskOnWorkerThreadImpl";
  static constexpr const char* kPostDelayedName = "PostDelayedTaskOnWorkerThreadImpl";

  // The slots to redirect (protected members: named from this class).
  static bool PostingSlots(size_t* onWorker, size_t* delayed) {
    return SlotOf(&WorkerSlots::PostTaskOnWorkerThreadImpl, onWorker) &&
           SlotOf(&WorkerSlots::PostDelayedTaskOnWorkerThreadImpl, delayed);
  }

  // Never called: the rest of v8::Platform, for the class to be complete.
  std::shared_ptr<v8::TaskRunner> GetForegroundTaskRunner(v8::Isolate*, v8::TaskPriority) override { return nullptr; }
  std::unique_ptr<v8::JobHandle> CreateJobImpl(v8::TaskPriority, std::unique_ptr<v8::JobTask>,
                                               const v8::SourceLocation&) override {
    return nullptr;
  }
#else
  void CallOnWorkerThread(std::unique_ptr<v8::Task> task) override { g_workers->Post(std::move(task)); }
  void CallDelayedOnWorkerThread(std::unique_ptr<v8::Task> task, double delay) override {
    g_workers->PostDelayed(std::move(task), delay);
  }

  static constexpr const char* kPostName = "CallOnWorkerThread";
  static constexpr const char* kPostDelayedName = "CallDelayedOnWorkerThread";

  static bool PostingSlots(size_t* onWorker, size_t* delayed) {
    return SlotOf(&v8::Platform::CallOnWorkerThread, onWorker) &&
           SlotOf(&v8::Platform::CallDelayedOnWorkerThread, delayed);
  }

  // Never called: the rest of v8::Platform, for the class to be complete.
  std::shared_ptr<v8::TaskRunner> GetForegroundTaskRunner(v8::Isolate*) override { return nullptr; }
  std::unique_ptr<v8::JobHandle> CreateJob(v8::TaskPriority, std::unique_ptr<v8::JobTask>) override { return nullptr; }
#endif
  v8::PageAllocator* GetPageAllocator() override { return nullptr; }
  int NumberOfWorkerThreads() override { return 1; }
  double MonotonicallyIncreasingTime() override { return 0; }
  double CurrentClockTimeMillis() override { return 0; }
  v8::TracingController* GetTracingController() override { return nullptr; }

 private:
  // The vtable slot of a virtual member function: an Itanium pointer to a
  // virtual member holds 1 + the slot's byte offset.
  template <typename Member>
  static bool SlotOf(Member member, size_t* slot) {
    static_assert(sizeof(Member) == 2 * sizeof(ptrdiff_t), "Itanium pointer to member");
    ptrdiff_t words[2];
    std::memcpy(words, &member, sizeof words);
    if ((words[0] & 1) == 0 || words[1] != 0) return false;
    *slot = static_cast<size_t>(words[0] - 1) / sizeof(void*);
    return true;
  }
};

// The whole vtable around `addressPoint` (what an object's vptr points at):
// its start and its number of entries, from the executable's symbols.
bool VtableOf(void* const* addressPoint, void* const** start, size_t* entries) {
#ifdef __GLIBC__
  Dl_info info;
  ElfW(Sym)* symbol = nullptr;
  if (dladdr1(addressPoint, &info, reinterpret_cast<void**>(&symbol), RTLD_DL_SYMENT) == 0) return false;
  if (symbol == nullptr || info.dli_saddr == nullptr || symbol->st_size == 0) return false;
  *start = static_cast<void* const*>(info.dli_saddr);
  *entries = symbol->st_size / sizeof(void*);
  const size_t point = static_cast<size_t>(addressPoint - *start);
  return point >= 2 && point < *entries;  // offset-to-top and RTTI come first
#else
  (void)addressPoint;
  (void)start;
  (void)entries;
  return false;
#endif
}

// Whether `slot` of the vtable at `vptr` holds the function of Node's whose
// symbol names `member`: the check, in the Node that runs, that the V8 headers
// the addon was built with lay v8::Platform out as this Node's V8 does.
bool SlotHolds(void* const* vptr, size_t slot, const char* member) {
#ifdef __GLIBC__
  Dl_info info;
  if (dladdr(vptr[slot], &info) == 0 || info.dli_sname == nullptr || info.dli_saddr != vptr[slot]) return false;
  return std::strstr(info.dli_sname, member) != nullptr;
#else
  (void)vptr;
  (void)slot;
  (void)member;
  return false;
#endif
}

#endif  // MP_REDIRECT_WORKER_TASKS

}  // namespace

// The copied vtable, made once in the parent (children inherit it), and where
// in it the platform object must point.
void* const* g_redirected = nullptr;

// Why the redirection cannot be made here, once PrepareWorkerRedirect() said no.
const char* g_redirectFailure = nullptr;

bool PrepareWorkerRedirect(v8::Platform* platform) {
#if !MP_REDIRECT_WORKER_TASKS
  (void)platform;
  g_redirectFailure = "this build knows v8::Platform of V8 11 and later only";
  return false;
#else
  static const bool prepared = [platform] {
    const char*& failure = g_redirectFailure;
    size_t onWorker = 0;
    size_t delayed = 0;
    if (!WorkerSlots::PostingSlots(&onWorker, &delayed)) {
      failure = "the addon was not built with the Itanium C++ ABI";
      return false;
    }
    auto* const* vptr = *reinterpret_cast<void* const* const*>(platform);
    void* const* start = nullptr;
    size_t entries = 0;
    if (!VtableOf(vptr, &start, &entries)) {
      failure = "Node's platform vtable is not among the executable's dynamic symbols";
      return false;
    }
    const size_t point = static_cast<size_t>(vptr - start);
    if (point + std::max(onWorker, delayed) >= entries || !SlotHolds(vptr, onWorker, WorkerSlots::kPostName) ||
        !SlotHolds(vptr, delayed, WorkerSlots::kPostDelayedName)) {
      failure = "Node's platform vtable does not hold its posting functions where V8's headers put them";
      return false;
    }
    static WorkerSlots slots;
    auto* const* ours = *reinterpret_cast<void* const* const*>(&slots);
    auto* copy = new void*[entries];  // lives as long as the process: platforms point into it
    std::memcpy(copy, start, entries * sizeof(void*));
    copy[point + onWorker] = ours[onWorker];
    copy[point + delayed] = ours[delayed];
    g_redirected = copy + point;
    g_workers = new ChildWorkers();
    return true;
  }();
  return prepared;
#endif
}

const char* WorkerRedirectFailure() { return g_redirectFailure; }

bool RedirectWorkerTasks(v8::Platform* platform) {
  if (g_redirected == nullptr) return false;
  *reinterpret_cast<void* const**>(platform) = g_redirected;
  return true;
}

void PauseChildWorkers() {
  if (g_workers != nullptr) g_workers->Pause();
}

void ResumeChildWorkers() {
  if (g_workers != nullptr) g_workers->Resume();
}

void ForgetChildWorkers() {
  if (g_workers != nullptr) g_workers->Forget();
}

}  // namespace mp
