// fork() made safe inside a running Node.js process.
//
// A plain fork() of Node gives a child that crashes or hangs; each step below
// answers one fact measured on Node 20 (see DESIGN.md, "Real fork() inside Node"):
//   1. V8 marks its heap MADV_DONTFORK      -> ForkableAddressSpace clears it.
//   3. platform workers vanish in the child -> ParkedWorkers holds them at a safe
//      point (inside a task of ours, holding no lock) for the instant of fork().
//   4. the child needs its own epoll        -> uv_loop_fork().
//   5. every normal exit path hangs          -> ChildExit: process.exit(), fatal
//      errors and the end of the event loop all leave through _exit().
//   6. V8's background work has no thread    -> the child gets one of ours
//      (child_platform.cc); failing that, it compiles on its main thread.
//   9. nested forks                          -> a forked child parks nothing.
//  11. the parent's thread-pool work          -> stays the parent's (fork_threadpool.cc),
//      and so do its pending socket and pipe writes (fork_streams.cc).
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef __linux__
#include <dirent.h>
#include <link.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#else
#include <sys/event.h>
#endif

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <node.h>
#include <uv.h>
#include <v8.h>

#include "child_platform.h"
#include "errors.h"
#include "fork_streams.h"
#include "fork_threadpool.h"
#include "internals.h"
#include "loop_handles.h"
#include "modules.h"
#include "own_threads.h"
#include "shared_code.h"
#include "unique_fd.h"
#include "v8_values.h"
#include "wait.h"

namespace mp {

std::atomic<int> g_ownThreads{0};

namespace {

// True in every process that came out of our fork(): its platform workers are gone.
bool g_isForkedChild = false;
// How many forks this process descends from: the JS modules compare it with
// the one they last saw to catch up after a fork (see src/at_fork.ts).
uint32_t g_forkGeneration = 0;

// ---------------------------------------------------------------------------
// 1. The whole address space must be copied into the child.

struct AddressRange {
  uintptr_t start;
  uintptr_t end;
};

// The kernel's special mappings refuse MADV_DOFORK (EINVAL) and never move;
// everything else in the user address space gets the flag cleared.
bool IsSpecialMapping(const std::string& line) {
  return line.find("[vvar") != std::string::npos || line.find("[vdso]") != std::string::npos ||
         line.find("[vsyscall]") != std::string::npos;
}

std::vector<AddressRange> ReadMappings(bool special) {
  std::vector<AddressRange> ranges;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (IsSpecialMapping(line) != special) continue;
    AddressRange range{};
    char dash = 0;
    std::istringstream fields(line);
    fields >> std::hex >> range.start >> dash >> range.end;
    if (fields && dash == '-') ranges.push_back(range);
  }
  return ranges;
}

class ForkableAddressSpace {
 public:
  // Clears VM_DONTCOPY on every user mapping. Holes between mappings only make
  // madvise() report ENOMEM after it has advised every mapping in the span, so a
  // handful of calls over the spans between the special mappings does the work
  // that reading /proc/self/smaps and advising each flagged mapping would do,
  // at a fraction of the cost (fact 1 measured ~0.9 ms for the smaps scan).
  void MakeForkable() {
    if (spans_.empty()) ComputeSpans();
    for (const AddressRange& span : spans_) {
      if (madvise(reinterpret_cast<void*>(span.start), span.end - span.start, MADV_DOFORK) == 0 ||
          errno == ENOMEM) {
        continue;
      }
      // Some other mapping refuses the advice (a device mapping of another
      // library's): fall back to advising each mapping on its own.
      AdviseEachMapping();
      return;
    }
  }

 private:
  void ComputeSpans() {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    std::vector<AddressRange> special = ReadMappings(true);
    uintptr_t top = 0;
    for (const AddressRange& range : ReadMappings(false)) top = std::max(top, range.end);
    for (const AddressRange& range : special) top = std::max(top, range.end);
    uintptr_t cursor = page;
    for (const AddressRange& range : special) {
      if (range.start > cursor) spans_.push_back({cursor, range.start});
      cursor = std::max(cursor, range.end);
    }
    if (top > cursor) spans_.push_back({cursor, top});
  }

  static void AdviseEachMapping() {
    for (const AddressRange& range : ReadMappings(false)) {
      // Mappings that cannot be copied (VM_IO) stay as they are, as in C.
      madvise(reinterpret_cast<void*>(range.start), range.end - range.start, MADV_DOFORK);
    }
  }

  std::vector<AddressRange> spans_;
};

ForkableAddressSpace g_addressSpace;

// ---------------------------------------------------------------------------
// Output must appear once. Writes to a pipe that is full wait in libuv's queue;
// a child would inherit the queue and write them a second time. So, as Python
// flushes sys.stdout before it forks, the parent first writes out what stdout
// and stderr still have queued, blocking until the reader takes it, and marks
// those requests done: libuv then completes them (callbacks and all) in the
// parent and in the child, without writing a byte again.
// This reads libuv's stream and write-request fields: they are in uv.h of the
// very libuv this addon is compiled against (Node's own headers).

// Writes all of `buf`, waiting (poll) while a non-blocking fd is full.
bool WriteFully(int fd, const char* data, size_t length) {
  while (length > 0) {
    ssize_t n = write(fd, data, length);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return false;
      pollfd writable{fd, POLLOUT, 0};
      if (poll(&writable, 1, -1) < 0 && errno != EINTR) return false;
      continue;
    }
    data += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

// Leaves `req` with nothing to write, on its last (now empty) buffer: libuv's
// next attempt writes 0 bytes and completes it. (Not past its last buffer, as
// uv__write_req_update() leaves a request it completes there and then: libuv's
// uv__write() would still try this one, and read the buffer after the last;
// Node 26 crashed on it now and then.)
void MarkWritten(uv_stream_t* stream, uv_write_t* req) {
  if (req->nbufs == 0) return;
  for (unsigned int i = req->write_index; i < req->nbufs; i++) {
    stream->write_queue_size -= req->bufs[i].len;
    req->bufs[i].base += req->bufs[i].len;
    req->bufs[i].len = 0;
  }
  req->write_index = req->nbufs - 1;
}

void FlushQueuedWrites(uv_stream_t* stream, int fd) {
  for (uv__queue* q = stream->write_queue.next; q != &stream->write_queue; q = q->next) {
    uv_write_t* req = reinterpret_cast<uv_write_t*>(reinterpret_cast<char*>(q) - offsetof(uv_write_t, queue));
    for (unsigned int i = req->write_index; i < req->nbufs; i++) {
      // On error (EPIPE: the reader is gone) leave the rest to libuv, which
      // reports it to the stream as it would have anyway.
      if (!WriteFully(fd, req->bufs[i].base, req->bufs[i].len)) return;
    }
    MarkWritten(stream, req);
  }
}

void FlushStdioWrites(uv_loop_t* loop) {
  ForEachHandle(loop, [](uv_handle_t* handle) {
    if (!IsStream(handle)) return;
    auto* stream = reinterpret_cast<uv_stream_t*>(handle);
    if (stream->write_queue_size == 0) return;
    const int fd = StdioOutputFd(handle);
    if (fd >= 0) FlushQueuedWrites(stream, fd);
  });
}

// ---------------------------------------------------------------------------
// 3. Platform workers parked at a safe point for the instant of fork().
//
// Waking every worker to park it, and again to release it, costs about 250 µs
// a fork on a 2-core machine: more than the rest of the parent's side of it.
// Forks come in bursts (a loop of fork() or Process.start(), a Pool filling
// up), so the workers stay parked for a short lease after each fork, and a
// fork within the lease parks nothing. When the lease runs out they go back to
// work by themselves. While they are parked V8's background jobs (concurrent
// marking, sweeping, optimising compiles) wait; the main thread never waits on
// them for longer than the lease, since V8 joins its jobs (the joining thread
// does the work itself) rather than waiting for a worker to pick them up.

class WorkerPark {
 public:
  // The lock returned keeps every worker parked until it is released: hold it
  // across fork(). In the child it must never be released (see Fork).
  std::unique_lock<std::mutex> ParkAll(Napi::Env env, v8::Platform* platform, int workers) {
    std::unique_lock<std::mutex> lock(state_.mutex);
    // No lease may end while workers are still coming: those already parked
    // would leave, and the tasks that parked them are spent.
    state_.leaseEnd = Clock::now() + (state_.parked < workers ? kTimeout + kLease : kLease);
    const int missing = workers - state_.parked - state_.posted;
    for (int i = 0; i < missing; i++) platform->CallOnWorkerThread(std::make_unique<ParkTask>(state_));
    state_.posted += std::max(0, missing);
    if (state_.parked < workers) {
      // Idle workers park within tens of microseconds: spin (yielding the
      // core to them) rather than pay for a futex sleep and wake-up.
      const auto spinEnd = Clock::now() + std::chrono::milliseconds(2);
      while (state_.parked < workers && Clock::now() < spinEnd) {
        lock.unlock();
        sched_yield();
        lock.lock();
      }
      // A worker busy with a long job (a GC's) delays this; one that never
      // comes back is a bug of someone's: fail rather than hang.
      if (!state_.arrived.wait_for(lock, kTimeout, [&] { return state_.parked >= workers; })) {
        state_.leaseEnd = Clock::now();  // let those parked go back to work
        state_.leaseShortened.notify_one();
        ThrowErrno(env, ETIMEDOUT, "fork");
      }
      state_.leaseEnd = Clock::now() + kLease;  // the lease starts once all are in
      state_.leaseShortened.notify_one();         // to the foreman, waiting for the longer one
    }
    return lock;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kLease{10};
  static constexpr std::chrono::seconds kTimeout{10};

  struct State {
    std::mutex mutex;
    std::condition_variable arrived;          // a worker parked
    std::condition_variable leaseShortened;  // to the foreman
    std::condition_variable leave;           // the lease is over
    int parked = 0;
    int posted = 0;  // ParkTasks not yet started
    bool hasForeman = false;
    uint64_t lease = 0;  // which lease the parked workers are in
    Clock::time_point leaseEnd{};
  };

  // A parked worker holds no lock but ours: the safe point fact 3 asks for.
  // One of them (the foreman) waits for the lease to run out, the others for
  // the foreman: a wake-up costs page faults and cross-CPU interrupts (the
  // worker's stack is shared with the last child), so only one wakes while the
  // lease is extended fork after fork.
  class ParkTask : public v8::Task {
   public:
    explicit ParkTask(State& state) : state_(state) {}
    void Run() override {
      std::unique_lock<std::mutex> lock(state_.mutex);
      state_.posted--;
      state_.parked++;
      state_.arrived.notify_one();
      const uint64_t lease = state_.lease;
      if (state_.hasForeman) {
        state_.leave.wait(lock, [&] { return state_.lease != lease; });
        return;
      }
      state_.hasForeman = true;
      while (Clock::now() < state_.leaseEnd) state_.leaseShortened.wait_until(lock, state_.leaseEnd);
      state_.hasForeman = false;
      state_.parked = 0;
      state_.lease++;
      state_.leave.notify_all();
    }

   private:
    State& state_;
  };

  // Parked workers reference it until the process ends: never destroyed.
  State& state_ = *new State();
};

WorkerPark g_workerPark;

// Node counts its delayed-task scheduler thread among the workers, but that
// thread never runs tasks: parking it would wait forever.
int WorkersToPark(node::MultiIsolatePlatform* platform) {
  if (g_isForkedChild) return 0;  // fact 9: nothing left to park after a fork
  return std::max(0, platform->NumberOfWorkerThreads() - 1);
}

// ---------------------------------------------------------------------------
// 5. Every way out of a forked child goes through _exit().

[[noreturn]] void ExitNow(int code) {
  // JS writes to stdout/stderr reach the fd synchronously (files, TTYs, pipes
  // with room); C stdio of other native code is flushed here.
  std::fflush(nullptr);
  _exit(code & 0xff);
}

// The JS side's hooks for the end of the child's event loop; see os.ts.
struct ChildLoopHooks {
  napi_env env = nullptr;
  Napi::FunctionReference beforeExit;  // emits 'beforeExit'; may schedule more work
  Napi::FunctionReference exit;        // emits 'exit' and leaves through _exit()
  napi_async_context asyncContext = nullptr;
};

ChildLoopHooks* g_hooks = nullptr;

// Keeps the child's loop from ever running dry: Node would then wait for the
// vanished platform workers (DrainTasks) and hang. Each iteration it asks
// whether anything but itself keeps the loop alive; when nothing does, it runs
// the hooks, which is what Node itself would do at that point. Like the flush
// above, it reads libuv's loop and request fields from Node's own uv.h.
//
// It is set up once, in the parent, unreferenced: there it keeps nothing alive
// and returns at once. A child only references it: setting a handle up in
// every child would write to the pages of its neighbours in the loop's queues.
class LoopEndWatcher {
 public:
  // In the parent, before the first fork: returns 0 or a libuv error code.
  static int Install(uv_loop_t* loop) {
    if (installed_) return 0;
    if (int err = uv_prepare_init(loop, &handle_)) return err;
    if (int err = uv_prepare_start(&handle_, OnPrepare)) return err;
    uv_unref(reinterpret_cast<uv_handle_t*>(&handle_));
    installed_ = true;
    return 0;
  }

  // In a child, just after the fork (nested forks too).
  static void Arm(uv_loop_t* loop) {
    lostRequests_ = RequestsLostInFork(loop);
    uv_ref(reinterpret_cast<uv_handle_t*>(&handle_));
  }

 private:
  static unsigned int QueueLength(const uv__queue& queue) {
    unsigned int length = 0;
    for (const uv__queue* q = queue.next; q != &queue; q = q->next) length++;
    return length;
  }

  // Requests that go on in the child: those of stdout and stderr (flushed by
  // the parent, they complete in the child too) and of UDP sockets; the other
  // streams' are the parent's alone (ForgetParentStreamRequests).
  static unsigned int SocketRequests(uv_loop_t* loop) {
    unsigned int count = 0;
    ForEachHandle(loop, [&count](uv_handle_t* handle) {
      if (handle->type == UV_UDP) {
        auto* udp = reinterpret_cast<uv_udp_t*>(handle);
        count += QueueLength(udp->write_queue) + QueueLength(udp->write_completed_queue);
      } else if (IsStream(handle)) {
        auto* stream = reinterpret_cast<uv_stream_t*>(handle);
        count += QueueLength(stream->write_queue) + QueueLength(stream->write_completed_queue);
        count += (stream->connect_req != nullptr) + (stream->shutdown_req != nullptr);
      }
    });
    return count;
  }

  // Thread-pool requests (an fs call, a DNS lookup, a zlib or crypto job of
  // the parent's) are the parent's alone (ForgetParentThreadPoolWork): they
  // never end in the child, and must not keep its loop alive for ever.
  static unsigned int RequestsLostInFork(uv_loop_t* loop) {
    const unsigned int survivors = SocketRequests(loop);
    return loop->active_reqs.count > survivors ? loop->active_reqs.count - survivors : 0;
  }

  // uv_loop_alive(), leaving out this watcher and the requests lost at the fork.
  static bool LoopHasOtherWork(uv_prepare_t* handle) {
    uv_loop_t* loop = handle->loop;
    const unsigned int lost = std::min(lostRequests_, loop->active_reqs.count);
    uv_unref(reinterpret_cast<uv_handle_t*>(handle));
    loop->active_reqs.count -= lost;
    bool alive = uv_loop_alive(loop) != 0;
    loop->active_reqs.count += lost;
    uv_ref(reinterpret_cast<uv_handle_t*>(handle));
    return alive;
  }

  static void CallHook(Napi::FunctionReference& hook) {
    Napi::HandleScope scope(Napi::Env(g_hooks->env));
    CallFromLoop(g_hooks->env, g_hooks->asyncContext, hook.Value());
  }

  static void OnPrepare(uv_prepare_t* handle) {
    if (!g_isForkedChild || g_hooks == nullptr || LoopHasOtherWork(handle)) return;
    CallHook(g_hooks->beforeExit);
    if (LoopHasOtherWork(handle)) return;
    CallHook(g_hooks->exit);
    ExitNow(0);  // not reached: the exit hook leaves with the right code
  }

  static inline uv_prepare_t handle_{};
  static inline bool installed_ = false;
  static inline unsigned int lostRequests_ = 0;
};

// ---------------------------------------------------------------------------
// 6, where the child cannot have a worker thread of ours (child_platform.cc):
// it compiles on its main thread, since concurrent compile jobs would go to the
// vanished workers and never run (only on-stack replacement heeds the flags:
// V8 decided on concurrent compiles at start-up). Setting the flags in the
// child costs it ~90 µs (some 30 page faults in V8's flag code). Instead the
// parent writes the child's values into V8's flag storage just before fork()
// and puts its own back just after: the child inherits them for nothing. Which
// bytes those are is learnt once, by setting the flags and comparing. Where
// V8's flag storage is not exported, the child sets the flags itself.

class ChildCompilerFlags {
 public:
  // In the parent, with the workers parked (nothing else reads the flags):
  // true when the child's values are written and Restore() must follow.
  bool WriteForChild() {
    if (mode_ == Mode::kUnknown) Learn();
    if (mode_ != Mode::kPatch) return false;
    for (Patch& patch : patches_) {
      patch.saved = storage_[patch.offset];
      storage_[patch.offset] = patch.value;
    }
    return true;
  }

  void Restore() {
    for (const Patch& patch : patches_) storage_[patch.offset] = patch.saved;
  }

  // In a child of the first generation, when the parent could not write them.
  void SetInChild() {
    if (mode_ != Mode::kPatch) v8::V8::SetFlagsFromString(kChildFlags);
  }

 private:
  static constexpr const char* kChildFlags =
      "--no-concurrent-recompilation --no-concurrent-osr --no-concurrent-sparkplug";
  static constexpr const char* kParentFlags = "--concurrent-recompilation --concurrent-osr --concurrent-sparkplug";

  enum class Mode { kUnknown, kPatch, kInChild };
  struct Patch {
    size_t offset;
    uint8_t value;
    uint8_t saved;
  };

  void Learn() {
    mode_ = Mode::kInChild;
    size_t size = 0;
    uint8_t* storage = FindFlagStorage(&size);
    if (storage == nullptr) return;
    const std::vector<uint8_t> original(storage, storage + size);
    v8::V8::SetFlagsFromString(kParentFlags);
    const std::vector<uint8_t> concurrent(storage, storage + size);
    v8::V8::SetFlagsFromString(kChildFlags);
    for (size_t offset = 0; offset < size; offset++) {
      if (storage[offset] != concurrent[offset]) patches_.push_back({offset, storage[offset], 0});
    }
    std::memcpy(storage, original.data(), size);  // the parent's flags, exactly as they were
    storage_ = storage;
    if (!patches_.empty()) mode_ = Mode::kPatch;
  }

  // V8's FlagValues (v8::internal::v8_flags), when the executable exports it
  // with its size (read from the ELF symbol, on glibc) and V8 has not made it
  // read-only.
  static uint8_t* FindFlagStorage(size_t* size) {
#ifdef __GLIBC__
    void* symbol = dlsym(RTLD_DEFAULT, "_ZN2v88internal8v8_flagsE");
    using IsFrozen = bool (*)();
    auto isFrozen = reinterpret_cast<IsFrozen>(dlsym(RTLD_DEFAULT, "_ZN2v88internal8FlagList8IsFrozenEv"));
    Dl_info info;
    ElfW(Sym)* entry = nullptr;
    if (symbol == nullptr || isFrozen == nullptr || isFrozen()) return nullptr;
    if (dladdr1(symbol, &info, reinterpret_cast<void**>(&entry), RTLD_DL_SYMENT) == 0 || entry == nullptr) return nullptr;
    if (entry->st_size == 0 || entry->st_size > (1u << 20)) return nullptr;
    *size = entry->st_size;
    return static_cast<uint8_t*>(symbol);
#else
    (void)size;
    return nullptr;
#endif
  }

  Mode mode_ = Mode::kUnknown;
  uint8_t* storage_ = nullptr;
  std::vector<Patch> patches_;
};

ChildCompilerFlags g_childCompilerFlags;

node::Environment* CurrentNodeEnvironment(Napi::Env env);

// Node reads process.pid once at start-up: a forked child must see its own
// (fact 7), and process.ppid should follow re-parenting, as getppid() does.
// Both become accessors once, in the parent: redefining them in every child
// would cost it hundreds of microseconds of copy-on-write faults and deopts.
pid_t g_pid = getpid();

Napi::Value GetProcessPid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), g_pid); }
Napi::Value GetProcessPpid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), getppid()); }

void InstallPidAccessors(Napi::Env env) {
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  const auto attributes = static_cast<napi_property_attributes>(napi_enumerable | napi_configurable);
  process.DefineProperties({
      Napi::PropertyDescriptor::Accessor<GetProcessPid>("pid", attributes),
      Napi::PropertyDescriptor::Accessor<GetProcessPpid>("ppid", attributes),
  });
}

// A fork from inside an I/O callback (code awaiting a join, a socket's data
// handler) happens while libuv walks the events its epoll_wait() returned: a
// child that goes back to its loop would carry on with that walk and handle
// its parent's events (read its sockets) as its own. libuv keeps the events
// being walked at the end of loop->watchers, where it marks those of a closed
// fd as done (fd -1): a child marks them all so. (Node's uv.h: libuv's own
// layout, as the flush above.)
void DropParentEvents(uv_loop_t* loop) {
  if (loop->watchers == nullptr) return;
  const auto count = reinterpret_cast<uintptr_t>(loop->watchers[loop->nwatchers + 1]);
#ifdef __linux__
  auto* events = reinterpret_cast<epoll_event*>(loop->watchers[loop->nwatchers]);
  for (uintptr_t i = 0; events != nullptr && i < count; i++) events[i].data.fd = -1;
#else
  auto* events = reinterpret_cast<struct kevent*>(loop->watchers[loop->nwatchers]);
  for (uintptr_t i = 0; events != nullptr && i < count; i++) events[i].ident = static_cast<uintptr_t>(-1);
#endif
}

// Every write the child makes to a page still shared with the parent costs a
// copy-on-write fault, so the child does as little as it can, all of it here
// rather than in JS that would first have to be compiled in the child.
void SetUpChild(Napi::Env env, uv_loop_t* loop, v8::Platform* platform) {
  const bool nested = g_isForkedChild;
  g_isForkedChild = true;
  g_forkGeneration++;
  g_pid = getpid();
  g_ownThreads.store(0);  // the addon's threads stayed in the parent
  // The parent's epoll instance is shared with the child until this runs: the
  // child must not touch the loop before (fact 4).
  DropParentEvents(loop);
  if (int err = uv_loop_fork(loop)) ThrowErrno(env, -err, "uv_loop_fork");
  if (int err = ForgetParentThreadPoolWork(loop)) ThrowErrno(env, -err, "pthread_mutex_init");
  ForgetParentStreamRequests(loop);
  ForgetParentChildren();
  LoopEndWatcher::Arm(loop);
  if (nested) {
    ForgetChildWorkers();
  } else {
    // Fact 6: a child with no worker thread compiles on its main thread.
    if (!RedirectWorkerTasks(platform)) g_childCompilerFlags.SetInChild();
  }
}

// process.exit(), uncaught errors and unhandled rejections end in
// Environment::Exit(), whose default handler joins the platform threads: in a
// forked child it would wait for ever. Installed once, in the parent, so that
// the child pays nothing for it.
void InstallExitHandler(node::Environment* nodeEnv) {
  node::SetProcessExitHandler(nodeEnv, [](node::Environment* env, int code) {
    if (g_isForkedChild) ExitNow(code);
    node::DefaultProcessExitHandler(env, code);
  });
}

// ---------------------------------------------------------------------------

node::Environment* CurrentNodeEnvironment(Napi::Env env) {
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  node::Environment* nodeEnv = node::GetCurrentEnvironment(isolate->GetCurrentContext());
  if (nodeEnv == nullptr) throw Napi::Error::New(env, "fork: no Node.js environment in this context");
  return nodeEnv;
}

Napi::Value Fork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Everything the child needs from Node is fetched before fork() (fact 2).
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) throw Napi::Error::New(env, "fork: no event loop");
  node::Environment* nodeEnv = CurrentNodeEnvironment(env);
  node::MultiIsolatePlatform* platform = node::GetMultiIsolatePlatform(nodeEnv);
  if (platform == nullptr) throw Napi::Error::New(env, "fork: no V8 platform");

  if (const char* type = LibuvLayoutMismatch()) {
    // Every step below reads libuv's private fields.
    Napi::Error error = ErrnoError(env, ENOSYS, "fork");
    error.Set("message", std::string("fork: this Node's libuv (") + uv_version_string() + ") lays out " + type +
                             " otherwise than the headers the addon was built against: rebuild it (npm rebuild node-multiprocessing)");
    throw error;
  }
  if (int err = LoopEndWatcher::Install(loop)) ThrowErrno(env, -err, "uv_prepare_start");
  FlushStdioWrites(loop);
  const int workers = WorkersToPark(platform);
  std::unique_lock<std::mutex> parked;
  if (workers > 0) parked = g_workerPark.ParkAll(env, platform, workers);
  if (g_isForkedChild) PauseChildWorkers();
  // Only once no other thread runs V8 tasks: a heap page one maps in between
  // (V8 marks its new pages MADV_DONTFORK) would be missing in the child,
  // which then crashes on the first pointer into it.
  g_addressSpace.MakeForkable();
  ShareCodeWithChildren();
  // Where the child gets a worker thread again, its compiles stay concurrent.
  const bool redirect = !g_isForkedChild && PrepareWorkerRedirect(platform);
  const bool patched = !g_isForkedChild && !redirect && g_childCompilerFlags.WriteForChild();
  const pid_t pid = fork();
  if (pid == 0) {
    parked.release();  // the child never touches the park: its workers are gone
    SetUpChild(env, loop, platform);
    return Napi::Number::New(env, 0);
  }
  if (g_isForkedChild) ResumeChildWorkers();
  if (patched) g_childCompilerFlags.Restore();
  if (pid < 0) ThrowErrno(env, "fork");
  return Napi::Number::New(env, pid);
}

// setForkChildHooks(beforeExit, exit): what a forked child runs when its event
// loop has nothing left to do. Call once, from the main thread only: it also
// replaces the main thread's process-exit handler (see InstallExitHandler) and
// makes process.pid and process.ppid accessors (see InstallPidAccessors).
Napi::Value SetForkChildHooks(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "setForkChildHooks(beforeExit: Function, exit: Function)";
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) ThrowUsage(env, usage);
  auto* hooks = new ChildLoopHooks();  // lives as long as the process
  hooks->env = env;
  hooks->beforeExit = Napi::Persistent(info[0].As<Napi::Function>());
  hooks->exit = Napi::Persistent(info[1].As<Napi::Function>());
  napi_value resourceName = Napi::String::New(env, "node-multiprocessing:fork-child-exit");
  if (napi_async_init(env, nullptr, resourceName, &hooks->asyncContext) != napi_ok) {
    delete hooks;
    throw Napi::Error::New(env, "setForkChildHooks: napi_async_init failed");
  }
  delete g_hooks;
  g_hooks = hooks;
  InstallExitHandler(CurrentNodeEnvironment(env));
  InstallPidAccessors(env);
  return env.Undefined();
}

// _exit(code = 0): leaves at once, without 'exit' listeners, as os._exit()
// does. Exported to users as it is: JS around it would be compiled anew in
// every child that calls it (see SetUpChild).
Napi::Value Exit(const Napi::CallbackInfo& info) {
  if (info.Length() == 0 || info[0].IsUndefined()) ExitNow(0);
  Napi::Value code = info[0];
  if (!code.IsNumber() || code.As<Napi::Number>().DoubleValue() != code.As<Napi::Number>().Int32Value()) {
    throw Napi::TypeError::New(info.Env(), "_exit(code): code must be an integer");
  }
  ExitNow(code.As<Napi::Number>().Int32Value());
}

// True on the main thread of this process (a forked child's included), false
// on a worker_threads Worker: Linux gives the main thread the process's id.
Napi::Value IsMainThread(const Napi::CallbackInfo& info) {
#ifdef __linux__
  return Napi::Boolean::New(info.Env(), syscall(SYS_gettid) == getpid());
#else
  return Napi::Boolean::New(info.Env(), pthread_main_np() != 0);
#endif
}

// setV8Flags(flags): v8.setFlagsFromString() without loading Node's `v8`
// module, which brings streams with it (see src/index.ts on load cost).
Napi::Value SetV8Flags(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) ThrowUsage(info.Env(), "setV8Flags(flags: string)");
  v8::V8::SetFlagsFromString(info[0].As<Napi::String>().Utf8Value().c_str());
  return info.Env().Undefined();
}

// precompile(fn): compiles fn's bytecode now, if V8 has not yet (it compiles a
// function when first called). A target first called in a forked child would
// otherwise be parsed and compiled there, in every child, at some 35 page
// faults (0.1 ms). V8's public API compiles as a side effect of asking whether
// the function is empty; a function that cannot be compiled is left as it is.
Napi::Value Precompile(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowUsage(info.Env(), "precompile(fn: Function)");
  if (ToV8(info[0]).As<v8::Function>()->Experimental_IsNopFunction()) {
    // Nothing to do: compiled, and empty.
  }
  return info.Env().Undefined();
}

Napi::Value SharesCodeWithChildren(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), CodeSharedWithChildren());
}

// A Process child, before its target runs: the parent's sockets and pipes
// fall silent (fork_streams.cc).
Napi::Value QuietParentIo(const Napi::CallbackInfo& info) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(info.Env(), &loop) != napi_ok) throw Napi::Error::New(info.Env(), "quietParentIo: no event loop");
  QuietParentHandles(loop);
  return info.Env().Undefined();
}

Napi::Value IsForkedChild(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), g_isForkedChild);
}

// Threads in this process: the entries of /proc/self/task, counted on every
// fork for the warning about other threads. The directory stays open (one
// getdents() a fork, half the cost of reading /proc/self/stat); a forked
// child opens its own, since the one it inherits lists its parent's threads.
// -1 where there is no /proc: the warning is then not given.
Napi::Value ThreadCount(const Napi::CallbackInfo& info) {
#ifndef __linux__
  return Napi::Number::New(info.Env(), -1);
#else
  static UniqueFd tasks;
  static pid_t tasksOf = 0;
  if (tasksOf != g_pid) {
    tasks.reset(open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (tasks.get() < 0) ThrowErrno(info.Env(), "open /proc/self/task");
    tasksOf = g_pid;
  }
  if (lseek(tasks.get(), 0, SEEK_SET) < 0) ThrowErrno(info.Env(), "lseek /proc/self/task");
  alignas(dirent64) char entries[4096];
  int threads = 0;
  for (;;) {
    const long length = syscall(SYS_getdents64, tasks.get(), entries, sizeof entries);
    if (length < 0) ThrowErrno(info.Env(), "getdents64 /proc/self/task");
    if (length == 0) break;
    for (long offset = 0; offset < length;) {
      const auto* entry = reinterpret_cast<const dirent64*>(entries + offset);
      if (entry->d_name[0] != '.') threads++;  // not "." nor ".."
      offset += entry->d_reclen;
    }
  }
  return Napi::Number::New(info.Env(), threads);
#endif
}

Napi::Value OwnThreadCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), g_ownThreads.load());
}

}  // namespace

void InitFork(Napi::Env env, Napi::Object exports) {
  exports.Set("fork", Napi::Function::New(env, Fork, "fork"));
  exports.Set("_exit", Napi::Function::New(env, Exit, "_exit"));
  exports.Set("setForkChildHooks", Napi::Function::New(env, SetForkChildHooks, "setForkChildHooks"));
  exports.Set("isForkedChild", Napi::Function::New(env, IsForkedChild, "isForkedChild"));
  exports.Set("quietParentIo", Napi::Function::New(env, QuietParentIo, "quietParentIo"));
  exports.Set("sharesCodeWithChildren", Napi::Function::New(env, SharesCodeWithChildren, "sharesCodeWithChildren"));
  exports.Set("isMainThread", Napi::Function::New(env, IsMainThread, "isMainThread"));
  exports.Set("precompile", Napi::Function::New(env, Precompile, "precompile"));
  exports.Set("setV8Flags", Napi::Function::New(env, SetV8Flags, "setV8Flags"));
  // A view of the counter itself: read on hot paths (an RLock's owner), it
  // costs JS an array load rather than a call.
  exports.Set("forkGeneration",
              Napi::Uint32Array::New(env, 1, Napi::ArrayBuffer::New(env, &g_forkGeneration, sizeof g_forkGeneration), 0));
  exports.Set("threadCount", Napi::Function::New(env, ThreadCount, "threadCount"));
  exports.Set("ownThreadCount", Napi::Function::New(env, OwnThreadCount, "ownThreadCount"));
}

}  // namespace mp
