// Waiting for descriptors: what connection.wait() and the queues wait on.
//
//   pollFds(fds, events, timeoutMs) -> number[]   the indices of the fds
//       ready (readable for events 1, writable for 2; an error or a hang-up
//       counts as ready), blocking up to timeoutMs (negative: no limit).
//   new FdWatch(fd, events, onReady())   calls onReady() from the event loop
//       each time `fd` is ready, until stop()/close(); start() again after
//       stop(). It watches its own duplicate of `fd`, so that any number of
//       watches (and a Connection's own reads) may watch one descriptor.
//       ref()/unref(): whether a started watch keeps the event loop alive.
//   pidfdOpen(pid) -> fd   a descriptor that becomes readable when the
//       process ends (Process.sentinel).
#include "fd_wait.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "errors.h"
#include "modules.h"

namespace mp {

namespace {
std::atomic<uint32_t> g_generation{0};
std::once_flag g_generationHook;
}  // namespace

uint32_t ProcessGeneration() { return g_generation.load(std::memory_order_relaxed); }

int PollUntil(Napi::Env env, pollfd* entries, size_t count, double timeoutMs) {
  const bool forever = timeoutMs < 0 || std::isinf(timeoutMs);
  const uint64_t deadline = forever ? 0 : uv_hrtime() / 1000000u + static_cast<uint64_t>(std::ceil(timeoutMs));
  for (;;) {
    int wait = -1;
    if (!forever) {
      const uint64_t now = uv_hrtime() / 1000000u;
      wait = now >= deadline ? 0 : static_cast<int>(std::min<uint64_t>(deadline - now, INT32_MAX));
    }
    const int ready = poll(entries, count, wait);
    if (ready >= 0) return ready;
    if (errno != EINTR) ThrowErrno(env, "poll");
  }
}

void LoopPoll::Start(Napi::Env env, uv_loop_t* loop, int fd, int events) {
  if (handle_ == nullptr) {
    auto handle = std::make_unique<uv_poll_t>();
    if (int err = uv_poll_init(loop, handle.get(), fd)) ThrowErrno(env, -err, "uv_poll_init");
    handle_ = handle.release();
    handle_->data = this;
  }
  generation_ = ProcessGeneration();
  if (!started_ || events != events_) {
    if (int err = uv_poll_start(handle_, events, OnPoll)) ThrowErrno(env, -err, "uv_poll_start");
    started_ = true;
    events_ = events;
  }
  ApplyRef();
}

void LoopPoll::Stop() {
  if (!started_) return;
  started_ = false;
  uv_poll_stop(handle_);
}

void LoopPoll::SetRef(bool ref) {
  ref_ = ref;
  ApplyRef();
}

void LoopPoll::Close() {
  if (handle_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* closed) { delete reinterpret_cast<uv_poll_t*>(closed); });
  handle_ = nullptr;
  started_ = false;
}

void LoopPoll::ApplyRef() {
  if (handle_ == nullptr) return;
  if (ref_ && started_) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
  else uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
}

void LoopPoll::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* poll = static_cast<LoopPoll*>(handle->data);
  if (poll->generation_ != ProcessGeneration()) {  // the parent's watch, in a forked child
    poll->Stop();
    return;
  }
  if (status < 0) poll->started_ = false;  // libuv stopped the handle (POLLERR)
  poll->onReady_(poll->owner_, status, events);
}

namespace {

constexpr int kReadable = 1;
constexpr int kWritable = 2;

short PollEvents(int events) { return static_cast<short>((events & kReadable ? POLLIN : 0) | (events & kWritable ? POLLOUT : 0)); }

int EventsArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  const int events = IntArg(info, i, usage);
  if (events < 1 || events > 3) ThrowUsage(info.Env(), usage);
  return events;
}

Napi::Value PollFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "pollFds(fds: number[], events: 1 | 2 | 3, timeoutMs: number)";
  if (info.Length() < 3 || !info[0].IsArray() || !info[2].IsNumber()) ThrowUsage(env, usage);
  const short events = PollEvents(EventsArg(info, 1, usage));
  Napi::Array fds = info[0].As<Napi::Array>();
  std::vector<pollfd> entries(fds.Length());
  for (uint32_t i = 0; i < entries.size(); i++) {
    Napi::Value fd = fds.Get(i);
    if (!fd.IsNumber()) ThrowUsage(env, usage);
    entries[i] = pollfd{fd.As<Napi::Number>().Int32Value(), events, 0};
  }
  const int ready = PollUntil(env, entries.data(), entries.size(), info[2].As<Napi::Number>().DoubleValue());
  Napi::Array indices = Napi::Array::New(env);
  uint32_t count = 0;
  for (uint32_t i = 0; i < entries.size() && ready > 0; i++) {
    if (entries[i].revents & POLLNVAL) ThrowErrno(env, EBADF, "poll");
    if (entries[i].revents != 0) indices.Set(count++, Napi::Number::New(env, i));
  }
  return indices;
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  const int pid = IntArg(info, 0, "pidfdOpen(pid: number)");
#if defined(__linux__) && defined(SYS_pidfd_open)
  const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) ThrowErrno(info.Env(), "pidfd_open");
  fcntl(fd, F_SETFD, FD_CLOEXEC);  // pidfds are close-on-exec already; cheap insurance
  return Napi::Number::New(info.Env(), fd);
#else
  ThrowErrno(info.Env(), ENOSYS, "pidfd_open");
#endif
}

class FdWatch : public Napi::ObjectWrap<FdWatch> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatch",
                       {InstanceMethod<&FdWatch::Start>("start"), InstanceMethod<&FdWatch::Stop>("stop"),
                        InstanceMethod<&FdWatch::SetRef<true>>("ref"), InstanceMethod<&FdWatch::SetRef<false>>("unref"),
                        InstanceMethod<&FdWatch::Close>("close")});
  }

  FdWatch(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatch>(info) {
    Napi::Env env = info.Env();
    const char* usage = "new FdWatch(fd: number, events: 1 | 2 | 3, onReady: Function)";
    const int fd = IntArg(info, 0, usage);
    const int events = EventsArg(info, 1, usage);
    events_ = (events & kReadable ? UV_READABLE : 0) | (events & kWritable ? UV_WRITABLE : 0);
    if (info.Length() < 3 || !info[2].IsFunction()) ThrowUsage(env, usage);
    onReady_ = Napi::Persistent(info[2].As<Napi::Function>());
    if (napi_get_uv_event_loop(env, &loop_) != napi_ok) throw Napi::Error::New(env, "FdWatch: no event loop");
    fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (fd_ < 0) ThrowErrno(env, "fcntl");
    if (napi_async_init(env, nullptr, Napi::String::New(env, "node-multiprocessing:FdWatch"), &asyncContext_) != napi_ok) {
      throw Napi::Error::New(env, "FdWatch: napi_async_init failed");
    }
  }

  ~FdWatch() override {
    Release();
    if (asyncContext_ != nullptr) napi_async_destroy(Env(), asyncContext_);
  }

 private:
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (fd_ < 0) ThrowErrno(env, EBADF, "FdWatch");
    poll_.Start(env, loop_, fd_, events_);
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    poll_.Stop();
    return info.Env().Undefined();
  }

  // ref() / unref(): whether a started watch keeps the event loop alive.
  template <bool kRef>
  Napi::Value SetRef(const Napi::CallbackInfo& info) {
    poll_.SetRef(kRef);
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  static void OnReady(void* owner, int, int) {
    auto* watch = static_cast<FdWatch*>(owner);
    Napi::Env env = watch->Env();
    Napi::HandleScope scope(env);
    CallFromLoop(env, watch->asyncContext_, watch->onReady_.Value());
  }

  void Release() {
    poll_.Close();
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  int fd_ = -1;
  int events_ = 0;
  uv_loop_t* loop_ = nullptr;
  LoopPoll poll_{this, OnReady};
  napi_async_context asyncContext_ = nullptr;
  Napi::FunctionReference onReady_;
};

}  // namespace

void InitFdWait(Napi::Env env, Napi::Object exports) {
  std::call_once(g_generationHook, [] {
    pthread_atfork(nullptr, nullptr, [] { g_generation.fetch_add(1, std::memory_order_relaxed); });
  });
  exports.Set("pollFds", Napi::Function::New(env, PollFds, "pollFds"));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("FdWatch", FdWatch::Define(env));
}

}  // namespace mp
