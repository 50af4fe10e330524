/**
 * Airqube's own seccomp profile for the container tier, in Docker's JSON profile format.
 *
 * It is an allowlist (default action: EPERM) of the system calls an ordinary Linux program needs, the same
 * shape as Docker's default profile, and it leaves out every call of ../shared/design/PROBES.md rows 7-16:
 * mount and namespace calls, module loading, keyrings, bpf, perf_event_open, userfaultfd, ptrace and
 * process_vm_*, open_by_handle_at, syslog, and the whole io_uring family (Docker 20.10's default profile lets
 * io_uring through; newer Docker blocks it, moby PR 46762). `clone` is allowed only without namespace flags,
 * `clone3` answers ENOSYS so that libc falls back to `clone`, and `personality` only with the harmless personas.
 */

/** System calls allowed unconditionally (x86-64 and arm64 names; unknown names are ignored by libseccomp). */
// biome-ignore format: a packed list reads better than one name per line
export const ALLOWED_SYSCALLS: readonly string[] = [
  "accept", "accept4", "access", "alarm", "arch_prctl", "bind", "brk", "capget", "capset", "chdir", "chmod",
  "chown", "clock_getres", "clock_gettime", "clock_nanosleep", "close", "close_range", "connect",
  "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
  "epoll_pwait", "epoll_pwait2", "epoll_wait", "eventfd", "eventfd2", "execve", "execveat", "exit",
  "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark", "fchdir", "fchmod",
  "fchmodat", "fchown", "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
  "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex", "futex_waitv", "futimesat",
  "get_robust_list", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups",
  "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
  "getresgid", "getresuid", "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid",
  "gettimeofday", "getuid", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
  "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents", "io_pgetevents", "io_setup", "io_submit",
  "ioctl", "ioprio_get", "ioprio_set", "kill", "landlock_add_rule", "landlock_create_ruleset",
  "landlock_restrict_self", "lchown", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr",
  "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise", "membarrier", "memfd_create", "mincore", "mkdir",
  "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr",
  "mq_notify", "mq_open", "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "msgctl", "msgget",
  "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "open", "openat",
  "openat2", "pause", "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "poll", "ppoll",
  "prctl", "pread64", "preadv", "preadv2", "prlimit64", "pselect6", "pwrite64", "pwritev", "pwritev2", "read",
  "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages",
  "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
  "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
  "rt_tgsigqueueinfo", "sched_get_priority_max", "sched_get_priority_min", "sched_getaffinity",
  "sched_getattr", "sched_getparam", "sched_getscheduler", "sched_rr_get_interval", "sched_setaffinity",
  "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
  "semget", "semop", "semtimedop", "send", "sendfile", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
  "set_tid_address", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer", "setpgid", "setpriority",
  "setregid", "setresgid", "setresuid", "setreuid", "setrlimit", "setsid", "setsockopt", "setuid", "setxattr",
  "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "socket",
  "socketpair", "splice", "stat", "statfs", "statx", "symlink", "symlinkat", "sync", "sync_file_range",
  "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
  "timer_gettime", "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
  "truncate", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimes", "vfork", "vmsplice",
  "wait4", "waitid", "write", "writev",
];

/**
 * Calls Airqube refuses on purpose (never in the allowlist). Listed so that a test can pin that none of them
 * slipped into {@link ALLOWED_SYSCALLS}, and so the escape suite knows what to expect.
 */
// biome-ignore format: a packed list reads better than one name per line
export const DENIED_SYSCALLS: readonly string[] = [
  "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
  "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module",
  "io_uring_enter", "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load",
  "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount", "move_pages",
  "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
  "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot",
  "request_key", "set_mempolicy", "setdomainname", "sethostname", "setns", "settimeofday", "swapoff", "swapon",
  "syslog", "sysfs", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup", "vm86",
  "vm86old",
];

/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. */
export const CLONE_NAMESPACE_FLAGS = 0x7e020000;

interface SeccompArg {
  index: number;
  value: number;
  valueTwo: number;
  op: "SCMP_CMP_EQ" | "SCMP_CMP_MASKED_EQ";
}

interface SeccompRule {
  names: string[];
  action: "SCMP_ACT_ALLOW" | "SCMP_ACT_ERRNO";
  errnoRet?: number;
  args?: SeccompArg[];
}

/** Docker's seccomp profile JSON shape (the subset Airqube uses). */
export interface SeccompProfile {
  defaultAction: "SCMP_ACT_ERRNO";
  defaultErrnoRet: number;
  architectures: string[];
  syscalls: SeccompRule[];
}

/** The personas `personality` may set: PER_LINUX, PER_LINUX32, UNAME26 (and with PER_LINUX32), the query value. */
export const PERSONALITY_ALLOWED: readonly number[] = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

const EPERM = 1;
const ENOSYS = 38;

/**
 * Returns Airqube's seccomp profile. Pure: the same object every time.
 *
 * @example
 * const hostConfig = { SecurityOpt: [`seccomp=${JSON.stringify(seccompProfile())}`] };
 */
export function seccompProfile(): SeccompProfile {
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: EPERM,
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    syscalls: [
      { names: [...ALLOWED_SYSCALLS], action: "SCMP_ACT_ALLOW" },
      // clone without any namespace flag (a thread or a plain fork).
      {
        names: ["clone"],
        action: "SCMP_ACT_ALLOW",
        args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
      },
      // clone3 takes its flags in a struct seccomp cannot inspect: ENOSYS makes libc fall back to clone.
      { names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS },
      // personality: only PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000) and the query value 0xffffffff.
      ...PERSONALITY_ALLOWED.map(
        (value): SeccompRule => ({
          names: ["personality"],
          action: "SCMP_ACT_ALLOW",
          args: [{ index: 0, value, valueTwo: 0, op: "SCMP_CMP_EQ" }],
        }),
      ),
    ],
  };
}
