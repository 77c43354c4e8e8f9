/* See outfile.h. */
#include "outfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_out_open(cli_out *o, const char *path) {
    *o = (cli_out){.path = path};
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        if (S_ISDIR(sb.st_mode)) {
            errno = EISDIR;
            return -1;
        }
        o->f = fopen(path, "w");
        return o->f ? 0 : -1;
    }
    size_t n = strlen(path);
    o->tmp = malloc(n + 16);
    if (!o->tmp) return -1;
    memcpy(o->tmp, path, n);
    memcpy(o->tmp + n, ".tmpXXXXXX", 11);
    int fd = mkstemp(o->tmp);
    if (fd < 0) {
        int err = errno;
        free(o->tmp);
        o->tmp = NULL;
        errno = err;
        return -1;
    }
    /* mkstemp makes the file 0600; these are ordinary documents. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0 || !(o->f = fdopen(fd, "w"))) {
        int err = errno;
        close(fd);
        unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
        errno = err;
        return -1;
    }
    return 0;
}

int cli_out_close(cli_out *o, bool failed) {
    int err = 0;
    if (!o->f) return 0;
    errno = 0;
    if (fflush(o->f) != 0 || ferror(o->f)) err = errno ? errno : EIO;
    if (!err && o->tmp && fsync(fileno(o->f)) != 0) err = errno;
    if (fclose(o->f) != 0 && !err) err = errno ? errno : EIO;
    o->f = NULL;
    if (o->tmp) {
        if (!err && !failed && rename(o->tmp, o->path) != 0) err = errno;
        if (err || failed) unlink(o->tmp);
        free(o->tmp);
        o->tmp = NULL;
    }
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}
