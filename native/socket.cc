// Listening and connecting sockets for Listener and Client (src/connection.ts):
// plain descriptors, which a Connection then owns, so that a Listener's
// connections are the same Channel as a Pipe's, and a Python peer speaks to
// them over the same bytes.
//
//   listenUnix(path, backlog) -> fd          ('\0...' is Linux's abstract namespace)
//   listenTcp(host, port, backlog) -> [fd, host, port]   (port 0: any free one)
//   accept(fd) -> [fd, address] | null       null: nothing to accept yet
//   connectUnix(path) -> [fd, pending]       pending: wait until writable, then
//   connectTcp(host, port) -> [fd, pending]  socketError(fd) tells how it went
//   socketError(fd)                          throws the connect's error, if any
//
// Every descriptor is non-blocking and close-on-exec.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "errors.h"
#include "modules.h"
#include "unique_fd.h"

namespace mp {
namespace {

int NewSocket(Napi::Env env, int family) {
#ifdef SOCK_CLOEXEC
  const int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, "socket");
#else
  const int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) ThrowErrno(env, "socket");
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
#endif
  return fd;
}

std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) ThrowUsage(info.Env(), usage);
  return info[i].As<Napi::String>().Utf8Value();
}

socklen_t UnixAddress(Napi::Env env, const std::string& path, sockaddr_un* address) {
  std::memset(address, 0, sizeof *address);
  address->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof address->sun_path) ThrowErrno(env, ENAMETOOLONG, "bind");
  std::memcpy(address->sun_path, path.data(), path.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '\0' ? 0 : 1));
}

// The first address getaddrinfo() gives for host:port (AI_PASSIVE to listen).
struct Resolved {
  sockaddr_storage address{};
  socklen_t length = 0;
  int family = AF_INET;
};

Resolved Resolve(Napi::Env env, const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const int err = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (err != 0) {
    Napi::Error error = Napi::Error::New(env, std::string("getaddrinfo ") + gai_strerror(err) + " " + host);
    error.Set("code", Napi::String::New(env, err == EAI_NONAME ? "ENOTFOUND" : "EAI_FAIL"));
    error.Set("syscall", Napi::String::New(env, "getaddrinfo"));
    error.Set("hostname", Napi::String::New(env, host));
    throw error;
  }
  Resolved resolved;
  std::memcpy(&resolved.address, found->ai_addr, found->ai_addrlen);
  resolved.length = found->ai_addrlen;
  resolved.family = found->ai_family;
  freeaddrinfo(found);
  return resolved;
}

// [host, port] of an AF_INET/AF_INET6 address; the path of an AF_UNIX one.
Napi::Value AddressValue(Napi::Env env, const sockaddr_storage& address, socklen_t length) {
  char host[INET6_ADDRSTRLEN] = "";
  int port = 0;
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
  } else if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
  } else {
    const auto* un = reinterpret_cast<const sockaddr_un*>(&address);
    const size_t size = length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    return Napi::String::New(env, std::string(un->sun_path, strnlen(un->sun_path, size)));
  }
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::String::New(env, host));
  pair.Set(1u, Napi::Number::New(env, port));
  return pair;
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "listenUnix(path: string, backlog: number)";
  const std::string path = StringArg(info, 0, usage);
  const int backlog = IntArg(info, 1, usage);
  sockaddr_un address;
  const socklen_t length = UnixAddress(env, path, &address);
  UniqueFd fd(NewSocket(env, AF_UNIX));
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) < 0) ThrowErrno(env, "bind");
  if (listen(fd.get(), backlog) < 0) ThrowErrno(env, "listen");
  return Napi::Number::New(env, fd.release());
}

Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "listenTcp(host: string, port: number, backlog: number)";
  const std::string host = StringArg(info, 0, usage);
  const int port = IntArg(info, 1, usage);
  const int backlog = IntArg(info, 2, usage);
  Resolved resolved = Resolve(env, host, port, true);
  UniqueFd fd(NewSocket(env, resolved.family));
  const int on = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);  // as Python's Listener
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&resolved.address), resolved.length) < 0) ThrowErrno(env, "bind");
  if (listen(fd.get(), backlog) < 0) ThrowErrno(env, "listen");
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) < 0) ThrowErrno(env, "getsockname");
  Napi::Array address = AddressValue(env, bound, length).As<Napi::Array>();
  Napi::Array result = Napi::Array::New(env, 3);
  result.Set(0u, Napi::Number::New(env, fd.release()));
  result.Set(1u, address.Get(0u));
  result.Set(2u, address.Get(1u));
  return result;
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = IntArg(info, 0, "accept(fd: number)");
  sockaddr_storage peer{};
  socklen_t length = sizeof peer;
  int accepted;
  do {
#ifdef SOCK_CLOEXEC
    accepted = accept4(fd, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
#else
    accepted = accept(fd, reinterpret_cast<sockaddr*>(&peer), &length);
    if (accepted >= 0) fcntl(accepted, F_SETFD, FD_CLOEXEC);
#endif
  } while (accepted < 0 && errno == EINTR);
  if (accepted < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return env.Null();
    ThrowErrno(env, "accept");
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, accepted));
  result.Set(1u, AddressValue(env, peer, length));
  return result;
}

// [fd, pending] after a non-blocking connect().
Napi::Value Connected(Napi::Env env, UniqueFd& fd, const sockaddr* address, socklen_t length) {
  int result;
  do {
    result = connect(fd.get(), address, length);
  } while (result < 0 && errno == EINTR);
  const bool pending = result < 0 && (errno == EINPROGRESS || errno == EAGAIN);
  if (result < 0 && !pending) ThrowErrno(env, "connect");
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Napi::Number::New(env, fd.release()));
  pair.Set(1u, Napi::Boolean::New(env, pending));
  return pair;
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string path = StringArg(info, 0, "connectUnix(path: string)");
  sockaddr_un address;
  const socklen_t length = UnixAddress(env, path, &address);
  UniqueFd fd(NewSocket(env, AF_UNIX));
  return Connected(env, fd, reinterpret_cast<sockaddr*>(&address), length);
}

Napi::Value ConnectTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "connectTcp(host: string, port: number)";
  const std::string host = StringArg(info, 0, usage);
  const int port = IntArg(info, 1, usage);
  Resolved resolved = Resolve(env, host, port, false);
  UniqueFd fd(NewSocket(env, resolved.family));
  return Connected(env, fd, reinterpret_cast<sockaddr*>(&resolved.address), resolved.length);
}

Napi::Value SocketError(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = IntArg(info, 0, "socketError(fd: number)");
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) ThrowErrno(env, "getsockopt");
  if (error != 0) ThrowErrno(env, error, "connect");
  return env.Undefined();
}

}  // namespace

void InitSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix, "listenUnix"));
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp, "listenTcp"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix, "connectUnix"));
  exports.Set("connectTcp", Napi::Function::New(env, ConnectTcp, "connectTcp"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
}

}  // namespace mp
