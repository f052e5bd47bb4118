/*
 * vine-dirty: a guest that dirties its memory continuously, built statically into the guest kit
 * (vine.dirty=MIB). It touches one byte of every 4 KiB page of MIB MiB, over and over, for as
 * long as the guest runs: a migration must resend every page it has sent. Prints once it holds
 * the memory, then every 10 s how many passes it made:
 *   VINE-DIRTY-START <MiB>
 *   VINE-DIRTY <passes in the last 10 s>
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long mib = argc > 1 ? atol(argv[1]) : 0;
    if (mib <= 0) {
        fprintf(stderr, "usage: vine-dirty MIB\n");
        return 2;
    }
    size_t len = (size_t)mib << 20;
    volatile unsigned char *mem = malloc(len);
    if (!mem) {
        printf("VINE-ERROR vine-dirty cannot allocate %ld MiB\n", mib);
        return 1;
    }
    memset((void *)mem, 1, len);
    printf("VINE-DIRTY-START %ld\n", mib);
    fflush(stdout);
    unsigned char v = 0;
    long passes = 0;
    double mark = now();
    for (;;) {
        v++;
        for (size_t i = 0; i < len; i += 4096)
            mem[i] = v;
        passes++;
        if (now() - mark >= 10) {
            printf("VINE-DIRTY %ld\n", passes);
            fflush(stdout);
            passes = 0;
            mark = now();
        }
    }
}
