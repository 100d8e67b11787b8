// The byte side of Connection (src/connection.ts): descriptors and framing.
//
//   socketpair() -> [fd, fd]     a connected AF_UNIX stream pair (duplex Pipe)
//   streamPipe() -> [readFd, writeFd]   a pipe (one-way Pipe), both ends
//                                blocking and close-on-exec; also exported as
//                                pipe() (the forkserver's requests)
//   streamPipe(size?) takes the pipe's capacity in bytes (F_SETPIPE_SZ, capped
//                                by the system; a Queue's pipe holds a burst)
//   Channel                      framed_channel.cc's framed byte stream
//   takeFd(pid, fd) -> fd        a copy of another process's descriptor
//                                (pidfd_getfd), as Python's resource_sharer
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "errors.h"
#include "framed_channel.h"
#include "modules.h"
#include "unique_fd.h"

namespace mp {
namespace {

constexpr int kSocketBufferSize = 1024 * 1024;

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

}  // namespace

void InitConnection(Napi::Env env, Napi::Object exports) {
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("streamPipe", Napi::Function::New(env, StreamPipe, "streamPipe"));
  // popen.cc's blocking pipe (the forkserver's synchronous requests) is the same pipe.
  exports.Set("pipe", Napi::Function::New(env, StreamPipe, "pipe"));
  exports.Set("takeFd", Napi::Function::New(env, TakeFd, "takeFd"));
  exports.Set("Channel", DefineChannel(env));
}

}  // namespace mp
