/* Output files of the `attune` command written all at once or not at all: a failed write (a
 * full disk, a quota) never leaves a half-written file under the name the user gave, and an
 * earlier file of that name stays as it was. */
#ifndef ATTUNE_TOOLS_OUTFILE_H
#define ATTUNE_TOOLS_OUTFILE_H

#include <stdbool.h>
#include <stdio.h>

typedef struct cli_out {
    FILE *f;
    const char *path;
    char *tmp; /* NULL when path is written in place */
} cli_out;

/* Opens path for writing through a temporary file beside it. A path that exists and is not a
 * regular file (/dev/stdout, /dev/full, a FIFO) is written in place: renaming over it would
 * replace the device node. 0, or -1 with errno set. */
int cli_out_open(cli_out *o, const char *path);

/* Flushes, syncs and closes o->f, then renames the temporary file over the path; when writing
 * failed at any point (ferror, or `failed`), removes the temporary file instead. 0, or -1 with
 * errno set by the first failure (EIO when the stream lost it). */
int cli_out_close(cli_out *o, bool failed);

#endif
