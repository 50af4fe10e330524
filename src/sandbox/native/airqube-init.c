/*
 * airqube-init: PID 1 of every container qube. Bind-mounted read-only at /.airqube-init.
 *   /.airqube-init [-o /output/path]... -- COMMAND [ARGS...]
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
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "channel.h"

#define MAX_OUTPUTS 64

int main(int argc, char **argv) {
  char *outputs[MAX_OUTPUTS];
  int noutputs = 0, i = 1;
  prctl(PR_SET_DUMPABLE, 0);
  aq_channel_init(1);
  aq_frame('H', AQ_HELLO, strlen(AQ_HELLO));
  for (; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) { i++; break; }
    if (strcmp(argv[i], "-o") == 0 && i + 1 < argc && noutputs < MAX_OUTPUTS) { outputs[noutputs++] = argv[++i]; continue; }
    aq_warn("airqube-init: bad argument %s", argv[i]);
    aq_exit_frame(2, EINVAL);
    aq_frame('Z', NULL, 0);
    return 125;
  }
  if (i >= argc) {
    aq_warn("airqube-init: no command");
    aq_exit_frame(2, EINVAL);
    aq_frame('Z', NULL, 0);
    return 125;
  }

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
  int open_fds = 2, exited = 0, wstatus = 0, quiet_rounds = 0;
  while (open_fds > 0) {
    int ready = poll(fds, 2, exited ? 50 : 200);
    if (ready < 0 && errno != EINTR) break;
    if (ready == 0 && exited && ++quiet_rounds >= 4) break; /* a background process keeps a pipe open: stop */
    for (int k = 0; k < 2; k++) {
      if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = read(fds[k].fd, buf, sizeof buf);
      if (n > 0) {
        aq_frame(k == 0 ? 'O' : 'E', buf, (size_t)n);
        quiet_rounds = 0;
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
      if (pid == child) { exited = 1; wstatus = st; }
  }
  while (!exited) {
    int st;
    pid_t pid = waitpid(-1, &st, 0);
    if (pid < 0 && errno != EINTR) break;
    if (pid == child) { exited = 1; wstatus = st; }
  }

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
  aq_archive_outputs(outputs, noutputs);
  aq_frame('Z', NULL, 0);
  return code;
}
