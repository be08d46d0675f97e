/*
 * cni-render-shim: the cni-render executable a runtime starts for every pod.
 *
 * It does no networking itself. It answers VERSION, and hands every other
 * call to the node's cni-render daemon over a unix socket, with the protocol
 * of cni_render/fastpath/wire.py (CNIR2): the request, then one line from the
 * daemon before it acts (ACK, REFUSED <why>, BUSY <why>), then the answer.
 * A connection that ends before ACK means the call never started.
 *
 * Two builds:
 *
 *   cc -O2 -o cni-render -DFALLBACK='"/path/to/python/launcher"' cni-render-shim.c
 *     A node with Python (`cni-render install`). When no daemon answers, or it
 *     refuses or is busy, the shim executes the Python plugin with the same
 *     environment and stdin, so the result is the same either way. Run by a
 *     person, it hands its arguments to the Python CLI.
 *
 *   cc -static -O2 -DNODE_MODE -o cni-render cni-render-shim.c
 *     A node without Python, served by the cni-render DaemonSet pod. It never
 *     executes anything. When the daemon does not answer (the pod is restarting)
 *     it keeps trying for CNI_RENDER_WAIT_SECONDS (default 20), then fails with
 *     code 11 (try again later) saying the cni-render pod is not ready; a call
 *     the daemon refuses fails with code 4 and the daemon's reason.
 *
 * Every error printed here carries the request's cniVersion. ~1 ms per call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifndef NODE_MODE
#include <sys/mman.h>
#endif

#if !defined(NODE_MODE) && !defined(FALLBACK)
#error "define FALLBACK (the path of the Python cni-render launcher) or NODE_MODE"
#endif

#define DEFAULT_SOCKET "/run/cni-render/daemon.sock"
#define SOCKET_VARIABLE "CNI_RENDER_DAEMON_SOCKET"
#define WAIT_VARIABLE "CNI_RENDER_WAIT_SECONDS"
#define DEFAULT_WAIT_SECONDS 20
#define MAX_WAIT_SECONDS 600
#define CONNECT_SECONDS 5   /* connect() waits only while the daemon's backlog is full */
#define ACK_SECONDS 30      /* the daemon acknowledges once it has read and checked the request */
#define ANSWER_SECONDS 220  /* the runtime gives a pod about 4 minutes */
#define RETRY_MILLISECONDS 200
#define MAX_INPUT (16 << 20)
#define MAX_LINE 4096
#define MAX_ANSWER (64 << 20)

extern char **environ;

static const char *versions[] = {"0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};
#define VERSION_COUNT (sizeof(versions) / sizeof(versions[0]))

static const char *cni_version = "1.1.0"; /* the request's, once stdin is read */

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

/* Read until EOF (0), an error (-1, errno set), or more than limit bytes (EFBIG). */
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

/* Read until the buffer holds a newline (1), EOF first (0), or an error (-1). */
static int read_line(int fd, struct buffer *b) {
    char chunk[4096];
    while (!b->data || !memchr(b->data, '\n', b->length)) {
        if (b->length > MAX_LINE) { errno = EFBIG; return -1; }
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n == 0) return 0;
        if (n < 0) { if (errno == EINTR) continue; return -1; }
        append(b, chunk, (size_t)n);
    }
    return 1;
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

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The request's cniVersion, found as cni_render/fastpath/wire.py's requested_version does. */
static const char *requested_version(const char *text) {
    const char *key = strstr(text, "\"cniVersion\"");
    if (key) {
        const char *p = key + 12;
        while (is_space(*p)) p++;
        if (*p == ':') {
            p++;
            while (is_space(*p)) p++;
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

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(struct buffer *out, const char *text) {
    append(out, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char escaped[8];
        if (*p == '"' || *p == '\\') { escaped[0] = '\\'; escaped[1] = (char)*p; append(out, escaped, 2); }
        else if (*p < 0x20) { snprintf(escaped, sizeof escaped, "\\u%04x", *p); append(out, escaped, 6); }
        else append(out, (const char *)p, 1);
    }
    append(out, "\"", 1);
}

/* Print one CNI error document on stdout, in the request's cniVersion; exit 1. */
static void fail(int code, const char *msg, const char *details) {
    struct buffer out = {0};
    char number[16];
    append(&out, "{\"cniVersion\": ", 15);
    json_string(&out, cni_version);
    snprintf(number, sizeof number, "%d", code);
    append(&out, ", \"code\": ", 10);
    append(&out, number, strlen(number));
    append(&out, ", \"msg\": ", 9);
    json_string(&out, msg);
    append(&out, ", \"details\": ", 13);
    json_string(&out, details);
    append(&out, "}\n", 2);
    write_all(1, out.data, out.length);
    exit(1);
}

static void identity(const char *path, char *out, size_t size) {
    struct stat st;
    if (!path || !*path || stat(path, &st) != 0) snprintf(out, size, "-");
    else snprintf(out, size, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

/* A plain decimal: digits only, no sign, no leading zero, at most limit. */
static int strict_number(const char *text, size_t length, unsigned long limit, unsigned long *value) {
    if (length == 0 || length > 10 || (length > 1 && text[0] == '0')) return -1;
    unsigned long long n = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return -1;
        n = n * 10 + (unsigned long long)(text[i] - '0');
    }
    if (n > limit) return -1;
    *value = (unsigned long)n;
    return 0;
}

/* "<exit code> <stdout bytes> <stderr bytes>": exactly three numbers and two single spaces. */
static int parse_answer_header(const char *line, size_t length, unsigned long fields[3]) {
    size_t start = 0;
    for (int i = 0; i < 3; i++) {
        size_t end = start;
        while (end < length && line[end] != ' ') end++;
        if ((i < 2) != (end < length)) return -1;
        if (strict_number(line + start, end - start, i ? MAX_ANSWER : 255, &fields[i]) != 0) return -1;
        start = end + 1;
    }
    return 0;
}

enum outcome { ANSWERED, NOT_STARTED, REFUSED_CALL, LOST };

struct exchange {
    char why[600];  /* for NOT_STARTED, REFUSED_CALL and LOST */
    int code;
    struct buffer answer;  /* first line, then the whole answer */
    const char *out, *err;
    size_t out_length, err_length;
};

static void set_timeout(int sock, int option, int seconds) {
    struct timeval timeout = {.tv_sec = seconds};
    setsockopt(sock, SOL_SOCKET, option, &timeout, sizeof timeout);
}

static enum outcome finish(struct exchange *x, enum outcome outcome, const char *format, const char *detail) {
    snprintf(x->why, sizeof x->why, format, detail);
    return outcome;
}

/* The daemon's answer after ACK, its lengths read strictly. */
static enum outcome read_answer(int sock, struct exchange *x, size_t after_ack) {
    set_timeout(sock, SO_RCVTIMEO, ANSWER_SECONDS);
    if (read_all(sock, &x->answer, (size_t)MAX_ANSWER + MAX_LINE + after_ack) != 0)
        return finish(x, LOST, "the cni-render daemon did not finish answering (%s); the call may have run", strerror(errno));
    const char *start = x->answer.data + after_ack, *end = x->answer.data + x->answer.length;
    const char *newline = memchr(start, '\n', (size_t)(end - start));
    unsigned long fields[3];
    if (!newline || parse_answer_header(start, (size_t)(newline - start), fields) != 0)
        return finish(x, LOST, "the cni-render daemon's answer was %s; the call may have run", newline ? "malformed" : "cut short");
    if ((size_t)(end - newline - 1) != fields[1] + fields[2])
        return finish(x, LOST, "the cni-render daemon's answer has %s length; the call may have run", "the wrong");
    x->code = (int)fields[0];
    x->out = newline + 1;
    x->out_length = fields[1];
    x->err = newline + 1 + fields[1];
    x->err_length = fields[2];
    return ANSWERED;
}

/* One attempt: connect, send the request, read the daemon's first line and, after ACK, the answer. */
static enum outcome ask(const char *path, const struct buffer *request, struct exchange *x) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) return finish(x, NOT_STARTED, "the daemon socket path %s is too long", path);
    strcpy(address.sun_path, path);
    int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) return finish(x, NOT_STARTED, "no socket: %s", strerror(errno));
    set_timeout(sock, SO_SNDTIMEO, CONNECT_SECONDS);
    enum outcome outcome;
    char detail[540];
    if (connect(sock, (struct sockaddr *)&address, sizeof address) != 0) {
        int denied = errno == EACCES || errno == EPERM;  /* waiting will not change who we are */
        snprintf(detail, sizeof detail, "%s: %s", path, strerror(errno));
        outcome = finish(x, denied ? REFUSED_CALL : NOT_STARTED,
                         denied ? "only root may use the cni-render daemon (%s)" : "no cni-render daemon answered at %s", detail);
        goto done;
    }
    struct ucred peer;
    socklen_t peer_length = sizeof peer;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &peer, &peer_length) != 0 || peer.uid != 0) {
        outcome = finish(x, NOT_STARTED, "the process listening on %s is not root", path);
        goto done;
    }
    write_all(sock, request->data, request->length);  /* a daemon that stopped reading may still say why */
    shutdown(sock, SHUT_WR);
    set_timeout(sock, SO_RCVTIMEO, ACK_SECONDS);
    x->answer.length = 0;
    int got = read_line(sock, &x->answer);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EFBIG)) {
        outcome = finish(x, LOST, "the cni-render daemon did not acknowledge the call (%s); it may have run",
                         errno == EFBIG ? "its first line is too long" : "no answer within 30 s");
        goto done;
    }
    if (got <= 0) {  /* closed or reset before ACK: the call never started */
        outcome = finish(x, NOT_STARTED, "the daemon at %s closed the connection before starting the call", path);
        goto done;
    }
    char *newline = memchr(x->answer.data, '\n', x->answer.length);
    size_t line_length = (size_t)(newline - x->answer.data);
    *newline = 0;
    if (line_length == 3 && !memcmp(x->answer.data, "ACK", 3)) {
        *newline = '\n';
        outcome = read_answer(sock, x, line_length + 1);
    } else if (!strncmp(x->answer.data, "REFUSED ", 8)) {
        outcome = finish(x, REFUSED_CALL, "%s", x->answer.data + 8);
    } else if (!strncmp(x->answer.data, "BUSY ", 5)) {
        snprintf(detail, sizeof detail, "%s (%.400s)", path, x->answer.data + 5);
        outcome = finish(x, NOT_STARTED, "the daemon at %s is busy", detail);
    } else {
        outcome = finish(x, LOST, "the daemon at %s does not speak this shim's protocol; the call may have run", path);
    }
done:
    close(sock);
    return outcome;
}

static struct buffer encode_request(const struct buffer *input) {
    struct buffer env = {0}, request = {0};
    for (char **e = environ; *e; e++) {
        if (env.length) append(&env, "", 1);
        append(&env, *e, strlen(*e));
    }
    char netns[64], header[160];
    identity(getenv("CNI_NETNS"), netns, sizeof netns);
    int length = snprintf(header, sizeof header, "CNIR2 %s %zu %zu\n", netns, env.length, input->length);
    append(&request, header, (size_t)length);
    append(&request, env.data ? env.data : "", env.length);
    append(&request, input->data ? input->data : "", input->length);
    free(env.data);
    return request;
}

static void print_answer(const struct exchange *x) {
    write_all(2, x->err, x->err_length);
    write_all(1, x->out, x->out_length);
}

#ifdef NODE_MODE

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int wait_seconds(void) {
    const char *text = getenv(WAIT_VARIABLE);
    unsigned long value;
    if (!text || strict_number(text, strlen(text), MAX_WAIT_SECONDS, &value) != 0) return DEFAULT_WAIT_SECONDS;
    return (int)value;
}

static void person(void) {
    fprintf(stderr,
            "cni-render: this is the CNI plugin the container runtime runs for every pod on this node;\n"
            "its work happens in the cni-render pod of this node. For the operator's commands, use\n"
            "  kubectl -n kube-system exec ds/cni-render -- cni-render status\n"
            "  kubectl -n kube-system exec ds/cni-render -- cni-render --help\n");
    exit(2);
}

static int serve(const char *path, const struct buffer *request) {
    int seconds = wait_seconds();
    double deadline = now() + seconds;
    struct exchange x = {0};
    for (;;) {
        switch (ask(path, request, &x)) {
        case ANSWERED:
            print_answer(&x);
            return x.code;
        case LOST:
            fail(11, "Try again later", x.why);
            break;
        case REFUSED_CALL: {
            char details[700];
            snprintf(details, sizeof details, "the cni-render daemon at %s refused the call: %s", path, x.why);
            fail(4, "The cni-render daemon refused the call", details);
            break;
        }
        case NOT_STARTED:
            if (now() >= deadline) {
                char details[800];
                snprintf(details, sizeof details,
                         "the cni-render pod on this node is not ready: no cni-render daemon served the call on %s "
                         "within %d s (%s); the call did not start", path, seconds, x.why);
                fail(11, "Try again later", details);
            }
            nanosleep(&(struct timespec){.tv_nsec = RETRY_MILLISECONDS * 1000000L}, NULL);
        }
    }
}

#else /* FALLBACK: a node with Python */

static void person(int argc, char **argv) {
    (void)argc;
    argv[0] = (char *)FALLBACK;  /* the Python CLI gets the same arguments */
    execve(FALLBACK, argv, environ);
    fprintf(stderr, "cni-render-shim: cannot execute %s: %s\n", FALLBACK, strerror(errno));
    exit(1);
}

/* Run the Python plugin with the same environment and the stdin already read. */
static void fallback(const struct buffer *input, const char *why) {
    if (why) fprintf(stderr, "cni-render: %s; working in-process\n", why);
    setenv(SOCKET_VARIABLE, "", 1);  /* the Python plugin must not ask the daemon again */
    int fd = memfd_create("cni-render-stdin", 0);
    if (fd < 0 || write_all(fd, input->data ? input->data : "", input->length) != 0 ||
        lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 0) < 0) {
        char details[300];
        snprintf(details, sizeof details, "preparing stdin for the in-process plugin: %s", strerror(errno));
        fail(5, "I/O failure", details);
    }
    char *argv[] = {(char *)FALLBACK, NULL};
    execve(FALLBACK, argv, environ);
    char details[600];
    snprintf(details, sizeof details, "cannot execute the cni-render plugin %s: %s", FALLBACK, strerror(errno));
    fail(5, "I/O failure", details);
}

static int serve(const char *path, const struct buffer *request, const struct buffer *input) {
    struct exchange x = {0};
    switch (ask(path, request, &x)) {
    case ANSWERED:
        print_answer(&x);
        return x.code;
    case LOST:
        fail(11, "Try again later", x.why);
        break;
    case REFUSED_CALL: {
        char why[700];
        snprintf(why, sizeof why, "the daemon at %s refused: %s", path, x.why);
        fallback(input, why);
        break;
    }
    case NOT_STARTED:
        fallback(input, strncmp(x.why, "no cni-render daemon", 20) ? x.why : NULL);  /* no daemon: the normal path */
    }
    return 1;
}

#endif

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);  /* a daemon that goes away is an error to report, not a silent death */
    const char *command = getenv("CNI_COMMAND");
    struct buffer input = {0};
#ifdef NODE_MODE
    (void)argc;
    (void)argv;
    if (!command) person();
#else
    if (!command) person(argc, argv);
#endif
    if (read_all(0, &input, MAX_INPUT) != 0) {
        int error = errno;
        if (input.data) cni_version = requested_version(input.data);
        char details[300];
        snprintf(details, sizeof details, "reading stdin: %s", strerror(error));
        fail(5, "I/O failure", details);
    }
    cni_version = requested_version(input.data ? input.data : "");
    if (!strcmp(command, "VERSION")) {
        printf("{\"cniVersion\": \"%s\", \"supportedVersions\": [", cni_version);
        for (size_t i = 0; i < VERSION_COUNT; i++) printf("%s\"%s\"", i ? ", " : "", versions[i]);
        printf("]}\n");
        return 0;
    }
    const char *path = getenv(SOCKET_VARIABLE);
    struct buffer request = encode_request(&input);
#ifdef NODE_MODE
    if (!path || !*path) path = DEFAULT_SOCKET;  /* the daemon is the only way on this node */
    return serve(path, &request);
#else
    if (!path) path = DEFAULT_SOCKET;
    if (!*path) fallback(&input, NULL);
    return serve(path, &request, &input);
#endif
}
