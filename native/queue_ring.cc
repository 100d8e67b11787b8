// A Queue's items in shared memory (src/queues/ring.ts): a ring of bytes that
// every process of the queue maps, with a "bell" pipe on which consumers with
// nothing to take sleep (poll() or the event loop).
//
//   queueRingMemory(bytes) -> [fd, ArrayBuffer]   zero-filled shared memory
//       without a name (memfd_create; elsewhere a POSIX segment unlinked at
//       once): nothing in /dev/shm to leak, even after a SIGKILL. The fd is
//       how spawn and forkserver children map it (queueRingMap(fd)); the
//       memory goes when the last process has unmapped it (its ArrayBuffers
//       collected).
//   new QueueRing(words, memoryFd, bellRead, bellWrite, textTag)
//       `words`: the Int32Array over that memory (header + data, see
//       below); its descriptor and the bell's two (this object owns them:
//       close() closes them); a payload starting with `textTag` is
//       taken as the UTF-8 text after it (a string). Its property onLost(count),
//       if set, is called when items that will never be delivered were
//       dropped (see "Deaths"): a property, not a reference held here, so that
//       a callback reaching back to this object leaves no cycle through a root.
//     put(bytes | text) the item is in the ring when this returns (text: the
//                       text tag and its UTF-8, taken back as a string); blocks the
//                       thread while there is no room (or while another
//                       producer writes a large item)
//     take() -> string | Buffer | 0 (nothing now) | 1 (busy: try again soon)
//     takeSync(timeoutMs) -> string | Buffer | null (timed out)
//     prepareWait() -> item | 0 | 1   registers this consumer as asleep (the
//                       bell will ring), then tries again; with an item the
//                       registration is undone. endWait() undoes it after the wait.
//     empty(), close(), bellFd
//     _putPartial(bytes, slots), _takePartial(slots)  tests only: a producer
//                       stopped after `slots` slots of an item (0: in the lock,
//                       nothing written), a consumer after `slots` slots of a
//                       large item (0: the assembler, nothing taken), as if
//                       killed there
//     _drainPartial()   tests only: a consumer stopped in the middle of
//                       draining the bell, as if killed there
//     _state() -> [head, tail, reserveHolder, assembler, sleepers, bell] (tests only)
//   queueRingHeaderBytes: where the data starts in the block
//
// Layout: a header (head and tail: 64-bit byte counts that only grow; the
// reserve lock; sleepers; ...), then `capacity` bytes of data. An item is one
// slot, a 4-byte-aligned run of data: an 8-byte header (kind and length, then
// the writer's thread id) and the payload, wrapping at the end of the data.
// An item too large for one slot (kMaxSlot) goes as a FIRST slot (its total
// length, then data), MORE slots and a LAST slot, one after the other.
//
// Producers: a producer takes the reserve lock (a word holding its thread id),
// checks the room (tail - head), copies the slot in, publishes the new tail and
// gives the lock back: consumers never see a slot before it is whole. The lock
// is held for some nanoseconds for a small item; a large item's writer holds
// it until its LAST slot is in (it waits for room in between), so that its
// slots are never mixed with others'.
//
// Consumers take a slot without a lock: copy the payload out, then move head
// past the slot with a compare-and-exchange (a consumer that loses the race
// drops its copy and tries again). A large item is taken by one consumer at a
// time, the assembler (a word holding its thread id), slot after slot.
//
// Deaths (SIGKILL at any instant):
// - a producer inside the reserve lock leaves nothing visible (the tail is
//   published last); the next producer finds the lock's holder dead and takes
//   it over. One killed in the middle of a large item leaves its first slots:
//   the assembler finds the item abandoned (its writer no longer holds the
//   lock, or died) and drops them: onLost(1) (that item's put never returned).
// - a consumer killed before its compare-and-exchange took nothing; after it,
//   it had the item (as one killed the instant get() returned). An assembler
//   killed part-way through a large item: the next consumer finds the slots
//   left with the assembler dead, drops them: onLost(1).
// - a consumer killed while registered asleep leaves its sleeper slot (its
//   thread id) and its bit in the mask: the next consumer that goes to sleep
//   finds that thread dead and frees both, so producers do not go on ringing
//   for it. (Past kSlotCount sleepers at once, a sleeper is only counted, in
//   kSleepers: one killed then stays counted.)
// - a thread killed while it rings or drains the bell leaves its id in kBell:
//   the next ringer finds it dead, takes its place and rings.
//
// Waking: a consumer about to sleep registers: it takes a sleeper slot (its
// thread id there, then its bit in kSleeperMask). A producer rings the bell
// (writes one byte) after publishing a slot when some consumer sleeps (a bit
// set, or kSleepers) and the bell is not rung yet. The word kBell says so:
// 0 (not rung), kRung (a byte is in the pipe), or a thread's id with
// kBellBusy while that thread rings or drains; a ringer that finds kBell
// not 0 leaves the ringing to the byte already there or to that thread (a dead
// one's place it takes). A consumer that found nothing drains the pipe under
// its own id, then sets kBell to 0, then looks again before it sleeps: so
// kRung always has its byte in the pipe. (Clearing first and draining after
// lost wake-ups: a ring in between had its byte drained with kBell left
// kRung, and no producer rang again while consumers slept.) One that takes an
// item while more are there and others sleep rings it again. Producers waiting
// for room sleep on the futex kRoomSeq, which consumers bump (and wake) when
// they free room while producers wait.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sched.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include <atomic>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <uv.h>

#include "errors.h"
#include "fd_wait.h"
#include "modules.h"
#include "thread_alive.h"

namespace mp {
namespace {

// The header's fields (byte offsets in the block).
constexpr size_t kHead = 0;            // u64: bytes taken by consumers
constexpr size_t kTail = 8;            // u64: bytes published by producers
constexpr size_t kReserveLock = 16;    // u32: thread id of the producer in the lock, 0: free
constexpr size_t kReserveWaiters = 20; // u32: producers asleep on the lock
constexpr size_t kSleepers = 24;       // u32: consumers asleep on the bell without a slot (all taken)
constexpr size_t kBell = 28;           // u32: 1 once the bell is rung and not yet drained
constexpr size_t kRoomSeq = 32;        // u32: bumped when room is freed while producers wait
constexpr size_t kRoomWaiters = 36;    // u32: producers asleep waiting for room
constexpr size_t kAssembler = 40;      // u32: thread id of the consumer taking a large item
constexpr size_t kSleeperMask = 44;    // u32: bit i set while the consumer of sleeper slot i sleeps
constexpr size_t kSleeperSlots = 64;   // u32 x kSlotCount: a sleeping consumer's thread id, 0: free
constexpr int kSlotCount = 32;
constexpr size_t kHeaderBytes = kSleeperSlots + 4 * kSlotCount;

// A sleeper slot being freed by the thread whose id is in the other bits
// (its sleeper died): nobody takes the slot meanwhile.
constexpr uint32_t kHealing = 0x80000000u;

// kBell's values but 0: the bell is rung (its byte in the pipe), or the thread
// whose id is in the other bits is ringing or draining it.
constexpr uint32_t kRung = 1;
constexpr uint32_t kBellBusy = 0x80000000u;

// Slots.
constexpr size_t kSlotHeader = 8;
constexpr uint32_t kKindItem = 1;
constexpr uint32_t kKindFirst = 2;
constexpr uint32_t kKindMore = 3;
constexpr uint32_t kKindLast = 4;
constexpr size_t kMaxSlot = 128 * 1024;  // header included; larger items go in several slots
constexpr size_t kTotalBytes = 8;        // a FIRST slot's payload starts with the item's length

constexpr size_t kNever = SIZE_MAX;  // no test stop

// How long a sleeper waits before it checks that the thread it waits for lives.
constexpr int kCheckMs = 50;

uint32_t Word0(uint32_t kind, size_t length) { return (kind << 24) | static_cast<uint32_t>(length); }
uint32_t KindOf(uint32_t word0) { return word0 >> 24; }
size_t LengthOf(uint32_t word0) { return word0 & 0xffffffu; }
uint64_t SlotBytes(size_t payload) { return (kSlotHeader + payload + 3) & ~uint64_t{3}; }

#ifdef __linux__
long Futex(void* address, int op, uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, address, op, value, timeout, nullptr, 0);
}

void FutexWaitMs(std::atomic<uint32_t>* word, uint32_t expected, int ms) {
  timespec timeout{ms / 1000, (ms % 1000) * 1000000L};
  Futex(word, FUTEX_WAIT, expected, &timeout);  // any outcome: the caller looks again
}

void FutexWakeAll(std::atomic<uint32_t>* word) { Futex(word, FUTEX_WAKE, INT_MAX, nullptr); }

pid_t Gettid() { return static_cast<pid_t>(syscall(SYS_gettid)); }
#else
void FutexWaitMs(std::atomic<uint32_t>*, uint32_t, int ms) { usleep(static_cast<useconds_t>(ms) * 1000); }
void FutexWakeAll(std::atomic<uint32_t>*) {}
pid_t Gettid() { return getpid(); }
#endif

// This thread's id, asked of the kernel once per process (fork generation).
uint32_t OwnTid() {
  thread_local uint32_t generation = 0;
  thread_local uint32_t tid = 0;
  const uint32_t now = ProcessGeneration();
  if (tid == 0 || generation != now) {
    tid = static_cast<uint32_t>(Gettid());
    generation = now;
  }
  return tid;
}

// What take() found instead of an item.
enum class Found { kItem, kEmpty, kBusy };

class QueueRing : public Napi::ObjectWrap<QueueRing> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "QueueRing",
                       {InstanceMethod<&QueueRing::Put>("put"), InstanceMethod<&QueueRing::Take>("take"),
                        InstanceMethod<&QueueRing::TakeSync>("takeSync"),
                        InstanceMethod<&QueueRing::PrepareWait>("prepareWait"),
                        InstanceMethod<&QueueRing::EndWait>("endWait"), InstanceMethod<&QueueRing::Empty>("empty"),
                        InstanceMethod<&QueueRing::Close>("close"),
                        InstanceMethod<&QueueRing::PutPartial>("_putPartial"),
                        InstanceMethod<&QueueRing::TakePartial>("_takePartial"),
                        InstanceMethod<&QueueRing::DrainPartial>("_drainPartial"),
                        InstanceMethod<&QueueRing::State>("_state"), InstanceAccessor<&QueueRing::BellFd>("bellFd"),
                        InstanceAccessor<&QueueRing::MemoryFd>("memoryFd")});
  }

  QueueRing(const Napi::CallbackInfo& info) : Napi::ObjectWrap<QueueRing>(info) {
    Napi::Env env = info.Env();
    const char* usage =
        "new QueueRing(words: Int32Array, memoryFd: number, bellRead: number, bellWrite: number, textTag: number)";
    if (info.Length() < 5 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
      ThrowUsage(env, usage);
    }
    Napi::Int32Array words = info[0].As<Napi::Int32Array>();
    const size_t bytes = words.ByteLength();
    // A quarter of the data holds the largest slot (see Freed()).
    if (bytes < kHeaderBytes + 4 * kMaxSlot || (bytes - kHeaderBytes) % 4 != 0) ThrowUsage(env, usage);
    const int memoryFd = IntArg(info, 1, usage);
    const int bellRead = IntArg(info, 2, usage);
    const int bellWrite = IntArg(info, 3, usage);
    textTag_ = IntArg(info, 4, usage);
    for (int fd : {bellRead, bellWrite}) {
      const int flags = fcntl(fd, F_GETFL);
      if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) ThrowErrno(env, "fcntl");
    }
    words_ = Napi::Persistent(words);
    base_ = static_cast<uint8_t*>(words.ArrayBuffer().Data()) + words.ByteOffset();
    data_ = base_ + kHeaderBytes;
    capacity_ = bytes - kHeaderBytes;
    bellRead_ = bellRead;
    bellWrite_ = bellWrite;
    memoryFd_ = memoryFd;
  }

  ~QueueRing() override { Release(); }

 private:
  // --- the shared words -------------------------------------------------------------

  std::atomic<uint64_t>& U64(size_t offset) { return *reinterpret_cast<std::atomic<uint64_t>*>(base_ + offset); }
  std::atomic<uint32_t>& U32(size_t offset) { return *reinterpret_cast<std::atomic<uint32_t>*>(base_ + offset); }
  // A slot's header word `which` (0, 1) at byte count `at` (4-aligned: never split by the wrap).
  std::atomic<uint32_t>& SlotWord(uint64_t at, int which) {
    return *reinterpret_cast<std::atomic<uint32_t>*>(data_ + (at + 4 * which) % capacity_);
  }

  void CopyIn(uint64_t at, const uint8_t* from, size_t length) {
    const size_t offset = at % capacity_;
    const size_t first = std::min(length, capacity_ - offset);
    std::memcpy(data_ + offset, from, first);
    std::memcpy(data_, from + first, length - first);
  }

  void CopyOut(uint64_t at, uint8_t* to, size_t length) {
    const size_t offset = at % capacity_;
    const size_t first = std::min(length, capacity_ - offset);
    std::memcpy(to, data_ + offset, first);
    std::memcpy(to + first, data_, length - first);
  }

  void CheckOpen(Napi::Env env) {
    if (bellRead_ < 0) ThrowErrno(env, EBADF, "QueueRing");
  }

  // --- producers --------------------------------------------------------------------

  // Takes the reserve lock, taking it over from a holder that died.
  void LockReserve() {
    std::atomic<uint32_t>& lock = U32(kReserveLock);
    const uint32_t me = OwnTid();
    for (int tries = 0;; tries++) {
      uint32_t holder = 0;
      if (lock.compare_exchange_strong(holder, me)) return;
      if (holder == me) return;  // ours already (a put cut short by an exception)
      if (tries < 3) {
        sched_yield();  // the holder is most likely copying a few bytes
        continue;
      }
      U32(kReserveWaiters).fetch_add(1);
      FutexWaitMs(&lock, holder, kCheckMs);
      U32(kReserveWaiters).fetch_sub(1);
      if (lock.load() == holder && !ThreadAlive(static_cast<pid_t>(holder)) && lock.compare_exchange_strong(holder, me)) return;
    }
  }

  void UnlockReserve() {
    U32(kReserveLock).store(0);
    if (U32(kReserveWaiters).load() != 0) FutexWakeAll(&U32(kReserveLock));
  }

  // Waits (holding the lock or not) until `need` more bytes fit, at most kCheckMs.
  void WaitRoom(uint64_t need) {
    std::atomic<uint32_t>& seq = U32(kRoomSeq);
    U32(kRoomWaiters).fetch_add(1);
    const uint32_t seen = seq.load();
    if (U64(kTail).load() + need - U64(kHead).load() > capacity_) FutexWaitMs(&seq, seen, kCheckMs);
    U32(kRoomWaiters).fetch_sub(1);
  }

  bool HasRoom(uint64_t need) { return U64(kTail).load(std::memory_order_relaxed) + need - U64(kHead).load() <= capacity_; }

  // Appends one slot (the reserve lock held): its header, its payload in up
  // to two parts, then the tail that shows it. Waits for room.
  void Append(uint32_t kind, const uint8_t* prefix, size_t prefixLength, const uint8_t* data, size_t length) {
    const size_t payload = prefixLength + length;
    const uint64_t need = SlotBytes(payload);
    while (!HasRoom(need)) WaitRoom(need);
    const uint64_t tail = U64(kTail).load(std::memory_order_relaxed);
    SlotWord(tail, 0).store(Word0(kind, payload), std::memory_order_relaxed);
    SlotWord(tail, 1).store(OwnTid(), std::memory_order_relaxed);
    if (prefixLength > 0) CopyIn(tail + kSlotHeader, prefix, prefixLength);
    CopyIn(tail + kSlotHeader + prefixLength, data, length);
    U64(kTail).store(tail + need);  // the slot is whole: consumers may take it
    RingBell();
  }

  // Writes the item: one slot, or several for a large one. `stopAfter`
  // (tests): returns after that many slots, the lock kept, as a producer
  // killed there would leave it.
  void PutItem(const uint8_t* data, size_t length, size_t stopAfter) {
    LockReserve();
    if (stopAfter == 0) return;
    if (kSlotHeader + length <= kMaxSlot) {
      Append(kKindItem, nullptr, 0, data, length);
      UnlockReserve();
      return;
    }
    uint8_t total[kTotalBytes];
    for (size_t i = 0; i < kTotalBytes; i++) total[i] = static_cast<uint8_t>(static_cast<uint64_t>(length) >> (8 * i));
    size_t done = kMaxSlot - kSlotHeader - kTotalBytes;
    Append(kKindFirst, total, kTotalBytes, data, done);
    for (size_t written = 1; done < length; written++) {
      if (written == stopAfter) return;
      const size_t part = std::min(length - done, kMaxSlot - kSlotHeader);
      Append(done + part == length ? kKindLast : kKindMore, nullptr, 0, data + done, part);
      done += part;
    }
    UnlockReserve();
  }

  // Rings the bell if a consumer sleeps and nobody rang it since it was drained.
  void RingBell() {
    if (!AnySleeper()) return;
    const uint32_t mine = OwnTid() | kBellBusy;
    uint32_t seen = 0;
    while (!U32(kBell).compare_exchange_strong(seen, mine)) {
      // Rung: its byte wakes the sleepers. A live thread ringing: its byte
      // will. A live thread draining: it looks again before it sleeps, after
      // this item was published. Only a dead one's place is taken.
      if (seen == kRung || ThreadAlive(static_cast<pid_t>(seen & ~kBellBusy))) return;
    }
    const char byte = 1;
    ssize_t wrote;
    do {
      wrote = write(bellWrite_, &byte, 1);
    } while (wrote < 0 && errno == EINTR);
    // EAGAIN: the pipe is full of rings already; EBADF after close(): nobody here to wake.
    uint32_t expected = mine;
    U32(kBell).compare_exchange_strong(expected, kRung);  // unless a drainer took over meanwhile
  }

  // --- consumers --------------------------------------------------------------------

  // Room was freed: wakes producers that wait for it once a quarter of the
  // ring is free (or it is empty): a producer then puts many items before it
  // waits again, rather than one per item taken. A quarter holds the largest slot.
  void Freed() {
    if (U32(kRoomWaiters).load() == 0) return;
    const uint64_t used = U64(kTail).load() - U64(kHead).load();
    if (used != 0 && capacity_ - used < capacity_ / 4) return;
    U32(kRoomSeq).fetch_add(1);
    FutexWakeAll(&U32(kRoomSeq));
  }

  // After a take: if more items are there and consumers sleep, one of them is woken.
  void PassOn() {
    if (AnySleeper() && U64(kTail).load() != U64(kHead).load()) RingBell();
  }

  Napi::Value MakeItem(Napi::Env env, const uint8_t* bytes, size_t length) {
    if (textTag_ >= 0 && length > 0 && bytes[0] == textTag_) {
      return Napi::String::New(env, reinterpret_cast<const char*>(bytes) + 1, length - 1);
    }
    return Napi::Buffer<uint8_t>::Copy(env, bytes, length);
  }

  // One attempt: an item, or what was found instead. Large items are taken
  // whole here (waiting for their slots); `stopAfter` (tests) stops after
  // that many slots of one, as an assembler killed there would.
  Found TakeOnce(Napi::Env env, Napi::Value* item, size_t stopAfter = kNever) {
    for (;;) {
      const uint64_t head = U64(kHead).load();
      if (head == U64(kTail).load()) return Found::kEmpty;
      const uint32_t word0 = SlotWord(head, 0).load();
      // Read while head was there: the slot was not reused under us.
      if (U64(kHead).load() != head) continue;
      const size_t length = LengthOf(word0);
      switch (KindOf(word0)) {
        case kKindItem: {
          uint8_t stack[512];
          std::unique_ptr<uint8_t[]> heap;
          uint8_t* bytes = stack;
          if (length > sizeof stack) bytes = (heap = std::unique_ptr<uint8_t[]>(new uint8_t[length])).get();
          CopyOut(head + kSlotHeader, bytes, length);
          uint64_t expected = head;
          // Another consumer took it first: our copy may be torn; look again.
          if (!U64(kHead).compare_exchange_strong(expected, head + SlotBytes(length))) continue;
          Freed();
          PassOn();
          *item = MakeItem(env, bytes, length);
          return Found::kItem;
        }
        case kKindFirst:
        case kKindMore:
        case kKindLast: {
          if (!TakeAssembler()) return Found::kBusy;
          const Assembled outcome = Assemble(env, item, stopAfter);
          if (stopAfter != kNever) return Found::kBusy;  // tests: the assembler stays ours, as if killed
          U32(kAssembler).store(0);
          PassOn();
          if (outcome == Assembled::kWhole) return Found::kItem;
          if (outcome == Assembled::kDropped) Lost();
          continue;
        }
        default:
          ThrowErrno(env, EPROTO, "QueueRing");  // not a slot: the memory is not a ring's
      }
    }
  }

  // Becomes the assembler (taking over from a dead one); false while a live consumer is.
  bool TakeAssembler() {
    std::atomic<uint32_t>& assembler = U32(kAssembler);
    const uint32_t me = OwnTid();
    uint32_t holder = 0;
    if (assembler.compare_exchange_strong(holder, me) || holder == me) return true;
    if (ThreadAlive(static_cast<pid_t>(holder))) return false;
    return assembler.compare_exchange_strong(holder, me);
  }

  enum class Assembled { kWhole, kDropped, kNothing };

  // The assembler's work: takes the large item at head slot by slot. kDropped
  // when it cannot be whole (the rest of one a dead assembler began; or its
  // producer died part-way): its slots are dropped. kNothing: head is at no
  // large item any more (another assembler finished it).
  Assembled Assemble(Napi::Env env, Napi::Value* item, size_t stopAfter) {
    uint64_t head = U64(kHead).load();
    if (head == U64(kTail).load()) return Assembled::kNothing;
    uint32_t word0 = SlotWord(head, 0).load();
    if (KindOf(word0) == kKindItem) return Assembled::kNothing;
    const bool orphan = KindOf(word0) != kKindFirst;
    const uint32_t writer = SlotWord(head, 1).load();
    uint64_t total = 0;
    std::unique_ptr<uint8_t, decltype(&std::free)> bytes(nullptr, std::free);
    uint64_t filled = 0;
    if (!orphan) {
      uint8_t length[kTotalBytes];
      CopyOut(head + kSlotHeader, length, kTotalBytes);
      for (size_t i = 0; i < kTotalBytes; i++) total |= static_cast<uint64_t>(length[i]) << (8 * i);
      bytes.reset(static_cast<uint8_t*>(std::malloc(total > 0 ? total : 1)));
      if (!bytes) ThrowErrno(env, ENOMEM, "malloc");
    }
    bool checkAlive = false;
    for (size_t taken = 0;; taken++) {
      if (taken == stopAfter) return Assembled::kDropped;
      while (head == U64(kTail).load()) {
        // Its writer holds the lock until its last slot is in: if it does not, it died.
        if (U32(kReserveLock).load() != writer || (checkAlive && !ThreadAlive(static_cast<pid_t>(writer)))) {
          if (head == U64(kTail).load()) return Assembled::kDropped;
          break;
        }
        checkAlive = !SleepOnBell(kCheckMs);
      }
      word0 = SlotWord(head, 0).load();
      const uint32_t kind = KindOf(word0);
      const bool ours = taken == 0 || ((kind == kKindMore || kind == kKindLast) && SlotWord(head, 1).load() == writer);
      if (!ours) return Assembled::kDropped;  // its producer died: this slot is another's
      const size_t length = LengthOf(word0);
      if (!orphan) {
        const size_t skip = kind == kKindFirst ? kTotalBytes : 0;
        const size_t part = length - skip;
        if (filled + part > total) ThrowErrno(env, EPROTO, "QueueRing");
        CopyOut(head + kSlotHeader + skip, bytes.get() + filled, part);
        filled += part;
      }
      head += SlotBytes(length);
      U64(kHead).store(head);  // the assembler alone moves head over a large item's slots
      Freed();
      if (kind == kKindLast) break;
    }
    if (orphan) return Assembled::kDropped;
    *item = MakeItem(env, bytes.get(), static_cast<size_t>(total));
    return Assembled::kWhole;
  }

  void Lost() {
    Napi::Env env = Env();
    Napi::Value onLost = Value().Get("onLost");
    if (onLost.IsFunction()) onLost.As<Napi::Function>().Call(Value(), {Napi::Number::New(env, 1)});
  }

  // Sleeps until the bell rings or `ms` passed (negative: no limit), as a
  // registered sleeper that looked again after draining the bell.
  // True when woken (or there was something), false when the time ran out.
  bool SleepOnBell(double ms) {
    Register();
    DrainBell();
    bool woken = true;
    if (U64(kHead).load() == U64(kTail).load()) woken = PollFd(bellRead_, ms);
    Unregister();
    return woken;
  }

  // --- sleepers -----------------------------------------------------------------------

  std::atomic<uint32_t>& SleeperSlot(int i) { return U32(kSleeperSlots + 4 * static_cast<size_t>(i)); }

  bool AnySleeper() { return U32(kSleeperMask).load() != 0 || U32(kSleepers).load() != 0; }

  // This object's registrations not yet undone (slot numbers, -1: counted
  // without a slot), innermost last; a forked child starts with none (the
  // parent's are the parent's).
  std::vector<int>& Registrations() {
    if (registrationsGeneration_ != ProcessGeneration()) {
      registrations_.clear();
      registrationsGeneration_ = ProcessGeneration();
    }
    return registrations_;
  }

  // Registers this thread as a sleeper: its id in a free slot, then the slot's
  // bit (a death in between leaves a slot that FreeDeadSleepers() frees).
  // Sleepers that died are freed first.
  void Register() {
    FreeDeadSleepers();
    const uint32_t me = OwnTid();
    for (int i = 0; i < kSlotCount; i++) {
      uint32_t free = 0;
      if (!SleeperSlot(i).compare_exchange_strong(free, me)) continue;
      U32(kSleeperMask).fetch_or(1u << i);
      Registrations().push_back(i);
      return;
    }
    U32(kSleepers).fetch_add(1);
    Registrations().push_back(-1);
  }

  // Undoes the latest Register() of this object in this process.
  void Unregister() {
    std::vector<int>& registrations = Registrations();
    if (registrations.empty()) return;
    const int i = registrations.back();
    registrations.pop_back();
    if (i < 0) {
      U32(kSleepers).fetch_sub(1);
      return;
    }
    U32(kSleeperMask).fetch_and(~(1u << i));  // the bit first: a set bit always has its sleeper's id
    SleeperSlot(i).store(0);
  }

  // Frees the slots of sleepers (or of freeing threads) that died: their bits
  // no longer make producers ring. The slot is taken (kHealing | our id)
  // before its bit is cleared, so that nobody registers there meanwhile.
  void FreeDeadSleepers() {
    const uint32_t me = OwnTid();
    for (int i = 0; i < kSlotCount; i++) {
      uint32_t holder = SleeperSlot(i).load();
      const uint32_t tid = holder & ~kHealing;
      if (holder == 0 || tid == me || ThreadAlive(static_cast<pid_t>(tid))) continue;
      if (!SleeperSlot(i).compare_exchange_strong(holder, me | kHealing)) continue;
      U32(kSleeperMask).fetch_and(~(1u << i));
      SleeperSlot(i).store(0);
    }
  }

  // Empties the pipe, then says the bell is not rung (see the top: in this order).
  void DrainBell() {
    uint32_t mine = EmptyBell();
    U32(kBell).compare_exchange_strong(mine, 0);  // unless another drainer took over meanwhile
  }

  // Empties the pipe under this thread's mark in kBell; returns the mark.
  uint32_t EmptyBell() {
    const uint32_t mine = OwnTid() | kBellBusy;
    U32(kBell).store(mine);
    char scratch[64];
    while (read(bellRead_, scratch, sizeof scratch) > 0) {
    }
    return mine;
  }

  bool PollFd(int fd, double ms) {
    pollfd entry{fd, POLLIN, 0};
    return PollUntil(Env(), &entry, 1, ms) > 0;
  }

  // --- JS methods -------------------------------------------------------------------

  Napi::Value BellFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), bellRead_); }
  Napi::Value MemoryFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), memoryFd_); }

  const uint8_t* BytesArg(const Napi::CallbackInfo& info, const char* usage, size_t* length) {
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowUsage(info.Env(), usage);
    Napi::TypedArray array = info[0].As<Napi::TypedArray>();
    *length = array.ByteLength();
    return static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  }

  // put(item: Uint8Array | string)
  Napi::Value Put(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* usage = "put(item: Uint8Array | string)";
    if (info.Length() >= 1 && info[0].IsString()) {
      if (textTag_ < 0) ThrowUsage(env, usage);
      CheckOpen(env);
      PutText(env, info[0]);
      return env.Undefined();
    }
    size_t length = 0;
    const uint8_t* data = BytesArg(info, usage, &length);
    CheckOpen(env);
    PutItem(data, length, kNever);
    return env.Undefined();
  }

  // A text item: the text tag, then the UTF-8 that V8 writes straight into a
  // buffer here (no Buffer made in JS: a small item allocates nothing there).
  void PutText(Napi::Env env, Napi::Value text) {
    size_t units = 0;
    if (napi_get_value_string_utf16(env, text, nullptr, 0, &units) != napi_ok) throw Napi::Error::New(env);
    const size_t room = 3 * units + 1;  // a UTF-16 unit is at most 3 bytes of UTF-8; napi adds a NUL
    uint8_t stack[4096];
    std::unique_ptr<uint8_t[]> heap;
    uint8_t* bytes = stack;
    if (1 + room > sizeof stack) bytes = (heap = std::unique_ptr<uint8_t[]>(new uint8_t[1 + room])).get();
    bytes[0] = static_cast<uint8_t>(textTag_);
    size_t written = 0;
    if (napi_get_value_string_utf8(env, text, reinterpret_cast<char*>(bytes + 1), room, &written) != napi_ok) {
      throw Napi::Error::New(env);
    }
    PutItem(bytes, 1 + written, kNever);
  }

  // _putPartial(bytes, slots): the item's first `slots` slots (0: none), the lock kept (tests).
  Napi::Value PutPartial(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const char* usage = "_putPartial(bytes: Uint8Array, slots: number)";
    size_t length = 0;
    const uint8_t* data = BytesArg(info, usage, &length);
    const int slots = IntArg(info, 1, usage);
    if (slots < 0 || (slots > 0 && kSlotHeader + length <= kMaxSlot)) ThrowUsage(env, usage);
    CheckOpen(env);
    PutItem(data, length, static_cast<size_t>(slots));
    return env.Undefined();
  }

  Napi::Value Result(Napi::Env env, Found found, Napi::Value item) {
    if (found == Found::kItem) return item;
    return Napi::Number::New(env, found == Found::kBusy ? 1 : 0);
  }

  // take() -> item | 0 | 1
  Napi::Value Take(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Napi::Value item;
    const Found found = TakeOnce(env, &item);
    return Result(env, found, item);
  }

  // _takePartial(slots): the assembler stopped after `slots` slots of a large item (0: none) (tests).
  Napi::Value TakePartial(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const int slots = IntArg(info, 0, "_takePartial(slots: number)");
    if (slots < 0) ThrowUsage(env, "_takePartial(slots: number)");
    CheckOpen(env);
    Napi::Value item;
    return Result(env, TakeOnce(env, &item, static_cast<size_t>(slots)), item);
  }

  // _drainPartial(): the bell drained under this thread's id, kBell not reset, as a drainer killed there (tests).
  Napi::Value DrainPartial(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    EmptyBell();
    return info.Env().Undefined();
  }

  // prepareWait() -> item | 0 | 1: see the top of the file.
  Napi::Value PrepareWait(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    Register();
    Napi::Value item;
    Found found = TakeOnce(env, &item);
    if (found != Found::kItem) {
      DrainBell();
      found = TakeOnce(env, &item);
    }
    if (found == Found::kItem) Unregister();
    return Result(env, found, item);
  }

  Napi::Value EndWait(const Napi::CallbackInfo& info) {
    Unregister();
    return info.Env().Undefined();
  }

  // takeSync(timeoutMs) -> item | null
  Napi::Value TakeSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "takeSync(timeoutMs: number)");
    CheckOpen(env);
    const double timeoutMs = info[0].As<Napi::Number>().DoubleValue();
    const bool forever = timeoutMs < 0 || std::isinf(timeoutMs);
    const double deadline = forever ? 0 : static_cast<double>(uv_hrtime()) / 1e6 + timeoutMs;
    for (;;) {
      Napi::Value item;
      Found found = TakeOnce(env, &item);
      if (found == Found::kItem) return item;
      Register();
      found = TakeOnce(env, &item);
      if (found != Found::kItem) {
        DrainBell();
        found = TakeOnce(env, &item);
      }
      if (found == Found::kItem) {
        Unregister();
        return item;
      }
      const double left = forever ? -1.0 : std::max(0.0, deadline - static_cast<double>(uv_hrtime()) / 1e6);
      if (left == 0) {
        Unregister();
        return env.Null();
      }
      PollFd(bellRead_, found == Found::kBusy ? (forever ? kCheckMs : std::min<double>(left, kCheckMs)) : left);
      Unregister();
    }
  }

  Napi::Value Empty(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    return Napi::Boolean::New(info.Env(), U64(kHead).load() == U64(kTail).load());
  }

  Napi::Value State(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array state = Napi::Array::New(env, 6);
    state.Set(0u, Napi::Number::New(env, static_cast<double>(U64(kHead).load())));
    state.Set(1u, Napi::Number::New(env, static_cast<double>(U64(kTail).load())));
    state.Set(2u, Napi::Number::New(env, U32(kReserveLock).load()));
    state.Set(3u, Napi::Number::New(env, U32(kAssembler).load()));
    int sleepers = static_cast<int>(U32(kSleepers).load());
    for (uint32_t mask = U32(kSleeperMask).load(); mask != 0; mask &= mask - 1) sleepers++;
    state.Set(4u, Napi::Number::New(env, sleepers));
    state.Set(5u, Napi::Number::New(env, U32(kBell).load()));
    return state;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    for (int* fd : {&bellRead_, &bellWrite_, &memoryFd_}) {
      if (*fd >= 0) close(*fd);
      *fd = -1;
    }
  }

  Napi::Reference<Napi::Int32Array> words_;
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
  int bellRead_ = -1;
  int bellWrite_ = -1;
  int memoryFd_ = -1;
  int textTag_ = -1;
  std::vector<int> registrations_;
  uint32_t registrationsGeneration_ = 0;
};

// --- the memory -------------------------------------------------------------------

// A close-on-exec descriptor of `bytes` of zero-filled shared memory without a name.
int AnonymousMemory(Napi::Env env, size_t bytes) {
#ifdef __linux__
  const int fd = static_cast<int>(syscall(SYS_memfd_create, "node-multiprocessing-queue", 1u /* MFD_CLOEXEC */));
  if (fd < 0) ThrowErrno(env, "memfd_create");
#else
  char name[64];
  std::snprintf(name, sizeof name, "/mp-queue-%d-%u", static_cast<int>(getpid()), static_cast<unsigned>(uv_hrtime()));
  const int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) ThrowErrno(env, "shm_open");
  shm_unlink(name);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
#endif
  if (ftruncate(fd, static_cast<off_t>(bytes)) < 0) {
    const int err = errno;
    close(fd);
    ThrowErrno(env, err, "ftruncate");
  }
  return fd;
}

// The memory of `fd` mapped as an ArrayBuffer, unmapped once V8 frees it.
Napi::ArrayBuffer MapMemory(Napi::Env env, int fd) {
  struct stat about {};
  if (fstat(fd, &about) < 0) ThrowErrno(env, "fstat");
  const size_t bytes = static_cast<size_t>(about.st_size);
  if (bytes < kHeaderBytes) ThrowErrno(env, EINVAL, "mmap");
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (memory == MAP_FAILED) ThrowErrno(env, "mmap");
  return Napi::ArrayBuffer::New(
      env, memory, bytes, [](Napi::Env, void* data, size_t* length) { munmap(data, *length); delete length; },
      new size_t(bytes));
}

// queueRingMemory(bytes) -> [fd, ArrayBuffer]
Napi::Value QueueRingMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int bytes = IntArg(info, 0, "queueRingMemory(bytes: number)");
  if (bytes < static_cast<int>(kHeaderBytes)) ThrowUsage(env, "queueRingMemory(bytes: number)");
  const int fd = AnonymousMemory(env, static_cast<size_t>(bytes));
  Napi::ArrayBuffer buffer;
  try {
    buffer = MapMemory(env, fd);
  } catch (...) {
    close(fd);
    throw;
  }
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fd));
  pair.Set(1u, buffer);
  return pair;
}

// queueRingMap(fd) -> ArrayBuffer: the memory of another process's queue (its descriptor passed here).
Napi::Value QueueRingMap(const Napi::CallbackInfo& info) {
  return MapMemory(info.Env(), IntArg(info, 0, "queueRingMap(fd: number)"));
}

static_assert(sizeof(std::atomic<uint64_t>) == 8 && std::atomic<uint64_t>::is_always_lock_free,
              "the ring's counters must be lock-free 64-bit words in shared memory");

}  // namespace

void InitQueueRing(Napi::Env env, Napi::Object exports) {
  exports.Set("QueueRing", QueueRing::Define(env));
  exports.Set("queueRingMemory", Napi::Function::New(env, QueueRingMemory, "queueRingMemory"));
  exports.Set("queueRingMap", Napi::Function::New(env, QueueRingMap, "queueRingMap"));
  exports.Set("queueRingHeaderBytes", Napi::Number::New(env, static_cast<double>(kHeaderBytes)));
}

}  // namespace mp
