// POSIX shared memory mapped into JS without copying.
//
// A segment is opened with shm_open(), sized with ftruncate() (when created),
// mapped MAP_SHARED and its fd closed at once: the mapping keeps the memory.
// JS sees the mapping as an ArrayBuffer whose backing store *is* the mapping.
//
// Lifetime: every ArrayBuffer handed out owns a reference to the mapping (a
// shared_ptr), so munmap() runs when the last one is released (shmRelease
// detaches it: its views then have length 0 and can no longer touch the
// memory) or collected by the GC. A mapping is never unmapped while any view
// over it is reachable, and never twice.
//
// The buffers are ordinary (non-shared, detachable) ArrayBuffers: Atomics.add,
// compareExchange & co. work on Int32Arrays over them with real atomic
// instructions (tested across forked processes); only Atomics.wait requires a
// SharedArrayBuffer, and waiting across processes goes through futex.cc.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include <v8.h>

#include "errors.h"
#include "modules.h"
#include "unique_fd.h"
#include "v8_values.h"

namespace mp {
namespace {

// A mapping, unmapped when the last owner lets it go.
class Mapping {
 public:
  Mapping(void* address, size_t size) : address_(address), size_(size) {}
  ~Mapping() { munmap(address_, size_); }  // cannot fail for a range we mapped
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  uint8_t* data() const { return static_cast<uint8_t*>(address_); }
  size_t size() const { return size_; }

 private:
  void* address_;
  size_t size_;
};

// A segment name that is unlinked again unless the creation completes: a
// failed ftruncate() or mmap() must not leave a half-made entry in /dev/shm.
class CreatedName {
 public:
  explicit CreatedName(const std::string& name) : name_(name) {}
  ~CreatedName() {
    if (!kept_) shm_unlink(name_.c_str());
  }
  CreatedName(const CreatedName&) = delete;
  CreatedName& operator=(const CreatedName&) = delete;
  void Keep() { kept_ = true; }

 private:
  std::string name_;
  bool kept_ = false;
};

// The Error of a failed call on a named segment: the name is in `path` and at
// the end of the message, as in Node's fs errors.
[[noreturn]] void ThrowNamed(Napi::Env env, int err, const char* syscall, const std::string& name) {
  Napi::Error error = ErrnoError(env, err, syscall);
  std::string message = error.Message() + " '" + name + "'";
  error.Set("message", Napi::String::New(env, message));
  error.Set("path", Napi::String::New(env, name));
  throw error;
}

int ShmOpenRetrying(const std::string& name, int flags) {
  int fd;
  do {
    fd = shm_open(name.c_str(), flags, 0600);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

// The size to map: set by ftruncate() for a new segment, read back by fstat()
// for an existing one.
size_t SegmentSize(Napi::Env env, int fd, bool create, size_t size, const std::string& name) {
  if (create) {
    int result;
    do {
      result = ftruncate(fd, static_cast<off_t>(size));
    } while (result < 0 && errno == EINTR);
    if (result < 0) ThrowNamed(env, errno, "ftruncate", name);
    return size;
  }
  struct stat info {};
  if (fstat(fd, &info) < 0) ThrowNamed(env, errno, "fstat", name);
  // An empty segment cannot be mapped; say so as mmap() would.
  if (info.st_size <= 0) ThrowNamed(env, EINVAL, "mmap", name);
  return static_cast<size_t>(info.st_size);
}

void DeleteMappingOwner(void*, size_t, void* owner) {
  delete static_cast<std::shared_ptr<Mapping>*>(owner);
}

void DeleteStoreOwner(void*, size_t, void* owner) {
  delete static_cast<std::shared_ptr<v8::BackingStore>*>(owner);
}

// An ArrayBuffer over [data, data + length) whose backing store keeps `owner`
// alive, and deletes it through `deleter` when V8 frees the store.
template <typename Owner>
Napi::Value ExternalBuffer(Napi::Env env, void* data, size_t length, Owner owner,
                           v8::BackingStore::DeleterCallback deleter) {
  auto* held = new Owner(std::move(owner));
  std::unique_ptr<v8::BackingStore> store = v8::ArrayBuffer::NewBackingStore(data, length, deleter, held);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  return Napi::Value(env, FromV8(v8::ArrayBuffer::New(isolate, std::move(store))));
}

std::string NameArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsString()) ThrowUsage(info.Env(), usage);
  std::string name = info[i].As<Napi::String>().Utf8Value();
  if (name.empty() || name.find('\0') != std::string::npos) ThrowUsage(info.Env(), usage);
  return name;
}

double SizeArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsNumber()) ThrowUsage(info.Env(), usage);
  double size = info[i].As<Napi::Number>().DoubleValue();
  if (!(size >= 0 && size <= 9007199254740991.0) || size != static_cast<double>(static_cast<uint64_t>(size))) {
    ThrowUsage(info.Env(), usage);
  }
  return size;
}

v8::Local<v8::ArrayBuffer> ArrayBufferArg(const Napi::CallbackInfo& info, size_t i, const char* usage) {
  if (info.Length() <= i || !info[i].IsArrayBuffer()) ThrowUsage(info.Env(), usage);
  return ToV8(info[i]).As<v8::ArrayBuffer>();
}

// shmOpen(name, create, size): an ArrayBuffer over the whole segment `name`.
// create: a new segment of `size` bytes (EEXIST if the name is taken);
// otherwise the existing one (ENOENT if there is none), `size` ignored.
Napi::Value ShmOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "shmOpen(name: string, create: boolean, size: number)";
  std::string name = NameArg(info, 0, usage);
  if (info.Length() < 3 || !info[1].IsBoolean()) ThrowUsage(env, usage);
  bool create = info[1].As<Napi::Boolean>().Value();
  double requested = SizeArg(info, 2, usage);
  if (create && requested < 1) ThrowUsage(env, usage);

  UniqueFd fd(ShmOpenRetrying(name, create ? O_RDWR | O_CREAT | O_EXCL : O_RDWR));
  if (fd.get() < 0) ThrowNamed(env, errno, "shm_open", name);
  std::unique_ptr<CreatedName> created = create ? std::make_unique<CreatedName>(name) : nullptr;
  size_t size = SegmentSize(env, fd.get(), create, static_cast<size_t>(requested), name);
  void* address = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (address == MAP_FAILED) ThrowNamed(env, errno, "mmap", name);
  auto mapping = std::make_shared<Mapping>(address, size);
  Napi::Value buffer = ExternalBuffer(env, mapping->data(), size, mapping, DeleteMappingOwner);
  if (created) created->Keep();
  return buffer;
}

// shmUnlink(name): removes the name; mappings stay valid until released.
Napi::Value ShmUnlink(const Napi::CallbackInfo& info) {
  std::string name = NameArg(info, 0, "shmUnlink(name: string)");
  if (shm_unlink(name.c_str()) < 0) ThrowNamed(info.Env(), errno, "shm_unlink", name);
  return info.Env().Undefined();
}

// shmSlice(buffer, offset, length): a new ArrayBuffer over part of `buffer`'s
// memory that keeps the whole of it alive: the heap hands each block out as
// one, so a block's views never reach its neighbours.
Napi::Value ShmSlice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "shmSlice(buffer: ArrayBuffer, offset: number, length: number)";
  v8::Local<v8::ArrayBuffer> buffer = ArrayBufferArg(info, 0, usage);
  double offset = SizeArg(info, 1, usage);
  double length = SizeArg(info, 2, usage);
  std::shared_ptr<v8::BackingStore> store = buffer->GetBackingStore();
  if (store->Data() == nullptr || offset + length > static_cast<double>(store->ByteLength())) {
    ThrowErrno(env, store->Data() == nullptr ? EBADF : ERANGE, "shmSlice");
  }
  uint8_t* data = static_cast<uint8_t*>(store->Data()) + static_cast<size_t>(offset);
  return ExternalBuffer(env, data, static_cast<size_t>(length), std::move(store), DeleteStoreOwner);
}

// shmRelease(buffer): detaches `buffer` at once (views over it get length 0);
// the mapping goes when no other buffer shares it. Releasing twice is a no-op.
Napi::Value ShmRelease(const Napi::CallbackInfo& info) {
  v8::Local<v8::ArrayBuffer> buffer = ArrayBufferArg(info, 0, "shmRelease(buffer: ArrayBuffer)");
  if (!buffer->IsDetachable()) ThrowErrno(info.Env(), EPERM, "shmRelease");
  if (buffer->Detach(v8::Local<v8::Value>()).IsNothing()) throw Napi::Error::New(info.Env(), "shmRelease: detach failed");
  return info.Env().Undefined();
}

}  // namespace

void InitShm(Napi::Env env, Napi::Object exports) {
  exports.Set("shmOpen", Napi::Function::New(env, ShmOpen, "shmOpen"));
  exports.Set("shmUnlink", Napi::Function::New(env, ShmUnlink, "shmUnlink"));
  exports.Set("shmSlice", Napi::Function::New(env, ShmSlice, "shmSlice"));
  exports.Set("shmRelease", Napi::Function::New(env, ShmRelease, "shmRelease"));
}

}  // namespace mp
