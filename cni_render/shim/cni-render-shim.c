/*
 * cni-render-shim: the cni-render executable a runtime starts for every pod,
 * when `cni-render install` found a C compiler.
 *
 * It does no networking itself. It answers VERSION, and hands every other
 * call to the node's cni-render daemon (the Python plugin with everything
 * loaded) over a unix socket, using the protocol of cni_render/client.py.
 * When no daemon answers, or the daemon refuses (another namespace, another
 * filesystem), it executes the Python plugin (FALLBACK) with the same
 * environment and stdin, so the result is the same either way. A Python
 * process costs ~15 ms before it does anything; this costs ~1 ms.
 *
 * Build: cc -O2 -o cni-render -DFALLBACK='"/path/to/python/launcher"' cni-render-shim.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef FALLBACK
#error "define FALLBACK, the path of the Python cni-render launcher"
#endif

#define DEFAULT_SOCKET "/run/cni-render/daemon.sock"
#define SOCKET_VARIABLE "CNI_RENDER_DAEMON_SOCKET"
#define MAX_INPUT (16 << 20)

extern char **environ;

static const char *versions[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define VERSION_COUNT (sizeof(versions) / sizeof(versions[0]))

struct buffer {
    char *data;
    size_t length, capacity;
};

static void append(struct buffer *b, const char *data, size_t length) {
    if (b->length + length + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 8192;
        while (b->length + length + 1 > capacity) capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown) { perror("cni-render-shim"); exit(1); }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->length, data, length);
    b->length += length;
    b->data[b->length] = 0;
}

static int read_all(int fd, struct buffer *b, size_t limit) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0) return 0;
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        append(b, chunk, (size_t)n);
        if (b->length > limit) { errno = EFBIG; return -1; }
    }
}

static int write_all(int fd, const char *data, size_t length) {
    while (length) {
        ssize_t n = send(fd, data, length, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, data, length);
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

/* The cniVersion of a VERSION request, found as client.py's requested_version does. */
static const char *requested_version(const char *text) {
    const char *key = strstr(text, "\"cniVersion\"");
    if (key) {
        const char *p = key + 12;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == ':') {
            p++;
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
            if (*p == '"') {
                const char *end = strchr(p + 1, '"');
                for (size_t i = 0; end && i < VERSION_COUNT; i++)
                    if ((size_t)(end - p - 1) == strlen(versions[i]) && !strncmp(p + 1, versions[i], (size_t)(end - p - 1)))
                        return versions[i];
            }
        }
    }
    return versions[VERSION_COUNT - 1];
}

static void identity(const char *path, char *out, size_t size) {
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) snprintf(out, size, "-");
    else snprintf(out, size, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

/* Run the Python plugin with the same environment and the stdin already read. */
static void fallback(const struct buffer *input, const char *why) {
    if (why) fprintf(stderr, "cni-render: %s; working in-process\n", why);
    setenv(SOCKET_VARIABLE, "", 1);  /* the Python plugin must not ask the daemon again */
    int fd = memfd_create("cni-render-stdin", 0);
    if (fd < 0 || write_all(fd, input->data ? input->data : "", input->length) != 0 ||
        lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
        perror("cni-render-shim: preparing stdin for the fallback");
        exit(1);
    }
    char *argv[] = {(char *)FALLBACK, NULL};
    execve(FALLBACK, argv, environ);
    fprintf(stderr, "cni-render-shim: cannot execute %s: %s\n", FALLBACK, strerror(errno));
    printf("{\"cniVersion\": \"1.1.0\", \"code\": 5, \"msg\": \"I/O failure\", "
           "\"details\": \"cannot execute the cni-render plugin %s\"}\n", FALLBACK);
    exit(1);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);  /* a daemon that goes away is an error to report, not a silent death */
    const char *command = getenv("CNI_COMMAND");
    struct buffer input = {0};
    if (!command) {  /* run by a person: the Python CLI */
        execve(FALLBACK, (char *[]){(char *)FALLBACK, NULL}, environ);
        perror("cni-render-shim");
        return 1;
    }
    if (read_all(0, &input, MAX_INPUT) != 0) {
        printf("{\"cniVersion\": \"1.1.0\", \"code\": 5, \"msg\": \"I/O failure\", "
               "\"details\": \"reading stdin: %s\"}\n", strerror(errno));
        return 1;
    }
    if (!strcmp(command, "VERSION")) {
        printf("{\"cniVersion\": \"%s\", \"supportedVersions\": [", requested_version(input.data ? input.data : ""));
        for (size_t i = 0; i < VERSION_COUNT; i++) printf("%s\"%s\"", i ? ", " : "", versions[i]);
        printf("]}\n");
        return 0;
    }

    const char *path = getenv(SOCKET_VARIABLE);
    if (!path) path = DEFAULT_SOCKET;
    if (!*path) fallback(&input, NULL);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) fallback(&input, "daemon socket path too long");
    strcpy(address.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0 || connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        if (sock >= 0) close(sock);
        fallback(&input, NULL);  /* no daemon: the normal in-process path */
    }

    struct buffer env = {0};
    for (char **e = environ; *e; e++) {
        if (env.length) append(&env, "", 1);
        append(&env, *e, strlen(*e));
    }
    char net[64], root[64], netns[64], header[320];
    identity("/proc/thread-self/ns/net", net, sizeof net);
    identity("/", root, sizeof root);
    identity(getenv("CNI_NETNS"), netns, sizeof netns);
    int header_length = snprintf(header, sizeof header, "CNIR1 %s %s %s %zu %zu\n", net, root, netns, env.length, input.length);
    if (write_all(sock, header, (size_t)header_length) != 0 || write_all(sock, env.data ? env.data : "", env.length) != 0 ||
        write_all(sock, input.data ? input.data : "", input.length) != 0) {
        close(sock);
        /* the daemon refuses a request cut short, so nothing ran: doing it here is safe */
        fallback(&input, "the daemon did not take the request");
    }
    shutdown(sock, SHUT_WR);
    struct timeval timeout = {.tv_sec = 220};  /* the runtime gives a pod about 4 minutes */
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);

    struct buffer answer = {0};
    int failed = read_all(sock, &answer, 4 * (size_t)MAX_INPUT);
    close(sock);
    char *newline = answer.data ? memchr(answer.data, '\n', answer.length) : NULL;
    if (!failed && newline && !strncmp(answer.data, "REFUSED", 7)) {
        *newline = 0;
        char why[512];
        snprintf(why, sizeof why, "the daemon at %s refused: %s", path, answer.data + 8);
        fallback(&input, why);
    }
    int code;
    size_t out_length, err_length;
    if (failed || !newline || sscanf(answer.data, "%d %zu %zu", &code, &out_length, &err_length) != 3 ||
        (size_t)(answer.data + answer.length - (newline + 1)) < out_length + err_length) {
        printf("{\"cniVersion\": \"1.1.0\", \"code\": 11, \"msg\": \"Try again later\", "
               "\"details\": \"the cni-render daemon did not finish answering\"}\n");
        return 1;
    }
    write_all(2, newline + 1 + out_length, err_length);
    write_all(1, newline + 1, out_length);
    return code;
}
