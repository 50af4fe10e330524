/*
 * The micro-VM's channel device, shared by vm-init.c and the hostile test init: a virtio-serial port
 * (virtio-console over virtio-mmio, described to the guest by the microvm machine's ACPI tables) named
 * AQ_VM_PORT_NAME. The Debian cloud kernel has virtio, virtio_mmio and virtio_console as modules: the host puts
 * them in the initramfs under /.airqube/modules (src/sandbox/microvm/rootfs.ts), and PID 1 loads them here,
 * before anything of the qube runs, then forbids any further module load (kernel.modules_disabled, set by the
 * caller once /proc is mounted). A module the kernel has built in is simply absent from the initramfs.
 */
#ifndef AQ_VM_PORT_H
#define AQ_VM_PORT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define AQ_VM_PORT_NAME "airqube.0"
#define AQ_VM_MODULE_DIR "/.airqube/modules"
/* The port appears asynchronously (the device announces it after the driver is ready): wait this long at most. */
#define AQ_VM_PORT_WAIT_MS 30000

/* Dependency order. */
static const char *const aq_vm_modules[] = {"virtio_ring", "virtio", "virtio_mmio", "virtio_console"};

/* Loads the channel's modules; returns 0, or an errno with *failed naming the module. */
static int aq_vm_load_modules(const char **failed) {
  for (size_t i = 0; i < sizeof aq_vm_modules / sizeof aq_vm_modules[0]; i++) {
    char path[128];
    snprintf(path, sizeof path, AQ_VM_MODULE_DIR "/%s.ko", aq_vm_modules[i]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue; /* built into this kernel */
      *failed = aq_vm_modules[i];
      return errno;
    }
    long rc = syscall(SYS_finit_module, fd, "", 0);
    int err = errno;
    close(fd);
    if (rc < 0 && err != EEXIST) {
      *failed = aq_vm_modules[i];
      return err;
    }
  }
  return 0;
}

static int aq_vm_read_small(const char *path, char *buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, size - 1);
  close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return (int)n;
}

/* Opens a character device through a node of our own in AQ_VM_DEV_DIR, a private tmpfs that the caller mounts
 * before and detaches after (an unlinked node on the root file system would keep it from going read-only). */
#define AQ_VM_DEV_DIR "/.airqube/dev"
static int aq_vm_open_char(const char *name, unsigned maj, unsigned min, int flags) {
  char node[128];
  snprintf(node, sizeof node, AQ_VM_DEV_DIR "/%s", name);
  if (mknod(node, S_IFCHR | 0600, makedev(maj, min)) < 0 && errno != EEXIST) return -1;
  return open(node, flags | O_CLOEXEC | O_NOCTTY);
}

/* Waits for the port named AQ_VM_PORT_NAME under /sys (mounted) and opens it read-write; -1 with errno. */
static int aq_vm_open_port(void) {
  struct timespec step = {0, 2 * 1000 * 1000};
  for (int waited = 0; waited < AQ_VM_PORT_WAIT_MS; waited += 2) {
    DIR *dir = opendir("/sys/class/virtio-ports");
    struct dirent *entry;
    while (dir && (entry = readdir(dir)) != NULL) {
      if (strncmp(entry->d_name, "vport", 5) != 0) continue;
      char path[320], text[64];
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", entry->d_name);
      if (aq_vm_read_small(path, text, sizeof text) < 0 || strcmp(text, AQ_VM_PORT_NAME "\n") != 0) continue;
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/dev", entry->d_name);
      unsigned maj, min;
      if (aq_vm_read_small(path, text, sizeof text) < 0 || sscanf(text, "%u:%u", &maj, &min) != 2) continue;
      closedir(dir);
      return aq_vm_open_char("channel", maj, min, O_RDWR);
    }
    if (dir) closedir(dir);
    nanosleep(&step, NULL);
  }
  errno = ETIMEDOUT;
  return -1;
}

#endif
