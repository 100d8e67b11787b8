// A forked pool worker's mailboxes in shared memory (src/pool/link.ts): the
// pool hands a worker its task, and the worker its reply back, through memory
// both map, without a system call when the other side is awake.
//
//   new PoolHub(onReplies(ids, frames))   the pool's side, one per pool
//     open(capacity) -> id      a new mailbox (before its worker is forked:
//                               the worker inherits the mapping)
//     send(id, bytes) -> bool   the message is in the mailbox (false: too
//                               large, or the last one is not taken yet: the
//                               caller sends it another way); the pool then
//                               watches for replies (see "Waiting" below)
//     close(id)                 the mailbox is gone here (its worker ended)
//     ref()/unref()             whether waiting for replies keeps the event
//                               loop alive
//     detach()                  everything released, nothing called back (a
//                               forked worker's copy of its parent's hub, or
//                               the pool's end)
//   new PoolLink(hub, id, onTask(frame))   a forked worker's end of mailbox
//                               `id` of the hub it inherited (then
//                               hub.detach() releases the rest)
//     start()                   tasks go to onTask from the event loop
//     reply(bytes) -> bool      as send(), the other way
//     ref()/unref(), close()
//
// Layout: two 64-byte headers (one per direction: a sequence number bumped by
// the writer when a message is there, the sequence number the reader took,
// the message's length, and whether the reader sleeps), then the task area
// and the reply area, `capacity` bytes each. A mailbox holds one message each
// way: the pool gives a worker one task at a time and it replies once.
//
// Waking: a reader that finds nothing sets its `asleep` word, looks again,
// then sleeps on its bell (an eventfd; a pipe elsewhere); a writer rings the
// bell after publishing only when the reader sleeps. Both use sequentially
// consistent operations: one of the two always sees the other.
//
// Waiting: after a send, the pool looks for replies on every turn of its
// event loop (an idle handle: the loop polls its other descriptors without
// blocking), up to kSpinTurnNs at a time, for kSpinNs after the last message
// either way; then it sleeps on its bell. A worker that has replied looks for
// its next task for kWorkerSpinNs before it goes back to its event loop. A
// sleeping process takes tens of microseconds to wake on a busy or virtual
// machine: most of a tiny task's round trip, saved while tasks follow each
// other. Whoever looks yields the CPU between two looks (sched_yield): on a
// machine with fewer free CPUs than lookers, the other side runs instead.
//
// A worker's death is not seen here: its socket's end of file tells the pool
// (src/pool/channel.ts), and close(id) drops its mailbox.
#include <sys/mman.h>
#include <unistd.h>
#include <fcntl.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sched.h>
#include <algorithm>
#include <map>
#include <vector>
#include <utility>

#include <uv.h>

#include "errors.h"
#include "fd_wait.h"
#include "modules.h"

namespace mp {
namespace {

constexpr uint64_t kSpinNs = 200 * 1000;       // how long the pool looks for replies after the last message
constexpr uint64_t kSpinTurnNs = 20 * 1000;    // then other handles of the loop get their turn
constexpr uint64_t kWorkerSpinNs = 50 * 1000;  // how long a worker looks for its next task before it sleeps
constexpr size_t kMaxCapacity = size_t{1} << 30;
constexpr int kTasksPerTurn = 16;            // a worker's tasks between two turns of its event loop

// One direction of a mailbox.
struct alignas(64) Side {
  std::atomic<uint32_t> seq;    // bumped by the writer once a message is there
  std::atomic<uint32_t> taken;  // the seq the reader last took
  std::atomic<uint32_t> length;
  std::atomic<uint32_t> asleep;  // 1: the reader sleeps on its bell
};

struct Shared {
  Side toWorker;
  Side toPool;
};

// One step of a wait that spins: gives the CPU to whatever else is runnable
// here (the other side of the mailbox, on a busy machine) and comes back.
void Relax() { sched_yield(); }

void CloseFd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

// A descriptor pair that wakes a sleeper: an eventfd (both ends one fd), or a pipe.
struct Bell {
  int readFd = -1;
  int writeFd = -1;

  void Open(Napi::Env env) {
#ifdef __linux__
    readFd = writeFd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (readFd < 0) ThrowErrno(env, "eventfd");
#else
    int fds[2];
    if (pipe(fds) < 0) ThrowErrno(env, "pipe");
    for (int fd : fds) {
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    readFd = fds[0];
    writeFd = fds[1];
#endif
  }

  void Ring() const {
#ifdef __linux__
    const uint64_t one = 1;
    ssize_t wrote;
    do wrote = write(writeFd, &one, sizeof one);
    while (wrote < 0 && errno == EINTR);
#else
    const char one = 1;
    ssize_t wrote;
    do wrote = write(writeFd, &one, 1);
    while (wrote < 0 && errno == EINTR);
#endif
    // Full (EAGAIN): it is rung already.
  }

  void Drain() const {
    uint8_t bytes[64];
    ssize_t got;
    do got = read(readFd, bytes, sizeof bytes);
    while (got > 0 || (got < 0 && errno == EINTR));
  }

  void Close() {
    if (writeFd != readFd) CloseFd(&writeFd);
    CloseFd(&readFd);
    writeFd = -1;
  }
};

// One mailbox's memory and its worker's bell (as this process holds them).
struct Box {
  Shared* shared = nullptr;
  size_t capacity = 0;
  Bell workerBell;

  uint8_t* TaskArea() const { return reinterpret_cast<uint8_t*>(shared + 1); }
  uint8_t* ReplyArea() const { return TaskArea() + capacity; }
  size_t Bytes() const { return sizeof(Shared) + 2 * capacity; }

  void Release() {
    if (shared != nullptr) munmap(shared, Bytes());
    shared = nullptr;
    workerBell.Close();
  }
};

// The bytes of a Uint8Array argument.
struct Bytes {
  const uint8_t* data = nullptr;
  size_t length = 0;
};

bool IsBytes(const Napi::Value& value) { return value.IsTypedArray() && value.As<Napi::TypedArray>().TypedArrayType() == napi_uint8_array; }

// Argument `i`: a Uint8Array (or, when `optional`, undefined: no bytes).
Bytes BytesArg(const Napi::CallbackInfo& info, size_t i, bool optional, const char* usage) {
  if (optional && (info.Length() <= i || info[i].IsUndefined())) return {};
  if (info.Length() <= i || !IsBytes(info[i])) ThrowUsage(info.Env(), usage);
  Napi::TypedArray array = info[i].As<Napi::TypedArray>();
  return {static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset(), array.ByteLength()};
}

// Writes a message (`head` then `payload`) into `side`'s area; false when it
// does not fit or the last one is not taken yet.
bool Put(Side& side, uint8_t* area, size_t capacity, Bytes head, Bytes payload) {
  const size_t length = head.length + payload.length;
  const uint32_t seq = side.seq.load(std::memory_order_relaxed);
  if (length > capacity || side.taken.load(std::memory_order_acquire) != seq) return false;
  if (head.length > 0) std::memcpy(area, head.data, head.length);
  if (payload.length > 0) std::memcpy(area + head.length, payload.data, payload.length);
  side.length.store(static_cast<uint32_t>(length), std::memory_order_relaxed);
  side.seq.store(seq + 1);  // sequentially consistent: ordered before the load of `asleep`
  return true;
}

// A Buffer of the JS side's where messages are copied to be read: no
// allocation per message (a fresh block costs page faults).
class Scratch {
 public:
  // From argument `i` (a Buffer of at least `minimum` bytes).
  void Set(const Napi::CallbackInfo& info, size_t i, const char* usage) {
    if (info.Length() <= i || !info[i].IsBuffer()) ThrowUsage(info.Env(), usage);
    Napi::Buffer<uint8_t> buffer = info[i].As<Napi::Buffer<uint8_t>>();
    data_ = buffer.Data();
    size_ = buffer.Length();
    ref_ = Napi::Persistent(buffer);
  }
  size_t size() const { return size_; }

  // Takes the message waiting in `side` into the scratch: its length.
  uint32_t Take(Side& side, const uint8_t* area) {
    const uint32_t seq = side.seq.load(std::memory_order_acquire);
    const uint32_t length = side.length.load(std::memory_order_relaxed);
    std::memcpy(data_, area, length);
    side.taken.store(seq, std::memory_order_release);
    return length;
  }

 private:
  Napi::Reference<Napi::Buffer<uint8_t>> ref_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whether a message waits in `side`.
bool Waiting(const Side& side) { return side.seq.load() != side.taken.load(std::memory_order_relaxed); }

// Rings `bell` if the reader of `side` sleeps (after a Put). The reader
// clears `asleep` itself once awake: until then every message rings.
void Wake(const Side& side, const Bell& bell) {
  if (side.asleep.load() != 0) bell.Ring();
}

// What PoolHub and PoolLink share as JS objects: the watch of their bell from
// the event loop, which ref()/unref() make keep the process alive or not, and
// the method (close() or detach()) that releases everything the object holds
// (Derived::Release()). Derived keeps its LoopPoll `poll_` and lets this read it.
// Derived registers these with InstanceMethod(name, pointer), not
// InstanceMethod<pointer>: a template argument cannot convert a member of this
// base to a member of Derived.
template <typename Derived>
class BellWatcher : public Napi::ObjectWrap<Derived> {
 protected:
  explicit BellWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Derived>(info) {}

  template <bool ref>
  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    static_cast<Derived*>(this)->poll_.SetRef(ref);
    return info.Env().Undefined();
  }

  Napi::Value ReleaseAll(const Napi::CallbackInfo& info) {
    static_cast<Derived*>(this)->Release();
    return info.Env().Undefined();
  }
};

constexpr napi_type_tag kHubTag = {0x6d70706f6f6c6875ull, 0x62b1e9c4a2d75f31ull};

class PoolHub : public BellWatcher<PoolHub> {
  friend class BellWatcher<PoolHub>;

 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PoolHub",
                       {InstanceMethod<&PoolHub::Open>("open"), InstanceMethod<&PoolHub::Send>("send"),
                        InstanceMethod<&PoolHub::CloseBox>("close"), InstanceMethod("ref", &PoolHub::SetRef<true>),
                        InstanceMethod("unref", &PoolHub::SetRef<false>), InstanceMethod("detach", &PoolHub::ReleaseAll)});
  }

  PoolHub(const Napi::CallbackInfo& info) : BellWatcher<PoolHub>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new PoolHub(scratch: Buffer, onReply: Function)";
    scratch_.Set(info, 0, usage);
    if (info.Length() < 2 || !info[1].IsFunction()) ThrowUsage(env, usage);
    if (napi_type_tag_object(env, info.This(), &kHubTag) != napi_ok) throw Napi::Error::New(env, "PoolHub: napi_type_tag_object failed");
    onReply_ = Napi::Persistent(info[1].As<Napi::Function>());
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "PoolHub: no event loop");
    if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:Pool"), &asyncContext_) != napi_ok) {
      throw Napi::Error::New(env, "PoolHub: napi_async_init failed");
    }
    bell_.Open(env);
    idle_ = new uv_idle_t;
    uv_idle_init(loop_, idle_);
    idle_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(idle_));
    generation_ = ProcessGeneration();
    poll_.Start(env, loop_, bell_.readFd, UV_READABLE);
    poll_.SetRef(false);
  }

  ~PoolHub() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

  // The hub `value` is, or null (not a hub).
  static PoolHub* From(Napi::Env env, const Napi::Value& value) {
    bool tagged = false;
    if (!value.IsObject() || napi_check_object_type_tag(env, value, &kHubTag, &tagged) != napi_ok || !tagged) return nullptr;
    return Unwrap(value.As<Napi::Object>());
  }

  // Hands mailbox `id` over to the caller (a forked worker's PoolLink).
  bool Adopt(uint32_t id, Box* box, int* poolBell) {
    auto found = boxes_.find(id);
    if (found == boxes_.end() || bell_.writeFd < 0) return false;
    const int copy = fcntl(bell_.writeFd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return false;
    *box = found->second;
    boxes_.erase(found);
    *poolBell = copy;
    return true;
  }

 private:
  // --- JS methods ---------------------------------------------------------------

  Napi::Value Open(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* usage = "open(capacity: number)";
    const int32_t capacity = IntArg(info, 0, usage);
    if (capacity < 64 || static_cast<size_t>(capacity) > std::min(kMaxCapacity, scratch_.size())) ThrowUsage(env, usage);
    CheckOpen(env);
    Box box;
    box.capacity = static_cast<size_t>(capacity);
    void* memory = mmap(nullptr, box.Bytes(), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) ThrowErrno(env, "mmap");
    box.shared = new (memory) Shared();
    box.shared->toPool.asleep.store(sleeping_ ? 1 : 0);
    try {
      box.workerBell.Open(env);
    } catch (...) {
      box.Release();
      throw;
    }
    const uint32_t id = nextId_++;
    boxes_[id] = box;
    return Napi::Number::New(env, id);
  }

  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* usage = "send(id: number, head: Uint8Array, payload?: Uint8Array)";
    const uint32_t id = static_cast<uint32_t>(IntArg(info, 0, usage));
    const Bytes head = BytesArg(info, 1, false, usage);
    const Bytes payload = BytesArg(info, 2, true, usage);
    auto found = boxes_.find(id);
    if (found == boxes_.end()) return Napi::Boolean::New(env, false);
    Box& box = found->second;
    if (!Put(box.shared->toWorker, box.TaskArea(), box.capacity, head, payload)) return Napi::Boolean::New(env, false);
    Wake(box.shared->toWorker, box.workerBell);
    Spin();
    return Napi::Boolean::New(env, true);
  }

  Napi::Value CloseBox(const Napi::CallbackInfo& info) {
    const uint32_t id = static_cast<uint32_t>(IntArg(info, 0, "close(id: number)"));
    auto found = boxes_.find(id);
    if (found != boxes_.end()) {
      found->second.Release();
      boxes_.erase(found);
    }
    return info.Env().Undefined();
  }

  // --- waiting for replies ------------------------------------------------------

  void CheckOpen(Napi::Env env) {
    if (bell_.readFd < 0) ThrowErrno(env, EBADF, "PoolHub");
  }

  // Looks for replies on every turn of the loop from now on, for kSpinNs.
  void Spin() {
    spinUntil_ = uv_hrtime() + kSpinNs;
    if (!sleeping_) return;
    sleeping_ = false;
    for (auto& entry : boxes_) entry.second.shared->toPool.asleep.store(0, std::memory_order_relaxed);
    uv_idle_start(idle_, OnIdle);
  }

  // Stops looking: the workers ring the bell for their next replies. False
  // when a reply came meanwhile (then still awake).
  bool Sleep() {
    for (auto& entry : boxes_) entry.second.shared->toPool.asleep.store(1);
    for (auto& entry : boxes_) {
      if (Waiting(entry.second.shared->toPool)) {
        for (auto& each : boxes_) each.second.shared->toPool.asleep.store(0, std::memory_order_relaxed);
        return false;
      }
    }
    sleeping_ = true;
    uv_idle_stop(idle_);
    return true;
  }

  static void OnIdle(uv_idle_t* handle) { static_cast<PoolHub*>(handle->data)->Turn(); }

  void Turn() {
    if (generation_ != ProcessGeneration()) {  // the parent's hub, in a forked child
      uv_idle_stop(idle_);
      return;
    }
    const uint64_t start = uv_hrtime();
    uint64_t now = start;
    while (!Deliver()) {
      now = uv_hrtime();
      if (now - start >= kSpinTurnNs) {
        if (now >= spinUntil_ && !Sleep()) Deliver();
        return;
      }
      Relax();
    }
  }

  static void OnBell(void* owner, int, int) { static_cast<PoolHub*>(owner)->Rung(); }

  void Rung() {
    bell_.Drain();
    Deliver();
  }

  // Hands each waiting reply to onReply(id, length), in the scratch; false when there was none.
  bool Deliver() {
    ready_.clear();
    for (auto& entry : boxes_) {
      if (Waiting(entry.second.shared->toPool)) ready_.push_back(entry.first);
    }
    if (ready_.empty()) return false;
    spinUntil_ = uv_hrtime() + kSpinNs;
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::ObjectWrap<PoolHub>::Ref();  // the callback may drop the last reference to this hub
    for (size_t i = 0; i < ready_.size(); i++) {
      auto found = boxes_.find(ready_[i]);  // the callback may have closed it
      if (found == boxes_.end()) continue;
      const uint32_t length = scratch_.Take(found->second.shared->toPool, found->second.ReplyArea());
      napi_value args[] = {Napi::Number::New(env, ready_[i]), Napi::Number::New(env, length)};
      CallFromLoop(env, asyncContext_, onReply_.Value(), 2, args);
    }
    Napi::ObjectWrap<PoolHub>::Unref();
    return true;
  }

  void Release() {
    poll_.Close();
    if (idle_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* closed) { delete reinterpret_cast<uv_idle_t*>(closed); });
      idle_ = nullptr;
    }
    for (auto& entry : boxes_) entry.second.Release();
    boxes_.clear();
    bell_.Close();
  }

  std::map<uint32_t, Box> boxes_;
  std::vector<uint32_t> ready_;  // the mailboxes with a reply (Deliver)
  Scratch scratch_;
  uint32_t nextId_ = 1;
  Bell bell_;  // the workers ring it for a sleeping pool
  bool sleeping_ = true;
  uint64_t spinUntil_ = 0;
  uint32_t generation_ = 0;
  uv_loop_t* loop_ = nullptr;
  uv_idle_t* idle_ = nullptr;
  LoopPoll poll_{this, OnBell};
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onReply_;
};

class PoolLink : public BellWatcher<PoolLink> {
  friend class BellWatcher<PoolLink>;

 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PoolLink",
                       {InstanceMethod<&PoolLink::Start>("start"), InstanceMethod<&PoolLink::Reply>("reply"),
                        InstanceMethod("ref", &PoolLink::SetRef<true>), InstanceMethod("unref", &PoolLink::SetRef<false>),
                        InstanceMethod("close", &PoolLink::ReleaseAll)});
  }

  PoolLink(const Napi::CallbackInfo& info) : BellWatcher<PoolLink>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new PoolLink(hub: PoolHub, id: number, scratch: Buffer, onTask: Function)";
    PoolHub* hub = info.Length() > 0 ? PoolHub::From(env, info[0]) : nullptr;
    const uint32_t id = static_cast<uint32_t>(IntArg(info, 1, usage));
    scratch_.Set(info, 2, usage);
    if (hub == nullptr || info.Length() < 4 || !info[3].IsFunction()) ThrowUsage(env, usage);
    if (!hub->Adopt(id, &box_, &poolBell_)) ThrowErrno(env, EBADF, "PoolLink");
    if (scratch_.size() < box_.capacity) {
      Release();
      ThrowUsage(env, usage);
    }
    onTask_ = Napi::Persistent(info[3].As<Napi::Function>());
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "PoolLink: no event loop");
    if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:PoolWorker"), &asyncContext_) != napi_ok) {
      throw Napi::Error::New(env, "PoolLink: napi_async_init failed");
    }
  }

  ~PoolLink() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    poll_.Start(env, loop_, box_.workerBell.readFd, UV_READABLE);
    // A task may have come while this end was not asleep (it is not, until it first looks).
    box_.workerBell.Ring();
    return env.Undefined();
  }

  Napi::Value Reply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* usage = "reply(head: Uint8Array, payload?: Uint8Array)";
    const Bytes head = BytesArg(info, 0, false, usage);
    const Bytes payload = BytesArg(info, 1, true, usage);
    CheckOpen(env);
    if (!Put(box_.shared->toPool, box_.ReplyArea(), box_.capacity, head, payload)) return Napi::Boolean::New(env, false);
    Bell bell;
    bell.writeFd = poolBell_;
    Wake(box_.shared->toPool, bell);
    return Napi::Boolean::New(env, true);
  }

  void CheckOpen(Napi::Env env) {
    if (box_.shared == nullptr) ThrowErrno(env, EBADF, "PoolLink");
  }

  static void OnBell(void* owner, int, int) { static_cast<PoolLink*>(owner)->Rung(); }

  // Takes the task waiting, if any, then sleeps (see "Waking").
  void Rung() {
    box_.workerBell.Drain();
    Side& side = box_.shared->toWorker;
    for (int tasks = 0;; tasks++) {
      side.asleep.store(0, std::memory_order_relaxed);
      if (tasks == kTasksPerTurn) {  // the loop's other handles get their turn, then this bell's
        box_.workerBell.Ring();
        return;
      }
      if (Waiting(side)) {
        Napi::Env env = Env();
        Napi::HandleScope scope(env);
        napi_value args[] = {Napi::Number::New(env, scratch_.Take(side, box_.TaskArea()))};
        Napi::ObjectWrap<PoolLink>::Ref();  // the task may drop the last reference to this link
        CallFromLoop(env, asyncContext_, onTask_.Value(), 1, args);
        Napi::ObjectWrap<PoolLink>::Unref();
        if (box_.shared == nullptr) return;  // closed by the task's handler
      }
      if (AwaitTask()) continue;
      side.asleep.store(1);
      if (!Waiting(side)) return;
    }
  }

  // Whether the next task came within kWorkerSpinNs (the pool sends it as soon as it has the reply).
  bool AwaitTask() {
    const Side& side = box_.shared->toWorker;
    const uint64_t until = uv_hrtime() + kWorkerSpinNs;
    while (!Waiting(side)) {
      if (uv_hrtime() >= until) return false;
      Relax();
    }
    return true;
  }

  void Release() {
    poll_.Close();
    box_.Release();
    CloseFd(&poolBell_);
  }

  Box box_;
  Scratch scratch_;
  int poolBell_ = -1;
  uv_loop_t* loop_ = nullptr;
  LoopPoll poll_{this, OnBell};
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onTask_;
};

}  // namespace

void InitPoolLink(Napi::Env env, Napi::Object exports) {
  exports.Set("PoolHub", PoolHub::Define(env));
  exports.Set("PoolLink", PoolLink::Define(env));
}

}  // namespace mp
