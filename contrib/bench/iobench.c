/* iobench: the read loads of contrib/bench/mount, identical for every file system measured.
 *
 *   iobench seq FILE             reads FILE's data extents (SEEK_DATA/SEEK_HOLE) in 1 MiB preads
 *   iobench rand FILE JOBS SECS  JOBS threads of 4 KiB preads at random 4 KiB-aligned offsets
 *                                inside FILE's data extents, for SECS seconds
 *
 * Prints one line: "bytes N seconds S MB/s R" or "reads N seconds S reads/s R".
 * Only data extents are read because holes are zeros that no one fetches, verifies or stores:
 * reading them measures memset, not the read path. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct extent { off_t start, end; };
static struct extent *extents;
static size_t extent_count;
static off_t data_total;
static int fd;
static double deadline;
static volatile int failed;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void load_extents(void) {
    off_t size = lseek(fd, 0, SEEK_END), pos = 0;
    size_t capacity = 1024;
    extents = malloc(capacity * sizeof *extents);
    while (pos < size) {
        off_t start = lseek(fd, pos, SEEK_DATA);
        if (start < 0) break;
        off_t end = lseek(fd, start, SEEK_HOLE);
        if (end < 0) end = size;
        if (extent_count == capacity) extents = realloc(extents, (capacity *= 2) * sizeof *extents);
        extents[extent_count++] = (struct extent){start, end};
        data_total += end - start;
        pos = end;
    }
}

static int sequential(void) {
    size_t size = 1 << 20;
    char *buffer = aligned_alloc(4096, size);
    off_t bytes = 0;
    double t0 = now();
    for (size_t i = 0; i < extent_count; i++) {
        for (off_t pos = extents[i].start; pos < extents[i].end;) {
            size_t want = extents[i].end - pos < (off_t)size ? (size_t)(extents[i].end - pos) : size;
            ssize_t n = pread(fd, buffer, want, pos);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) { perror("pread"); return 1; }
            pos += n;
            bytes += n;
        }
    }
    double seconds = now() - t0;
    printf("bytes %lld seconds %.3f MB/s %.1f\n", (long long)bytes, seconds, bytes / seconds / 1e6);
    return 0;
}

static void *random_reader(void *arg) {
    uint64_t state = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    char *buffer = aligned_alloc(4096, 4096);
    long count = 0;
    while (!failed) {
        for (int k = 0; k < 64; k++) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            off_t target = (off_t)(state % (uint64_t)(data_total / 4096)) * 4096;
            size_t i = 0;  /* the extent holding the target-th data byte (extents are few) */
            while (target >= extents[i].end - extents[i].start) { target -= extents[i].end - extents[i].start; i++; }
            off_t offset = extents[i].start + target;
            if (pread(fd, buffer, 4096, offset) <= 0 && errno != EINTR) { perror("pread"); failed = 1; break; }
            count++;
        }
        if (now() >= deadline) break;
    }
    return (void *)count;
}

static int random_reads(int jobs, double seconds) {
    if (data_total < 4096) { fprintf(stderr, "no data\n"); return 1; }
    pthread_t threads[256];
    if (jobs < 1 || jobs > 256) return 2;
    double t0 = now();
    deadline = t0 + seconds;
    for (int j = 0; j < jobs; j++) pthread_create(&threads[j], NULL, random_reader, (void *)(uintptr_t)(j + 1));
    long total = 0;
    for (int j = 0; j < jobs; j++) { void *count; pthread_join(threads[j], &count); total += (long)count; }
    double elapsed = now() - t0;
    printf("reads %ld seconds %.3f reads/s %.0f\n", total, elapsed, total / elapsed);
    return failed;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: iobench seq FILE | rand FILE JOBS SECS\n"); return 2; }
    fd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) { perror(argv[2]); return 1; }
    load_extents();
    if (strcmp(argv[1], "seq") == 0) return sequential();
    if (strcmp(argv[1], "rand") == 0 && argc == 5) return random_reads(atoi(argv[3]), atof(argv[4]));
    fprintf(stderr, "usage: iobench seq FILE | rand FILE JOBS SECS\n");
    return 2;
}
