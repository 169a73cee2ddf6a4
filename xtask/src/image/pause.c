/* The pod sandbox's process: holds the pod's namespaces until it is asked to stop. */
#include <signal.h>
#include <unistd.h>

static void stop(int signal) {
    (void)signal;
    _exit(0);
}

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) {
        pause();
    }
}
