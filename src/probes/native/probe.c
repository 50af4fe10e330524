/*
 * airqube probe: the escape regression suite's in-sandbox program (../shared/design/PROBES.md rows 1-41).
 *
 *   /airqube/probe [--phase main|deadline|plant|check] [--only 1,2,3]
 *
 * Prints one JSON object per line: {"id":N,"verdict":"pass|fail|inconclusive|skipped","evidence":"...","ms":N}
 * (the residue and deadline phases add "phase"). The harness treats every line as hostile input.
 *
 * Safety rules, kept even when a defence is missing:
 *  - nothing destructive is written: files are opened for write and closed (never written), except our own
 *    markers and fill files on the scratch tmpfs, which are removed again;
 *  - never writes to sysrq-trigger or core_pattern, never loads a module (init_module gets a NULL image);
 *  - network probes only connect(2) to loopback; routes to other addresses are checked with an unsent UDP
 *    connect(2), which does a route lookup and sends no packet;
 *  - bombs (fork, memory, disk, CPU) run in a child with an internal cap and a timeout, and are killed after.
 *
 * Expectations come from the harness in the environment (AIRQUBE_PROBE_*; see read_config()).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_io_uring_setup
#define SYS_io_uring_setup 425
#endif
#ifndef SYS_userfaultfd
#define SYS_userfaultfd 323
#endif

#define EV_MAX 1400
#define MiB (1024ULL * 1024ULL)

/* ---------- configuration (from the harness) ---------- */

static struct {
  const char *tier;
  long pids;
  unsigned long long memory;
  unsigned long long scratch;
  double cpus;
  long deadline_ms;
  int canary_port;
  const char *host_ns;
  const char *lsm;
  const char *host_kernel;
  const char *host_boot_id;
  const char *nonce;
  long long peer_uid; /* row 37's check phase: the plant phase's uid (-1: not told) */
} cfg;

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

static void read_config(void) {
  cfg.tier = env_or("AIRQUBE_PROBE_TIER", "container");
  cfg.pids = strtol(env_or("AIRQUBE_PROBE_PIDS", "64"), NULL, 10);
  cfg.memory = strtoull(env_or("AIRQUBE_PROBE_MEMORY", "134217728"), NULL, 10);
  cfg.scratch = strtoull(env_or("AIRQUBE_PROBE_SCRATCH", "33554432"), NULL, 10);
  cfg.cpus = strtod(env_or("AIRQUBE_PROBE_CPUS", "0.5"), NULL);
  cfg.deadline_ms = strtol(env_or("AIRQUBE_PROBE_DEADLINE_MS", "2000"), NULL, 10);
  cfg.canary_port = (int)strtol(env_or("AIRQUBE_PROBE_CANARY_PORT", "0"), NULL, 10);
  cfg.host_ns = env_or("AIRQUBE_PROBE_HOST_NS", "");
  cfg.lsm = env_or("AIRQUBE_PROBE_LSM", "");
  cfg.host_kernel = env_or("AIRQUBE_PROBE_HOST_KERNEL", "");
  cfg.host_boot_id = env_or("AIRQUBE_PROBE_HOST_BOOT_ID", "");
  cfg.nonce = env_or("AIRQUBE_PROBE_NONCE", "0");
  if (cfg.pids < 4 || cfg.pids > 100000) cfg.pids = 64;
  if (cfg.memory < 4 * MiB || cfg.memory > 64ULL * 1024 * MiB) cfg.memory = 128 * MiB;
  if (cfg.scratch < MiB || cfg.scratch > 16ULL * 1024 * MiB) cfg.scratch = 32 * MiB;
  if (!(cfg.cpus > 0.01 && cfg.cpus < 1024)) cfg.cpus = 0.5;
  if (cfg.deadline_ms < 100 || cfg.deadline_ms > 600000) cfg.deadline_ms = 2000;
  if (cfg.canary_port < 0 || cfg.canary_port > 65535) cfg.canary_port = 0;
  for (const char *p = cfg.nonce; *p; p++)
    if (!isalnum((unsigned char)*p) || p - cfg.nonce > 32) { cfg.nonce = "0"; break; }
  const char *peer = env_or("AIRQUBE_PROBE_PEER_UID", "");
  char *end = NULL;
  cfg.peer_uid = *peer ? strtoll(peer, &end, 10) : -1;
  if (!*peer || !end || *end || cfg.peer_uid < 0 || cfg.peer_uid > 4294967294LL) cfg.peer_uid = -1;
}

/* ---------- evidence and output ---------- */

typedef struct {
  char buf[EV_MAX];
  size_t len;
  int failed;       /* a defence is missing */
  int inconclusive; /* could not decide */
} ev_t;

static void ev_add(ev_t *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ev_add(ev_t *ev, const char *fmt, ...) {
  if (ev->len >= sizeof ev->buf - 1) return;
  if (ev->len > 0) {
    ev->buf[ev->len++] = ';';
    ev->buf[ev->len++] = ' ';
    if (ev->len >= sizeof ev->buf - 1) { ev->len = sizeof ev->buf - 1; ev->buf[ev->len] = 0; return; }
  }
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(ev->buf + ev->len, sizeof ev->buf - ev->len, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  ev->len += (size_t)n;
  if (ev->len >= sizeof ev->buf) ev->len = sizeof ev->buf - 1;
}

#define FAIL(ev, ...) do { (ev)->failed = 1; ev_add((ev), "FAIL " __VA_ARGS__); } while (0)
#define INCONCLUSIVE(ev, ...) do { (ev)->inconclusive = 1; ev_add((ev), "UNDECIDED " __VA_ARGS__); } while (0)

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { fputc('\\', out); fputc(c, out); }
    else if (c < 0x20 || c >= 0x7f) fprintf(out, "\\u%04x", c);
    else fputc(c, out);
  }
  fputc('"', out);
}

static void emit_raw(int id, const char *phase, const char *verdict, const char *evidence, double ms) {
  printf("{\"id\":%d,", id);
  if (phase) printf("\"phase\":\"%s\",", phase);
  printf("\"verdict\":\"%s\",\"evidence\":", verdict);
  json_string(stdout, evidence);
  printf(",\"ms\":%ld}\n", (long)(ms < 0 ? 0 : ms));
  fflush(stdout);
}

static void emit(int id, const char *phase, ev_t *ev, double started) {
  const char *verdict = ev->failed ? "fail" : ev->inconclusive ? "inconclusive" : "pass";
  if (ev->len == 0) ev_add(ev, "no evidence recorded");
  emit_raw(id, phase, verdict, ev->buf, now_ms() - started);
}

static const char *en(int e) {
  switch (e) {
  case 0: return "ok";
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EINTR: return "EINTR";
  case EIO: return "EIO";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case ENODEV: return "ENODEV";
  case ENOTDIR: return "ENOTDIR";
  case EISDIR: return "EISDIR";
  case EINVAL: return "EINVAL";
  case ENOSPC: return "ENOSPC";
  case EROFS: return "EROFS";
  case ENOSYS: return "ENOSYS";
  case ETXTBSY: return "ETXTBSY";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case ENETUNREACH: return "ENETUNREACH";
  case ECONNREFUSED: return "ECONNREFUSED";
  case ETIMEDOUT: return "ETIMEDOUT";
  case EHOSTUNREACH: return "EHOSTUNREACH";
  case EDQUOT: return "EDQUOT";
  case ENOKEY: return "ENOKEY";
  case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
  case ENXIO: return "ENXIO";
  default: {
    static char buf[16];
    snprintf(buf, sizeof buf, "errno%d", e);
    return buf;
  }
  }
}

/* ---------- small helpers ---------- */

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/*
 * 1 when the mount holding path is read-only: statvfs says so, or else the per-mount options of the longest
 * mount point above path in /proc/self/mountinfo start with "ro" (gVisor's statvfs does not report ST_RDONLY).
 */
static int is_ro(const char *path) {
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return 0;
  if (sv.f_flag & ST_RDONLY) return 1;
  static char info[65536];
  int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = 0, r;
  while (n < (ssize_t)sizeof info - 1 && (r = read(fd, info + n, sizeof info - 1 - (size_t)n)) > 0) n += r;
  close(fd);
  info[n > 0 ? n : 0] = 0;
  size_t best = 0;
  int ro = 0;
  for (char *line = info, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    char point[512], opts[256];
    if (sscanf(line, "%*s %*s %*s %*s %511s %255s", point, opts) != 2) continue;
    size_t l = strlen(point);
    int above = strcmp(point, "/") == 0 || (strncmp(path, point, l) == 0 && (path[l] == 0 || path[l] == '/'));
    if (!above || (l < best && best)) continue;
    best = l;
    ro = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == 0);
  }
  return ro;
}

/* 1 when path is masked the way runtimes mask /proc entries: /dev/null bound over it, or an empty ro tmpfs. */
static int is_masked(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return errno == ENOENT;
  if (S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3) return 1;
  if (S_ISDIR(st.st_mode)) {
    struct statfs sf;
    if (statfs(path, &sf) == 0 && sf.f_type == TMPFS_MAGIC && is_ro(path)) return 1;
    /* An empty directory on a read-only mount shows nothing either (gVisor's own sysfs has /sys/firmware so). */
    DIR *d = opendir(path);
    int entries = 0;
    if (d) {
      struct dirent *de;
      while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) entries++;
      closedir(d);
    }
    if (d && entries == 0 && is_ro(path)) return 1;
  }
  return 0;
}

/* Opens for write and closes at once: never writes a byte. Returns 0 when the open succeeded, else errno. */
static int try_open_write(const char *path) {
  int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

static int try_open_read(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return errno;
  close(fd);
  return 0;
}

static ssize_t read_file(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -1;
  size_t total = 0;
  while (total + 1 < size) {
    ssize_t n = read(fd, buf + total, size - 1 - total);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    total += (size_t)n;
  }
  close(fd);
  buf[total] = 0;
  return (ssize_t)total;
}

/* Capability sets of this process from /proc/self/status. */
static struct { unsigned long long inh, prm, eff, bnd, amb; int ok; } caps;

static void read_caps(void) {
  char buf[8192];
  if (read_file("/proc/self/status", buf, sizeof buf) <= 0) return;
  char *p;
  if ((p = strstr(buf, "CapInh:"))) caps.inh = strtoull(p + 7, NULL, 16);
  if ((p = strstr(buf, "CapPrm:"))) caps.prm = strtoull(p + 7, NULL, 16);
  if ((p = strstr(buf, "CapEff:"))) caps.eff = strtoull(p + 7, NULL, 16);
  if ((p = strstr(buf, "CapBnd:"))) caps.bnd = strtoull(p + 7, NULL, 16);
  if ((p = strstr(buf, "CapAmb:"))) caps.amb = strtoull(p + 7, NULL, 16);
  caps.ok = strstr(buf, "CapBnd:") != NULL;
}

/* A capability counts as held when it is in any set: the bounding set is what root or a setuid exec can gain. */
static void check_cap(ev_t *ev, int cap, const char *name) {
  unsigned long long bit = 1ULL << cap;
  if ((caps.eff | caps.prm | caps.bnd | caps.amb | caps.inh) & bit)
    FAIL(ev, "%s is in the capability sets (eff=%d bnd=%d)", name, !!(caps.eff & bit), !!(caps.bnd & bit));
  else
    ev_add(ev, "%s not held", name);
}

/* Runs fn in a child with a hard time limit; returns the child's exit status (-1 on timeout or fork error). */
static int in_child(int (*fn)(void *), void *arg, int timeout_ms, int *signaled) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    alarm((unsigned)(timeout_ms / 1000 + 2));
    _exit(fn(arg) & 0xff);
  }
  double start = now_ms();
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (now_ms() - start > timeout_ms) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      if (signaled) *signaled = SIGKILL;
      return -1;
    }
    usleep(2000);
  }
  if (WIFSIGNALED(st)) { if (signaled) *signaled = WTERMSIG(st); return -1; }
  if (signaled) *signaled = 0;
  return WEXITSTATUS(st);
}

static void reap_all(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

/* Finds the device cgroup's devices.list (cgroup v1) for this process. */
static int devices_list(char *buf, size_t size, char *path, size_t psize) {
  char cg[4096];
  if (read_file("/proc/self/cgroup", cg, sizeof cg) > 0) {
    char *line = strstr(cg, ":devices:");
    if (line) {
      line += 9;
      char *end = strchr(line, '\n');
      if (end) *end = 0;
      snprintf(path, psize, "/sys/fs/cgroup/devices%s/devices.list", strcmp(line, "/") == 0 ? "" : line);
      if (read_file(path, buf, size) >= 0) return 0;
    }
  }
  snprintf(path, psize, "/sys/fs/cgroup/devices/devices.list");
  return read_file(path, buf, size) >= 0 ? 0 : -1;
}

/* Whether the device cgroup lets this process read or write device type:major:minor. -1 when not visible. */
static int cgroup_allows(char type, int maj, int min) {
  char buf[16384], path[4200];
  if (devices_list(buf, sizeof buf, path, sizeof path) != 0) return -1;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char t, smaj[16], smin[16], perms[8];
    if (sscanf(line, "%c %15[^:]:%15s %7s", &t, smaj, smin, perms) != 4) continue;
    if (t != 'a' && t != type) continue;
    if (t != 'a' && strcmp(smaj, "*") != 0 && atoi(smaj) != maj) continue;
    if (t != 'a' && strcmp(smin, "*") != 0 && atoi(smin) != min) continue;
    if (strchr(perms, 'r') || strchr(perms, 'w')) return 1;
  }
  return 0;
}

static int fork_unshare_user(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWUSER) != 0) return errno == EPERM ? 1 : 2;
  return 0;
}

static int fork_userns_mount(void *arg) {
  (void)arg;
  if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return 10;
  if (mount("none", "/tmp", "tmpfs", 0, "size=16k") != 0) return 11;
  umount2("/tmp", MNT_DETACH);
  return 0;
}

/* ---------- rows 38-41 (suite v2): devices, groups, procfs/sysfs through any mount, secrets ---------- */

/*
 * One bounded walk of every mounted file system (breadth first from /, never following symlinks, never into
 * procfs, sysfs or cgroupfs, at most WALK_ENTRIES entries, WALK_DEPTH levels and WALK_MS milliseconds). It
 * collects socket files (row 23) and character devices (row 38) wherever a mount put them, e.g. under a
 * bind of the host's root. Runs once; rows read its result.
 */
#define WALK_ENTRIES 40000
#define WALK_DEPTH 8
#define WALK_MS 3000
#define WALK_KEEP 24

static struct {
  int done, entries, truncated;
  int nsock, nchr;
  char sock[WALK_KEEP][1024];
  char chr[WALK_KEEP][1024];
  unsigned chr_dev[WALK_KEEP];
} walk;

static int skip_fs(const char *path) {
  struct statfs sf;
  if (statfs(path, &sf) != 0) return 1;
  return sf.f_type == PROC_SUPER_MAGIC || sf.f_type == SYSFS_MAGIC || sf.f_type == CGROUP_SUPER_MAGIC ||
         sf.f_type == CGROUP2_SUPER_MAGIC;
}

static void walk_mounts(void) {
  if (walk.done) return;
  walk.done = 1;
  enum { QMAX = 8192 };
  char **queue = calloc(QMAX, sizeof *queue);
  unsigned char *depth = calloc(QMAX, 1);
  if (!queue || !depth) { free(queue); free(depth); walk.truncated = 1; return; }
  size_t head = 0, tail = 0;
  queue[tail++] = strdup("/");
  double start = now_ms();
  while (head < tail) {
    char *dir = queue[head];
    int level = depth[head];
    queue[head++] = NULL;
    if (!dir) continue;
    if (walk.entries >= WALK_ENTRIES || now_ms() - start > WALK_MS) { walk.truncated = 1; free(dir); continue; }
    if (skip_fs(dir)) { free(dir); continue; }
    DIR *d = opendir(dir);
    if (!d) { free(dir); continue; }
    struct dirent *de;
    while ((de = readdir(d)) && walk.entries < WALK_ENTRIES) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      walk.entries++;
      char path[1024];
      int n = snprintf(path, sizeof path, "%s%s%s", dir, strcmp(dir, "/") == 0 ? "" : "/", de->d_name);
      if (n < 0 || (size_t)n >= sizeof path) continue;
      struct stat st;
      if (lstat(path, &st) != 0) continue;
      if (S_ISSOCK(st.st_mode)) {
        if (walk.nsock < WALK_KEEP) snprintf(walk.sock[walk.nsock], sizeof walk.sock[0], "%s", path);
        walk.nsock++;
      } else if (S_ISCHR(st.st_mode)) {
        if (walk.nchr < WALK_KEEP) {
          snprintf(walk.chr[walk.nchr], sizeof walk.chr[0], "%s", path);
          walk.chr_dev[walk.nchr] = (unsigned)st.st_rdev;
        }
        walk.nchr++;
      } else if (S_ISDIR(st.st_mode) && level + 1 < WALK_DEPTH) {
        if (tail < QMAX) { queue[tail] = strdup(path); depth[tail++] = (unsigned char)(level + 1); }
        else walk.truncated = 1;
      }
    }
    closedir(d);
    free(dir);
  }
  for (size_t i = head; i < tail; i++) free(queue[i]);
  free(queue);
  free(depth);
}

/* The character devices every sandbox may have: null, zero, full, random, urandom, tty, console, ptmx, pts. */
static int chr_expected(unsigned maj, unsigned min) {
  if (maj == 1) return min == 3 || min == 5 || min == 7 || min == 8 || min == 9;
  if (maj == 5) return min <= 2;
  return maj == 136;
}

/* Devices known to be harmless to open (and close at once, no ioctl): only these are opened. */
static const struct { const char *name; int maj, min; } risky_dev[] = {
    {"fuse", 10, 229},        {"net/tun", 10, 200},   {"kvm", 10, 232},  {"userfaultfd", 10, -1},
    {"vsock", 10, -1},        {"loop-control", 10, 237}, {"vhost-net", 10, 238}, {"vhost-vsock", 10, 241},
};

static const char *risky_name(const char *path) {
  for (size_t i = 0; i < sizeof risky_dev / sizeof *risky_dev; i++) {
    size_t pl = strlen(path), nl = strlen(risky_dev[i].name);
    if (pl >= nl + 1 && strcmp(path + pl - nl, risky_dev[i].name) == 0 && path[pl - nl - 1] == '/') return risky_dev[i].name;
  }
  return NULL;
}

/* 1 when gVisor's Sentry is the kernel answering (its fixed uname version, and a release not the host's). */
static int is_gvisor(void) {
  struct utsname u;
  if (uname(&u) != 0) return 0;
  char mine[400];
  snprintf(mine, sizeof mine, "%s %s", u.release, u.version);
  return strcmp(u.version, "#1 SMP Sun Jan 10 15:06:54 PST 2016") == 0 && strcmp(mine, cfg.host_kernel) != 0;
}

/* 1 when the harness runs this probe on the gvisor tier (row 36 checks that gVisor's kernel really answers). */
static int gvisor_tier(void) { return strcmp(cfg.tier, "gvisor") == 0; }

/* Under gVisor, /dev/fuse and /dev/net/tun are the Sentry's own (its FUSE and netstack), not the host's. */
static int sentry_own(const char *path) {
  const char *known = risky_name(path);
  return known && gvisor_tier() && is_gvisor() && (strcmp(known, "fuse") == 0 || strcmp(known, "net/tun") == 0);
}

/* Character devices beyond the minimal set (the facts line's count; row 38 says which). */
static int unexpected_chr(void) {
  walk_mounts();
  int n = 0;
  for (int i = 0; i < walk.nchr && i < WALK_KEEP; i++)
    if (!chr_expected(major(walk.chr_dev[i]), minor(walk.chr_dev[i])) && !sentry_own(walk.chr[i])) n++;
  return n + (walk.nchr > WALK_KEEP ? walk.nchr - WALK_KEEP : 0);
}

static void probe_38(ev_t *ev) {
  walk_mounts();
  int bad = 0;
  for (int i = 0; i < walk.nchr && i < WALK_KEEP; i++) {
    unsigned maj = major(walk.chr_dev[i]), min = minor(walk.chr_dev[i]);
    if (chr_expected(maj, min)) continue;
    const char *known = risky_name(walk.chr[i]);
    if (sentry_own(walk.chr[i])) {
      ev_add(ev, "%s is gVisor's own (the Sentry serves it; no host device)", walk.chr[i]);
      continue;
    }
    bad++;
    if (known) {
      int fd = open(walk.chr[i], O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
      int e = errno;
      if (fd >= 0) { close(fd); FAIL(ev, "%s (c %u:%u, %s) present and opened O_RDWR (closed)", walk.chr[i], maj, min, known); }
      else FAIL(ev, "%s (c %u:%u, %s) present (open O_RDWR: %s)", walk.chr[i], maj, min, known, en(e));
    } else {
      /* Unknown devices are never opened (a watchdog arms on open): presence and access(2) only. */
      FAIL(ev, "unexpected character device %s (c %u:%u, %s)", walk.chr[i], maj, min,
           access(walk.chr[i], R_OK | W_OK) == 0 ? "readable and writable" : "not accessible to this uid");
    }
  }
  if (walk.nchr > WALK_KEEP) FAIL(ev, "%d character devices in all", walk.nchr);
  if (!bad) ev_add(ev, "%d character devices, all of the minimal set (null, zero, full, random, urandom, tty, ptmx, pts)", walk.nchr);
  for (size_t i = 0; i < sizeof risky_dev / sizeof *risky_dev; i++) {
    if (risky_dev[i].min < 0) continue;
    int allowed = cgroup_allows('c', risky_dev[i].maj, risky_dev[i].min);
    /* Docker's default rules always allow c 10:200 (tun): without a node it is not reachable; say so. */
    if (allowed == 1 && risky_dev[i].min == 200) ev_add(ev, "device cgroup allows c 10:200 (the engine's default rule)");
    else if (allowed == 1) FAIL(ev, "device cgroup allows c %d:%d (%s)", risky_dev[i].maj, risky_dev[i].min, risky_dev[i].name);
  }
  ev_add(ev, "walked %d entries of the mounted file systems%s", walk.entries, walk.truncated ? " (bounded, cut)" : "");
}

static void probe_39(ev_t *ev) {
  gid_t groups[256];
  int n = getgroups(256, groups);
  gid_t egid = getegid();
  if (n < 0) { INCONCLUSIVE(ev, "getgroups=%s", en(errno)); return; }
  char list[512] = "";
  size_t len = 0;
  int extra = 0, root_group = egid == 0;
  for (int i = 0; i < n; i++) {
    len += (size_t)snprintf(list + len, len < sizeof list ? sizeof list - len : 0, "%s%u", i ? "," : "", groups[i]);
    if (len >= sizeof list) len = sizeof list - 1;
    if (groups[i] == 0) root_group = 1;
    if (groups[i] != egid) extra++;
  }
  ev_add(ev, "egid=%u groups=[%s]", egid, list);
  for (int i = 0, shown = 0; i < n; i++)
    if (groups[i] != egid && shown++ < 6) FAIL(ev, "supplementary group %u (host gid: its files and devices are reachable)", groups[i]);
  if (root_group) {
    char map[512];
    int remapped = 0;
    if (read_file("/proc/self/gid_map", map, sizeof map) > 0) {
      unsigned long in, out, count;
      remapped = sscanf(map, "%lu %lu %lu", &in, &out, &count) == 3 && !(in == 0 && out == 0);
    }
    if (!remapped) FAIL(ev, "holds gid 0, not remapped by a user namespace");
  }
  if (!extra && !root_group) ev_add(ev, "no supplementary group beyond the primary one");
}

/* Every procfs or sysfs mount besides /proc and /sys themselves, and /sys too: a way to the kernel's knobs. */
static int proc_sys_rw(ev_t *ev) {
  char buf[65536];
  if (read_file("/proc/self/mountinfo", buf, sizeof buf) <= 0) return -1;
  int bad = 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char point[512], opts[256], fstype[64];
    char *sep = strstr(line, " - ");
    if (!sep || sscanf(line, "%*s %*s %*s %*s %511s %255s", point, opts) != 2) continue;
    if (sscanf(sep + 3, "%63s", fstype) != 1) continue;
    int ro = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == 0);
    if (strcmp(fstype, "proc") == 0) {
      /* /proc itself and the runtime's read-only sub-binds of it (/proc/sys, /proc/bus, ...) are rows 1-3. */
      if (strcmp(point, "/proc") == 0 || strncmp(point, "/proc/", 6) == 0) continue;
      char knob[700];
      snprintf(knob, sizeof knob, "%s/sys/kernel/core_pattern", point);
      int e = try_open_write(knob);
      if (e == 0) { bad++; if (ev) FAIL(ev, "%s opened for write (closed unwritten)", knob); }
      else {
        char sys[700];
        snprintf(sys, sizeof sys, "%s/sys", point);
        if (!is_ro(sys) && !is_masked(sys)) { bad++; if (ev) FAIL(ev, "procfs at %s: %s is on a read-write mount (open: %s)", point, sys, en(e)); }
        else if (ev) ev_add(ev, "procfs at %s: /sys read-only", point);
      }
    } else if (strcmp(fstype, "sysfs") == 0) {
      char helper[700];
      snprintf(helper, sizeof helper, "%s/kernel/uevent_helper", point);
      int e = try_open_write(helper);
      if (e == 0) { bad++; if (ev) FAIL(ev, "%s opened for write (closed unwritten)", helper); }
      else if (!ro) { bad++; if (ev) FAIL(ev, "sysfs at %s mounted read-write (uevent_helper: %s)", point, en(e)); }
      else if (ev) ev_add(ev, "sysfs at %s read-only", point);
    }
  }
  return bad;
}

static void probe_40(ev_t *ev) {
  int bad = proc_sys_rw(ev);
  if (bad < 0) INCONCLUSIVE(ev, "mountinfo unreadable");
  else if (!bad) ev_add(ev, "no procfs or sysfs mount with writable kernel knobs");
}

/* Names of variables that hold credentials, and values shaped like keys (the value is never printed). */
static int secret_name(const char *name, size_t len) {
  static const char *words[] = {"SECRET", "TOKEN", "PASSWORD", "PASSWD", "PRIVATE", "API_KEY", "APIKEY", "ACCESS_KEY",
                                "CREDENTIAL", "MNEMONIC", "SEED_PHRASE", "AUTH"};
  char upper[128];
  if (len >= sizeof upper) len = sizeof upper - 1;
  for (size_t i = 0; i < len; i++) upper[i] = (char)toupper((unsigned char)name[i]);
  upper[len] = 0;
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strstr(upper, words[i])) return 1;
  return 0;
}

static int secret_value(const char *v) {
  if (strstr(v, "-----BEGIN")) return 1;
  if (strncmp(v, "AKIA", 4) == 0 && strlen(v) == 20) return 1;
  if (strncmp(v, "ghp_", 4) == 0 || strncmp(v, "xoxb-", 5) == 0 || strncmp(v, "eyJ", 3) == 0) return 1;
  size_t hex = 0;
  const char *p = strncmp(v, "0x", 2) == 0 ? v + 2 : v;
  for (; isxdigit((unsigned char)*p); p++) hex++;
  return *p == 0 && hex == 64; /* a 32-byte key, e.g. an Ethereum private key */
}

extern char **environ;

static int env_secrets(ev_t *ev) {
  int found = 0;
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || strncmp(*e, "AIRQUBE_PROBE_", 14) == 0) continue;
    size_t len = (size_t)(eq - *e);
    if (secret_name(*e, len) || secret_value(eq + 1)) {
      if (found++ < 6 && ev) FAIL(ev, "environment variable %.*s looks like a secret (value not shown)", (int)(len > 64 ? 64 : len), *e);
    }
  }
  static const char *files[] = {"/var/run/secrets/kubernetes.io/serviceaccount/token", "/run/secrets",
                                "/var/run/secrets", "/root/.aws/credentials", "/root/.docker/config.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    if (!exists(files[i])) continue;
    found++;
    if (ev) FAIL(ev, "%s present", files[i]);
  }
  return found;
}

static void probe_41(ev_t *ev) {
  if (!env_secrets(ev)) ev_add(ev, "no secret-looking variable in the environment, no service-account token or secrets mount");
}

/*
 * Facts (one line, main phase): raw observations the harness uses to check that each weakening of a mutation
 * run really changed the sandbox. Not a verdict.
 */
static void emit_facts(void) {
  char f[1800];
  size_t len = 0;
#define FACT(...) do { if (len < sizeof f) len += (size_t)snprintf(f + len, sizeof f - len, __VA_ARGS__); } while (0)
  char status[8192] = "";
  read_file("/proc/self/status", status, sizeof status);
  char *p = strstr(status, "Seccomp:");
  FACT("capbnd=%llx;capeff=%llx;seccomp=%d;nnp=%d", caps.bnd, caps.eff, p ? atoi(p + 8) : -1, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  FACT(";uid=%u;gid=%u;groups=", geteuid(), getegid());
  gid_t groups[64];
  int n = getgroups(64, groups);
  for (int i = 0; i < n; i++) FACT("%s%u", i ? "," : "", groups[i]);
  static const char *kinds[] = {"pid", "net", "ipc"};
  for (int i = 0; i < 3; i++) {
    char path[32], link[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", kinds[i]);
    ssize_t l = readlink(path, link, sizeof link - 1);
    link[l > 0 ? l : 0] = 0;
    char *ino = strchr(link, '[');
    FACT(";ns_%s=%llu", kinds[i], ino ? strtoull(ino + 1, NULL, 10) : 0ULL);
  }
  FACT(";rootrw=%d", !is_ro("/"));
  static const struct { const char *key, *path; } cg[] = {{"pids", "/sys/fs/cgroup/pids/pids.max"},
                                                           {"mem", "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
                                                           {"cpuquota", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"}};
  for (int i = 0; i < 3; i++) {
    char v[64] = "";
    if (read_file(cg[i].path, v, sizeof v) > 0) v[strcspn(v, "\n")] = 0;
    for (char *c = v; *c; c++) if (!isalnum((unsigned char)*c) && *c != '-') *c = '_';
    FACT(";%s=%s", cg[i].key, *v ? v : "none");
  }
  struct rlimit nproc;
  if (getrlimit(RLIMIT_NPROC, &nproc) == 0 && nproc.rlim_cur != RLIM_INFINITY) FACT(";nproc=%llu", (unsigned long long)nproc.rlim_cur);
  else FACT(";nproc=unlimited");
  struct statvfs sv;
  FACT(";scratch=%llu", statvfs("/scratch", &sv) == 0 ? (unsigned long long)sv.f_blocks * sv.f_frsize : 0ULL);
  /* The runtime's masked and read-only /proc paths that are present but neither masked nor read-only. */
  static const char *masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi",
                                 "/proc/scsi", "/proc/latency_stats", "/proc/timer_stats", "/sys/firmware"};
  static const char *ro_paths[] = {"/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"};
  int unmasked = 0;
  for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) unmasked += exists(masked[i]) && !is_masked(masked[i]);
  for (size_t i = 0; i < sizeof ro_paths / sizeof *ro_paths; i++) unmasked += exists(ro_paths[i]) && !is_ro(ro_paths[i]);
  FACT(";unmasked=%d", unmasked);
  walk_mounts();
  FACT(";sockets=%d;chardevs=%d", walk.nsock, unexpected_chr());
  char mi[65536];
  int cgrw = 0;
  if (read_file("/proc/self/mountinfo", mi, sizeof mi) > 0) {
    for (char *line = strtok(mi, "\n"); line; line = strtok(NULL, "\n")) {
      char opts[256];
      char *sep = strstr(line, " - ");
      if (!sep || strncmp(sep + 3, "cgroup", 6) != 0) continue;
      if (sscanf(line, "%*s %*s %*s %*s %*s %255s", opts) == 1 && !(strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || !opts[2]))) cgrw++;
    }
  }
  char dl[16384], dpath[4200];
  int devall = devices_list(dl, sizeof dl, dpath, sizeof dpath) == 0 && strstr(dl, "a *:* rwm") != NULL;
  FACT(";cgrouprw=%d;devall=%d;procrw=%d;secrets=%d", cgrw, devall, proc_sys_rw(NULL), env_secrets(NULL));
#undef FACT
  printf("{\"facts\":");
  json_string(stdout, f);
  printf("}\n");
  fflush(stdout);
}

/* ---------- rows 1-6: /proc, /dev ---------- */

static void probe_1(ev_t *ev) {
  int e = try_open_write("/proc/sysrq-trigger");
  if (e == 0) FAIL(ev, "open(/proc/sysrq-trigger, O_WRONLY) succeeded (closed unwritten)");
  else ev_add(ev, "open(/proc/sysrq-trigger, O_WRONLY)=%s", en(e));
  /* The defence is a read-only (or masked) /proc: every path runtimes make read-only must be so. */
  static const char *ro_paths[] = {"/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"};
  for (size_t i = 0; i < sizeof ro_paths / sizeof *ro_paths; i++) {
    if (!exists(ro_paths[i])) continue;
    if (is_ro(ro_paths[i]) || is_masked(ro_paths[i])) ev_add(ev, "%s read-only", ro_paths[i]);
    else FAIL(ev, "%s is on a read-write mount", ro_paths[i]);
  }
}

static void probe_2(ev_t *ev) {
  const char *path = "/proc/sys/kernel/core_pattern";
  int e = try_open_write(path);
  if (e == 0) { FAIL(ev, "open(core_pattern, O_WRONLY) succeeded (closed unwritten)"); return; }
  ev_add(ev, "open(core_pattern, O_WRONLY)=%s", en(e));
  if (e == ENOENT) return;
  if (e != EROFS && !is_ro(path)) FAIL(ev, "/proc/sys is on a read-write mount: only file permissions stop this uid");
  else ev_add(ev, "/proc/sys read-only");
}

static void probe_3(ev_t *ev) {
  int fd = open("/proc/kcore", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char c;
    ssize_t n = read(fd, &c, 1);
    close(fd);
    if (n > 0) FAIL(ev, "/proc/kcore readable");
    else ev_add(ev, "/proc/kcore reads empty");
  } else ev_add(ev, "/proc/kcore: %s", en(errno));
  /* /proc/kmsg: open only (reading it would consume the host's log). */
  int e = try_open_read("/proc/kmsg");
  if (e == 0) FAIL(ev, "/proc/kmsg opened for reading");
  else ev_add(ev, "/proc/kmsg: %s", en(e));
  e = try_open_read("/dev/kmsg");
  if (e == 0) FAIL(ev, "/dev/kmsg opened for reading");
  else ev_add(ev, "/dev/kmsg: %s", en(e));
  static const char *masked[] = {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                 "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                                 "/sys/firmware"};
  int n_masked = 0;
  for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
    if (!exists(masked[i])) continue;
    if (is_masked(masked[i])) n_masked++;
    else FAIL(ev, "%s is not masked", masked[i]);
  }
  ev_add(ev, "%d present masked paths masked", n_masked);
}

static void probe_4(ev_t *ev) {
  static const struct { const char *path; int maj, min; } devs[] = {{"/dev/mem", 1, 1}, {"/dev/kmem", 1, 2}, {"/dev/port", 1, 4}};
  for (size_t i = 0; i < 3; i++) {
    struct stat st;
    if (lstat(devs[i].path, &st) == 0) {
      int e = try_open_read(devs[i].path);
      if (e == 0) FAIL(ev, "%s opened for reading", devs[i].path);
      else FAIL(ev, "%s present in /dev (open: %s)", devs[i].path, en(e));
    } else ev_add(ev, "%s: %s", devs[i].path, en(errno));
    int allowed = cgroup_allows('c', devs[i].maj, devs[i].min);
    if (allowed == 1) FAIL(ev, "device cgroup allows c %d:%d (%s)", devs[i].maj, devs[i].min, devs[i].path);
    else if (allowed == 0) ev_add(ev, "device cgroup denies c %d:%d", devs[i].maj, devs[i].min);
  }
  if (cgroup_allows('c', 1, 1) < 0) ev_add(ev, "devices.list not visible (cgroup v2 or hidden): nodes checked only");
}

static void scan_block(ev_t *ev, const char *dir, int *found) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d)) && *found < 32) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
    struct stat st;
    if (lstat(path, &st) != 0 || !S_ISBLK(st.st_mode)) continue;
    (*found)++;
    int e = try_open_read(path);
    if (e == 0) FAIL(ev, "block device %s opened", path);
    else ev_add(ev, "block device %s present, open: %s", path, en(e));
  }
  closedir(d);
}

static void probe_5(ev_t *ev) {
  int found = 0;
  scan_block(ev, "/dev", &found);
  scan_block(ev, "/dev/mapper", &found);
  if (found == 0) ev_add(ev, "no block device nodes in /dev");
  int allowed = cgroup_allows('b', 8, 0);
  int allowed_vd = cgroup_allows('b', 254, 0);
  if (allowed == 1 || allowed_vd == 1) FAIL(ev, "device cgroup allows reading or writing block devices");
  else if (allowed == 0) ev_add(ev, "device cgroup denies block devices");
}

static void probe_6(ev_t *ev) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/.airqube-blk-%d", getpid());
  if (mknod(path, S_IFBLK | 0600, makedev(8, 0)) == 0) {
    int e = try_open_read(path);
    unlink(path);
    if (e == 0) FAIL(ev, "mknod(b 8:0) and open succeeded");
    else ev_add(ev, "mknod(b 8:0) succeeded, open: %s", en(e));
  } else ev_add(ev, "mknod(b 8:0)=%s", en(errno));
  check_cap(ev, 27, "CAP_MKNOD");
  int allowed = cgroup_allows('b', 8, 0);
  if (allowed == 1) FAIL(ev, "device cgroup allows b 8:0");
  else if (allowed == 0) ev_add(ev, "device cgroup denies b 8:0");
}

/* ---------- rows 7-17: system calls and capabilities ---------- */

/* A call the kernel answers with something other than EPERM got past seccomp. */
static void reach(ev_t *ev, const char *what, long r, int e, int want_eperm_only) {
  if (r >= 0) FAIL(ev, "%s succeeded", what);
  else if (e == EPERM || (e == ENOSYS && !want_eperm_only)) ev_add(ev, "%s=%s", what, en(e));
  else FAIL(ev, "%s=%s: the call reaches the kernel (seccomp lets it through)", what, en(e));
}

static void probe_7(ev_t *ev) {
  long r = mount("none", "/tmp", "tmpfs", 0, "size=16k");
  int e = errno;
  if (r == 0) { umount2("/tmp", MNT_DETACH); FAIL(ev, "mount(tmpfs) succeeded"); }
  else ev_add(ev, "mount(tmpfs)=%s", en(e));
  r = mount((const char *)1, "/tmp", (const char *)1, 0, NULL);
  reach(ev, "mount(bad pointers)", r, errno, 1);
  r = umount2("/airqube-none", 0x7fff0000);
  reach(ev, "umount2(bad flags)", r, errno, 1);
  r = setns(-1, 0);
  reach(ev, "setns(-1)", r, errno, 1);
  r = syscall(SYS_pivot_root, "/airqube-none", "/airqube-none");
  e = errno;
  if (r == 0) FAIL(ev, "pivot_root succeeded");
  else ev_add(ev, "pivot_root=%s", en(e));
  check_cap(ev, 21, "CAP_SYS_ADMIN");
}

static void probe_8(ev_t *ev) {
  char buf[32768];
  int rw = 0, seen = 0;
  if (read_file("/proc/self/mountinfo", buf, sizeof buf) > 0) {
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
      char *sep = strstr(line, " - ");
      if (!sep || strncmp(sep + 3, "cgroup", 6) != 0) continue;
      seen++;
      char id[16], parent[16], devno[32], root[512], point[512], opts[256];
      if (sscanf(line, "%15s %15s %31s %511s %511s %255s", id, parent, devno, root, point, opts) != 6) continue;
      if (strncmp(opts, "ro", 2) != 0 || (opts[2] != ',' && opts[2] != 0)) {
        if (rw++ < 3) FAIL(ev, "cgroupfs %s is mounted read-write", point);
      }
    }
  }
  if (seen && !rw) ev_add(ev, "%d cgroupfs mounts, all read-only", seen);
  if (!seen) ev_add(ev, "no cgroupfs mounted");
  DIR *d = opendir("/sys/fs/cgroup");
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (de->d_name[0] == '.') continue;
      char path[512];
      snprintf(path, sizeof path, "/sys/fs/cgroup/%s/release_agent", de->d_name);
      int e = try_open_write(path);
      if (e == 0) FAIL(ev, "%s opened for write (closed unwritten)", path);
      else if (e != ENOENT) ev_add(ev, "%s: %s", path, en(e));
      snprintf(path, sizeof path, "/sys/fs/cgroup/%s/notify_on_release", de->d_name);
      e = try_open_write(path);
      if (e == 0) FAIL(ev, "%s opened for write (closed unwritten)", path);
    }
    closedir(d);
  }
  int st = in_child(fork_unshare_user, NULL, 2000, NULL);
  if (st == 0) FAIL(ev, "unshare(CLONE_NEWUSER) succeeded: the CVE-2022-0492 precondition holds");
  else ev_add(ev, "unshare(CLONE_NEWUSER) refused");
  check_cap(ev, 21, "CAP_SYS_ADMIN");
}

static void probe_9(ev_t *ev) {
  char cg[4096], path[4200];
  const char *rel = "";
  if (read_file("/proc/self/cgroup", cg, sizeof cg) > 0) {
    char *line = strstr(cg, ":devices:");
    if (line) {
      line += 9;
      char *end = strchr(line, '\n');
      if (end) *end = 0;
      if (strcmp(line, "/") != 0) rel = line;
    }
  }
  int checked = 0;
  for (int i = 0; i < 2; i++) {
    snprintf(path, sizeof path, "/sys/fs/cgroup/devices%s/devices.allow", i == 0 ? rel : "");
    if (!exists(path)) continue;
    checked++;
    int e = try_open_write(path);
    if (e == 0) FAIL(ev, "%s opened for write (closed unwritten)", path);
    else if (e == EROFS || is_ro(path)) ev_add(ev, "%s: %s, read-only mount", path, en(e));
    else FAIL(ev, "%s is on a read-write mount (open: %s)", path, en(e));
    if (!*rel) break;
  }
  if (!checked) ev_add(ev, "no devices.allow visible (cgroup v2 or no device cgroup)");
}

static void probe_10(ev_t *ev) {
  int st = in_child(fork_unshare_user, NULL, 2000, NULL);
  if (st == 0) FAIL(ev, "unshare(CLONE_NEWUSER) succeeded");
  else ev_add(ev, "unshare(CLONE_NEWUSER) refused");
  st = in_child(fork_userns_mount, NULL, 2000, NULL);
  if (st == 0) FAIL(ev, "mount(tmpfs) inside a new user+mount namespace succeeded");
  else if (st == 11) FAIL(ev, "new user+mount namespace created (mount refused)");
  else ev_add(ev, "user+mount namespace refused");
}

static void probe_11(ev_t *ev) {
  long r = syscall(SYS_init_module, NULL, 0UL, "");
  reach(ev, "init_module(NULL)", r, errno, 1);
  r = syscall(SYS_finit_module, -1, "", 0);
  reach(ev, "finit_module(-1)", r, errno, 1);
  r = syscall(SYS_delete_module, "airqube_probe_none", O_NONBLOCK);
  reach(ev, "delete_module(absent)", r, errno, 1);
  check_cap(ev, 16, "CAP_SYS_MODULE");
}

static void probe_12(ev_t *ev) {
  long r = syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -1 /* thread keyring */, 0);
  reach(ev, "keyctl(GET_KEYRING_ID)", r, errno, 1);
  r = syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
  reach(ev, "add_key(NULL)", r, errno, 1);
  r = syscall(SYS_request_key, NULL, NULL, NULL, 0);
  reach(ev, "request_key(NULL)", r, errno, 1);
}

static void probe_13(ev_t *ev) {
  long r = syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */ | 0x40000000);
  if (r >= 0) close((int)r);
  reach(ev, "userfaultfd(bad flags)", r, errno, 0);
  r = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
  if (r >= 0) close((int)r);
  reach(ev, "perf_event_open(NULL)", r, errno, 0);
  unsigned char attr[128] = {0};
  r = syscall(SYS_bpf, 0x7fff, attr, sizeof attr);
  if (r >= 0) close((int)r);
  reach(ev, "bpf(bad cmd)", r, errno, 0);
  r = syscall(SYS_io_uring_setup, 1, NULL);
  if (r >= 0) close((int)r);
  reach(ev, "io_uring_setup(1, NULL)", r, errno, 0);
  /* The same feature through its device (Linux 6.1+): seccomp does not see an ioctl on /dev/userfaultfd. */
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (dev >= 0) {
    long u = ioctl(dev, _IO(0xAA, 0x00) /* USERFAULTFD_IOC_NEW */, O_CLOEXEC);
    int e = errno;
    if (u >= 0) { close((int)u); FAIL(ev, "/dev/userfaultfd handed out a userfaultfd (USERFAULTFD_IOC_NEW)"); }
    else FAIL(ev, "/dev/userfaultfd opened O_RDWR (USERFAULTFD_IOC_NEW: %s)", en(e));
    close(dev);
  } else ev_add(ev, "/dev/userfaultfd: %s", en(errno));
}

static int fork_ptrace_init(void *arg) {
  (void)arg;
  /* PTRACE_SEIZE does not stop the tracee; our exit detaches it. */
  if (syscall(SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, 1, 0, 0) == 0) return 0;
  return 1;
}

static void probe_14(ev_t *ev) {
  int st = in_child(fork_ptrace_init, NULL, 2000, NULL);
  if (st == 0) FAIL(ev, "PTRACE_SEIZE of pid 1 succeeded");
  else ev_add(ev, "PTRACE_SEIZE(1) refused");
  long r = syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, 0x3ffffff0, 0, 0);
  reach(ev, "ptrace(ATTACH, absent pid)", r, errno, 1);
  char local[8];
  struct iovec l = {local, sizeof local}, rem = {(void *)0x10000, sizeof local};
  r = process_vm_readv(0x3ffffff0, &l, 1, &rem, 1, 0);
  reach(ev, "process_vm_readv(absent pid)", r, errno, 1);
  check_cap(ev, 19, "CAP_SYS_PTRACE");
  char stat2[512];
  if (read_file("/proc/2/stat", stat2, sizeof stat2) > 0) {
    char *rp = strrchr(stat2, ')');
    int ppid = -1;
    if (rp) sscanf(rp + 2, "%*c %d", &ppid);
    if (ppid == 0) FAIL(ev, "kernel threads visible (pid 2 has ppid 0): host pid namespace");
  }
}

static void probe_15(ev_t *ev) {
  struct { unsigned int bytes; int type; unsigned char h[128]; } fh = {128, 0, {0}};
  int mnt = 0;
  long r = syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &fh, &mnt, 0);
  int e = errno;
  if (r == 0) {
    FAIL(ev, "name_to_handle_at(/) returned a handle");
    int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    long fd = syscall(SYS_open_by_handle_at, root, &fh, O_RDONLY);
    if (fd >= 0) { close((int)fd); FAIL(ev, "open_by_handle_at opened a file by handle"); }
    else ev_add(ev, "open_by_handle_at=%s", en(errno));
    if (root >= 0) close(root);
  } else reach(ev, "name_to_handle_at(/)", r, e, 0);
  r = syscall(SYS_open_by_handle_at, -1, NULL, O_RDONLY);
  e = errno;
  if (r >= 0) { close((int)r); FAIL(ev, "open_by_handle_at(-1, NULL) succeeded"); }
  else if (e == EPERM) ev_add(ev, "open_by_handle_at(-1, NULL)=EPERM");
  else FAIL(ev, "open_by_handle_at(-1, NULL)=%s: reachable and capable", en(e));
  check_cap(ev, 2, "CAP_DAC_READ_SEARCH");
}

static void probe_16(ev_t *ev) {
  int r = klogctl(10 /* SIZE_BUFFER */, NULL, 0);
  if (r >= 0) FAIL(ev, "syslog(SIZE_BUFFER)=%d: the kernel log is readable", r);
  else ev_add(ev, "syslog(SIZE_BUFFER)=%s", en(errno));
  char buf[256];
  r = klogctl(3 /* READ_ALL */, buf, sizeof buf);
  if (r >= 0) FAIL(ev, "syslog(READ_ALL) read %d bytes", r);
  else ev_add(ev, "syslog(READ_ALL)=%s", en(errno));
  check_cap(ev, 34, "CAP_SYSLOG");
}

static void probe_17(ev_t *ev) {
  static const struct { int domain, type, proto; const char *name; } socks[] = {
      {AF_PACKET, SOCK_RAW, 0x0300 /* htons(ETH_P_ALL) */, "AF_PACKET/SOCK_RAW"},
      {AF_INET, SOCK_RAW, IPPROTO_RAW, "AF_INET/SOCK_RAW"},
      {AF_INET6, SOCK_RAW, IPPROTO_ICMPV6, "AF_INET6/SOCK_RAW"},
  };
  for (size_t i = 0; i < 3; i++) {
    int fd = socket(socks[i].domain, socks[i].type | SOCK_CLOEXEC, socks[i].proto);
    if (fd >= 0) { close(fd); FAIL(ev, "socket(%s) created", socks[i].name); }
    else ev_add(ev, "socket(%s)=%s", socks[i].name, en(errno));
  }
  check_cap(ev, 13, "CAP_NET_RAW");
}

/* ---------- rows 18-22: identity and confinement ---------- */

static void probe_18(ev_t *ev) {
  if (!caps.ok) { INCONCLUSIVE(ev, "/proc/self/status has no capability lines"); return; }
  ev_add(ev, "CapInh=%016llx CapPrm=%016llx CapEff=%016llx CapBnd=%016llx CapAmb=%016llx", caps.inh, caps.prm,
         caps.eff, caps.bnd, caps.amb);
  if (caps.inh | caps.prm | caps.eff | caps.bnd | caps.amb) FAIL(ev, "capability sets are not all empty");
}

static void probe_19(ev_t *ev) {
  int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
  if (nnp == 1) ev_add(ev, "NoNewPrivs=1");
  else if (nnp == 0) FAIL(ev, "NoNewPrivs=0: a setuid or file-capability binary would raise privileges");
  else INCONCLUSIVE(ev, "prctl(PR_GET_NO_NEW_PRIVS)=%s", en(errno));
  static const char *dirs[] = {"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/local/bin", "/airqube"};
  int suid = 0;
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    DIR *d = opendir(dirs[i]);
    if (!d) continue;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) && n++ < 2000) {
      char path[512];
      struct stat st;
      snprintf(path, sizeof path, "%s/%s", dirs[i], de->d_name);
      if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & (S_ISUID | S_ISGID))) {
        if (suid++ < 4) ev_add(ev, "setuid/setgid file %s", path);
      }
    }
    closedir(d);
  }
  if (!suid) ev_add(ev, "no setuid/setgid files in the system directories");
  uid_t r, e, s;
  getresuid(&r, &e, &s);
  ev_add(ev, "uids %u/%u/%u", r, e, s);
}

static void probe_20(ev_t *ev) {
  uid_t r, e, s;
  gid_t gr, ge, gs;
  getresuid(&r, &e, &s);
  getresgid(&gr, &ge, &gs);
  ev_add(ev, "uid=%u euid=%u gid=%u egid=%u", r, e, gr, ge);
  if (r != 0 && e != 0 && s != 0) return;
  char map[512];
  if (read_file("/proc/self/uid_map", map, sizeof map) <= 0) { INCONCLUSIVE(ev, "uid 0 and uid_map unreadable"); return; }
  unsigned long inside, outside, count;
  int mapped_to_root = 0;
  for (char *line = strtok(map, "\n"); line; line = strtok(NULL, "\n")) {
    if (sscanf(line, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0) mapped_to_root = 1;
  }
  if (mapped_to_root) FAIL(ev, "runs as uid 0 and uid_map maps 0 to host uid 0");
  else ev_add(ev, "uid 0 is remapped by a user namespace");
}

static void probe_21(ev_t *ev, int *skipped) {
  char label[256];
  ssize_t n = read_file("/proc/self/attr/current", label, sizeof label);
  int e = errno;
  if (n < 0 || n == 0) {
    if (*cfg.lsm && strcmp(cfg.lsm, "none") != 0) {
      FAIL(ev, "the host runs %s but the sandbox has no LSM label (attr/current: %s)", cfg.lsm, n < 0 ? en(e) : "empty");
      return;
    }
    *skipped = 1;
    ev_add(ev, "no AppArmor/SELinux on this kernel (attr/current: %s): confinement rests on seccomp, capabilities "
               "and namespaces", n < 0 ? en(e) : "empty");
    return;
  }
  label[strcspn(label, "\n")] = 0;
  if (strncmp(label, "unconfined", 10) == 0 || strcmp(label, "kernel") == 0 || strstr(label, "unconfined_t"))
    FAIL(ev, "LSM label is %s", label);
  else ev_add(ev, "confined by LSM label %s", label);
}

static void probe_22(ev_t *ev) {
  static const char *kinds[] = {"pid", "net", "ipc", "uts", "mnt", "cgroup"};
  for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
    char path[64], link[128];
    snprintf(path, sizeof path, "/proc/self/ns/%s", kinds[i]);
    ssize_t n = readlink(path, link, sizeof link - 1);
    if (n < 0) { ev_add(ev, "%s ns: %s", kinds[i], en(errno)); continue; }
    link[n] = 0;
    /* host_ns is "pid:4026531836,net:4026531833,...": compare inode numbers. */
    char key[24];
    snprintf(key, sizeof key, "%s:", kinds[i]);
    const char *h = cfg.host_ns;
    const char *found = NULL;
    while ((h = strstr(h, key))) {
      if (h == cfg.host_ns || h[-1] == ',') { found = h + strlen(key); break; }
      h++;
    }
    char *ino = strchr(link, '[');
    if (found && ino && strtoull(found, NULL, 10) == strtoull(ino + 1, NULL, 10))
      FAIL(ev, "shares the host's %s namespace (%s)", kinds[i], link);
  }
  if (!*cfg.host_ns) ev_add(ev, "no host namespace ids given: heuristics only");
  else ev_add(ev, "namespaces differ from the host's");
  char stat2[512];
  if (read_file("/proc/2/stat", stat2, sizeof stat2) > 0) {
    char *rp = strrchr(stat2, ')');
    int ppid = -1;
    if (rp) sscanf(rp + 2, "%*c %d", &ppid);
    if (ppid == 0) FAIL(ev, "kernel threads visible: host pid namespace");
  }
  char comm[64];
  if (read_file("/proc/1/comm", comm, sizeof comm) > 0) {
    comm[strcspn(comm, "\n")] = 0;
    ev_add(ev, "pid 1 is %s", comm);
  }
  char dev[8192];
  if (read_file("/proc/net/dev", dev, sizeof dev) > 0) {
    int nics = 0;
    char *line = strtok(dev, "\n");
    for (int i = 0; line; line = strtok(NULL, "\n"), i++) {
      if (i < 2) continue;
      while (*line == ' ') line++;
      char name[32];
      if (sscanf(line, "%31[^:]", name) != 1 || strcmp(name, "lo") == 0) continue;
      if (nics++ < 4) FAIL(ev, "network interface %s visible", name);
    }
    if (!nics) ev_add(ev, "only lo");
  }
}

/* ---------- rows 23-28: runtime and mounts ---------- */

static void probe_23(ev_t *ev) {
  static const char *paths[] = {"/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
                                "/var/run/containerd/containerd.sock", "/run/podman/podman.sock",
                                "/var/run/podman/podman.sock", "/run/crio/crio.sock", "/var/run/crio/crio.sock",
                                "/run/buildkit/buildkitd.sock", "/var/run/docker/containerd/containerd.sock",
                                "/run/containerd/containerd.sock.ttrpc", "/var/run/balena-engine.sock"};
  int found = 0;
  for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
    struct stat st;
    if (stat(paths[i], &st) != 0) continue;
    found++;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", paths[i]);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) FAIL(ev, "%s present and connectable", paths[i]);
    else FAIL(ev, "%s present (connect: %s)", paths[i], en(errno));
    if (fd >= 0) close(fd);
  }
  char buf[32768];
  if (read_file("/proc/self/mountinfo", buf, sizeof buf) > 0) {
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
      char point[512];
      if (sscanf(line, "%*s %*s %*s %*s %511s", point) == 1 && strstr(point, ".sock")) {
        found++;
        FAIL(ev, "socket mounted at %s", point);
      }
    }
  }
  /* Any socket file on any mounted file system (a bind of the host's / exposes /host/run/docker.sock). */
  walk_mounts();
  for (int i = 0; i < walk.nsock && i < WALK_KEEP; i++) {
    int known = 0;
    for (size_t k = 0; k < sizeof paths / sizeof *paths; k++)
      if (strcmp(walk.sock[i], paths[k]) == 0) known = 1;
    if (known) continue;
    found++;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", walk.sock[i]);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) FAIL(ev, "socket %s found and connectable (nothing sent)", walk.sock[i]);
    else FAIL(ev, "socket %s found (connect: %s)", walk.sock[i], en(errno));
    if (fd >= 0) close(fd);
  }
  if (walk.nsock > WALK_KEEP) FAIL(ev, "%d socket files in all", walk.nsock);
  /* Host sockets seen through a shared network namespace: containerd-shim's abstract socket (CVE-2020-15257). */
  char unix_list[32768];
  if (read_file("/proc/net/unix", unix_list, sizeof unix_list) > 0 && strstr(unix_list, "containerd-shim")) {
    found++;
    FAIL(ev, "/proc/net/unix lists a containerd-shim socket (CVE-2020-15257)");
  }
  if (!found)
    ev_add(ev, "no runtime socket in %zu known paths or in mountinfo; no socket file in %d walked entries%s",
           sizeof paths / sizeof *paths, walk.entries, walk.truncated ? " (bounded, cut)" : "");
}

/* Non-blocking TCP connect to 127.0.0.1:port with a timeout. Returns 0 when connected (fd in *out), else errno. */
static int tcp_loopback(int port, int timeout_ms, int *out) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return errno;
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  if (r != 0 && errno != EINPROGRESS) { int e = errno; close(fd); return e; }
  if (r != 0) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, timeout_ms) <= 0) { close(fd); return ETIMEDOUT; }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { close(fd); return err; }
  }
  if (out) *out = fd;
  else close(fd);
  return 0;
}

/* connect(2) on a UDP socket only looks up a route: no packet leaves. Returns 0 when a route exists, else errno. */
static int udp_route(int family, const void *addr, int port) {
  int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  int r;
  if (family == AF_INET) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    memcpy(&sa.sin_addr, addr, 4);
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  } else {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    memcpy(&sa.sin6_addr, addr, 16);
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  }
  int e = r == 0 ? 0 : errno;
  close(fd);
  return e;
}

/* The default IPv4 gateway from /proc/net/route (host order), 0 when none. */
static int default_route(char *iface, size_t isize, uint32_t *gw) {
  char buf[8192];
  if (read_file("/proc/net/route", buf, sizeof buf) <= 0) return 0;
  char *line = strtok(buf, "\n");
  for (line = strtok(NULL, "\n"); line; line = strtok(NULL, "\n")) {
    char name[32];
    unsigned int dest, gate;
    if (sscanf(line, "%31s %x %x", name, &dest, &gate) == 3 && dest == 0) {
      snprintf(iface, isize, "%s", name);
      *gw = gate;
      return 1;
    }
  }
  return 0;
}

static void probe_24(ev_t *ev) {
  static const int ports[] = {2375, 2376, 2377, 4243, 6443, 10250, 10255};
  int open_ports = 0;
  for (size_t i = 0; i < sizeof ports / sizeof *ports; i++) {
    int e = tcp_loopback(ports[i], 300, NULL);
    if (e == 0) { open_ports++; FAIL(ev, "127.0.0.1:%d accepts connections", ports[i]); }
  }
  if (!open_ports) ev_add(ev, "127.0.0.1 runtime API ports refused");
  if (cfg.canary_port) {
    int e = tcp_loopback(cfg.canary_port, 500, NULL);
    if (e == 0) FAIL(ev, "the host's loopback is reachable (the harness canary accepted): host-local runtime APIs are exposed");
    else ev_add(ev, "host loopback unreachable (canary: %s)", en(e));
  }
  char iface[32];
  uint32_t gw;
  if (default_route(iface, sizeof iface, &gw)) {
    struct in_addr a = {gw};
    FAIL(ev, "default route via %s dev %s: the gateway's API ports would be reachable (not contacted)", inet_ntoa(a), iface);
  } else ev_add(ev, "no default route");
}

static int is_runtime_comm(const char *c) {
  static const char *names[] = {"runc", "containerd", "containerd-shim", "dockerd", "docker-proxy", "crun", "conmon",
                                "podman", "docker", "runc:[2:INIT]", "runc:[1:CHILD]", "runc:[0:PARENT]", "kubelet"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcmp(c, names[i]) == 0 || (strncmp(c, "containerd-shim", 15) == 0)) return 1;
  return 0;
}

/* Calls fn(pid, comm, arg) for each visible process (at most 4096). */
static void for_each_pid(void (*fn)(int, const char *, void *), void *arg) {
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d)) && n < 4096) {
    if (!isdigit((unsigned char)de->d_name[0])) continue;
    n++;
    char path[300], comm[64];
    snprintf(path, sizeof path, "/proc/%s/comm", de->d_name);
    if (read_file(path, comm, sizeof comm) <= 0) continue;
    comm[strcspn(comm, "\n")] = 0;
    fn(atoi(de->d_name), comm, arg);
  }
  closedir(d);
}

static void runtime_visible(int pid, const char *comm, void *arg) {
  ev_t *ev = arg;
  if (is_runtime_comm(comm)) FAIL(ev, "runtime process %s (pid %d) visible: its descriptors and exe can be raced", comm, pid);
}

/* An fd is outside the sandbox when its path does not resolve, in our view, to the same object. */
static void check_fd_link(ev_t *ev, const char *label, const char *linkpath, int fd) {
  char target[512];
  ssize_t n = readlink(linkpath, target, sizeof target - 1);
  if (n < 0) return;
  target[n] = 0;
  if (target[0] != '/') return; /* pipe:[...], socket:[...], anon_inode:... */
  struct stat a, b;
  int have_a = fd >= 0 ? fstat(fd, &a) == 0 : stat(linkpath, &a) == 0;
  if (!have_a) return;
  if (strncmp(target, "(unreachable)", 13) == 0 || stat(target, &b) != 0 || a.st_dev != b.st_dev || a.st_ino != b.st_ino)
    FAIL(ev, "%s -> %s is outside the sandbox's view", label, target);
  else if (S_ISDIR(a.st_mode) && fd > 2)
    FAIL(ev, "%s is an inherited directory descriptor (%s)", label, target);
}

static void probe_25(ev_t *ev) {
  DIR *d = opendir("/proc/self/fd");
  int own = d ? dirfd(d) : -1, extra = 0;
  if (d) {
    struct dirent *de;
    while ((de = readdir(d))) {
      if (!isdigit((unsigned char)de->d_name[0])) continue;
      int fd = atoi(de->d_name);
      if (fd == own) continue;
      char link[64], label[32];
      snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
      snprintf(label, sizeof label, "fd %d", fd);
      if (fd > 2) extra++;
      check_fd_link(ev, label, link, fd);
    }
    closedir(d);
  }
  ev_add(ev, "%d descriptors beyond stdio", extra);
  char cwd[512];
  if (!getcwd(cwd, sizeof cwd)) FAIL(ev, "getcwd()=%s: the working directory is outside the root", en(errno));
  else if (strncmp(cwd, "(unreachable)", 13) == 0) FAIL(ev, "cwd %s is outside the root", cwd);
  else ev_add(ev, "cwd %s", cwd);
  check_fd_link(ev, "cwd", "/proc/self/cwd", -1);
  check_fd_link(ev, "root", "/proc/self/root", -1);
  DIR *p1 = opendir("/proc/1/fd");
  if (p1) {
    struct dirent *de;
    while ((de = readdir(p1))) {
      if (!isdigit((unsigned char)de->d_name[0])) continue;
      char link[300], label[300];
      snprintf(link, sizeof link, "/proc/1/fd/%s", de->d_name);
      snprintf(label, sizeof label, "pid 1 fd %s", de->d_name);
      check_fd_link(ev, label, link, -1);
    }
    closedir(p1);
  } else ev_add(ev, "pid 1 descriptors: %s", en(errno));
  for_each_pid(runtime_visible, ev);
}

static void exe_writable(int pid, const char *comm, void *arg) {
  ev_t *ev = arg;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  /* access(W_OK) checks permissions and read-only mounts without opening, so nothing can be written. */
  if (access(path, W_OK) == 0) FAIL(ev, "the executable of pid %d (%s) is writable", pid, comm);
}

static void probe_26(ev_t *ev) {
  if (geteuid() == 0) FAIL(ev, "runs as uid 0: an unpatched runtime is the only missing piece for CVE-2019-5736");
  else ev_add(ev, "euid %u", geteuid());
  for_each_pid(exe_writable, ev);
  if (access("/.airqube-init", W_OK) == 0) FAIL(ev, "/.airqube-init is writable");
  else if (exists("/.airqube-init")) ev_add(ev, "/.airqube-init not writable (%s)", en(errno));
  if (!ev->failed) ev_add(ev, "no visible executable is writable");
}

static int mount_allowed(const char *point, const char *fstype, int ro) {
  static const char *virt[] = {"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm"};
  int virtual_fs = 0;
  for (size_t i = 0; i < sizeof virt / sizeof *virt; i++)
    if (strcmp(fstype, virt[i]) == 0) virtual_fs = 1;
  if (strcmp(point, "/") == 0) return 1;
  if (virtual_fs) {
    static const char *prefixes[] = {"/proc", "/dev", "/sys"};
    for (size_t i = 0; i < 3; i++) {
      size_t l = strlen(prefixes[i]);
      if (strncmp(point, prefixes[i], l) == 0 && (point[l] == 0 || point[l] == '/')) return 1;
    }
    if (strcmp(fstype, "tmpfs") == 0 &&
        (strcmp(point, "/scratch") == 0 || strcmp(point, "/output") == 0 || strcmp(point, "/tmp") == 0))
      return 1;
    /* The VM tier writes the declared inputs into a tmpfs it then makes read-only. */
    if (strcmp(fstype, "tmpfs") == 0 && strcmp(point, "/input") == 0) return ro;
    return 0;
  }
  /* Binds from the host: only the runtime's per-container files, our init and the inputs, all read-only. */
  static const char *binds[] = {"/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/.airqube-init"};
  for (size_t i = 0; i < sizeof binds / sizeof *binds; i++)
    if (strcmp(point, binds[i]) == 0) return ro;
  if (strcmp(point, "/input") == 0 || strncmp(point, "/input/", 7) == 0) return ro;
  return 0;
}

static void probe_27(ev_t *ev) {
  char buf[65536];
  if (read_file("/proc/self/mountinfo", buf, sizeof buf) <= 0) { INCONCLUSIVE(ev, "mountinfo unreadable"); return; }
  int count = 0, bad = 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char point[512], opts[256], fstype[64], source[256];
    char *sep = strstr(line, " - ");
    if (!sep || sscanf(line, "%*s %*s %*s %*s %511s %255s", point, opts) != 2) continue;
    if (sscanf(sep + 3, "%63s %255s", fstype, source) != 2) continue;
    count++;
    int ro = strncmp(opts, "ro", 2) == 0 && (opts[2] == ',' || opts[2] == 0);
    int cgroup = strcmp(fstype, "cgroup") == 0 || strcmp(fstype, "cgroup2") == 0;
    if (!mount_allowed(point, fstype, ro)) {
      if (bad++ < 6) FAIL(ev, "undeclared mount %s (%s from %s, %s)", point, fstype, source, ro ? "ro" : "rw");
    } else if (cgroup && !ro) {
      if (bad++ < 6) FAIL(ev, "host cgroupfs %s mounted read-write", point);
    }
  }
  ev_add(ev, "%d mounts, %d undeclared or writable host mounts", count, bad);
}

static void probe_28(ev_t *ev) {
  static const char *dirs[] = {"/", "/etc", "/usr", "/bin", "/airqube"};
  for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
    struct stat st;
    if (stat(dirs[i], &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    char path[128];
    snprintf(path, sizeof path, "%s%s.airqube-probe-%d", dirs[i], strcmp(dirs[i], "/") == 0 ? "" : "/", getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      close(fd);
      unlink(path);
      FAIL(ev, "created a file in %s (removed)", dirs[i]);
      continue;
    }
    int e = errno;
    if (e == EROFS || is_ro(dirs[i])) ev_add(ev, "%s: %s", dirs[i], en(e));
    else FAIL(ev, "%s is on a read-write mount (create: %s; only permissions stop this uid)", dirs[i], en(e));
  }
}

/* ---------- rows 29-31: network ---------- */

static void probe_29(ev_t *ev) {
  /* Built from bytes so the literal never appears; only route lookups, no packet is sent. */
  uint32_t targets[] = {htonl(0xA9FEA9FEu), htonl(0x646464C8u)};
  const char *names[] = {"link-local metadata (AWS/GCP/Azure)", "Alibaba metadata"};
  for (int i = 0; i < 2; i++) {
    int e = udp_route(AF_INET, &targets[i], 80);
    if (e == 0) FAIL(ev, "a route to the %s address exists (UDP connect, no packet sent)", names[i]);
    else ev_add(ev, "%s: %s", names[i], en(e));
  }
  unsigned char v6[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
  int e = udp_route(AF_INET6, v6, 80);
  if (e == 0) FAIL(ev, "a route to the IPv6 metadata address exists");
  else ev_add(ev, "IPv6 metadata: %s", en(e));
  char hosts[8192];
  if (read_file("/etc/hosts", hosts, sizeof hosts) > 0 && strstr(hosts, "metadata")) FAIL(ev, "/etc/hosts names a metadata host");
}

static int self_test_client(ev_t *ev) {
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (ls < 0) { INCONCLUSIVE(ev, "client self-test: socket=%s", en(errno)); return 0; }
  struct sockaddr_in sa = {.sin_family = AF_INET};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof sa;
  if (bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 1) != 0 ||
      getsockname(ls, (struct sockaddr *)&sa, &len) != 0) {
    INCONCLUSIVE(ev, "client self-test: no loopback listener (%s)", en(errno));
    close(ls);
    return 0;
  }
  int fd = -1;
  int e = tcp_loopback(ntohs(sa.sin_port), 1000, &fd);
  int ok = 0;
  if (e == 0) {
    int c = accept(ls, NULL, NULL);
    if (c >= 0) {
      ok = write(c, "ok", 2) == 2;
      close(c);
    }
    char b[4];
    struct pollfd p = {fd, POLLIN, 0};
    ok = ok && poll(&p, 1, 1000) == 1 && read(fd, b, sizeof b) == 2;
    close(fd);
  }
  close(ls);
  if (!ok) INCONCLUSIVE(ev, "client self-test against the sandbox's own loopback failed (%s)", en(e));
  else ev_add(ev, "client self-test ok");
  return ok;
}

static void probe_30(ev_t *ev) {
  if (!self_test_client(ev)) return;
  if (cfg.canary_port) {
    int fd = -1;
    int e = tcp_loopback(cfg.canary_port, 1000, &fd);
    if (e == 0) {
      char token[65] = {0};
      struct pollfd p = {fd, POLLIN, 0};
      ssize_t n = poll(&p, 1, 1000) == 1 ? read(fd, token, sizeof token - 1) : -1;
      close(fd);
      for (ssize_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)token[i])) token[i] = '.';
      if (n > 0) FAIL(ev, "connected to the harness canary and read its token %s", token);
      else FAIL(ev, "connected to the harness canary (no token read: a block page or proxy?)");
    } else ev_add(ev, "harness canary unreachable: %s", en(e));
  } else ev_add(ev, "no canary port given");
  /* TEST-NET-1 (RFC 5737), a documentation address: route lookup only. */
  uint32_t testnet = htonl(0xC0000201u);
  int e = udp_route(AF_INET, &testnet, 80);
  if (e == 0) FAIL(ev, "a route to the outside exists (UDP connect to TEST-NET-1, no packet sent)");
  else ev_add(ev, "no route out: %s", en(e));
  unsigned char v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  e = udp_route(AF_INET6, v6, 80);
  if (e == 0) FAIL(ev, "an IPv6 route to the outside exists (UDP connect to 2001:db8::1, no packet sent)");
  else ev_add(ev, "no IPv6 route out: %s", en(e));
}

static void probe_31(ev_t *ev) {
  char buf[4096];
  if (read_file("/etc/resolv.conf", buf, sizeof buf) < 0) { ev_add(ev, "no /etc/resolv.conf"); return; }
  int servers = 0;
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    char addr[64];
    if (sscanf(line, " nameserver %63s", addr) != 1) continue;
    servers++;
    unsigned char a6[16];
    uint32_t a4;
    int e;
    if (inet_pton(AF_INET, addr, &a4) == 1) {
      if ((ntohl(a4) >> 24) == 127) {
        /* A loopback resolver: TCP connect (loopback only) says whether one is listening. */
        int fd;
        int port = 53;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr = {a4}};
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        e = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 ? 0 : errno;
        if (fd >= 0) close(fd);
        if (e == 0) FAIL(ev, "a resolver listens on %s:53", addr);
        else ev_add(ev, "loopback resolver %s: %s", addr, en(e));
        continue;
      }
      e = udp_route(AF_INET, &a4, 53);
    } else if (inet_pton(AF_INET6, addr, a6) == 1) {
      e = udp_route(AF_INET6, a6, 53);
    } else continue;
    if (e == 0) FAIL(ev, "a route to resolver %s exists (UDP connect, no query sent)", addr);
    else ev_add(ev, "resolver %s unreachable: %s", addr, en(e));
  }
  if (!servers) ev_add(ev, "no nameserver configured");
}

/* ---------- row 43: a sweep of every system call number against the tier's allowlist ---------- */

#if defined(__x86_64__)
/* x86-64 numbers of calls newer than the build's headers (Linux 6.2-6.17); the sweep covers them too. */
static const struct { int nr; const char *name; } newer_syscalls[] = {
  {451, "cachestat"}, {452, "fchmodat2"}, {453, "map_shadow_stack"}, {454, "futex_wake"}, {455, "futex_wait"},
  {456, "futex_requeue"}, {457, "statmount"}, {458, "listmount"}, {459, "lsm_get_self_attr"},
  {460, "lsm_set_self_attr"}, {461, "lsm_list_modules"}, {462, "mseal"}, {463, "setxattrat"}, {464, "getxattrat"},
  {465, "listxattrat"}, {466, "removexattrat"}, {467, "open_tree_attr"}, {468, "file_getattr"}, {469, "file_setattr"},
};
#define SC(n) {__NR_##n, #n},
static const struct { int nr; const char *name; } syscall_names[] = {
  SC(read) SC(write) SC(open) SC(close) SC(stat) SC(fstat) SC(lstat) SC(poll) SC(lseek) SC(mmap) SC(mprotect)
  SC(munmap) SC(brk) SC(rt_sigaction) SC(rt_sigprocmask) SC(rt_sigreturn) SC(ioctl) SC(pread64) SC(pwrite64)
  SC(readv) SC(writev) SC(access) SC(pipe) SC(select) SC(sched_yield) SC(mremap) SC(msync) SC(mincore) SC(madvise)
  SC(shmget) SC(shmat) SC(shmctl) SC(dup) SC(dup2) SC(pause) SC(nanosleep) SC(getitimer) SC(alarm) SC(setitimer)
  SC(getpid) SC(sendfile) SC(socket) SC(connect) SC(accept) SC(sendto) SC(recvfrom) SC(sendmsg) SC(recvmsg)
  SC(shutdown) SC(bind) SC(listen) SC(getsockname) SC(getpeername) SC(socketpair) SC(setsockopt) SC(getsockopt)
  SC(clone) SC(fork) SC(vfork) SC(execve) SC(exit) SC(wait4) SC(kill) SC(uname) SC(semget) SC(semop) SC(semctl)
  SC(shmdt) SC(msgget) SC(msgsnd) SC(msgrcv) SC(msgctl) SC(fcntl) SC(flock) SC(fsync) SC(fdatasync) SC(truncate)
  SC(ftruncate) SC(getdents) SC(getcwd) SC(chdir) SC(fchdir) SC(rename) SC(mkdir) SC(rmdir) SC(creat) SC(link)
  SC(unlink) SC(symlink) SC(readlink) SC(chmod) SC(fchmod) SC(chown) SC(fchown) SC(lchown) SC(umask)
  SC(gettimeofday) SC(getrlimit) SC(getrusage) SC(sysinfo) SC(times) SC(ptrace) SC(getuid) SC(syslog) SC(getgid)
  SC(setuid) SC(setgid) SC(geteuid) SC(getegid) SC(setpgid) SC(getppid) SC(getpgrp) SC(setsid) SC(setreuid)
  SC(setregid) SC(getgroups) SC(setgroups) SC(setresuid) SC(getresuid) SC(setresgid) SC(getresgid) SC(getpgid)
  SC(setfsuid) SC(setfsgid) SC(getsid) SC(capget) SC(capset) SC(rt_sigpending) SC(rt_sigtimedwait)
  SC(rt_sigqueueinfo) SC(rt_sigsuspend) SC(sigaltstack) SC(utime) SC(mknod) SC(uselib) SC(personality) SC(ustat)
  SC(statfs) SC(fstatfs) SC(sysfs) SC(getpriority) SC(setpriority) SC(sched_setparam) SC(sched_getparam)
  SC(sched_setscheduler) SC(sched_getscheduler) SC(sched_get_priority_max) SC(sched_get_priority_min)
  SC(sched_rr_get_interval) SC(mlock) SC(munlock) SC(mlockall) SC(munlockall) SC(vhangup) SC(modify_ldt)
  SC(pivot_root) SC(_sysctl) SC(prctl) SC(arch_prctl) SC(adjtimex) SC(setrlimit) SC(chroot) SC(sync) SC(acct)
  SC(settimeofday) SC(mount) SC(umount2) SC(swapon) SC(swapoff) SC(reboot) SC(sethostname) SC(setdomainname)
  SC(iopl) SC(ioperm) SC(create_module) SC(init_module) SC(delete_module) SC(get_kernel_syms) SC(query_module)
  SC(quotactl) SC(nfsservctl) SC(getpmsg) SC(putpmsg) SC(afs_syscall) SC(tuxcall) SC(security) SC(gettid)
  SC(readahead) SC(setxattr) SC(lsetxattr) SC(fsetxattr) SC(getxattr) SC(lgetxattr) SC(fgetxattr) SC(listxattr)
  SC(llistxattr) SC(flistxattr) SC(removexattr) SC(lremovexattr) SC(fremovexattr) SC(tkill) SC(time) SC(futex)
  SC(sched_setaffinity) SC(sched_getaffinity) SC(set_thread_area) SC(io_setup) SC(io_destroy) SC(io_getevents)
  SC(io_submit) SC(io_cancel) SC(get_thread_area) SC(lookup_dcookie) SC(epoll_create) SC(epoll_ctl_old)
  SC(epoll_wait_old) SC(remap_file_pages) SC(getdents64) SC(set_tid_address) SC(restart_syscall) SC(semtimedop)
  SC(fadvise64) SC(timer_create) SC(timer_settime) SC(timer_gettime) SC(timer_getoverrun) SC(timer_delete)
  SC(clock_settime) SC(clock_gettime) SC(clock_getres) SC(clock_nanosleep) SC(exit_group) SC(epoll_wait)
  SC(epoll_ctl) SC(tgkill) SC(utimes) SC(vserver) SC(mbind) SC(set_mempolicy) SC(get_mempolicy) SC(mq_open)
  SC(mq_unlink) SC(mq_timedsend) SC(mq_timedreceive) SC(mq_notify) SC(mq_getsetattr) SC(kexec_load) SC(waitid)
  SC(add_key) SC(request_key) SC(keyctl) SC(ioprio_set) SC(ioprio_get) SC(inotify_init) SC(inotify_add_watch)
  SC(inotify_rm_watch) SC(migrate_pages) SC(openat) SC(mkdirat) SC(mknodat) SC(fchownat) SC(futimesat)
  SC(newfstatat) SC(unlinkat) SC(renameat) SC(linkat) SC(symlinkat) SC(readlinkat) SC(fchmodat) SC(faccessat)
  SC(pselect6) SC(ppoll) SC(unshare) SC(set_robust_list) SC(get_robust_list) SC(splice) SC(tee) SC(sync_file_range)
  SC(vmsplice) SC(move_pages) SC(utimensat) SC(epoll_pwait) SC(signalfd) SC(timerfd_create) SC(eventfd)
  SC(fallocate) SC(timerfd_settime) SC(timerfd_gettime) SC(accept4) SC(signalfd4) SC(eventfd2) SC(epoll_create1)
  SC(dup3) SC(pipe2) SC(inotify_init1) SC(preadv) SC(pwritev) SC(rt_tgsigqueueinfo) SC(perf_event_open)
  SC(recvmmsg) SC(fanotify_init) SC(fanotify_mark) SC(prlimit64) SC(name_to_handle_at) SC(open_by_handle_at)
  SC(clock_adjtime) SC(syncfs) SC(sendmmsg) SC(setns) SC(getcpu) SC(process_vm_readv) SC(process_vm_writev)
  SC(kcmp) SC(finit_module) SC(sched_setattr) SC(sched_getattr) SC(renameat2) SC(seccomp) SC(getrandom)
  SC(memfd_create) SC(kexec_file_load) SC(bpf) SC(execveat) SC(userfaultfd) SC(membarrier) SC(mlock2)
  SC(copy_file_range) SC(preadv2) SC(pwritev2) SC(pkey_mprotect) SC(pkey_alloc) SC(pkey_free) SC(statx)
  SC(io_pgetevents) SC(rseq) SC(pidfd_send_signal) SC(io_uring_setup) SC(io_uring_enter) SC(io_uring_register)
  SC(open_tree) SC(move_mount) SC(fsopen) SC(fsconfig) SC(fsmount) SC(fspick) SC(pidfd_open) SC(clone3)
  SC(close_range) SC(openat2) SC(pidfd_getfd) SC(faccessat2) SC(process_madvise) SC(epoll_pwait2) SC(mount_setattr)
  SC(quotactl_fd) SC(landlock_create_ruleset) SC(landlock_add_rule) SC(landlock_restrict_self) SC(memfd_secret)
  SC(process_mrelease) SC(futex_waitv) SC(set_mempolicy_home_node)
};
#undef SC
#define SWEEP_MAX 512 /* beyond the highest number any x86-64 kernel has (about 470) */
#endif

static const char *syscall_name(int nr) {
#if defined(__x86_64__)
  for (size_t i = 0; i < sizeof syscall_names / sizeof *syscall_names; i++)
    if (syscall_names[i].nr == nr) return syscall_names[i].name;
  for (size_t i = 0; i < sizeof newer_syscalls / sizeof *newer_syscalls; i++)
    if (newer_syscalls[i].nr == nr) return newer_syscalls[i].name;
#endif
  (void)nr;
  return NULL;
}

/* The expectation for one name in AIRQUBE_PROBE_SYSCALLS ("name", "name:cond" or "name:enosys"); 0: not listed. */
enum { SC_DENIED = 0, SC_ALLOWED, SC_COND, SC_ENOSYS };
static int syscall_expectation(const char *list, const char *name) {
  if (!name) return SC_DENIED;
  size_t n = strlen(name);
  for (const char *p = list; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len >= n && strncmp(p, name, n) == 0 && (len == n || p[n] == ':')) {
      if (len == n) return SC_ALLOWED;
      if (strncmp(p + n, ":cond", len - n) == 0) return SC_COND;
      if (strncmp(p + n, ":enosys", len - n) == 0) return SC_ENOSYS;
      return SC_ALLOWED;
    }
    if (!end) break;
    p = end + 1;
  }
  return SC_DENIED;
}

/* Numbers no system call of the architecture has are not swept: they are no syscalls, and on some hosts a layer
   below Linux answers them (x86-64 335 raised SIGILL outside any filter on one host). Nor are calls that end, fork or
   stall the caller whatever their arguments, or flush every host disk (rows 10 and 32 exercise process creation).
   All of those are on the allowlist. */
static int sweep_skipped(const char *name) {
  static const char *skip[] = {"exit", "exit_group", "fork", "vfork", "pause", "sync"}; /* sync: the host's disks */
  if (!name) return 1;
  for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
    if (strcmp(name, skip[i]) == 0) return 1;
  return 0;
}

/* Each call gets all-ones arguments (-1: a bad descriptor, pointer, size and flag set), so the kernel rejects it
   (EBADF, EFAULT, EINVAL, ...) while a seccomp filter answers its own errno first, untouched by the arguments. The
   calls run in a child that reports before and after each one; a call that ends the child (rt_sigreturn) counts as
   reaching the kernel, and the sweep goes on in a new child. */
static void probe_43(ev_t *ev) {
#if !defined(__x86_64__)
  INCONCLUSIVE(ev, "no system call table for this architecture");
  return;
#else
  const char *list = getenv("AIRQUBE_PROBE_SYSCALLS");
  if (!list || !*list) { INCONCLUSIVE(ev, "the harness passed no allowlist (AIRQUBE_PROBE_SYSCALLS)"); return; }
  static int outcome[SWEEP_MAX]; /* 0 not run, 1 blocked, 2 reached, 3 ended the child */
  static int err[SWEEP_MAX];
  memset(outcome, 0, sizeof outcome);
  int next = 0, children = 0;
  double start = now_ms();
  while (next < SWEEP_MAX && children < 64 && now_ms() - start < 15000) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) { INCONCLUSIVE(ev, "pipe: %s", en(errno)); return; }
    children++;
    pid_t child = fork();
    if (child < 0) { close(pipefd[0]); close(pipefd[1]); INCONCLUSIVE(ev, "fork: %s", en(errno)); return; }
    if (child == 0) {
      close(pipefd[0]);
      alarm(2);
      for (int nr = next; nr < SWEEP_MAX; nr++) {
        if (sweep_skipped(syscall_name(nr))) continue;
        int rec[3] = {nr, 0, 0};
        if (write(pipefd[1], rec, sizeof rec) != sizeof rec) _exit(1);
        errno = 0;
        long r = syscall(nr, -1L, -1L, -1L, -1L, -1L, -1L);
        /* EPERM: the filter's default answer. ENOSYS: no kernel code ran (runc's filter answers it for numbers newer
           than libseccomp's table, clone3's rule too, and the kernel for a call it lacks). */
        rec[1] = r == -1 && (errno == EPERM || errno == ENOSYS) ? 1 : 2;
        rec[2] = r == -1 ? errno : 0;
        if (write(pipefd[1], rec, sizeof rec) != sizeof rec) _exit(1);
      }
      _exit(0);
    }
    close(pipefd[1]);
    int rec[3], started = -1;
    for (;;) {
      struct pollfd p = {pipefd[0], POLLIN, 0};
      if (poll(&p, 1, 3000) != 1) { kill(child, SIGKILL); break; } /* a call that blocks (alarm(-1) undid ours) */
      if (read(pipefd[0], rec, sizeof rec) != sizeof rec) break;
      if (rec[0] < 0 || rec[0] >= SWEEP_MAX) continue;
      if (rec[1] == 0) started = rec[0];
      else { outcome[rec[0]] = rec[1]; err[rec[0]] = rec[2]; started = -1; }
      next = rec[0] + 1;
    }
    close(pipefd[0]);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    if (started >= 0) { outcome[started] = 3; next = started + 1; }
    else break; /* the child went through to the end */
  }
  int swept = 0, reached = 0, blocked = 0, allowed_eperm = 0, leaks = 0;
  char leak[600] = "";
  size_t ll = 0;
  for (int nr = 0; nr < SWEEP_MAX; nr++) {
    if (!outcome[nr]) continue;
    swept++;
    const char *name = syscall_name(nr);
    int expect = syscall_expectation(list, name);
    int reach = outcome[nr] >= 2;
    if (reach) reached++; else blocked++;
    if (expect == SC_ALLOWED && !reach) allowed_eperm++;
    if ((expect == SC_DENIED || expect == SC_ENOSYS) && reach) {
      leaks++;
      if (ll < sizeof leak - 40) {
        int w = snprintf(leak + ll, sizeof leak - ll, "%s%s(%d)=%s", ll ? ", " : "", name ? name : "nr", nr,
                         outcome[nr] == 3 ? "ended the process" : en(err[nr]));
        if (w > 0) ll += (size_t)w;
      }
    }
  }
  int expected = 0;
  for (int nr = 0; nr < SWEEP_MAX; nr++) if (!sweep_skipped(syscall_name(nr))) expected++;
  if (leaks) FAIL(ev, "%d system calls outside the allowlist reached the kernel: %s", leaks, leak);
  if (swept < expected) INCONCLUSIVE(ev, "swept only %d of %d numbers in %d children", swept, expected, children);
  ev_add(ev, "swept every x86-64 system call with invalid arguments (%d calls, %d children): %d reached the kernel, all on the allowlist; %d refused before it (EPERM or ENOSYS); %d allowlisted calls answered EPERM or ENOSYS themselves",
         swept, children, reached - leaks, blocked, allowed_eperm);
#endif
}

/* ---------- rows 32-35: limits ---------- */

static void probe_32(ev_t *ev) {
  /* One fork past the declared limit settles it (the limit counts this probe and the init too): stop there, so a
     missing limit costs little (under gVisor every task holds Sentry memory, and the bomb OOM-killed the sandbox
     before it could report when it went on to four times the limit). */
  long cap = cfg.pids + 1;
  if (cap > 2048) cap = 2048;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) { INCONCLUSIVE(ev, "pipe: %s", en(errno)); return; }
  pid_t leader = fork();
  if (leader < 0) { INCONCLUSIVE(ev, "fork: %s", en(errno)); close(pipefd[0]); close(pipefd[1]); return; }
  if (leader == 0) {
    setpgid(0, 0);
    alarm(10);
    long n = 0;
    int e = 0;
    while (n < cap) {
      pid_t c = fork();
      if (c < 0) { e = errno; break; }
      if (c == 0) { alarm(15); pause(); _exit(0); }
      n++;
    }
    long msg[2] = {n, e};
    if (write(pipefd[1], msg, sizeof msg) < 0) {}
    kill(0, SIGKILL); /* the whole group, this process included */
    _exit(0);
  }
  close(pipefd[1]);
  setpgid(leader, leader);
  long msg[2] = {-1, 0};
  struct pollfd p = {pipefd[0], POLLIN, 0};
  if (poll(&p, 1, 12000) == 1 && read(pipefd[0], msg, sizeof msg) != sizeof msg) msg[0] = -1;
  close(pipefd[0]);
  kill(-leader, SIGKILL);
  waitpid(leader, NULL, 0);
  usleep(50000);
  reap_all();
  if (msg[0] < 0) { INCONCLUSIVE(ev, "the fork bomb child did not report"); return; }
  if (msg[0] >= cap) FAIL(ev, "forked %ld processes without hitting a limit (declared pids limit %ld; stopped there)", msg[0], cfg.pids);
  else if (msg[0] >= cfg.pids) FAIL(ev, "fork failed only after %ld processes (%s), above the declared limit %ld", msg[0], en((int)msg[1]), cfg.pids);
  else ev_add(ev, "fork failed with %s after %ld processes (pids limit %ld)", en((int)msg[1]), msg[0], cfg.pids);
  /* host healthy: we can fork again once the bomb is gone */
  pid_t again = fork();
  if (again == 0) _exit(0);
  if (again < 0) INCONCLUSIVE(ev, "cannot fork after the bomb was killed: %s", en(errno));
  else { waitpid(again, NULL, 0); ev_add(ev, "fork works again after cleanup"); }
}

static void probe_33(ev_t *ev) {
  unsigned long long target = cfg.memory * 2;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) { INCONCLUSIVE(ev, "pipe: %s", en(errno)); return; }
  pid_t child = fork();
  if (child < 0) { INCONCLUSIVE(ev, "fork: %s", en(errno)); return; }
  if (child == 0) {
    close(pipefd[0]);
    alarm(20);
    unsigned long long step = 4 * MiB, touched = 0;
    while (touched < target) {
      char *p = mmap(NULL, step, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) _exit(3);
      for (unsigned long long off = 0; off < step; off += 4096) p[off] = 1;
      touched += step;
      if (write(pipefd[1], &touched, sizeof touched) < 0) _exit(4);
    }
    _exit(0);
  }
  close(pipefd[1]);
  unsigned long long last = 0, v;
  double start = now_ms();
  for (;;) {
    struct pollfd p = {pipefd[0], POLLIN, 0};
    int r = poll(&p, 1, 500);
    if (r == 1) {
      ssize_t n = read(pipefd[0], &v, sizeof v);
      if (n == sizeof v) { last = v; continue; }
      if (n <= 0) break;
    }
    if (now_ms() - start > 20000) { kill(child, SIGKILL); break; }
  }
  close(pipefd[0]);
  int st = 0;
  waitpid(child, &st, 0);
  unsigned long long mib = last / MiB, lim = cfg.memory / MiB;
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
    FAIL(ev, "the child touched %llu MiB, twice the declared %llu MiB limit, and was not stopped", mib, lim);
  else if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL && last <= cfg.memory + cfg.memory / 8)
    ev_add(ev, "the child was killed (SIGKILL, OOM) after touching %llu MiB (limit %llu MiB)", mib, lim);
  else if (WIFEXITED(st) && WEXITSTATUS(st) == 3 && last <= cfg.memory + cfg.memory / 8)
    ev_add(ev, "mmap failed after %llu MiB (limit %llu MiB)", mib, lim);
  else if (last > cfg.memory + cfg.memory / 8)
    FAIL(ev, "the child touched %llu MiB, above the declared %llu MiB limit", mib, lim);
  else INCONCLUSIVE(ev, "the child ended with status 0x%x after %llu MiB", st, mib);
}

static void probe_34(ev_t *ev) {
  const char *dir = exists("/scratch") ? "/scratch" : "/tmp";
  char path[128];
  snprintf(path, sizeof path, "%s/.airqube-fill-%d", dir, getpid());
  unsigned long long cap = cfg.scratch * 2;
  if (cap > 2048 * MiB) cap = 2048 * MiB;
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) { INCONCLUSIVE(ev, "pipe: %s", en(errno)); return; }
  pid_t child = fork();
  if (child < 0) { INCONCLUSIVE(ev, "fork: %s", en(errno)); return; }
  if (child == 0) {
    close(pipefd[0]);
    alarm(20);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    unsigned long long msg[2] = {0, 0};
    if (fd < 0) { msg[1] = (unsigned long long)errno; if (write(pipefd[1], msg, sizeof msg) < 0) {} _exit(2); }
    static char chunk[1 << 20];
    memset(chunk, 0xA5, sizeof chunk);
    while (msg[0] < cap) {
      ssize_t n = write(fd, chunk, sizeof chunk);
      if (n < 0) { msg[1] = (unsigned long long)errno; break; }
      msg[0] += (unsigned long long)n;
      if (n < (ssize_t)sizeof chunk) { msg[1] = ENOSPC; break; }
      unsigned long long progress[2] = {msg[0], 0};
      if (write(pipefd[1], progress, sizeof progress) < 0) {}
    }
    if (write(pipefd[1], msg, sizeof msg) < 0) {}
    close(fd);
    _exit(0);
  }
  close(pipefd[1]);
  unsigned long long last[2] = {0, 0}, v[2];
  double start = now_ms();
  for (;;) {
    struct pollfd p = {pipefd[0], POLLIN, 0};
    int r = poll(&p, 1, 500);
    if (r == 1) {
      ssize_t n = read(pipefd[0], v, sizeof v);
      if (n == sizeof v) { last[0] = v[0]; last[1] = v[1]; continue; }
      if (n <= 0) break;
    }
    if (now_ms() - start > 20000) { kill(child, SIGKILL); break; }
  }
  close(pipefd[0]);
  int st = 0;
  waitpid(child, &st, 0);
  unlink(path);
  unsigned long long mib = last[0] / MiB, lim = cfg.scratch / MiB, slack = cfg.scratch / 16 + MiB;
  if (last[0] >= cap) FAIL(ev, "wrote %llu MiB to %s, twice the declared %llu MiB, without an error", mib, dir, lim);
  else if (last[0] > cfg.scratch + slack) FAIL(ev, "wrote %llu MiB to %s, above the declared %llu MiB", mib, dir, lim);
  else if (last[1] == ENOSPC || last[1] == EDQUOT) ev_add(ev, "write failed with %s after %llu MiB in %s (limit %llu MiB)", en((int)last[1]), mib, dir, lim);
  else if (WIFSIGNALED(st)) INCONCLUSIVE(ev, "the writer was killed by signal %d after %llu MiB, before any disk limit", WTERMSIG(st), mib);
  else INCONCLUSIVE(ev, "the writer stopped with %s after %llu MiB", en((int)last[1]), mib);
}

static int busy_child(void *arg) {
  double until = now_ms() + *(double *)arg;
  volatile unsigned long x = 0;
  while (now_ms() < until) x++;
  return 0;
}

static void probe_35(ev_t *ev) {
  char q[64], per[64];
  long quota = -2, period = 0;
  if (read_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", q, sizeof q) > 0) quota = atol(q);
  else if (read_file("/sys/fs/cgroup/cpu.max", q, sizeof q) > 0) quota = strncmp(q, "max", 3) == 0 ? -1 : atol(q);
  if (read_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", per, sizeof per) > 0) period = atol(per);
  else if (quota >= -1 && strchr(q, ' ')) period = atol(strchr(q, ' ') + 1);
  cpu_set_t set;
  int ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 1) ncpu = 1;
  if (ncpu > 8) ncpu = 8;
  double window = 1000;
  struct rusage before, after;
  getrusage(RUSAGE_CHILDREN, &before);
  double start = now_ms();
  pid_t kids[8];
  int started = 0;
  for (int i = 0; i < ncpu; i++) {
    pid_t c = fork();
    if (c == 0) { alarm(5); _exit(busy_child(&window)); }
    if (c > 0) kids[started++] = c;
  }
  for (int i = 0; i < started; i++) waitpid(kids[i], NULL, 0);
  double wall = now_ms() - start;
  getrusage(RUSAGE_CHILDREN, &after);
  double cpu = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000.0 + (after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1000.0 +
               (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000.0 + (after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1000.0;
  double ratio = wall > 0 ? cpu / wall : 0;
  double allowed = cfg.cpus * 1.3 + 0.05;
  ev_add(ev, "%d busy processes used %.2f CPUs over %.0f ms (declared %.2f)", started, ratio, wall, cfg.cpus);
  if (quota == -1) FAIL(ev, "no CPU quota in the cgroup (cfs_quota_us=-1)");
  else if (quota > 0 && period > 0) ev_add(ev, "CPU quota %.2f CPUs", (double)quota / (double)period);
  if (started < 1) INCONCLUSIVE(ev, "could not start the busy processes");
  else if (gvisor_tier()) {
    /* The Sentry counts a task's time as its own (a throttled host thread still looks busy to it): 0.93 CPUs
       "used" under a 0.50 quota the host enforced. The host's cgroup decides instead (the cpu phase). */
    ev_add(ev, "under gVisor these are the Sentry's figures; the harness judges the host's cgroup (cpu phase)");
  } else if (ratio > allowed) FAIL(ev, "not throttled: %.2f CPUs used, %.2f declared", ratio, cfg.cpus);
}

/* --phase cpu (gvisor tier): spin every CPU for CPU_SPIN_MS; the harness reads the sandbox's CPU time from the
   host's cgroup and compares it with the quota. The line says how long the spin lasted. */
#define CPU_SPIN_MS 2000.0
static void phase_cpu(void) {
  cpu_set_t set;
  int ncpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 2) ncpu = 2;
  if (ncpu > 8) ncpu = 8;
  double window = CPU_SPIN_MS, start = now_ms();
  pid_t kids[8];
  int started = 0;
  for (int i = 0; i < ncpu; i++) {
    pid_t c = fork();
    if (c == 0) { alarm(10); _exit(busy_child(&window)); }
    if (c > 0) kids[started++] = c;
  }
  for (int i = 0; i < started; i++) waitpid(kids[i], NULL, 0);
  double wall = now_ms() - start;
  char evidence[256];
  snprintf(evidence, sizeof evidence, "%d busy processes spun for %.0f ms", started, wall);
  emit_raw(35, "cpu", started > 0 ? "pass" : "inconclusive", evidence, wall);
}

/* --phase deadline: spin past the deadline; only a sandbox that does not kill us gets to print. */
static void phase_deadline(void) {
  double start = now_ms();
  double grace = cfg.deadline_ms < 2000 ? 2000 : cfg.deadline_ms;
  volatile unsigned long x = 0;
  while (now_ms() - start < cfg.deadline_ms + grace) x++;
  char evidence[256];
  snprintf(evidence, sizeof evidence, "still running %.0f ms after start, past the %ld ms deadline: no wall-clock kill",
           now_ms() - start, cfg.deadline_ms);
  emit_raw(35, "deadline", "fail", evidence, now_ms() - start);
}

/* ---------- row 36: kernel identity (VM tier) ---------- */

static void probe_36(ev_t *ev, int *skipped) {
  /* The micro-VM boots its own Linux; gVisor answers with its own kernel (the Sentry). */
  if (strcmp(cfg.tier, "microvm") != 0 && strcmp(cfg.tier, "gvisor") != 0) {
    *skipped = 1;
    ev_add(ev, "tier %s shares the host kernel by design; kernel identity is a VM-tier probe", cfg.tier);
    return;
  }
  struct utsname u;
  uname(&u);
  char boot[64] = "";
  read_file("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
  boot[strcspn(boot, "\n")] = 0;
  char mine[400];
  snprintf(mine, sizeof mine, "%s %s", u.release, u.version);
  ev_add(ev, "kernel %s, boot id %s", mine, boot);
  if (!*cfg.host_boot_id && !*cfg.host_kernel) { INCONCLUSIVE(ev, "the harness passed no host kernel identity"); return; }
  if (*cfg.host_boot_id && strcmp(boot, cfg.host_boot_id) == 0) FAIL(ev, "same boot id as the host: shared kernel");
  else if (*cfg.host_kernel && strcmp(mine, cfg.host_kernel) == 0 && !*cfg.host_boot_id)
    FAIL(ev, "same kernel release and version as the host, no boot id to tell them apart");
  else ev_add(ev, "differs from the host kernel");
}

/* ---------- row 37: residue across qubes ---------- */

static const char *residue_dirs[] = {"/scratch", "/tmp", "/output", "/dev/shm", "/dev/mqueue"};

static key_t residue_key(void) {
  unsigned long h = 5381;
  for (const char *p = cfg.nonce; *p; p++) h = h * 33 + (unsigned char)*p;
  return (key_t)(0x41510000u | (h & 0xffff));
}

/* Who this qube is on the host (container and gvisor tiers: the uid the sandbox gave it); the harness compares the
   plant and check phases' lines, so the format is fixed: "uid N, euid N, /scratch owned by N" (or "?"). */
static void residue_identity(ev_t *ev) {
  struct stat st;
  if (stat("/scratch", &st) == 0)
    ev_add(ev, "uid %u, euid %u, /scratch owned by %u", (unsigned)getuid(), (unsigned)geteuid(), (unsigned)st.st_uid);
  else ev_add(ev, "uid %u, euid %u, /scratch owned by ? (%s)", (unsigned)getuid(), (unsigned)geteuid(), en(errno));
}

static void phase_plant(void) {
  double start = now_ms();
  ev_t ev = {0};
  int planted = 0;
  residue_identity(&ev);
  for (size_t i = 0; i < 4; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s/.airqube-residue-%s", residue_dirs[i], cfg.nonce);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && write(fd, "airqube-residue\n", 16) == 16) planted++;
    else ev_add(&ev, "%s: %s", path, en(errno));
    if (fd >= 0) close(fd);
  }
  int id = shmget(residue_key(), 4096, IPC_CREAT | 0600);
  if (id >= 0) {
    char *p = shmat(id, NULL, 0);
    if (p != (void *)-1) { strcpy(p, "airqube-residue"); shmdt(p); planted++; }
  } else ev_add(&ev, "shmget: %s", en(errno));
  pid_t bg = fork();
  if (bg == 0) {
    setsid();
    prctl(PR_SET_NAME, "airqube-resid", 0, 0, 0);
    for (int fd = 0; fd < 1024; fd++) close(fd);
    sleep(20); /* bounded: never outlives 20 s even where nothing kills it */
    _exit(0);
  }
  if (bg > 0) planted++;
  ev_add(&ev, "planted %d of 6 markers (4 files, 1 SysV segment, 1 process)", planted);
  if (planted < 6) ev.inconclusive = 1;
  emit(37, "plant", &ev, start);
}

static void residue_pid(int pid, const char *comm, void *arg) {
  ev_t *ev = arg;
  if (strcmp(comm, "airqube-resid") == 0) FAIL(ev, "process %s (pid %d) left by an earlier qube", comm, pid);
}

/* The real and effective uid of a pid from /proc/<pid>/status (-1 when unreadable). */
static void pid_uids(int pid, long long *ruid, long long *euid) {
  char path[64], buf[4096];
  *ruid = *euid = -1;
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  if (read_file(path, buf, sizeof buf) <= 0) return;
  char *u = strstr(buf, "\nUid:");
  if (!u) return;
  char *end = NULL;
  *ruid = strtoll(u + 5, &end, 10);
  if (end) *euid = strtoll(end, NULL, 10);
}

typedef struct {
  ev_t *ev;
  int seen, owned;
} peer_scan_t;

/* A process of the earlier qube's uid in our view: residue, and whether we can signal it (kill(pid, 0) sends nothing). */
static void peer_pid(int pid, const char *comm, void *arg) {
  peer_scan_t *scan = arg;
  long long ruid, euid;
  scan->seen++;
  pid_uids(pid, &ruid, &euid);
  if (ruid != cfg.peer_uid && euid != cfg.peer_uid) return;
  if (scan->owned++ >= 3) return;
  int reached = kill(pid, 0) == 0;
  FAIL(scan->ev, "pid %d (%s) runs as the earlier qube's uid %lld and kill(pid, 0) %s", pid, comm, cfg.peer_uid,
       reached ? "succeeded: it can be signalled" : en(errno));
}

/* Row 37's uid part: nothing of the earlier qube's host uid is in reach (its processes, its files where qubes write). */
static void residue_peer_uid(ev_t *ev) {
  if (cfg.peer_uid < 0) { ev_add(ev, "the harness passed no earlier uid"); return; }
  if (cfg.peer_uid == (long long)getuid() || cfg.peer_uid == (long long)geteuid()) {
    ev_add(ev, "runs as the earlier qube's uid %lld: tenants share a host uid", cfg.peer_uid);
    return;
  }
  peer_scan_t scan = {ev, 0, 0};
  for_each_pid(peer_pid, &scan);
  int files = 0, owned = 0;
  for (size_t i = 0; i < sizeof residue_dirs / sizeof *residue_dirs; i++) {
    DIR *d = opendir(residue_dirs[i]);
    if (!d) continue;
    struct dirent *de;
    while ((de = readdir(d)) && files < 4096) {
      struct stat st;
      files++;
      if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || st.st_uid != (uid_t)cfg.peer_uid) continue;
      if (owned++ < 3) FAIL(ev, "%s/%s is owned by the earlier qube's uid %lld", residue_dirs[i], de->d_name, cfg.peer_uid);
    }
    closedir(d);
  }
  if (!scan.owned && !owned)
    ev_add(ev, "nothing of the earlier qube's uid %lld in reach (%d processes, %d entries looked at)", cfg.peer_uid,
           scan.seen, files);
}

static void phase_check(void) {
  double start = now_ms();
  ev_t ev = {0};
  residue_identity(&ev);
  for (size_t i = 0; i < sizeof residue_dirs / sizeof *residue_dirs; i++) {
    DIR *d = opendir(residue_dirs[i]);
    if (!d) continue;
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      /* The remote harness (RemoteSandbox) captures this very qube's stdout there, in this qube: not residue. */
      if (strcmp(residue_dirs[i], "/output") == 0 && strcmp(de->d_name, ".airqube-remote") == 0) continue;
      if (n++ < 3) FAIL(&ev, "%s/%s exists in a fresh sandbox", residue_dirs[i], de->d_name);
      if (strncmp(de->d_name, ".airqube-residue-", 17) == 0 && strcmp(de->d_name + 17, cfg.nonce) == 0) {
        char path[320];
        snprintf(path, sizeof path, "%s/%s", residue_dirs[i], de->d_name);
        unlink(path); /* our own marker: clean it up */
      }
    }
    closedir(d);
    if (!n) ev_add(&ev, "%s empty", residue_dirs[i]);
  }
  int id = shmget(residue_key(), 0, 0);
  if (id >= 0) {
    FAIL(&ev, "the earlier qube's SysV shared memory segment (key 0x%x) is visible", (unsigned)residue_key());
    shmctl(id, IPC_RMID, NULL);
  } else ev_add(&ev, "marker segment: %s", en(errno));
  char buf[8192];
  static const char *ipc[] = {"/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem"};
  for (int i = 0; i < 3; i++) {
    if (read_file(ipc[i], buf, sizeof buf) <= 0) continue;
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    if (lines > 1) FAIL(&ev, "%s lists %d objects", ipc[i], lines - 1);
  }
  for_each_pid(residue_pid, &ev);
  residue_peer_uid(&ev);
  emit(37, "check", &ev, start);
}

/* ---------- main ---------- */

static int selected(const char *only, int id) {
  if (!only) return 1;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", only);
  for (char *t = strtok(buf, ","); t; t = strtok(NULL, ","))
    if (atoi(t) == id) return 1;
  return 0;
}

typedef void (*probe_fn)(ev_t *);

int main(int argc, char **argv) {
  const char *phase = "main", *only = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--phase") == 0 && i + 1 < argc) phase = argv[++i];
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else { fprintf(stderr, "usage: probe [--phase main|deadline|plant|check|cpu|memory] [--only 1,2,...]\n"); return 2; }
  }
  read_config();
  signal(SIGPIPE, SIG_IGN);
  prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); /* orphaned bomb children come back to us to be reaped */
  if (strcmp(phase, "deadline") == 0) { phase_deadline(); return 0; }
  if (strcmp(phase, "plant") == 0) { phase_plant(); return 0; }
  if (strcmp(phase, "check") == 0) { phase_check(); return 0; }
  if (strcmp(phase, "cpu") == 0) { phase_cpu(); return 0; }
  if (strcmp(phase, "memory") == 0) {
    /* gvisor tier: the fork and memory bombs in a sandbox of their own, since the host's OOM killer ends the whole
       sandbox (the Sentry holds every task's memory: 61 tasks took about 110 MiB of the 128); the fork bomb's line
       is out before the memory bomb starts, and the harness reads the kill and the cgroup's peak for row 33. */
    ev_t fork_ev = {0};
    double start = now_ms();
    probe_32(&fork_ev);
    emit(32, "memory", &fork_ev, start);
    reap_all();
    ev_t ev = {0};
    start = now_ms();
    probe_33(&ev);
    emit(33, "memory", &ev, start);
    return 0;
  }
  if (strcmp(phase, "main") != 0) { fprintf(stderr, "unknown phase %s\n", phase); return 2; }
  read_caps();
  static const probe_fn probes[] = {
      NULL,     probe_1,  probe_2,  probe_3,  probe_4,  probe_5,  probe_6,  probe_7,  probe_8,  probe_9,
      probe_10, probe_11, probe_12, probe_13, probe_14, probe_15, probe_16, probe_17, probe_18, probe_19,
      probe_20, NULL,     probe_22, probe_23, probe_24, probe_25, probe_26, probe_27, probe_28, probe_29,
      probe_30, probe_31, probe_32, probe_33, probe_34, probe_35, NULL,     NULL,     probe_38, probe_39,
      probe_40, probe_41, NULL,     probe_43};
  for (int id = 1; id < (int)(sizeof probes / sizeof *probes); id++) {
    if (id == 37 || id == 42 || !selected(only, id)) continue; /* 37: plant and check phases; 42: the harness's */
    if ((id == 32 || id == 33) && gvisor_tier()) continue; /* their own phase there: see --phase memory */
    ev_t ev = {0};
    double start = now_ms();
    int skipped = 0;
    if (id == 21) probe_21(&ev, &skipped);
    else if (id == 36) probe_36(&ev, &skipped);
    else probes[id](&ev);
    if (skipped && !ev.failed && !ev.inconclusive) emit_raw(id, NULL, "skipped", ev.buf, now_ms() - start);
    else emit(id, NULL, &ev, start);
    reap_all();
  }
  if (!only) emit_facts();
  return 0;
}
