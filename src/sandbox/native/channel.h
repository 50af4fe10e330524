/*
 * The Airqube init channel: the only thing that crosses a sandbox boundary on its way out.
 * A stream of frames: 1 byte type, 4 bytes big-endian payload length (at most AQ_FRAME_MAX), payload.
 *   'H' hello "airqube-init/1"   'O' stdout bytes   'E' stderr bytes
 *   'X' exit: kind (0 exited, 1 signaled, 2 exec failed) + int32 BE code
 *   'T' a chunk of a pax/ustar archive of the declared outputs   'W' warning text   'Z' end of stream
 *   'F' the outputs could not be sent: u8 failure code (AQ_OUT_*) + UTF-8 detail naming the file; no 'T' follows
 * The host treats every byte as hostile: src/sandbox/channel.ts validates it.
 */
#ifndef AIRQUBE_CHANNEL_H
#define AIRQUBE_CHANNEL_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AQ_FRAME_MAX 65536
#define AQ_HELLO "airqube-init/1"
/* The unpacker's own bounds (src/sandbox/unpack.ts): archive paths of at most this many components and bytes. */
#define AQ_MAX_DEPTH 32
#define AQ_MAX_PATH 1024

/* Output failure codes carried by an 'F' frame (pinned by src/sandbox/channel.ts). */
enum {
  AQ_OUT_OK = 0,
  AQ_OUT_TOO_MANY_FILES = 1,
  AQ_OUT_FILE_TOO_LARGE = 2,
  AQ_OUT_TOO_LARGE = 3,
  AQ_OUT_PATH_TOO_LONG = 4,
  AQ_OUT_TOO_DEEP = 5,
  AQ_OUT_UNREADABLE = 6,
  AQ_OUT_UNSUPPORTED_TYPE = 7,
  AQ_OUT_BAD_NAME = 8, /* control characters, a backslash or bytes that are not UTF-8: the host could not keep it */
};

/* Caps on the declared outputs, checked before any archive byte is sent (the host checks them again). */
struct aq_output_limits {
  unsigned long long max_files;      /* regular files; directories are capped separately at the same number */
  unsigned long long max_file_bytes; /* apparent size of one file (a sparse file counts in full) */
  unsigned long long max_total_bytes;
};

/* Sets the file descriptor frames are written to (default 1). */
void aq_channel_init(int fd);
/* Writes one frame, splitting payloads above AQ_FRAME_MAX; exits the process if the channel is gone. */
void aq_frame(char type, const void *payload, size_t len);
/* Writes a printf-style 'W' frame. */
void aq_warn(const char *fmt, ...);
/* Writes the 'X' frame. */
void aq_exit_frame(int kind, int32_t code);
/* Parses "FILES:FILEBYTES:TOTALBYTES" (decimal); returns 0, or -1 when malformed or zero. */
int aq_parse_limits(const char *text, struct aq_output_limits *limits);
/*
 * Walks the declared output paths (absolute, e.g. "/output") with one deterministic walker: names sorted
 * bytewise, depth and path length bounded, no nftw (musl's keeps a descriptor per level). A first pass checks
 * every cap and every entry's type up front; only then is a pax/ustar archive of directories and regular files
 * streamed as 'T' frames. On any violation one 'F' frame names the file and no archive is sent. Files the
 * qube made unreadable (same uid) are made readable first; nothing is ever skipped silently. A missing
 * declared path gives a 'W'. Returns AQ_OUT_OK or the failure code.
 */
int aq_archive_outputs(char *const *paths, int count, const struct aq_output_limits *limits);
/*
 * Kills every other process and reaps them, so that a background child cannot keep the qube alive or change its
 * outputs after the command exited. As PID 1 (a container's or a VM's init) that is every other process of the
 * PID namespace; anywhere else only the process group `group` (the command's: the child calls setpgid(0, 0)).
 */
void aq_kill_others(pid_t group);
#endif
