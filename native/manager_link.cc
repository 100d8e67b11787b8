// The byte side of a manager's links (src/managers/link.ts): a connection to
// or from a manager's server, once its authkey handshake is done, taken over
// from its Connection so that a call costs as few system calls and
// allocations as it can.
//
//   new ManagerLink(fd, onFrames?)   the framed stream over a copy of `fd`
//                                    (close-on-exec), which it owns: the caller
//                                    closes the original (its Connection).
//                                    Without onFrames the link is blocking
//                                    (O_NONBLOCK cleared): call() is one write
//                                    and one read, no poll. With onFrames the
//                                    link reads on the event loop once
//                                    start()ed, every frame it read going to
//                                    onFrames(frames[], ended, error).
//     call(payload) -> frame | undefined   (blocking links) sends a frame and
//                                    blocks for the next one (undefined: end of file)
//     send(payload)                  one whole frame, blocking while the peer is full
//     start()/stop(), close(), fd
//
// The wire format is Connection's (Python's): a 4-byte big-endian length,
// or -1 and an 8-byte length, then the payload. A payload that starts with
// byte 1 (reduction.ts's JSON tag) is handed to JS as the text after it, a
// string that JSON.parse takes as it is; any other as a Buffer.
//
// Why not Connection: its recvSync() tries a read, polls, then reads again
// (three system calls where a blocking link needs one), and its event-loop
// reads go through an inbox and watchers; the manager's calls are all of one
// shape (one request, one reply) and pay for neither.
#include <fcntl.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
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

constexpr size_t kBufferSize = 64 * 1024;  // replies and requests that fit are read many at a time
constexpr size_t kSmallFrame = 4096;       // sent with its header in one write() from the stack
constexpr uint64_t kMaxShortLength = 0x7fffffff;
constexpr uint8_t kTextTag = 1;  // reduction.ts's JSON tag
constexpr int kReadsPerEvent = 16;

size_t WriteHeader(uint8_t* header, uint64_t length) {
  auto put32 = [](uint8_t* at, uint32_t value) {
    at[0] = static_cast<uint8_t>(value >> 24);
    at[1] = static_cast<uint8_t>(value >> 16);
    at[2] = static_cast<uint8_t>(value >> 8);
    at[3] = static_cast<uint8_t>(value);
  };
  if (length <= kMaxShortLength) {
    put32(header, static_cast<uint32_t>(length));
    return 4;
  }
  put32(header, 0xffffffffu);
  put32(header + 4, static_cast<uint32_t>(length >> 32));
  put32(header + 8, static_cast<uint32_t>(length));
  return 12;
}

uint32_t Get32(const uint8_t* at) {
  return (uint32_t{at[0]} << 24) | (uint32_t{at[1]} << 16) | (uint32_t{at[2]} << 8) | at[3];
}

class ManagerLink : public Napi::ObjectWrap<ManagerLink> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ManagerLink",
                       {InstanceMethod<&ManagerLink::Call>("call"), InstanceMethod<&ManagerLink::Send>("send"),
                        InstanceMethod<&ManagerLink::Start>("start"), InstanceMethod<&ManagerLink::Stop>("stop"),
                        InstanceMethod<&ManagerLink::Close>("close"), InstanceAccessor<&ManagerLink::Fd>("fd")});
  }

  ManagerLink(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ManagerLink>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new ManagerLink(fd: number, onFrames?: Function)";
    const int fd = IntArg(info, 0, usage);
    if (fd < 0) ThrowUsage(env, usage);
    const bool evented = info.Length() > 1 && !info[1].IsUndefined();
    if (evented && !info[1].IsFunction()) ThrowUsage(env, usage);
    UniqueFd copy(fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (copy.get() < 0) ThrowErrno(env, "fcntl");
    // The copy shares the file status flags with the original, which its Connection is about to close.
    const int flags = fcntl(copy.get(), F_GETFL);
    if (flags < 0) ThrowErrno(env, "fcntl");
    const int wanted = evented ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
    if (wanted != flags && fcntl(copy.get(), F_SETFL, wanted) < 0) ThrowErrno(env, "fcntl");
    if (evented) {
      onFrames_ = Napi::Persistent(info[1].As<Napi::Function>());
      if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "ManagerLink: no event loop");
      if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:ManagerLink"), &asyncContext_) != napi_ok) {
        throw Napi::Error::New(env, "ManagerLink: napi_async_init failed");
      }
    }
    buffer_.reset(new uint8_t[kBufferSize]);
    fd_ = copy.release();
  }

  ~ManagerLink() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  // send(payload: Uint8Array)
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowUsage(env, "send(payload: Uint8Array)");
    CheckOpen(env);
    WriteFrame(env, info[0].As<Napi::TypedArray>());
    return env.Undefined();
  }

  // call(payload: Uint8Array) -> string | Buffer | undefined (end of file)
  Napi::Value Call(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsTypedArray()) ThrowUsage(env, "call(payload: Uint8Array)");
    CheckOpen(env);
    WriteFrame(env, info[0].As<Napi::TypedArray>());
    for (;;) {
      Napi::Value frame;
      if (TakeFrame(env, &frame)) return frame;
      if (ended_) return env.Undefined();
      const ssize_t got = ReadSome();
      if (got == 0) ended_ = true;  // a partial frame at the end is no frame
      if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "read");
        pollfd entry{fd_, POLLIN, 0};  // only an evented link's descriptor is non-blocking
        PollUntil(env, &entry, 1, -1);
      }
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (onFrames_.IsEmpty()) ThrowUsage(env, "start() needs a link made with onFrames");
    CheckOpen(env);
    if (!ended_) poll_.Start(env, loop_, fd_, UV_READABLE);
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void CheckOpen(Napi::Env env) {
    if (fd_ < 0) throw Napi::Error::New(env, "the manager link is closed");
  }

  void WriteFrame(Napi::Env env, Napi::TypedArray array) {
    const auto* data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    const size_t length = array.ByteLength();
    if (length + 12 <= kSmallFrame) {
      uint8_t frame[kSmallFrame];
      const size_t headerSize = WriteHeader(frame, length);
      std::memcpy(frame + headerSize, data, length);
      iovec part{frame, headerSize + length};
      return WriteAll(env, &part, 1);
    }
    uint8_t header[12];
    iovec parts[2] = {{header, WriteHeader(header, length)}, {const_cast<uint8_t*>(data), length}};
    WriteAll(env, parts, 2);
  }

  void WriteAll(Napi::Env env, iovec* next, int count) {
    while (count > 0) {
      const ssize_t wrote = writev(fd_, next, count);
      if (wrote < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "write");
        pollfd entry{fd_, POLLOUT, 0};
        PollUntil(env, &entry, 1, -1);
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

  // One read() into the buffer, or into a large frame's own memory.
  ssize_t ReadSome() {
    uint8_t* into;
    size_t wanted;
    if (big_) {
      into = big_.get() + bigFilled_;
      wanted = bigSize_ - bigFilled_;
    } else {
      if (end_ == kBufferSize || (start_ == end_ && start_ > 0)) {
        std::memmove(buffer_.get(), buffer_.get() + start_, end_ - start_);
        end_ -= start_;
        start_ = 0;
      }
      into = buffer_.get() + end_;
      wanted = kBufferSize - end_;
    }
    ssize_t got;
    do {
      got = read(fd_, into, wanted);
    } while (got < 0 && errno == EINTR);
    if (got > 0) {
      if (big_) bigFilled_ += static_cast<size_t>(got);
      else end_ += static_cast<size_t>(got);
    }
    lastWanted_ = wanted;
    return got;
  }

  // The next whole frame, as a string (a JSON payload's text) or a Buffer.
  bool TakeFrame(Napi::Env env, Napi::Value* frame) {
    if (big_) {
      if (bigFilled_ < bigSize_) return false;
      std::unique_ptr<uint8_t[]> data = std::move(big_);
      *frame = Payload(env, data.get(), bigSize_);
      return true;
    }
    const size_t have = end_ - start_;
    if (have < 4) return false;
    const uint8_t* at = buffer_.get() + start_;
    uint64_t length = Get32(at);
    size_t headerSize = 4;
    if (length == 0xffffffffu) {
      if (have < 12) return false;
      length = (uint64_t{Get32(at + 4)} << 32) | Get32(at + 8);
      headerSize = 12;
    } else if (length > kMaxShortLength) {
      ThrowErrno(env, EPROTO, "read");  // a negative length other than -1: not our stream
    }
    if (have - headerSize >= length) {
      *frame = Payload(env, at + headerSize, static_cast<size_t>(length));
      start_ += headerSize + length;
      if (start_ == end_) start_ = end_ = 0;
      return true;
    }
    if (headerSize + length <= kBufferSize) return false;  // the rest will fit in the buffer
    if (length > SIZE_MAX / 2) ThrowErrno(env, ENOMEM, "malloc");
    big_.reset(new (std::nothrow) uint8_t[length]);
    if (!big_) ThrowErrno(env, ENOMEM, "malloc");
    bigSize_ = static_cast<size_t>(length);
    bigFilled_ = have - headerSize;
    std::memcpy(big_.get(), at + headerSize, bigFilled_);
    start_ = end_ = 0;
    return false;
  }

  static Napi::Value Payload(Napi::Env env, const uint8_t* data, size_t length) {
    if (length > 0 && data[0] == kTextTag) {
      return Napi::String::New(env, reinterpret_cast<const char*>(data + 1), length - 1);
    }
    return Napi::Buffer<uint8_t>::Copy(env, data, length);
  }

  // --- the event loop's reads -------------------------------------------------------

  static void OnReadable(void* owner, int status) { static_cast<ManagerLink*>(owner)->Readable(status); }

  void Readable(int status) {
    Napi::Env env = Env();
    Napi::HandleScope scope(env);
    Napi::Array frames = Napi::Array::New(env);
    uint32_t count = 0;
    Napi::Value error = env.Null();
    try {
      if (status < 0) throw ErrnoError(env, -status, "uv_poll");
      for (int reads = 0; reads < kReadsPerEvent; reads++) {
        const ssize_t got = ReadSome();
        if (got < 0) {
          if (errno != EAGAIN && errno != EWOULDBLOCK) throw ErrnoError(env, errno, "read");
          break;
        }
        if (got == 0) {
          ended_ = true;
          break;
        }
        for (Napi::Value frame; TakeFrame(env, &frame);) frames.Set(count++, frame);
        if (static_cast<size_t>(got) < lastWanted_) break;  // drained: a level-triggered poll tells of more
      }
    } catch (const Napi::Error& thrown) {
      error = thrown.Value();
      ended_ = true;
    }
    Deliver(env, frames, count, error);
  }

  // Hands the frames (and the end) to onFrames.
  void Deliver(Napi::Env env, Napi::Array frames, uint32_t count, Napi::Value error) {
    if (ended_) poll_.Stop();
    if (count == 0 && !ended_) return;
    napi_value args[] = {frames, Napi::Boolean::New(env, ended_), error};
    CallFromLoop(env, asyncContext_, onFrames_.Value(), 3, args);
  }

  void Release() {
    poll_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    big_.reset();
    start_ = end_ = 0;
  }

  int fd_ = -1;
  std::unique_ptr<uint8_t[]> buffer_;
  size_t start_ = 0;
  size_t end_ = 0;
  size_t lastWanted_ = 0;
  std::unique_ptr<uint8_t[]> big_;  // a frame larger than the buffer, being read
  size_t bigSize_ = 0;
  size_t bigFilled_ = 0;
  bool ended_ = false;
  uv_loop_t* loop_ = nullptr;
  LoopPoll poll_{this, OnReadable};
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onFrames_;
};

}  // namespace

void InitManagerLink(Napi::Env env, Napi::Object exports) { exports.Set("ManagerLink", ManagerLink::Define(env)); }

}  // namespace mp
