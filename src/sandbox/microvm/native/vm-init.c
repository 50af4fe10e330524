/*
 * vm-init: PID 1 of every Airqube micro-VM (the /init of the initramfs built from the qube's image).
 *
 * 1. Mounts /sys (read-only), loads the virtio modules the initramfs carries (virtio_ring, virtio, virtio_mmio,
 *    virtio_console: see vm-port.h), opens the channel, the virtio-serial port "airqube.0", through a private
 *    device node, mounts /proc (hidepid=2) and a private cgroup2, forbids any further module load
 *    (kernel.modules_disabled=1), then gives the qube a tmpfs /dev with null, zero, full, random and urandom only.
 * 2. Says hello ('H') on the channel and blocks until the host sends the qube (host-to-VM frames below), so a
 *    preloaded VM waits here, booted, for exactly one qube.
 * 3. Writes the inputs under /input (then read-only), mounts size-capped tmpfs at /scratch, /output and /tmp,
 *    remounts / read-only, puts the command in a cgroup with memory.max and pids.max, drops to uid/gid
 *    65534 with no_new_privs, runs it with the deadline, forwards stdout/stderr ('O'/'E', capped), drains
 *    the pipes for at most DRAIN_AFTER_EXIT_MS after the command exited and then kills every other process,
 *    reports how it ended ('X', plus 'W' "timed-out" / "oom-killed"), archives the declared outputs with the
 *    output caps of the 'L' frame (the shared walker of channel.c: 'T' frames, or one 'F' naming what broke a
 *    cap; nothing for a qube killed at its deadline, as on the container tier), sends 'Z' and powers off. Any failure of its own ends in 'W' + 'X' kind 2 + 'Z' and a power-off.
 *
 * Host-to-VM frames (same framing as channel.h: 1 byte type, u32 BE length, payload):
 *   'L' limits: 10 x u64 BE: wallTimeMs, memoryBytes, pids, scratchBytes, logBytes,
 *       outMaxFileBytes, outMaxTotalBytes, outMaxFiles, inputBytes, milliCpus (0: no CPU quota)
 *   'A' one argv element      'V' one environment entry "KEY=VALUE"     'P' one declared output path
 *   'F' start of an input file (path relative to /input)   'D' data of the current input file   'G' go
 * The host is trusted by this program; it still checks every length and path it is sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <asm/unistd.h> /* __X32_SYSCALL_BIT */
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "../../native/channel.h"
#include "vm-port.h"
#include "vm-seccomp.h" /* generated from src/sandbox/seccomp.ts by `npm run build:vm` */

#define MAX_ARGS 4096
#define MAX_ENV 4096
#define MAX_OUTPUTS 64
#define QUBE_UID 65534
#define CG "/.airqube/cg"
#define CGQ CG "/qube"
/* After the command exited, its pipes are drained for at most this long (as airqube-init.c does); then every
   other process is killed. */
#define DRAIN_AFTER_EXIT_MS 500

static int chan = -1;
static int kmsg = -1; /* the kernel log (the console), for failures before the channel is open */
/* The host ends the VM once it has read 'Z'. Powering off at once could drop frames still queued in the virtio
   ring (QEMU does not flush a throttled port at shutdown): the init waits this long for the host first. */
#define HOST_END_WAIT_MS 120000

struct limits {
  uint64_t wall_ms, memory, pids, scratch, log, out_file, out_total, out_files, input, millicpus;
};
#define LIMIT_COUNT 10

static void power_off(void) {
  if (chan >= 0) {
    struct pollfd p = {.fd = chan, .events = POLLIN};
    poll(&p, 1, HOST_END_WAIT_MS);
  }
  sync();
  reboot(RB_POWER_OFF);
  reboot(RB_AUTOBOOT);
  for (;;) pause();
}

/* Reports a failure of the init itself and powers off. */
static void fail(const char *what, int err) {
  if (chan >= 0) {
    aq_warn("vm-init: %s: %s", what, strerror(err));
    aq_exit_frame(2, err);
    aq_frame('Z', NULL, 0);
  } else if (kmsg >= 0) {
    dprintf(kmsg, "vm-init: %s: %s\n", what, strerror(err));
  }
  power_off();
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) fail(path, errno);
  ssize_t n = write(fd, text, strlen(text));
  if (n < 0) fail(path, errno);
  close(fd);
}

static void mount_or_fail(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
  mkdir(dst, 0755);
  if (mount(src, dst, type, flags, data) < 0) fail(dst, errno);
}

static void read_full(void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(chan, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("channel read", n == 0 ? EPIPE : errno);
    p += n;
    len -= (size_t)n;
  }
}

static uint64_t be64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

/* A relative path with no empty, "." or ".." component. */
static int safe_relative(const char *path) {
  if (path[0] == '\0' || path[0] == '/') return 0;
  const char *s = path;
  while (*s) {
    const char *e = strchr(s, '/');
    size_t n = e ? (size_t)(e - s) : strlen(s);
    if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.')) return 0;
    s += n;
    if (*s == '/') s++;
  }
  return 1;
}

static void mkdirs_for(char *path) {
  for (char *s = path + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(path, 0755) < 0 && errno != EEXIST) fail(path, errno);
    *s = '/';
  }
}

static void setup_dev(void) {
  mount_or_fail("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755");
  static const struct { const char *name; int minor; } nodes[] = {
      {"null", 3}, {"zero", 5}, {"full", 7}, {"random", 8}, {"urandom", 9}};
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    char path[64];
    snprintf(path, sizeof path, "/dev/%s", nodes[i].name);
    if (mknod(path, S_IFCHR | 0666, makedev(1, nodes[i].minor)) < 0) fail(path, errno);
    chmod(path, 0666);
  }
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");
}

static void open_channel(void) {
  mount_or_fail("tmpfs", AQ_VM_DEV_DIR, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=4k,mode=0700");
  kmsg = aq_vm_open_char("kmsg", 1, 11, O_WRONLY);
  const char *module = "";
  int err = aq_vm_load_modules(&module);
  if (err) {
    char what[96];
    snprintf(what, sizeof what, "load module %s", module);
    fail(what, err);
  }
  chan = aq_vm_open_port();
  err = errno;
  umount2(AQ_VM_DEV_DIR, MNT_DETACH); /* the open descriptors stay; the nodes go */
  if (chan < 0) fail("open the channel port " AQ_VM_PORT_NAME, err);
  aq_channel_init(chan);
}

/* The VM has no network device; loopback is up so that programs talking to themselves work. */
static void loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  close(fd);
}

/* Makes path read-only, as runtimes do with their "readonly paths" (absent paths are skipped). */
static void bind_read_only(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) return;
  mount_or_fail(path, path, NULL, MS_BIND | MS_REC, NULL);
  if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
    fail(path, errno);
}

/* Hides path, as runtimes do with their "masked paths": /dev/null over a file, an empty read-only tmpfs over a
 * directory (absent paths are skipped). */
static void mask(const char *path) {
  struct stat st;
  if (lstat(path, &st) < 0) return;
  if (S_ISDIR(st.st_mode)) {
    if (mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555") < 0)
      fail(path, errno);
  } else if (mount("/dev/null", path, NULL, MS_BIND, NULL) < 0) {
    fail(path, errno);
  }
}

#if defined(__x86_64__)
#define AQ_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AQ_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "vm-init: no seccomp filter for this architecture"
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define AQ_ARG0_LOW offsetof(struct seccomp_data, args[0])
#else
#define AQ_ARG0_LOW (offsetof(struct seccomp_data, args[0]) + 4)
#endif
#define AQ_RET(action) BPF_STMT(BPF_RET | BPF_K, (action))
#define AQ_ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))
#define AQ_N_ALLOWED (sizeof aq_allowed_syscalls / sizeof aq_allowed_syscalls[0])
#define AQ_N_PERSONAS (sizeof aq_personality_allowed / sizeof aq_personality_allowed[0])

/*
 * The container tier's seccomp policy (src/sandbox/seccomp.ts) as a classic BPF program: a system call of
 * another architecture (or x32) kills or is refused; clone only without namespace flags; clone3 answers ENOSYS
 * so that libc falls back to clone; personality only with the harmless personas; the allowlist; everything else
 * (mount and namespace calls, module loading, keyrings, bpf, perf_event_open, userfaultfd, ptrace,
 * process_vm_*, open_by_handle_at, syslog, io_uring_*, ...) answers EPERM. Needs no_new_privs (set before).
 */
static int install_seccomp(void) {
  static struct sock_filter prog[16 + AQ_N_PERSONAS + 2 * AQ_N_ALLOWED];
  size_t n = 0;
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AQ_AUDIT_ARCH, 1, 0);
  prog[n++] = (struct sock_filter)AQ_RET(SECCOMP_RET_KILL_PROCESS);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#ifdef __x86_64__
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, __X32_SYSCALL_BIT, 0, 1);
  prog[n++] = (struct sock_filter)AQ_RET(AQ_ERRNO(EPERM));
#endif
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, AQ_ARG0_LOW);
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, AQ_CLONE_NAMESPACE_FLAGS, 0, 1);
  prog[n++] = (struct sock_filter)AQ_RET(AQ_ERRNO(EPERM));
  prog[n++] = (struct sock_filter)AQ_RET(SECCOMP_RET_ALLOW);
#ifdef __NR_clone3
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1);
  prog[n++] = (struct sock_filter)AQ_RET(AQ_ERRNO(ENOSYS));
#endif
  prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, AQ_N_PERSONAS + 3);
  prog[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, AQ_ARG0_LOW);
  for (size_t i = 0; i < AQ_N_PERSONAS; i++)
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, aq_personality_allowed[i],
                                             (unsigned char)(AQ_N_PERSONAS - i), 0);
  prog[n++] = (struct sock_filter)AQ_RET(AQ_ERRNO(EPERM));
  prog[n++] = (struct sock_filter)AQ_RET(SECCOMP_RET_ALLOW);
  for (size_t i = 0; i < AQ_N_ALLOWED; i++) {
    prog[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)aq_allowed_syscalls[i], 0, 1);
    prog[n++] = (struct sock_filter)AQ_RET(SECCOMP_RET_ALLOW);
  }
  prog[n++] = (struct sock_filter)AQ_RET(AQ_ERRNO(EPERM));
  struct sock_fprog fprog = {.len = (unsigned short)n, .filter = prog};
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog, 0, 0);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t cg_oom_kills(void) {
  char buf[512];
  int fd = open(CGQ "/memory.events", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  char *p = strstr(buf, "oom_kill ");
  return p ? strtoull(p + 9, NULL, 10) : 0;
}

int main(void) {
  static struct limits lim;
  static char *args[MAX_ARGS + 1], *envs[MAX_ENV + 1], *outputs[MAX_OUTPUTS];
  int nargs = 0, nenvs = 0, noutputs = 0, have_limits = 0, input_fd = -1;
  static unsigned char frame[AQ_FRAME_MAX + 1];

  prctl(PR_SET_DUMPABLE, 0);
  umask(022);
  mkdir("/.airqube", 0700);
  chmod("/.airqube", 0700);
  mount_or_fail("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
  open_channel();
  mount_or_fail("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2");
  write_file("/proc/sys/kernel/modules_disabled", "1"); /* the channel's modules were the last ones */
  if (kmsg >= 0) close(kmsg);
  kmsg = -1;
  mount_or_fail("cgroup2", CG, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  setup_dev();
  loopback_up();
  aq_frame('H', AQ_HELLO, strlen(AQ_HELLO));

  /* Wait (booted, idle) for the one qube this VM will ever serve. */
  for (;;) {
    unsigned char h[5];
    read_full(h, sizeof h);
    uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
    if (len > AQ_FRAME_MAX) fail("oversized host frame", EMSGSIZE);
    read_full(frame, len);
    frame[len] = '\0';
    char type = (char)h[0];
    if (type == 'G') break;
    if (type == 'D') {
      if (input_fd < 0) fail("input data without a file", EPROTO);
      for (uint32_t off = 0; off < len;) {
        ssize_t n = write(input_fd, frame + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("write input", errno);
        off += (uint32_t)n;
      }
      continue;
    }
    if (type == 'L') {
      if (len != 8 * LIMIT_COUNT) fail("bad limits frame", EPROTO);
      uint64_t *v = (uint64_t *)&lim;
      for (int i = 0; i < LIMIT_COUNT; i++) v[i] = be64(frame + 8 * i);
      char opts[96];
      snprintf(opts, sizeof opts, "size=%llu,mode=0755", (unsigned long long)(lim.input + 65536));
      mount_or_fail("tmpfs", "/input", "tmpfs", MS_NOSUID | MS_NODEV, opts);
      have_limits = 1;
      continue;
    }
    if (memchr(frame, '\0', len)) fail("NUL in host frame", EPROTO);
    char *text = strdup((char *)frame);
    if (!text) fail("strdup", ENOMEM);
    if (type == 'A' && nargs < MAX_ARGS) args[nargs++] = text;
    else if (type == 'V' && nenvs < MAX_ENV) envs[nenvs++] = text;
    else if (type == 'P' && noutputs < MAX_OUTPUTS && text[0] == '/') outputs[noutputs++] = text;
    else if (type == 'F' && have_limits && safe_relative(text)) {
      if (input_fd >= 0) close(input_fd);
      char path[4200];
      snprintf(path, sizeof path, "/input/%s", text);
      mkdirs_for(path);
      input_fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
      if (input_fd < 0) fail(path, errno);
      free(text);
    } else fail("unexpected host frame", EPROTO);
  }
  if (input_fd >= 0) close(input_fd);
  if (!have_limits || nargs == 0) fail("qube without limits or command", EPROTO);
  args[nargs] = NULL;
  envs[nenvs] = NULL;

  /* The qube's file system: read-only root and inputs, size-capped scratch. */
  char opts[96];
  mount(NULL, "/input", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
  snprintf(opts, sizeof opts, "size=%llu,mode=1777,uid=%d,gid=%d", (unsigned long long)lim.scratch, QUBE_UID, QUBE_UID);
  mount_or_fail("tmpfs", "/scratch", "tmpfs", MS_NOSUID | MS_NODEV, opts);
  mount_or_fail("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts);
  mount_or_fail("tmpfs", "/output", "tmpfs", MS_NOSUID | MS_NODEV, opts);
  mount_or_fail("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts);
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0) fail("remount / read-only", errno);
  /* Kernel knobs the qube must not reach or use: no user namespaces, /proc/sys and sysrq read-only. */
  write_file("/proc/sys/user/max_user_namespaces", "0");
  mount_or_fail("/proc/sys", "/proc/sys", NULL, MS_BIND, NULL);
  mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  mount_or_fail("/proc/sysrq-trigger", "/proc/sysrq-trigger", NULL, MS_BIND, NULL);
  mount(NULL, "/proc/sysrq-trigger", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL);
  /* The rest of runc's read-only and masked paths. */
  static const char *const read_only[] = {"/proc/bus", "/proc/fs", "/proc/irq"};
  for (size_t i = 0; i < sizeof read_only / sizeof read_only[0]; i++) bind_read_only(read_only[i]);
  static const char *const masked[] = {"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                                       "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                       "/proc/sched_debug", "/proc/scsi", "/sys/firmware"};
  for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) mask(masked[i]);

  /* Limits: a cgroup for the command and everything it starts. */
  write_file(CG "/cgroup.subtree_control", "+cpu +memory +pids");
  if (mkdir(CGQ, 0755) < 0) fail(CGQ, errno);
  char num[32];
  snprintf(num, sizeof num, "%llu", (unsigned long long)lim.memory);
  write_file(CGQ "/memory.max", num);
  snprintf(num, sizeof num, "%llu", (unsigned long long)lim.pids);
  write_file(CGQ "/pids.max", num);
  if (lim.millicpus > 0) { /* a CPU quota per 100 ms period (the kernel's floor is 1 ms) */
    uint64_t quota = lim.millicpus * 100 < 1000 ? 1000 : lim.millicpus * 100;
    snprintf(num, sizeof num, "%llu 100000", (unsigned long long)quota);
    write_file(CGQ "/cpu.max", num);
  }

  int out[2], err[2], status_pipe[2];
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0)
    fail("pipe", errno);
  int64_t started = now_ms();
  pid_t child = fork();
  if (child < 0) fail("fork", errno);
  if (child == 0) {
    int e = 0;
    int cg = open(CGQ "/cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (cg < 0 || write(cg, "0", 1) != 1) e = errno ? errno : EIO;
    /* A private mount namespace without the init's cgroup2 mount: the qube sees only its own file system. */
    if (!e && (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
               umount2(CG, MNT_DETACH) < 0))
      e = errno;
    if (!e) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, 0);
      struct rlimit core = {0, 0};
      setrlimit(RLIMIT_CORE, &core);
      signal(SIGPIPE, SIG_DFL);
      setsid();
      for (int cap = 0; cap <= 63; cap++) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); /* no capability, ever */
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
      if (chdir("/scratch") < 0 || setgroups(0, NULL) < 0 || setgid(QUBE_UID) < 0 || setuid(QUBE_UID) < 0 ||
          prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || install_seccomp() < 0)
        e = errno;
    }
    if (!e) {
      extern char **environ;
      environ = envs;
      if (!getenv("PATH")) putenv("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
      execvp(args[0], args);
      e = errno;
    }
    if (write(status_pipe[1], &e, sizeof e) < 0) _exit(127);
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  close(status_pipe[1]);
  int exec_errno = 0;
  if (read(status_pipe[0], &exec_errno, sizeof exec_errno) != sizeof exec_errno) exec_errno = 0;
  close(status_pipe[0]);

  struct pollfd fds[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
  uint64_t sent[2] = {0, 0};
  int open_fds = 2, exited = 0, wstatus = 0, timed_out = 0, killed_others = 0;
  int64_t deadline = started + (int64_t)lim.wall_ms, exited_at = 0, killed_at = 0;
  while (open_fds > 0) {
    int64_t now = now_ms(), left = deadline - now;
    if (!timed_out && !killed_others && left <= 0) {
      timed_out = 1;
      write_file(CGQ "/cgroup.kill", "1");
    }
    if (exited && !killed_others && now - exited_at >= DRAIN_AFTER_EXIT_MS) {
      /* The command is done: whatever still holds its pipes (a background child) must not keep the qube alive
         or change its outputs. Kill it, as the container tier's init does, then read what is left. */
      write_file(CGQ "/cgroup.kill", "1");
      killed_others = 1;
      killed_at = now;
    }
    /* Every writer is dead once killed: the pipes close at once. Never wait on them for more than a moment. */
    if ((killed_others || timed_out) && now - (killed_others ? killed_at : deadline) > 2000) break;
    int wait = exited || timed_out ? 50 : (left < 200 ? (int)(left > 0 ? left : 0) : 200);
    int ready = poll(fds, 2, wait);
    if (ready < 0 && errno != EINTR) break;
    for (int k = 0; k < 2; k++) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[k].fd, frame, AQ_FRAME_MAX);
      if (n > 0) {
        /* Forward up to log+1 bytes so that the host can tell truncation; drain the rest. */
        uint64_t room = lim.log + 1 > sent[k] ? lim.log + 1 - sent[k] : 0;
        size_t part = (uint64_t)n < room ? (size_t)n : (size_t)room;
        if (part > 0) aq_frame(k == 0 ? 'O' : 'E', frame, part);
        sent[k] += part;
      } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        close(fds[k].fd);
        fds[k].fd = -1;
        open_fds--;
      }
    }
    pid_t pid;
    int st;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) /* as PID 1, reap every orphan */
      if (pid == child) {
        exited = 1;
        wstatus = st;
        exited_at = now_ms();
      }
  }
  write_file(CGQ "/cgroup.kill", "1");
  while (!exited) {
    int st;
    pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0 && errno != EINTR) break;
    if (pid == child) {
      exited = 1;
      wstatus = st;
    }
  }
  /* Nothing but the init runs while the outputs are read: they are final from here on. */
  aq_kill_others(child);

  if (timed_out) aq_frame('W', "timed-out", 9);
  if (cg_oom_kills() > 0) aq_frame('W', "oom-killed", 10);
  if (exec_errno != 0) {
    aq_warn("cannot run %s: %s", args[0], strerror(exec_errno));
    aq_exit_frame(2, exec_errno);
  } else if (WIFSIGNALED(wstatus)) {
    aq_exit_frame(1, WTERMSIG(wstatus));
  } else {
    aq_exit_frame(0, WEXITSTATUS(wstatus));
  }
  /* A qube killed at its deadline has no outputs, on either tier (the container tier's host kills the container
     before its init could send any): the same qube gives the same result wherever it ran. */
  if (!timed_out) {
    struct aq_output_limits out_limits = {lim.out_files, lim.out_file, lim.out_total};
    aq_archive_outputs(outputs, noutputs, &out_limits);
  }
  aq_frame('Z', NULL, 0);
  power_off();
  return 0;
}
