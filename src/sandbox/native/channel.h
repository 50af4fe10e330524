/*
 * The Airqube init channel: the only thing that crosses a sandbox boundary on its way out.
 * A stream of frames: 1 byte type, 4 bytes big-endian payload length (at most AQ_FRAME_MAX), payload.
 *   'H' hello "airqube-init/1"   'O' stdout bytes   'E' stderr bytes
 *   'X' exit: kind (0 exited, 1 signaled, 2 exec failed) + int32 BE code
 *   'T' a chunk of a ustar archive of the declared outputs   'W' warning text   'Z' end of stream
 * The host treats every byte as hostile: src/sandbox/channel.ts validates it.
 */
#ifndef AIRQUBE_CHANNEL_H
#define AIRQUBE_CHANNEL_H
#include <stddef.h>
#include <stdint.h>

#define AQ_FRAME_MAX 65536
#define AQ_HELLO "airqube-init/1"

/* Sets the file descriptor frames are written to (default 1). */
void aq_channel_init(int fd);
/* Writes one frame, splitting payloads above AQ_FRAME_MAX; exits the process if the channel is gone. */
void aq_frame(char type, const void *payload, size_t len);
/* Writes a printf-style 'W' frame. */
void aq_warn(const char *fmt, ...);
/* Writes the 'X' frame. */
void aq_exit_frame(int kind, int32_t code);
/*
 * Archives each declared output path (absolute, e.g. "/output") as ustar into 'T' frames: directories,
 * regular files, and every other type as a header only, so that the host can reject it by name.
 * Missing paths give a 'W'. Ends the archive with two zero blocks.
 */
void aq_archive_outputs(char *const *paths, int count);
#endif
