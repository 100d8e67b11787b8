// The parent's machine code, shared with its forked children page table and all.
//
// fork() copies the page tables of anonymous memory only. Node's machine code
// is mapped from the node binary, so every forked child maps it again, one
// page fault (and sixteen pages) at a time as it runs: some 35 faults for a
// child that runs an empty target, 55 for one that must leave a microtask
// first, a fifth of the child's life. Node's own --use-largepages=on moves
// that code into anonymous huge pages at start-up; a child then inherits it
// whole, in a dozen page-table entries. This does the same at the first fork:
//
//   - only where the kernel gives transparent huge pages (`enabled` is
//     [always] or [madvise]): in 4 KiB pages, fork() would copy thousands of
//     entries instead, which costs more than the faults it saves;
//   - atomically: the copy is made aside, then mremap() puts it in place of
//     the old mapping under the kernel's lock. A thread that runs that code
//     meanwhile waits on the lock and finds the same bytes (Node's own move
//     writes in place, which is why it runs before any thread exists);
//   - once, and not when the code is anonymous already (--use-largepages=on).
//
// The cost: about 6 ms once, and RSS counts the 2 MiB-aligned part of
// the code (about 24 MiB on Node 20), shared by every child. As with
// --use-largepages, debuggers and profilers no longer find node's own symbols
// in that range. NODE_MULTIPROCESSING_LARGE_PAGES=0 leaves the code as it is.
#include "shared_code.h"

#ifdef __linux__

#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "unique_fd.h"

namespace mp {
namespace {

constexpr uintptr_t kHugePage = 2u << 20;

bool g_codeShared = false;

struct Range {
  uintptr_t from = 0;
  uintptr_t to = 0;
  size_t size() const { return to - from; }
};

bool HugePagesOnOffer() {
  std::ifstream enabled("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string modes;
  std::getline(enabled, modes);
  return modes.find("[always]") != std::string::npos || modes.find("[madvise]") != std::string::npos;
}

bool OptedOut() {
  const char* setting = std::getenv("NODE_MULTIPROCESSING_LARGE_PAGES");
  return setting != nullptr && std::strcmp(setting, "0") == 0;
}

// The largest executable segment of the main program (node), trimmed to whole
// huge pages.
Range ProgramCode() {
  Range code;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* largest = static_cast<Range*>(data);
        for (int i = 0; i < info->dlpi_phnum; i++) {
          const ElfW(Phdr)& segment = info->dlpi_phdr[i];
          if (segment.p_type != PT_LOAD || (segment.p_flags & PF_X) == 0) continue;
          const uintptr_t start = info->dlpi_addr + segment.p_vaddr;
          Range trimmed{(start + kHugePage - 1) & ~(kHugePage - 1), (start + segment.p_memsz) & ~(kHugePage - 1)};
          if (trimmed.to > trimmed.from && trimmed.size() > largest->size()) *largest = trimmed;
        }
        return 1;  // the first object is the main program: stop there
      },
      &code);
  return code;
}

// The line of /proc/self/maps or /proc/self/smaps that starts the mapping
// holding `address`, and for smaps its details up to the next mapping.
std::string MappingOf(const char* file, uintptr_t address) {
  std::ifstream maps(file);
  std::string line;
  std::ostringstream found;
  bool inside = false;
  while (std::getline(maps, line)) {
    uintptr_t start = 0;
    uintptr_t end = 0;
    const bool header = std::sscanf(line.c_str(), "%lx-%lx", &start, &end) == 2;
    if (header && inside) break;
    if (header && start <= address && address < end) inside = true;
    if (inside) found << line << '\n';
  }
  return found.str();
}

// Still mapped from the binary, read and execute only.
bool IsFileCode(uintptr_t address) {
  const std::string mapping = MappingOf("/proc/self/maps", address);
  unsigned long inode = 0;
  char perms[5] = {};
  return std::sscanf(mapping.c_str(), "%*x-%*x %4s %*s %*s %lu", perms, &inode) == 2 && std::strcmp(perms, "r-xp") == 0 &&
         inode != 0;
}

// Every page of the mapping at `address` is in a huge page.
bool AllHuge(uintptr_t address, size_t size) {
  const std::string mapping = MappingOf("/proc/self/smaps", address);
  const size_t at = mapping.find("AnonHugePages:");
  return at != std::string::npos && std::strtoull(mapping.c_str() + at + 14, nullptr, 10) * 1024 == size;
}

// An anonymous mapping of `size` bytes aligned to a huge page, or 0.
uintptr_t MapAligned(size_t size) {
  void* mapped = mmap(nullptr, size + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) return 0;
  const auto start = reinterpret_cast<uintptr_t>(mapped);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(kHugePage - 1);
  if (aligned > start) munmap(mapped, aligned - start);
  const uintptr_t tail = aligned + size;
  if (start + size + kHugePage > tail) munmap(reinterpret_cast<void*>(tail), start + size + kHugePage - tail);
  return aligned;
}

// Linux >= 6.1: collapses a range into huge pages at once, and fails unless all of it is.
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

// Whether the mapping at `address` is all in huge pages: MADV_COLLAPSE says so
// (and completes a copy the page faults left partly in small pages); before
// Linux 6.1, /proc/self/smaps does (some 2 ms).
bool InHugePages(uintptr_t address, size_t size) {
  if (madvise(reinterpret_cast<void*>(address), size, MADV_COLLAPSE) == 0) return true;
  return errno == EINVAL && AllHuge(address, size);
}

// The copy, made aside: in huge pages (or not at all), then read and execute only.
bool CopyToHugePages(const Range& code, uintptr_t copy) {
  auto* address = reinterpret_cast<void*>(copy);
  if (madvise(address, code.size(), MADV_HUGEPAGE) != 0) return false;
  std::memcpy(address, reinterpret_cast<const void*>(code.from), code.size());
  return InHugePages(copy, code.size()) && mprotect(address, code.size(), PROT_READ | PROT_EXEC) == 0;
}

bool MoveToHugePages(const Range& code) {
  const uintptr_t copy = MapAligned(code.size());
  if (copy == 0) return false;
  auto* address = reinterpret_cast<void*>(copy);
  if (!CopyToHugePages(code, copy) ||
      mremap(address, code.size(), code.size(), MREMAP_MAYMOVE | MREMAP_FIXED, reinterpret_cast<void*>(code.from)) ==
          MAP_FAILED) {
    munmap(address, code.size());
    return false;
  }
  return true;
}

}  // namespace

void ShareCodeWithChildren() {
  static bool tried = false;
  if (tried) return;
  tried = true;
  if (OptedOut() || !HugePagesOnOffer()) return;
  const Range code = ProgramCode();
  if (code.size() == 0 || !IsFileCode(code.from)) return;
  g_codeShared = MoveToHugePages(code);
}

bool CodeSharedWithChildren() { return g_codeShared; }

}  // namespace mp

#else

namespace mp {

void ShareCodeWithChildren() {}
bool CodeSharedWithChildren() { return false; }

}  // namespace mp

#endif
