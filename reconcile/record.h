/* The reader of `acquirer-sim load --record FILE` (docs/acquirer-sim.md, "The record file"):
 * one line per request the load harness sent, as the terminals saw it. The writer is
 * load_record_format() in sim/acquirer; this side is strict — a line that is not exactly in the
 * documented shape is refused with its line number, never guessed at. Pure: no I/O except
 * rec_read_file. */
#ifndef ATLAS_RECON_RECORD_H
#define ATLAS_RECON_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The versions this reader knows (the file's first line): 1, and 2, which adds the transfer
 * lines' fields. */
#define REC_HEADER      "# atlas-load-record 1"
#define REC_HEADER_V2   "# atlas-load-record 2"
#define REC_VERSION_MAX 2
/* Longest line accepted, newline excluded (the writer's LOAD_RECORD_LINE_MAX is 400 with it). */
#define REC_LINE_MAX 400

/* One request line. Strings are NUL-terminated; "" means the file said '-' (absent). */
struct rec_line {
    unsigned lineno;  /* 1-based line number in the file (the header is line 1) */
    char terminal[9]; /* DE 41 as written (bytes that are not letters or digits are '?') */
    char stan[7];     /* DE 11, 6 digits */
    char de7[11];     /* DE 7, MMDDhhmmss */
    char mti[5];      /* 0100, 0200, 0400 or 0401 */
    char proc[7];     /* DE 3 */
    bool has_amount;  /* DE 4 was sent */
    uint64_t amount;  /* minor units */
    char currency[4]; /* ISO 4217 numeric */
    char pan[20];     /* masked (never a full PAN: the parser refuses one), "" if '-' */
    bool has_orig;    /* a load-mix reversal (mti 04xx): DE 90's original */
    char orig_mti[5], orig_stan[7], orig_de7[11];
    bool transfer;       /* version 2, proc 40xxxx: a wallet-to-wallet transfer */
    char to[20];         /* transfer: the recipient's masked PAN ("" if '-') */
    char to_currency[4]; /* transfer: the recipient wallet's currency */
    bool answered;       /* a response with a valid MAC arrived */
    char rc[3];          /* with answered: DE 39 ("" if '-') */
    char auth[7];        /* with answered: DE 38 ("" if '-') */
    /* An answered transfer's DE 6, DE 51 and DE 28 as written ("" if '-'); has_de6/has_fee
     * when they read as numbers (DE 28: 'D' is a fee the sender pays, 'C' one it gets). */
    char de6[13], de51[4], de28[10];
    bool has_de6, has_fee;
    uint64_t de6_amount;
    int64_t fee;
    bool rev;                      /* reversed by the harness */
    char rev_stan[7], rev_de7[11]; /* "" when the reversal never left */
    unsigned rev_tries;
    bool rev_answered; /* rev_rc was not 'none' */
    char rev_rc[3];
};

/* Parses one line of a file of version `version` (without its newline; len bytes, no NUL
 * needed) into *out (lineno is left alone). Returns 0, or -1 with a sentence naming the culprit
 * field in err — the sentence never quotes a PAN field. */
__attribute__((warn_unused_result)) int rec_parse_line(const char *line, size_t len,
                                                       unsigned version, struct rec_line *out,
                                                       char *err, size_t errcap);

/* Checks the first line (without its newline) and gives its version. 0, or -1 with the reason
 * in err. */
__attribute__((warn_unused_result)) int
rec_check_header(const char *line, size_t len, unsigned *version, char *err, size_t errcap);

/* A whole file in memory. */
struct rec_file {
    struct rec_line *lines;
    size_t n;
    unsigned version; /* of the header */
    bool torn_tail;   /* the last line had no newline (a harness that died) and was ignored */
};

/* Parses text[0..len) as a record file. On success fills *out (free with rec_file_free) and
 * returns 0; on the first bad line returns -1 with "line N: reason" in err and nothing to free.
 * A last line without its newline is ignored (the contract: a harness that died mid-line). */
__attribute__((warn_unused_result)) int
rec_parse_text(const char *text, size_t len, struct rec_file *out, char *err, size_t errcap);

/* Reads and parses the file at path; errors are "PATH:N: reason" or "PATH: why". */
__attribute__((warn_unused_result)) int rec_read_file(const char *path, struct rec_file *out,
                                                      char *err, size_t errcap);

void rec_file_free(struct rec_file *f);

/* The journal's mti_class of a line's request ("010", "020", "040"). */
const char *rec_mti_class(const struct rec_line *l);

#endif
