/*
 * airqube-init: PID 1 of every container qube. Bind-mounted read-only at /.airqube-init.
 *   /.airqube-init [-l FILES:FILEBYTES:TOTALBYTES] [-o /output/path]... -- COMMAND [ARGS...]
 *   /.airqube-init --await-qube [-l FILES:FILEBYTES:TOTALBYTES]
 * The second form is a warm container's: created and started ahead of need, the init blocks on stdin until the
 * host sends exactly one qube frame (argv, environment, declared outputs; see read_qube below), then runs it
 * exactly as the first form would. Stdin is read once and closed: a warm container serves one qube.
 * Runs COMMAND with stdout and stderr on pipes, forwards both as frames, reports how it ended, then archives the
 * declared outputs, all on one framed channel on stdout (see channel.h). It never reads anything from the qube
 * but its output bytes and files, and marks itself non-dumpable so the qube (same uid) cannot reach its
 * descriptors through /proc and forge frames.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channel.h"

#define MAX_OUTPUTS 64
#define QUBE_MAGIC "AQQ1"
#define QUBE_MAX (256 * 1024) /* bytes of one qube frame's payload */
#define QUBE_MAX_ARGS 4096
#define QUBE_MAX_ENV 4096

static int read_exact(int fd, void *buf, size_t len) {
  char *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/*
 * Reads the one qube frame from stdin: "AQQ1", u32 BE payload length (at most QUBE_MAX), then the payload:
 * u32 BE argc (1..QUBE_MAX_ARGS), envc (..QUBE_MAX_ENV), outc (..MAX_OUTPUTS), followed by exactly
 * argc + envc + outc NUL-terminated strings and nothing else. argv[0] is non-empty, each env entry is
 * KEY=VALUE with a non-empty key, each output path is absolute. Environment entries are added to the init's
 * own (the image's), as Docker adds a container's Env to its image's. Returns the index of argv in *argvp.
 */
static const char *read_qube(char ***argvp, char **outputs, int *noutputs) {
  static unsigned char buf[QUBE_MAX];
  static char *args[QUBE_MAX_ARGS + 1];
  unsigned char header[8];
  if (read_exact(0, header, sizeof header) < 0) return "stdin closed before the qube frame";
  if (memcmp(header, QUBE_MAGIC, 4) != 0) return "bad qube frame magic";
  uint32_t len = be32(header + 4);
  if (len < 12 || len > QUBE_MAX) return "qube frame length out of bounds";
  if (read_exact(0, buf, len) < 0) return "qube frame truncated";
  uint32_t argc = be32(buf), envc = be32(buf + 4), outc = be32(buf + 8);
  if (argc < 1 || argc > QUBE_MAX_ARGS || envc > QUBE_MAX_ENV || outc > MAX_OUTPUTS) return "qube frame counts out of bounds";
  size_t pos = 12;
  uint32_t total = argc + envc + outc;
  for (uint32_t k = 0; k < total; k++) {
    if (pos >= len) return "qube frame has too few strings";
    char *s = (char *)buf + pos;
    char *end = memchr(s, '\0', len - pos);
    if (!end) return "qube frame string not terminated";
    if (k < argc) {
      if (k == 0 && end == s) return "empty command";
      args[k] = s;
    } else if (k < argc + envc) {
      char *eq = strchr(s, '=');
      if (!eq || eq == s) return "bad environment entry";
      if (putenv(s) != 0) return "cannot set the environment";
    } else {
      if (s[0] != '/') return "output path not absolute";
      outputs[(*noutputs)++] = s;
    }
    pos = (size_t)(end - (char *)buf) + 1;
  }
  if (pos != len) return "qube frame has trailing bytes";
  args[argc] = NULL;
  *argvp = args;
  return NULL;
}

/* Defaults when the host passes no -l (the host's own DEFAULT_LIMITS.output). */
static struct aq_output_limits limits = {1000, 64ULL << 20, 256ULL << 20};

static int refuse(const char *problem) {
  aq_warn("airqube-init: %s", problem);
  aq_exit_frame(2, EINVAL);
  aq_frame('Z', NULL, 0);
  return 125;
}

/*
 * The engine's runtime copies the image directory's mode onto a tmpfs mounted over it (runc chmods the mount
 * point to what the image had, e.g. 0755), overriding the declared mode=1777. Put the declared mode back on
 * each scratch tmpfs this uid owns (the mount's uid= option makes it the qube's), before the qube runs.
 */
static void restore_scratch_modes(void) {
  static const char *dirs[] = {"/scratch", "/output", "/tmp"};
  for (size_t k = 0; k < sizeof dirs / sizeof *dirs; k++) {
    struct stat st;
    struct statfs sf;
    if (lstat(dirs[k], &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) continue;
    if (statfs(dirs[k], &sf) != 0 || sf.f_type != TMPFS_MAGIC) continue;
    if ((st.st_mode & 07777) != 01777 && chmod(dirs[k], 01777) != 0)
      aq_warn("airqube-init: chmod %s: %s", dirs[k], strerror(errno));
  }
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* After the command exited, its pipes are drained for at most this long; then every other process is killed. */
#define DRAIN_AFTER_EXIT_MS 500

int main(int argc, char **argv) {
  char *outputs[MAX_OUTPUTS];
  int noutputs = 0, i = 1, await_qube = 0;
  prctl(PR_SET_DUMPABLE, 0);
  aq_channel_init(1);
  /* Options: [--await-qube] [-l FILES:FILEBYTES:TOTALBYTES] [-o PATH]... [-- COMMAND ARGS...] */
  const char *problem = NULL;
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (strcmp(argv[i], "--await-qube") == 0) { await_qube = 1; continue; }
    if (strcmp(argv[i], "-l") == 0 && i + 1 < argc) {
      if (aq_parse_limits(argv[++i], &limits) < 0) problem = "bad output limits";
      continue;
    }
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc && noutputs < MAX_OUTPUTS) { outputs[noutputs++] = argv[++i]; continue; }
    problem = "bad argument";
    break;
  }
  if (await_qube) {
    /* Nothing is written before the qube frame arrives: the host attaches to stdout when it sends it. */
    char **qube_argv = NULL;
    noutputs = 0;
    const char *frame_problem = read_qube(&qube_argv, outputs, &noutputs);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) { dup2(devnull, 0); if (devnull != 0) close(devnull); } /* stdin is read once */
    aq_frame('H', AQ_HELLO, strlen(AQ_HELLO));
    if (problem) return refuse(problem);
    if (frame_problem) return refuse(frame_problem);
    argv = qube_argv;
    i = 0;
  } else {
    aq_frame('H', AQ_HELLO, strlen(AQ_HELLO));
    if (problem) return refuse(problem);
    if (i >= argc) return refuse("no command");
  }

  restore_scratch_modes();
  int out[2], err[2], status_pipe[2];
  if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 || pipe2(status_pipe, O_CLOEXEC) < 0) {
    aq_warn("airqube-init: pipe: %s", strerror(errno));
    aq_exit_frame(2, errno);
    aq_frame('Z', NULL, 0);
    return 125;
  }
  pid_t child = fork();
  if (child < 0) {
    aq_warn("airqube-init: fork: %s", strerror(errno));
    aq_exit_frame(2, errno);
    aq_frame('Z', NULL, 0);
    return 125;
  }
  if (child == 0) {
    setpgid(0, 0); /* its own process group: see aq_kill_others */
    dup2(out[1], 1);
    dup2(err[1], 2);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    signal(SIGPIPE, SIG_DFL);
    execvp(argv[i], &argv[i]);
    int e = errno;
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
  static char buf[AQ_FRAME_MAX];
  int open_fds = 2, exited = 0, killed_others = 0, wstatus = 0;
  long long exited_at = 0;
  while (open_fds > 0) {
    if (exited && !killed_others && now_ms() - exited_at >= DRAIN_AFTER_EXIT_MS) {
      /* The command is done; whatever still holds its pipes (a background child) must not keep the qube
         alive or change its outputs: kill it, then read what is left until the pipes close. */
      aq_kill_others(child);
      killed_others = 1;
    }
    int ready = poll(fds, 2, exited ? 50 : 200);
    if (ready < 0 && errno != EINTR) break;
    for (int k = 0; k < 2; k++) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[k].fd, buf, sizeof buf);
      if (n > 0) {
        aq_frame(k == 0 ? 'O' : 'E', buf, (size_t)n);
      } else if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
        close(fds[k].fd);
        fds[k].fd = -1;
        open_fds--;
      }
    }
    /* As PID 1, reap every orphan; remember the command's own status. */
    pid_t pid;
    int st;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
      if (pid == child) { exited = 1; wstatus = st; exited_at = now_ms(); }
  }
  while (!exited) {
    int st;
    pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0 && errno != EINTR) break;
    if (pid == child) { exited = 1; wstatus = st; }
  }
  /* Nothing but the init may run while the outputs are read: they are final from here on. */
  if (!killed_others) aq_kill_others(child);

  int code;
  if (exec_errno != 0) {
    aq_warn("cannot run %s: %s", argv[i], strerror(exec_errno));
    aq_exit_frame(2, exec_errno);
    code = 127;
  } else if (WIFSIGNALED(wstatus)) {
    aq_exit_frame(1, WTERMSIG(wstatus));
    code = 128 + WTERMSIG(wstatus);
  } else {
    aq_exit_frame(0, WEXITSTATUS(wstatus));
    code = WEXITSTATUS(wstatus);
  }
  aq_archive_outputs(outputs, noutputs, &limits);
  aq_frame('Z', NULL, 0);
  return code;
}
