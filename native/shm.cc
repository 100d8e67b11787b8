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
// Blocks of the shared heap (src/heap.ts) are slices of an arena's mapping.
// A slice made with a ShmFreeList reports its id there when V8 frees its
// backing store: at a garbage collection, on whichever thread V8 sweeps, with
// or without the event loop turning. The heap takes the ids before each
// allocation and reuses those ranges, so a synchronous loop that drops its
// blocks does not grow without bound (a FinalizationRegistry callback would
// wait for the loop).
//
// shmZero(buffer, offset, length) makes a range read as zeros again: whole
// pages go back to the system (MADV_REMOVE punches a hole in the segment),
// the ends are cleared. A new segment is already zero and is never touched.
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
#include <mutex>
#include <string>
#include <vector>

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

// The ids of the slices whose memory V8 has freed, not yet taken by the heap.
struct FreedSlices {
  std::mutex mutex;
  std::vector<double> ids;
};

// What a slice's backing store holds: the arena's memory, and where to report
// its own end (none for slices outside the heap).
struct SliceOwner {
  std::shared_ptr<v8::BackingStore> arena;
  std::shared_ptr<FreedSlices> freed;
  double id = 0;
};

// May run on a V8 sweeper thread: only the mutex is shared.
void DeleteSliceOwner(void*, size_t, void* owner) {
  auto* slice = static_cast<SliceOwner*>(owner);
  if (slice->freed) {
    std::lock_guard<std::mutex> lock(slice->freed->mutex);
    slice->freed->ids.push_back(slice->id);
  }
  delete slice;
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

// new ShmFreeList(): where slices report that V8 freed them; take() returns
// their ids (and forgets them), or undefined when there are none.
class ShmFreeList : public Napi::ObjectWrap<ShmFreeList> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ShmFreeList", {InstanceMethod<&ShmFreeList::Take>("take")});
  }

  explicit ShmFreeList(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<ShmFreeList>(info), freed_(std::make_shared<FreedSlices>()) {}

  const std::shared_ptr<FreedSlices>& freed() const { return freed_; }

 private:
  Napi::Value Take(const Napi::CallbackInfo& info) {
    std::vector<double> ids;
    {
      std::lock_guard<std::mutex> lock(freed_->mutex);
      ids.swap(freed_->ids);
    }
    if (ids.empty()) return info.Env().Undefined();
    Napi::Array array = Napi::Array::New(info.Env(), ids.size());
    for (size_t i = 0; i < ids.size(); i++) array.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), ids[i]));
    return array;
  }

  std::shared_ptr<FreedSlices> freed_;
};

// shmSlice(buffer, offset, length, freeList?, id?): a new ArrayBuffer over
// part of `buffer`'s memory that keeps the whole of it alive: the heap hands
// each block out as one, so a block's views never reach its neighbours. With
// a ShmFreeList, `id` is reported there once V8 frees the slice.
Napi::Value ShmSlice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "shmSlice(buffer: ArrayBuffer, offset: number, length: number, freeList?: ShmFreeList, id?: number)";
  v8::Local<v8::ArrayBuffer> buffer = ArrayBufferArg(info, 0, usage);
  double offset = SizeArg(info, 1, usage);
  double length = SizeArg(info, 2, usage);
  SliceOwner owner;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsObject() || info.Length() < 5) ThrowUsage(env, usage);
    ShmFreeList* freeList = ShmFreeList::Unwrap(info[3].As<Napi::Object>());
    if (freeList == nullptr) ThrowUsage(env, usage);
    owner.freed = freeList->freed();
    owner.id = SizeArg(info, 4, usage);
  }
  owner.arena = buffer->GetBackingStore();
  if (owner.arena->Data() == nullptr || offset + length > static_cast<double>(owner.arena->ByteLength())) {
    ThrowErrno(env, owner.arena->Data() == nullptr ? EBADF : ERANGE, "shmSlice");
  }
  uint8_t* data = static_cast<uint8_t*>(owner.arena->Data()) + static_cast<size_t>(offset);
  return ExternalBuffer(env, data, static_cast<size_t>(length), std::move(owner), DeleteSliceOwner);
}

// shmZero(buffer, offset, length): [offset, offset + length) of `buffer`'s
// memory reads as zeros again. The whole pages inside go back to the system
// (for every process mapping the segment), the partial ones at the ends are
// cleared.
Napi::Value ShmZero(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "shmZero(buffer: ArrayBuffer, offset: number, length: number)";
  v8::Local<v8::ArrayBuffer> buffer = ArrayBufferArg(info, 0, usage);
  size_t offset = static_cast<size_t>(SizeArg(info, 1, usage));
  size_t length = static_cast<size_t>(SizeArg(info, 2, usage));
  std::shared_ptr<v8::BackingStore> store = buffer->GetBackingStore();
  if (store->Data() == nullptr || offset + length > store->ByteLength()) {
    ThrowErrno(env, store->Data() == nullptr ? EBADF : ERANGE, "shmZero");
  }
  uint8_t* start = static_cast<uint8_t*>(store->Data()) + offset;
  uint8_t* end = start + length;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uint8_t* pagesStart = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(start) + page - 1) & ~(page - 1));
  uint8_t* pagesEnd = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(end) & ~(page - 1));
  if (pagesStart >= pagesEnd) {
    std::memset(start, 0, length);
    return env.Undefined();
  }
  std::memset(start, 0, static_cast<size_t>(pagesStart - start));
  std::memset(pagesEnd, 0, static_cast<size_t>(end - pagesEnd));
#ifdef MADV_REMOVE
  if (madvise(pagesStart, static_cast<size_t>(pagesEnd - pagesStart), MADV_REMOVE) == 0) return env.Undefined();
#endif
  // No hole punching here (macOS): clear them.
  std::memset(pagesStart, 0, static_cast<size_t>(pagesEnd - pagesStart));
  return env.Undefined();
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
  exports.Set("shmZero", Napi::Function::New(env, ShmZero, "shmZero"));
  exports.Set("ShmFreeList", ShmFreeList::Define(env));
}

}  // namespace mp
