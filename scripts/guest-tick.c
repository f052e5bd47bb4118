/*
 * vine-tick: a timestamp loop, built statically into the guest kit (vine.tick=1). Every 10 ms
 * it writes "VINE-TICK <n>" to its standard output (the console), n counting up from 1, with one
 * write() and one nanosleep() a tick and nothing else: whoever reads the console sees any pause
 * of the guest as a gap between two ticks, and what the guest runs between ticks is the least a
 * program that keeps time can run (no process is started per tick, as a shell loop would).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    char line[32];
    struct timespec pause = {0, 10 * 1000 * 1000};
    for (unsigned long n = 1;; n++) {
        int len = snprintf(line, sizeof line, "VINE-TICK %lu\n", n);
        if (write(1, line, (size_t)len) != len) {
            return 1;
        }
        nanosleep(&pause, NULL);
    }
}
