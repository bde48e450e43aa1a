/* The pod sandbox's only process: holds the pod's namespaces open, reaps the orphans it inherits as PID 1, and
 * exits 0 on SIGINT or SIGTERM. Built with `gcc -static` by e2e/realnode/images.py. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

static volatile sig_atomic_t stop_requested;

static void request_stop(int signal_number) {
    (void)signal_number;
    stop_requested = 1;
}

static void reap_children(int signal_number) {
    (void)signal_number;
    int saved_errno = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved_errno;
}

static int install(int signal_number, void (*handler)(int)) {
    struct sigaction action = {0};
    action.sa_handler = handler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    return sigaction(signal_number, &action, NULL);
}

int main(void) {
    if (install(SIGINT, request_stop) || install(SIGTERM, request_stop) || install(SIGCHLD, reap_children)) {
        perror("pause: sigaction");
        return 1;
    }
    /* The signals stay blocked except inside sigsuspend, so a stop request that arrives between the check and the
     * wait is not lost (pause() would sleep through it). */
    sigset_t handled, during_wait;
    sigemptyset(&handled);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGCHLD);
    sigprocmask(SIG_BLOCK, &handled, &during_wait);
    sigdelset(&during_wait, SIGINT);
    sigdelset(&during_wait, SIGTERM);
    sigdelset(&during_wait, SIGCHLD);
    while (!stop_requested) {
        sigsuspend(&during_wait);
    }
    return 0;
}
