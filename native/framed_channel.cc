// A framed byte stream over one descriptor: Connection's (src/connection.ts),
// the pool's forked workers' (src/pool/channel.ts NativeWire) and a manager's
// links' (src/managers/link.ts) one way of sending and receiving.
//
//   new Channel(fd, onFrames?, options?)   the framed stream over `fd`, which
//                                it owns (made non-blocking); options:
//       copy: true               own a close-on-exec copy of `fd` instead (the
//                                caller closes the original)
//       blocking: true           keep the descriptor blocking: a recvSync() or
//                                call() is one read(), never a poll; no start()
//                                nor sendAsync()
//       text: true               a payload whose first byte is 1 (reduction.ts's
//                                JSON tag) is handed over as the text after it
//       spin: true               wait for an answer awake for a while before
//                                sleeping (see "Spinning" below)
//       onWriteError(error)      a sendAsync() backlog's write failed (the
//                                backlog is dropped)
//     send(bytes)                one whole frame, blocking while the peer is full
//     sendAsync(bytes) -> bool   one whole frame, written as far as the peer
//                                takes it now; the rest is kept (a copy), in
//                                order, and written from the event loop as
//                                the peer reads: the caller never blocks.
//                                true: all of it was written now
//     call(bytes)                send(bytes), then recvSync(-1): a request and its answer
//     recvSync(timeoutMs)        the next frame's payload; null: timed out;
//                                undefined: end of file
//     poll(timeoutMs)            whether a frame (or the end) is there to read
//     start()/stop()             read on the event loop: every frame read goes
//                                to onMessages(frames[], ended, error)
//     ref()/unref(), close() (what sendAsync() kept is dropped), fd
//
// The wire format is Python's multiprocessing.connection's: a 4-byte
// big-endian signed length, then the payload; a payload of 2 GiB or more has
// length -1 and an 8-byte big-endian length after it. A Python peer reads
// what we send and we read what it sends.
//
// Reading is buffered: one read() takes every small frame the peer has sent
// (a Pool's results) and a frame too large for the buffer is read straight
// into its own malloc()ed memory. (Transparent huge pages for it,
// madvise(MADV_HUGEPAGE), made a 64 MiB frame's 16k page faults ~130, but on
// this project's VM the kernel's zeroing of fresh huge pages took 4-8x the
// system time in one receive out of three: slower in the median.) Both the
// event loop's reads and recvSync() take from the same buffer, so they can be
// mixed. A send() or call() made while a sendAsync() backlog waits writes that
// backlog first: frames leave in the order they were sent.
//
// A pipe (a one-way Pipe) carries a frame larger than its capacity in
// capacity-sized turns, each a wake-up of the reader and then of the writer:
// the writer first grows the pipe to hold the frame, at most to 1 MiB
// (kPipeGrowth; the default 64 KiB pipe is 1024 turns for 64 MiB, 1 MiB is 64:
// on a quiet machine ~2x the bytes/s). Only a pipe that carries such a frame
// grows (every pipe's pages count against the user's fs.pipe-user-pages-soft),
// and it keeps that size until closed. Growing is best effort: past
// fs.pipe-max-size or the user's budget (EPERM) the pipe keeps its size, and
// the next large frame tries again. A socket pair (a duplex Pipe) has its
// buffers set when made (connection.cc).
//
// Lending (send() of a frame of kLendMin or more into a pipe): the payload's
// pages are lent to the pipe (vmsplice) rather than copied into it, and the
// reader copies them out: one copy of the bytes instead of two (64 MiB from a
// forked child: ~1.1 GB/s instead of ~0.8 here). A lent page is read where it
// is, so the sender must not change it before the reader has taken it: all
// but the payload's last pipe-capacity bytes are lent, and those are written.
// The pipe holds at most its capacity, in slots of a page or less, and a
// written page never joins a lent one's slot; so the last written byte goes
// in only once every lent slot before it has been read: when send() returns,
// the caller's buffer is free again, as after a write(). The capacity is asked
// again just before (another writer of the pipe may have grown it).
//
// Reading happens only while someone waits (src/connection.ts stops the poll
// when nobody does): a connection handed to another process leaves nothing
// behind that its new reader would miss, except what was read ahead while
// waiting. A forked child inherits the parent's channels, what they had read
// ahead included, and a parent's poll that was started stops in the child the
// first time it fires there, so that the child never reads for its parent
// (nor writes the parent's backlog).
//
// Spinning (a `spin` channel: a Connection's, a manager link's): a process
// that sleeps in poll() or epoll_wait() takes tens of microseconds to wake on
// a virtual machine whose other CPU idles (46-64 µs for a socket round trip
// here, 5 µs when both ends share one CPU): most of a small message's round
// trip. So a waiting spin channel stays awake while the answer is due:
//   - recvSync(), call() and poll() look for a frame for kSyncSpinNs (a
//     non-blocking read, or a poll() that does not wait, then sched_yield())
//     before they sleep in poll(); never past their timeout (0: no spin);
//   - a started channel keeps its event loop turning (an idle handle: libuv
//     then polls its descriptors without blocking, and a frame is read on the
//     next turn) for kLoopSpinNs after start() and after each send, so that
//     a reply, or a server's next request, is read without a sleep.
// Each look yields the CPU (sched_yield()): on a machine with fewer free CPUs
// than lookers, the peer that would answer runs instead. The cost is CPU time:
// a wait that no frame ends burns up to the window before it sleeps. So the
// windows adapt: one that ends without a frame halves the next (down to 1/8),
// and a frame that comes within a full window of its wait (caught, or after
// the sleep) gives the full windows back. A forked
// child's copy of a parent's channel does not spin for it (its idle handle
// stops the first time it fires there, as its poll does).
#include "framed_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>

#include <uv.h>

#include "errors.h"
#include "fd_wait.h"
#include "unique_fd.h"

namespace mp {
namespace {

constexpr size_t kBufferSize = 256 * 1024;        // frames that fit are read many at a time
constexpr size_t kSmallFrame = 4096;              // sent with its header in one write() from the stack
constexpr uint64_t kMaxShortLength = 0x7fffffff;  // larger: the -1 + 8-byte header
constexpr size_t kLongHeader = 12;
constexpr int kReadsPerEvent = 16;  // then other handles get their turn
constexpr int kFlushParts = 64;     // backlog entries written by one writev()
constexpr uint8_t kTextTag = 1;     // reduction.ts's JSON tag
constexpr size_t kPipeGrowth = 1024 * 1024;  // the most a pipe grows to (fs.pipe-max-size's default)
constexpr size_t kLendMin = 4 * 1024 * 1024;  // a pipe's frames from this size on are lent, not copied
constexpr uint64_t kSyncSpinNs = 100 * 1000;  // a blocking wait's look for a frame before it sleeps
constexpr uint64_t kLoopSpinNs = 200 * 1000;  // the event loop's turning after a send or start()
constexpr int kMaxShrink = 3;                 // the windows shrink to 1/8 while frames come later

uint64_t NowMs() { return uv_hrtime() / 1000000u; }

// One step of a spin: the CPU goes to whatever else is runnable here (the
// peer, on a busy machine) and comes back.
void Relax() { sched_yield(); }

// A wait of `timeoutMs` from now (negative or infinite: no limit).
class Deadline {
 public:
  explicit Deadline(double timeoutMs)
      : forever_(timeoutMs < 0 || std::isinf(timeoutMs)),
        startNs_(uv_hrtime()),
        endMs_(forever_ ? 0 : startNs_ / 1000000u + static_cast<uint64_t>(std::ceil(timeoutMs))),
        timeoutMs_(timeoutMs) {}

  bool forever() const { return forever_; }

  // The milliseconds left, for a poll() (-1: no limit).
  double LeftMs() const {
    if (forever_) return -1;
    const uint64_t now = NowMs();
    return static_cast<double>(endMs_ > now ? endMs_ - now : 0);
  }

  // Whether the timeout is shorter than `windowNs`.
  bool Cuts(uint64_t windowNs) const { return !forever_ && timeoutMs_ * 1e6 < static_cast<double>(windowNs); }

  // When a spin of `windowNs` from the start stops (within the timeout; 0: no spin).
  uint64_t SpinEnd(uint64_t windowNs) const {
    if (windowNs == 0) return 0;
    return startNs_ + (Cuts(windowNs) ? static_cast<uint64_t>(timeoutMs_ * 1e6) : windowNs);
  }

  // Whether a frame got now came within `windowNs` of the start.
  bool Within(uint64_t windowNs) const { return uv_hrtime() - startNs_ <= windowNs; }

 private:
  bool forever_;
  uint64_t startNs_;
  uint64_t endMs_;
  double timeoutMs_;
};

// Whether `fd` has something to read now (or an error, or a hang-up).
bool ReadableNow(int fd) {
  pollfd entry{fd, POLLIN, 0};
  return poll(&entry, 1, 0) > 0;
}

// Waits until `fd` has one of `events` (or an error, or a hang-up); false once
// `timeoutMs` has passed (negative: no limit).
bool PollFd(Napi::Env env, int fd, short events, double timeoutMs) {
  pollfd entry{fd, events, 0};
  return PollUntil(env, &entry, 1, timeoutMs) > 0;
}

void SetBlocking(Napi::Env env, int fd, bool blocking) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowErrno(env, "fcntl");
  const int wanted = blocking ? flags & ~O_NONBLOCK : flags | O_NONBLOCK;
  if (wanted != flags && fcntl(fd, F_SETFL, wanted) < 0) ThrowErrno(env, "fcntl");
}

uint32_t ReadBigEndian32(const uint8_t* bytes) {
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | bytes[3];
}

uint64_t ReadBigEndian64(const uint8_t* bytes) {
  return (uint64_t{ReadBigEndian32(bytes)} << 32) | ReadBigEndian32(bytes + 4);
}

// The header of a frame of `length` bytes; its size.
size_t WriteHeader(uint8_t* header, uint64_t length) {
  if (length <= kMaxShortLength) {
    for (int i = 0; i < 4; i++) header[i] = static_cast<uint8_t>(length >> (24 - 8 * i));
    return 4;
  }
  std::memset(header, 0xff, 4);
  for (int i = 0; i < 8; i++) header[4 + i] = static_cast<uint8_t>(length >> (56 - 8 * i));
  return kLongHeader;
}

// Parses the header in the `available` bytes at `at`; false until it is
// whole. Sets the length and header size; a negative length other than -1 is
// not our stream (EPROTO).
bool ParseHeader(Napi::Env env, const uint8_t* at, size_t available, uint64_t* length, size_t* headerSize) {
  if (available < 4) return false;
  const int32_t shortLength = static_cast<int32_t>(ReadBigEndian32(at));
  if (shortLength >= 0) {
    *length = static_cast<uint64_t>(shortLength);
    *headerSize = 4;
    return true;
  }
  if (shortLength != -1) ThrowErrno(env, EPROTO, "read");
  if (available < kLongHeader) return false;
  *length = ReadBigEndian64(at + 4);
  *headerSize = kLongHeader;
  return true;
}

// Moves `*next`/`*count` past `done` bytes written.
void Advance(iovec** next, int* count, size_t done) {
  while (*count > 0 && done >= (*next)->iov_len) {
    done -= (*next)->iov_len;
    (*next)++;
    (*count)--;
  }
  if (*count > 0) {
    (*next)->iov_base = static_cast<uint8_t*>((*next)->iov_base) + done;
    (*next)->iov_len -= done;
  }
}

// Bytes a sendAsync() could not write at once, in order.
struct Pending {
  std::unique_ptr<uint8_t[]> bytes;
  size_t size;
  size_t done;
};

class Channel : public Napi::ObjectWrap<Channel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Channel",
                       {InstanceMethod<&Channel::Send>("send"), InstanceMethod<&Channel::SendAsync>("sendAsync"),
                        InstanceMethod<&Channel::Call>("call"), InstanceMethod<&Channel::RecvSync>("recvSync"),
                        InstanceMethod<&Channel::Poll>("poll"), InstanceMethod<&Channel::Start>("start"),
                        InstanceMethod<&Channel::Stop>("stop"), InstanceMethod<&Channel::SetRef<true>>("ref"),
                        InstanceMethod<&Channel::SetRef<false>>("unref"), InstanceMethod<&Channel::Close>("close"),
                        InstanceAccessor<&Channel::Fd>("fd")});
  }

  Channel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Channel>(info) {
    Napi::Env env = info.Env();
    const char* usage =
        "new Channel(fd: number, onFrames?: Function, options?: { copy?, blocking?, text?, spin?: boolean, onWriteError?: Function })";
    const int fd = IntArg(info, 0, usage);
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsFunction()) ThrowUsage(env, usage);
      onMessages_ = Napi::Persistent(info[1].As<Napi::Function>());
    }
    bool copy = false;
    if (info.Length() > 2 && !info[2].IsUndefined()) {
      if (!info[2].IsObject()) ThrowUsage(env, usage);
      Napi::Object options = info[2].As<Napi::Object>();
      copy = options.Get("copy").ToBoolean();
      blocking_ = options.Get("blocking").ToBoolean();
      text_ = options.Get("text").ToBoolean();
      spin_ = options.Get("spin").ToBoolean();
      Napi::Value onWriteError = options.Get("onWriteError");
      if (!onWriteError.IsUndefined()) {
        if (!onWriteError.IsFunction()) ThrowUsage(env, usage);
        onWriteError_ = Napi::Persistent(onWriteError.As<Napi::Function>());
      }
    }
    UniqueFd owned(copy ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : fd);
    if (owned.get() < 0) ThrowErrno(env, "fcntl");
    // A copy shares the file status flags with the original, which its owner is about to close.
    try {
      SetBlocking(env, owned.get(), blocking_);
    } catch (...) {
      if (!copy) owned.release();  // not ours until the constructor succeeds
      throw;
    }
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok || napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:Connection"), &asyncContext_) != napi_ok) {
      if (!copy) owned.release();
      throw Napi::Error::New(env, "Channel: no event loop");
    }
    if (spin_ && !blocking_) {
      idle_ = new uv_idle_t;
      uv_idle_init(loop_, idle_);
      idle_->data = this;
      uv_unref(reinterpret_cast<uv_handle_t*>(idle_));  // the poll keeps the loop alive, not the spin
    }
    fd_ = owned.release();
    generation_ = ProcessGeneration();
  }

  ~Channel() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

 private:
  // --- JS methods ---------------------------------------------------------------

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  // send(bytes: Uint8Array): the whole frame is written when it returns.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SendFrame(env, PayloadArg(info, "send(bytes: Uint8Array)"));
    AwaitAnswer();
    return env.Undefined();
  }

  // sendAsync(bytes: Uint8Array) -> boolean: all of it written now.
  Napi::Value SendAsync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::TypedArray array = PayloadArg(info, "sendAsync(bytes: Uint8Array)");
    if (blocking_) ThrowUsage(env, "sendAsync() needs a non-blocking channel");
    uint8_t header[kLongHeader];
    iovec parts[2] = {{header, WriteHeader(header, array.ByteLength())}, {Data(array), array.ByteLength()}};
    FitPipe(parts[0].iov_len + parts[1].iov_len);
    iovec* next = parts;
    int count = 2;
    AwaitAnswer();
    if (backlog_.empty()) {
      const ssize_t wrote = WriteOnce(env, next, count);
      if (wrote > 0) Advance(&next, &count, static_cast<size_t>(wrote));
      if (count == 0) return Napi::Boolean::New(env, true);
    }
    Keep(next, count);
    WatchEvents(env);
    return Napi::Boolean::New(env, false);
  }

  // call(bytes: Uint8Array) -> frame | undefined (end of file)
  Napi::Value Call(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    SendFrame(env, PayloadArg(info, "call(bytes: Uint8Array)"));
    return Receive(env, -1);
  }

  // recvSync(timeoutMs): frame | null (timed out) | undefined (end of file)
  Napi::Value RecvSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "recvSync(timeoutMs: number)");
    CheckOpen(env);
    return Receive(env, info[0].As<Napi::Number>().DoubleValue());
  }

  // poll(timeoutMs) -> boolean: whether a frame or the end of file is there.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "poll(timeoutMs: number)");
    CheckOpen(env);
    AdoptIfForked();
    if (ended_ || HasFrame()) return Napi::Boolean::New(env, true);
    const Deadline deadline(info[0].As<Napi::Number>().DoubleValue());
    const uint64_t window = SyncWindow();
    bool ready = SpinUntilReadable(deadline, window);
    if (!ready) {
      bool slept = false;
      Sleeping(deadline, window, &slept);
      ready = PollFd(env, fd_, POLLIN, deadline.LeftMs());
    }
    if (ready && spin_ && deadline.Within(kSyncSpinNs)) shrink_ = 0;
    return Napi::Boolean::New(env, ready);
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    AdoptIfForked();
    if (onMessages_.IsEmpty() || blocking_) ThrowUsage(env, "start() needs a non-blocking channel made with onFrames");
    reading_ = !ended_;
    WatchEvents(env);
    AwaitAnswer();
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    reading_ = false;
    StopSpin();
    WatchEvents(info.Env());
    return info.Env().Undefined();
  }

  // ref() / unref(): whether a started watch keeps the event loop alive.
  template <bool kRef>
  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    poll_.SetRef(kRef);
    return info.Env().Undefined();
  }

  // --- writing ----------------------------------------------------------------------

  static uint8_t* Data(Napi::TypedArray array) {
    return static_cast<uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  }

  // The payload argument of a send, on an open channel of this process.
  Napi::TypedArray PayloadArg(const Napi::CallbackInfo& info, const char* usage) {
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowUsage(info.Env(), usage);
    CheckOpen(info.Env());
    AdoptIfForked();
    return info[0].As<Napi::TypedArray>();
  }

  // Writes one whole frame (after the backlog), blocking while the peer is full.
  void SendFrame(Napi::Env env, Napi::TypedArray array) {
    const uint8_t* data = Data(array);
    const size_t length = array.ByteLength();
    FitPipe((length <= kMaxShortLength ? 4 : kLongHeader) + length);
    if (!backlog_.empty()) {
      uint8_t header[kLongHeader];
      iovec parts[2] = {{header, WriteHeader(header, length)}, {const_cast<uint8_t*>(data), length}};
      Keep(parts, 2);
      while (Flush(env)) PollFd(env, fd_, POLLOUT, -1);
      WatchEvents(env);
      return;
    }
    if (length + kLongHeader <= kSmallFrame) {
      uint8_t frame[kSmallFrame];
      const size_t headerSize = WriteHeader(frame, length);
      std::memcpy(frame + headerSize, data, length);
      iovec part{frame, headerSize + length};
      return WriteAll(env, &part, 1);
    }
    uint8_t header[kLongHeader];
    iovec parts[2] = {{header, WriteHeader(header, length)}, {const_cast<uint8_t*>(data), length}};
    const size_t lent = LendablePart(length);
    if (lent == 0) return WriteAll(env, parts, 2);
    WriteAll(env, parts, 1);
    LendAll(env, data, lent);
    iovec rest{const_cast<uint8_t*>(data) + lent, length - lent};
    WriteAll(env, &rest, 1);
  }

  // How much of a payload of `length` bytes to lend to the pipe (see the
  // top): all but its last pipe capacity; 0 (write it all) for a socket, a
  // payload of less than kLendMin, or where the pipe's capacity is unknown.
  size_t LendablePart(size_t length) {
#if defined(__linux__) && defined(F_GETPIPE_SZ)
    if (length < kLendMin || pipeCapacity_ <= 0) return 0;
    // Asked again: the capacity that counts is the pipe's now, whoever grew it.
    const int capacity = fcntl(fd_, F_GETPIPE_SZ);
    if (capacity <= 0 || length <= 2 * static_cast<size_t>(capacity)) return 0;
    return length - static_cast<size_t>(capacity);
#else
    (void)length;
    return 0;
#endif
  }

  // Lends the `length` bytes at `data` to the pipe, page by page (vmsplice),
  // blocking while it is full.
  void LendAll(Napi::Env env, const uint8_t* data, size_t length) {
#ifdef __linux__
    iovec next{const_cast<uint8_t*>(data), length};
    while (next.iov_len > 0) {
      const ssize_t lent = vmsplice(fd_, &next, 1, SPLICE_F_NONBLOCK);
      if (lent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) ThrowErrno(env, "vmsplice");
        PollFd(env, fd_, POLLOUT, -1);
        continue;
      }
      next.iov_base = static_cast<uint8_t*>(next.iov_base) + lent;
      next.iov_len -= static_cast<size_t>(lent);
    }
#else
    (void)env, (void)data, (void)length;
#endif
  }

  // Grows a pipe towards holding a frame of `size` bytes (see the top); a
  // failure keeps its size. Small frames ask nothing.
  void FitPipe(size_t size) {
#if defined(F_GETPIPE_SZ) && defined(F_SETPIPE_SZ)
    if (size <= kSmallFrame || pipeCapacity_ < 0 || size <= static_cast<size_t>(pipeCapacity_) || pipeCapacity_ >= static_cast<int>(kPipeGrowth)) return;
    if (pipeCapacity_ == 0) {
      pipeCapacity_ = fcntl(fd_, F_GETPIPE_SZ);
      if (pipeCapacity_ < 0) return;  // not a pipe (EBADF): a socket pair's buffers are set when made
      if (size <= static_cast<size_t>(pipeCapacity_)) return;
    }
    // The kernel rounds up to a power of two pages.
    const int grown = fcntl(fd_, F_SETPIPE_SZ, static_cast<int>(std::min(size, kPipeGrowth)));
    if (grown > pipeCapacity_) pipeCapacity_ = grown;
#else
    (void)size;
#endif
  }

  // One writev(): the bytes written, or -1 when the peer is full; throws a write error.
  ssize_t WriteOnce(Napi::Env env, const iovec* parts, int count) {
    for (;;) {
      const ssize_t wrote = writev(fd_, parts, count);
      if (wrote >= 0) return wrote;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "write");
      return -1;
    }
  }

  void WriteAll(Napi::Env env, iovec* next, int count) {
    while (count > 0) {
      const ssize_t wrote = WriteOnce(env, next, count);
      if (wrote < 0) PollFd(env, fd_, POLLOUT, -1);
      else Advance(&next, &count, static_cast<size_t>(wrote));
    }
  }

  // Keeps a copy of the `count` parts at `next`, after the backlog.
  void Keep(const iovec* next, int count) {
    size_t size = 0;
    for (int i = 0; i < count; i++) size += next[i].iov_len;
    std::unique_ptr<uint8_t[]> bytes(new uint8_t[size]);
    size_t at = 0;
    for (int i = 0; i < count; i++) {
      std::memcpy(bytes.get() + at, next[i].iov_base, next[i].iov_len);
      at += next[i].iov_len;
    }
    backlog_.push_back(Pending{std::move(bytes), size, 0});
  }

  // Writes the backlog until it is empty or the peer is full; whether some is left.
  bool Flush(Napi::Env env) {
    while (!backlog_.empty()) {
      iovec parts[kFlushParts];
      int count = 0;
      for (auto it = backlog_.begin(); it != backlog_.end() && count < kFlushParts; ++it) {
        parts[count++] = iovec{it->bytes.get() + it->done, it->size - it->done};
      }
      const ssize_t wrote = WriteOnce(env, parts, count);
      if (wrote < 0) return true;
      for (size_t done = static_cast<size_t>(wrote); done > 0;) {
        Pending& front = backlog_.front();
        const size_t taken = std::min(done, front.size - front.done);
        front.done += taken;
        done -= taken;
        if (front.done == front.size) backlog_.pop_front();
      }
    }
    return false;
  }

  // --- reading ----------------------------------------------------------------------

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) ThrowErrno(env, EBADF, "Channel");
  }

  // A channel used in a process other than the one that made it (a forked
  // child): the parent's poll is not the child's to run, nor its backlog the
  // child's to write.
  void AdoptIfForked() {
    const uint32_t generation = ProcessGeneration();
    if (generation == generation_) return;
    generation_ = generation;
    reading_ = false;
    backlog_.clear();
    poll_.Stop();
    StopSpin();
  }

  // Receives the next frame: null once `timeoutMs` has passed (negative: no
  // limit), undefined at the end of file. A spin channel looks for it awake
  // first (see "Spinning").
  Napi::Value Receive(Napi::Env env, double timeoutMs) {
    AdoptIfForked();
    const Deadline deadline(timeoutMs);
    const uint64_t window = SyncWindow();
    const uint64_t spinEnd = deadline.SpinEnd(window);
    bool slept = false;
    for (;;) {
      Napi::Value frame;
      const bool took = TakeFrame(env, &frame);
      if (took || ended_) {
        if (spin_ && deadline.Within(kSyncSpinNs)) shrink_ = 0;  // a full look finds such a frame
        return took ? frame : env.Undefined();
      }
      // A blocking descriptor's read() waits without a limit: a spin, or a limited wait, polls first.
      if (blocking_ && !SpinUntilReadable(deadline, window)) {
        Sleeping(deadline, window, &slept);
        if (!deadline.forever() && !PollFd(env, fd_, POLLIN, deadline.LeftMs())) return env.Null();
      }
      size_t wanted = 0;
      const ssize_t got = ReadSome(&wanted);
      if (got > 0) continue;
      if (got == 0) {
        ended_ = true;
        continue;  // a partial frame at the end is no frame
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "read");
      if (uv_hrtime() < spinEnd) {
        Relax();
        continue;
      }
      Sleeping(deadline, window, &slept);
      if (!PollFd(env, fd_, POLLIN, deadline.LeftMs())) return env.Null();
    }
  }

  // The look of a blocking wait (recvSync(), call(), poll()): kSyncSpinNs,
  // less while frames came later than that (0: not a spin channel).
  uint64_t SyncWindow() const { return spin_ ? kSyncSpinNs >> shrink_ : 0; }

  // A wait is about to sleep: the first time, a look of `window` that the
  // timeout did not cut found nothing, and the next look is shorter.
  void Sleeping(const Deadline& deadline, uint64_t window, bool* slept) {
    if (*slept) return;
    *slept = true;
    if (window > 0 && !deadline.Cuts(window) && shrink_ < kMaxShrink) shrink_++;
  }

  // Whether the descriptor became readable within a spin channel's look of
  // `window` from the deadline's start (false at once without one).
  bool SpinUntilReadable(const Deadline& deadline, uint64_t window) const {
    const uint64_t spinEnd = deadline.SpinEnd(window);
    while (uv_hrtime() < spinEnd) {
      if (ReadableNow(fd_)) return true;
      Relax();
    }
    return false;
  }

  // The header at start_ (see ParseHeader).
  bool Header(Napi::Env env, uint64_t* length, size_t* headerSize) const {
    return end_ > start_ && ParseHeader(env, buffer_.get() + start_, end_ - start_, length, headerSize);
  }

  // Forgets the frame being read in this process.
  void ResetFrame() {
    std::free(big_);
    big_ = nullptr;
    start_ = end_ = 0;
  }

  bool HasFrame() const {
    if (big_ != nullptr) return bigFilled_ == bigSize_;
    uint64_t length = 0;
    size_t headerSize = 0;
    return Header(Env(), &length, &headerSize) && end_ - start_ - headerSize >= length;
  }

  // A frame's payload for JS: the text after a text tag (text channels), else a copy of the bytes.
  Napi::Value Payload(Napi::Env env, const uint8_t* data, size_t length) const {
    if (text_ && length > 0 && data[0] == kTextTag) {
      return Napi::String::New(env, reinterpret_cast<const char*>(data + 1), length - 1);
    }
    return Napi::Buffer<uint8_t>::Copy(env, data, length);
  }

  // Takes the next whole frame read so far, if there is one.
  bool TakeFrame(Napi::Env env, Napi::Value* frame) {
    if (big_ != nullptr) {
      if (bigFilled_ < bigSize_) return false;
      std::unique_ptr<uint8_t, decltype(&std::free)> owned(big_, &std::free);
      big_ = nullptr;
      if (text_ && bigSize_ > 0 && owned.get()[0] == kTextTag) {
        *frame = Payload(env, owned.get(), bigSize_);
      } else {
        // The Buffer owns the memory once made (NewOrCopy frees it at once after a copy).
        *frame = Napi::Buffer<uint8_t>::NewOrCopy(env, owned.get(), bigSize_, [](Napi::Env, uint8_t* bytes) { std::free(bytes); });
        owned.release();
      }
      return true;
    }
    uint64_t length = 0;
    size_t headerSize = 0;
    if (!Header(env, &length, &headerSize)) return false;
    const size_t payload = end_ - start_ - headerSize;
    if (payload >= length) {
      *frame = Payload(env, buffer_.get() + start_ + headerSize, length);
      start_ += headerSize + length;
      if (start_ == end_) start_ = end_ = 0;
      return true;
    }
    if (headerSize + length <= kBufferSize) return false;  // the rest will fit in the buffer
    // Too large for the buffer: the rest is read straight into its own memory.
    if (length > SIZE_MAX) ThrowErrno(env, ENOMEM, "malloc");
    uint8_t* memory = static_cast<uint8_t*>(std::malloc(length));
    if (memory == nullptr) ThrowErrno(env, ENOMEM, "malloc");
    std::memcpy(memory, buffer_.get() + start_ + headerSize, payload);
    big_ = memory;
    bigSize_ = length;
    bigFilled_ = payload;
    start_ = end_ = 0;
    return false;
  }

  // One read() into where the bytes belong; its result (errno set when < 0).
  ssize_t ReadSome(size_t* wanted) {
    uint8_t* into;
    if (big_ != nullptr) {
      into = big_ + bigFilled_;
      *wanted = bigSize_ - bigFilled_;
    } else {
      if (!buffer_) buffer_.reset(new uint8_t[kBufferSize]);
      if (end_ == kBufferSize) {  // a frame that fits has its start at 0 once moved
        std::memmove(buffer_.get(), buffer_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
      }
      into = buffer_.get() + end_;
      *wanted = kBufferSize - end_;
    }
    ssize_t got;
    do {
      got = read(fd_, into, *wanted);
    } while (got < 0 && errno == EINTR);
    if (got > 0) {
      if (big_ != nullptr) bigFilled_ += static_cast<size_t>(got);
      else end_ += static_cast<size_t>(got);
    }
    return got;
  }

  // --- the event loop -----------------------------------------------------------------

  // Watches for what is wanted: reads once started, writes while a backlog waits.
  void WatchEvents(Napi::Env env) {
    const int events = (reading_ ? UV_READABLE : 0) | (backlog_.empty() ? 0 : UV_WRITABLE);
    if (events == 0 || fd_ < 0) poll_.Stop();
    else poll_.Start(env, loop_, fd_, events);
  }

  static void OnReady(void* owner, int status, int events) { static_cast<Channel*>(owner)->Ready(status, events); }

  // Each event makes one JS call at the most, as its last step (that call may close the channel).
  void Ready(int status, int events) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    if (!backlog_.empty() && (status < 0 || (events & UV_WRITABLE))) {
      try {
        Flush(env);
        WatchEvents(env);
      } catch (const Napi::Error& thrown) {
        WriteFailed(env, thrown.Value());
        return;  // the reads wait for the next event (the poll is level-triggered)
      }
    }
    if (reading_ && (status < 0 || (events & UV_READABLE))) Readable(env, status);
  }

  // Drops the backlog and tells onWriteError.
  void WriteFailed(Napi::Env env, Napi::Value error) {
    backlog_.clear();
    try {
      WatchEvents(env);
    } catch (const Napi::Error&) {
      poll_.Stop();
    }
    if (onWriteError_.IsEmpty()) return;
    napi_value args[] = {error};
    CallFromLoop(env, asyncContext_, onWriteError_.Value(), 1, args);
  }

  void Readable(Napi::Env env, int status) {
    Napi::Array frames = Napi::Array::New(env);
    uint32_t count = 0;
    Napi::Value error = env.Null();
    try {
      if (status < 0) throw ErrnoError(env, -status, "uv_poll");
      for (int reads = 0; reads < kReadsPerEvent; reads++) {
        size_t wanted = 0;
        const ssize_t got = ReadSome(&wanted);
        if (got < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) throw ErrnoError(env, errno, "read");
          break;
        }
        if (got == 0) {
          ended_ = true;
          break;
        }
        for (Napi::Value frame; TakeFrame(env, &frame);) frames.Set(count++, frame);
        if (static_cast<size_t>(got) < wanted) break;  // drained: a level-triggered poll tells of more
      }
    } catch (const Napi::Error& thrown) {
      error = thrown.Value();
      ended_ = true;
    }
    if (ended_) {
      reading_ = false;
      try {
        WatchEvents(env);
      } catch (const Napi::Error&) {
        poll_.Stop();
      }
    }
    if (count == 0 && !ended_) return;
    if (idle_ != nullptr && uv_hrtime() - awaitedNs_ <= kLoopSpinNs) shrink_ = 0;  // a full window catches such frames
    napi_value args[] = {frames, Napi::Boolean::New(env, ended_), error};
    CallFromLoop(env, asyncContext_, onMessages_.Value(), 3, args);
  }

  // A started spin channel keeps its loop turning for kLoopSpinNs from now
  // (less while frames came later than that): an answer, or the next
  // request, is due (see "Spinning").
  void AwaitAnswer() {
    if (idle_ == nullptr) return;
    awaitedNs_ = uv_hrtime();
    spinUntil_ = awaitedNs_ + (kLoopSpinNs >> shrink_);
    if (!reading_ || spinning_) return;
    uv_idle_start(idle_, OnIdle);
    spinning_ = true;
  }

  void StopSpin() {
    if (!spinning_) return;
    uv_idle_stop(idle_);
    spinning_ = false;
  }

  static void OnIdle(uv_idle_t* handle) { static_cast<Channel*>(handle->data)->IdleTurn(); }

  // A turn of the loop while spinning: the loop's poll, which does not block
  // meanwhile, reads what came. A parent's spin stops in a forked child.
  void IdleTurn() {
    if (generation_ != ProcessGeneration() || !reading_) return StopSpin();
    if (uv_hrtime() >= spinUntil_) {  // nothing came: the next window is shorter
      if (shrink_ < kMaxShrink) shrink_++;
      return StopSpin();
    }
    Relax();
  }

  // Ends the poll, then closes the fd; drops what was read ahead and what waited to be written.
  void Release() {
    poll_.Close();
    if (idle_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* closed) { delete reinterpret_cast<uv_idle_t*>(closed); });
      idle_ = nullptr;
      spinning_ = false;
    }
    reading_ = false;
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    ResetFrame();
    buffer_.reset();
    backlog_.clear();
  }

  int fd_ = -1;
  bool blocking_ = false;
  bool text_ = false;
  int pipeCapacity_ = 0;  // FitPipe's: 0 not asked yet, < 0 not a pipe
  bool spin_ = false;
  uint32_t generation_ = 0;  // ProcessGeneration() when last used
  std::unique_ptr<uint8_t[]> buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
  uint8_t* big_ = nullptr;  // a frame larger than the buffer, being read
  size_t bigSize_ = 0;
  size_t bigFilled_ = 0;
  bool ended_ = false;
  bool reading_ = false;  // start()ed, not stopped nor ended
  std::deque<Pending> backlog_;
  uv_loop_t* loop_ = nullptr;
  LoopPoll poll_{this, OnReady};
  uv_idle_t* idle_ = nullptr;  // a non-blocking spin channel's (see "Spinning")
  bool spinning_ = false;      // idle_ started
  uint64_t spinUntil_ = 0;     // uv_hrtime() when the loop stops turning for this channel
  uint64_t awaitedNs_ = 0;     // uv_hrtime() of the last AwaitAnswer()
  int shrink_ = 0;             // the spin windows are divided by 2^shrink_ (see "Spinning")
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onMessages_;
  Napi::FunctionReference onWriteError_;
};

}  // namespace

Napi::Function DefineChannel(Napi::Env env) { return Channel::Define(env); }

}  // namespace mp
