// See thread_alive.h.
#include "thread_alive.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mp {

#ifdef __linux__

namespace {

// Whether /proc can tell a zombie (ended, not yet reaped) from a live thread.
bool HaveProc() {
  static const bool have = access("/proc/self/stat", R_OK) == 0;
  return have;
}

// The state letter of /proc/<tid>/stat ('R', 'S', 'Z', ...), 0 when there is
// no such thread, '?' when it cannot be read. /proc/<tid> exists for every
// thread of every process, not only for the main ones that readdir lists.
char ThreadState(pid_t tid) {
  char path[32];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(tid));
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? 0 : '?';
  char text[512];
  ssize_t length;
  do {
    length = read(fd, text, sizeof text - 1);
  } while (length < 0 && errno == EINTR);
  const int readErrno = errno;
  close(fd);
  if (length < 0) return readErrno == ESRCH ? 0 : '?';
  text[length] = '\0';
  // "tid (comm) S ...": the command may hold spaces and parentheses.
  const char* end = std::strrchr(text, ')');
  if (end == nullptr || end[1] != ' ' || end[2] == '\0') return '?';
  return end[2];
}

}  // namespace

bool ThreadAlive(pid_t tid) {
  // ESRCH is final; EPERM means it exists (another user's).
  if (kill(tid, 0) != 0 && errno == ESRCH) return false;
  if (!HaveProc()) return true;
  const char state = ThreadState(tid);
  return state != 0 && state != 'Z' && state != 'X' && state != 'x';
}

#else

bool ThreadAlive(pid_t tid) { return !(kill(tid, 0) != 0 && errno == ESRCH); }

#endif

}  // namespace mp
