/* Quoting untrusted text (names and strings from a file) in messages. Internal to the library
 * and the attune command; not installed.
 *
 * A message must stay one readable line whatever a corrupt file holds: control bytes and bytes
 * that are not valid UTF-8 are written as \xNN, valid UTF-8 is kept as it is, and a quoted
 * field is cut after AT_QUOTE_SHOW bytes so that one huge name cannot crowd out the rest. */
#ifndef ATTUNE_GRAPH_QUOTE_H
#define ATTUNE_GRAPH_QUOTE_H

#include <stddef.h>

/* Source bytes of one quoted field shown before it is cut. */
#define AT_QUOTE_SHOW 64
/* Room for the longest at_quote result: every byte escaped, the note on the length, the NUL. */
#define AT_QUOTE_CAP (4 * AT_QUOTE_SHOW + 32)

/* Length of the valid UTF-8 sequence at p (n bytes available), or 0 when invalid. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, as the Unicode standard does. */
size_t at_utf8_seq(const unsigned char *p, size_t n);

/* Writes up to `limit` bytes of s[0..n) into dst (cap bytes, always NUL-terminated when
 * cap > 0), escaped as described above; an escape or a character never gets split. Returns
 * the number of source bytes written. */
size_t at_escape(char *dst, size_t cap, const char *s, size_t n, size_t limit);

/* The string s as one field of a message: escaped, and cut after AT_QUOTE_SHOW bytes with
 * "... (N bytes)" added. dst has AT_QUOTE_CAP bytes. s may be NULL (""). Returns dst. */
const char *at_quote(char dst[AT_QUOTE_CAP], const char *s);

/* Escapes a finished message in place (cap: the size of msg's buffer). For messages that
 * carry text from a file through layers that did not quote it. */
void at_msg_escape(char *msg, size_t cap);

#endif
