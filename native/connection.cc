// The byte side of Connection (src/connection.ts): descriptors and framing.
//
//   socketpair() -> [fd, fd]     a connected AF_UNIX stream pair (duplex Pipe)
//   streamPipe() -> [readFd, writeFd]   a pipe (one-way Pipe), both ends
//                                blocking and close-on-exec; also exported as
//                                pipe() (the forkserver's requests)
//   streamPipe(size?) takes the pipe's capacity in bytes (F_SETPIPE_SZ, capped
//                                by the system; a Queue's pipe holds a burst)
//   new Channel(fd, onMessages?)  the framed byte stream over `fd`, which it owns:
//     send(bytes)                one whole frame, blocking while the peer is full
//     recvSync(timeoutMs)        the next frame's payload; null: timed out;
//                                undefined: end of file
//     poll(timeoutMs)            whether a frame (or the end) is there to read
//     start()/stop()             read on the event loop: every frame read goes
//                                to onMessages(frames[], ended, error)
//     ref()/unref(), close(), fd
//   takeFd(pid, fd) -> fd        a copy of another process's descriptor
//                                (pidfd_getfd), as Python's resource_sharer
//
// The wire format is Python's multiprocessing.connection's: a 4-byte
// big-endian signed length, then the payload; a payload of 2 GiB or more has
// length -1 and an 8-byte big-endian length after it. A Python peer reads
// what we send and we read what it sends.
//
// Reading is buffered: one read() takes every small frame the peer has sent
// (a Pool's results) and a frame too large for the buffer is
// read straight into its own memory. Both the event loop's reads and
// recvSync() take from the same buffer, so they can be mixed.
//
// Reading happens only while someone waits (src/connection.ts stops the poll
// when nobody does): a connection handed to another process leaves nothing
// behind that its new reader would miss, except what was read ahead while
// waiting. A forked child inherits the parent's channels, what they had read
// ahead included, and a parent's poll that was started stops in the child the
// first time it fires there, so that the child never reads for its parent.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <uv.h>

#include "errors.h"
#include "fd_wait.h"
#include "modules.h"
#include "unique_fd.h"

namespace mp {
namespace {

constexpr size_t kBufferSize = 256 * 1024;     // frames that fit are read many at a time
constexpr uint64_t kMaxShortLength = 0x7fffffff;  // larger: the -1 + 8-byte header
constexpr int kReadsPerEvent = 16;             // then other handles get their turn
constexpr int kSocketBufferSize = 1024 * 1024;
constexpr size_t kLongHeader = 12;

uint64_t NowMs() { return uv_hrtime() / 1000000u; }

// Waits until `fd` has one of `events` (or an error, or a hang-up); false once
// `timeoutMs` has passed (negative: no limit).
bool PollFd(Napi::Env env, int fd, short events, double timeoutMs) {
  pollfd entry{fd, events, 0};
  return PollUntil(env, &entry, 1, timeoutMs) > 0;
}

void SetNonBlocking(Napi::Env env, int fd) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0) ThrowErrno(env, "fcntl");
  if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) ThrowErrno(env, "fcntl");
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
  return 12;
}

Napi::Array FdPair(Napi::Env env, const int fds[2]) {
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fds[0]));
  pair.Set(1u, Napi::Number::New(env, fds[1]));
  return pair;
}

Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  int fds[2];
#ifdef SOCK_CLOEXEC
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) ThrowErrno(info.Env(), "socketpair");
#else
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) < 0) ThrowErrno(info.Env(), "socketpair");
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
  // Room for a burst of messages (and fewer, larger writes of a big one); the
  // kernel caps it at net.core.wmem_max/rmem_max.
  const int size = kSocketBufferSize;
  for (int fd : fds) {
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  return FdPair(info.Env(), fds);
}

Napi::Value StreamPipe(const Napi::CallbackInfo& info) {
  int fds[2];
#ifdef __linux__
  if (pipe2(fds, O_CLOEXEC) < 0) ThrowErrno(info.Env(), "pipe2");
#else
  if (pipe(fds) < 0) ThrowErrno(info.Env(), "pipe");
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
#endif
#ifdef F_SETPIPE_SZ
  // Best effort: an unprivileged process gets at most fs.pipe-max-size.
  if (info.Length() > 0 && info[0].IsNumber()) fcntl(fds[1], F_SETPIPE_SZ, info[0].As<Napi::Number>().Int32Value());
#endif
  return FdPair(info.Env(), fds);
}

// takeFd(pid, fd) -> fd: a close-on-exec copy of descriptor `fd` of process
// `pid` (which must still hold it open).
Napi::Value TakeFd(const Napi::CallbackInfo& info) {
  const char* usage = "takeFd(pid: number, fd: number)";
  const int pid = IntArg(info, 0, usage);
  const int fd = IntArg(info, 1, usage);
#if defined(__linux__) && defined(SYS_pidfd_open) && defined(SYS_pidfd_getfd)
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.get() < 0) ThrowErrno(info.Env(), "pidfd_open");
  const int copy = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0));
  if (copy < 0) ThrowErrno(info.Env(), "pidfd_getfd");
  return Napi::Number::New(info.Env(), copy);
#else
  ThrowErrno(info.Env(), ENOSYS, "pidfd_getfd");
#endif
}

class Channel : public Napi::ObjectWrap<Channel> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Channel",
                       {InstanceMethod<&Channel::Send>("send"), InstanceMethod<&Channel::RecvSync>("recvSync"),
                        InstanceMethod<&Channel::Poll>("poll"), InstanceMethod<&Channel::Start>("start"),
                        InstanceMethod<&Channel::Stop>("stop"), InstanceMethod<&Channel::Ref>("ref"),
                        InstanceMethod<&Channel::Unref>("unref"), InstanceMethod<&Channel::Close>("close"),
                        InstanceAccessor<&Channel::Fd>("fd")});
  }

  Channel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Channel>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new Channel(fd: number, onMessages?: Function)";
    const int fd = IntArg(info, 0, usage);
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsFunction()) ThrowUsage(env, usage);
      onMessages_ = Napi::Persistent(info[1].As<Napi::Function>());
    }
    SetNonBlocking(env, fd);
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "Channel: no event loop");
    if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:Connection"), &asyncContext_) !=
        napi_ok) {
      throw Napi::Error::New(env, "Channel: napi_async_init failed");
    }
    fd_ = fd;
    generation_ = ProcessGeneration();
  }

  ~Channel() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

 private:
  // --- JS methods ---------------------------------------------------------------

  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // send(bytes: Uint8Array): the whole frame is written when it returns.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowUsage(env, "send(bytes: Uint8Array)");
    CheckOpen(env);
    Napi::TypedArray array = info[0].As<Napi::TypedArray>();
    const auto* data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    const size_t length = array.ByteLength();
    uint8_t header[12];
    iovec parts[2] = {{header, WriteHeader(header, length)}, {const_cast<uint8_t*>(data), length}};
    WriteAll(env, parts);
    return env.Undefined();
  }

  // recvSync(timeoutMs): Buffer | null (timed out) | undefined (end of file)
  Napi::Value RecvSync(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "recvSync(timeoutMs: number)");
    CheckOpen(env);
    AdoptIfForked();
    const double timeoutMs = info[0].As<Napi::Number>().DoubleValue();
    const bool forever = timeoutMs < 0 || std::isinf(timeoutMs);
    const uint64_t deadline = forever ? 0 : NowMs() + static_cast<uint64_t>(std::ceil(timeoutMs));
    for (;;) {
      Napi::Value frame;
      if (TakeFrame(env, &frame)) return frame;
      if (ended_) return env.Undefined();
      size_t wanted = 0;
      const ssize_t got = ReadSome(env, &wanted);
      if (got > 0) continue;
      if (got == 0) {
        ended_ = true;
        continue;  // a partial frame at the end is no frame
      }
      if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "read");
      const double left = forever ? -1.0 : static_cast<double>(deadline > NowMs() ? deadline - NowMs() : 0);
      if (!PollFd(env, fd_, POLLIN, left)) return env.Null();
    }
  }

  // poll(timeoutMs) -> boolean: whether a frame or the end of file is there.
  Napi::Value Poll(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsNumber()) ThrowUsage(env, "poll(timeoutMs: number)");
    CheckOpen(env);
    AdoptIfForked();
    if (ended_ || HasFrame()) return Napi::Boolean::New(env, true);
    return Napi::Boolean::New(env, PollFd(env, fd_, POLLIN, info[0].As<Napi::Number>().DoubleValue()));
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckOpen(env);
    AdoptIfForked();
    if (onMessages_.IsEmpty()) ThrowUsage(env, "start() needs the onMessages callback");
    if (!ended_) poll_.Start(env, loop_, fd_, UV_READABLE);
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    return info.Env().Undefined();
  }

  Napi::Value Ref(const Napi::CallbackInfo& info) {
    poll_.SetRef(true);
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    poll_.SetRef(false);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  // --- framing --------------------------------------------------------------------

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) ThrowErrno(env, EBADF, "Channel");
  }

  // A channel used in a process other than the one that made it (a forked
  // child): the parent's poll is not the child's to run.
  void AdoptIfForked() {
    const uint32_t generation = ProcessGeneration();
    if (generation == generation_) return;
    generation_ = generation;
    poll_.Stop();
  }

  // Parses the header in the `available` bytes at `at`; false until it is
  // whole. Sets the length and header size.
  static bool ParseHeader(const uint8_t* at, size_t available, uint64_t* length, size_t* headerSize) {
    if (available < 4) return false;
    const int32_t shortLength = static_cast<int32_t>(ReadBigEndian32(at));
    if (shortLength != -1) {
      *length = static_cast<uint64_t>(static_cast<uint32_t>(shortLength));
      *headerSize = 4;
      return true;
    }
    if (available < kLongHeader) return false;
    *length = ReadBigEndian64(at + 4);
    *headerSize = kLongHeader;
    return true;
  }

  // The header at start_ (see ParseHeader).
  bool Header(uint64_t* length, size_t* headerSize) const {
    return end_ > start_ && ParseHeader(buffer_.get() + start_, end_ - start_, length, headerSize);
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
    return Header(&length, &headerSize) && end_ - start_ - headerSize >= length;
  }

  // Takes the next whole frame read so far, if there is one.
  bool TakeFrame(Napi::Env env, Napi::Value* frame) {
    if (big_ != nullptr) {
      if (bigFilled_ < bigSize_) return false;
      uint8_t* data = big_;
      big_ = nullptr;
      *frame = Napi::Buffer<uint8_t>::NewOrCopy(env, data, bigSize_, [](Napi::Env, uint8_t* bytes) { std::free(bytes); });
      return true;
    }
    uint64_t length = 0;
    size_t headerSize = 0;
    if (!Header(&length, &headerSize)) return false;
    const size_t payload = end_ - start_ - headerSize;
    if (payload >= length) {
      const uint8_t* data = buffer_.get() + start_ + headerSize;
      *frame = Napi::Buffer<uint8_t>::Copy(env, data, length);
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
  ssize_t ReadSome(Napi::Env env, size_t* wanted) {
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

  void WriteAll(Napi::Env env, iovec* parts) {
    int count = 2;
    iovec* next = parts;
    while (count > 0) {
      const ssize_t wrote = writev(fd_, next, count);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "write");
        PollFd(env, fd_, POLLOUT, -1);
        continue;
      }
      size_t done = static_cast<size_t>(wrote);
      while (count > 0 && done >= next->iov_len) {
        done -= next->iov_len;
        next++;
        count--;
      }
      if (count > 0) {
        next->iov_base = static_cast<uint8_t*>(next->iov_base) + done;
        next->iov_len -= done;
      }
    }
  }

  // --- the event loop's reads -------------------------------------------------------

  static void OnReadable(void* owner, int status) { static_cast<Channel*>(owner)->Readable(status); }

  void Readable(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array frames = Napi::Array::New(env);
    uint32_t count = 0;
    Napi::Value error = env.Null();
    try {
      if (status < 0) throw ErrnoError(env, -status, "uv_poll");
      for (int reads = 0; reads < kReadsPerEvent; reads++) {
        size_t wanted = 0;
        const ssize_t got = ReadSome(env, &wanted);
        if (got < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) throw ErrnoError(env, errno, "read");
          break;
        }
        if (got == 0) {
          ended_ = true;
          break;
        }
        for (Napi::Value frame; TakeFrame(env, &frame);) frames.Set(count++, frame);
        if (static_cast<size_t>(got) < wanted) break;  // drained
      }
    } catch (const Napi::Error& thrown) {
      error = thrown.Value();
      ended_ = true;
    }
    if (ended_) poll_.Stop();
    if (count == 0 && !ended_) return;
    napi_value args[] = {frames, Napi::Boolean::New(env, ended_), error};
    CallFromLoop(env, asyncContext_, onMessages_.Value(), 3, args);
  }

  // Ends the poll, then closes the fd.
  void Release() {
    poll_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    ResetFrame();
    buffer_.reset();
  }

  int fd_ = -1;
  uint32_t generation_ = 0;  // ProcessGeneration() when last used
  std::unique_ptr<uint8_t[]> buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
  uint8_t* big_ = nullptr;  // a frame larger than the buffer, being read
  size_t bigSize_ = 0;
  size_t bigFilled_ = 0;
  bool ended_ = false;
  uv_loop_t* loop_ = nullptr;
  LoopPoll poll_{this, OnReadable};
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onMessages_;
};

}  // namespace

void InitConnection(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("streamPipe", Napi::Function::New(env, StreamPipe, "streamPipe"));
  // popen.cc's blocking pipe (the forkserver's synchronous requests) is the same pipe.
  exports.Set("pipe", Napi::Function::New(env, StreamPipe, "pipe"));
  exports.Set("takeFd", Napi::Function::New(env, TakeFd, "takeFd"));
  exports.Set("Channel", Channel::Define(env));
}

}  // namespace mp
