/*
 * Copyright (C) Nexus authors
 *
 * Signals, as Redis and PgBouncer handle them: the handlers only set
 * flags that the main loop reads.  SIGTERM (or SIGINT) asks for a drain;
 * a second one while draining exits at once, from the handler, with
 * _exit(2) (async-signal-safe).  SIGHUP asks for a configuration reload.
 * SIGPIPE is ignored: a receiver that hangs up is an error return, not a
 * death.  No SA_RESTART: a blocking call returns early, so the loop sees
 * the flag without waiting out its timeout.
 */

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "nxw.h"


volatile sig_atomic_t  nxw_stop;
volatile sig_atomic_t  nxw_hup;


static void nxw_signal_stop(int signo);
static void nxw_signal_hup(int signo);


void
nxw_signals_init(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);

    sa.sa_handler = nxw_signal_stop;
    (void) sigaction(SIGTERM, &sa, NULL);
    (void) sigaction(SIGINT, &sa, NULL);

    sa.sa_handler = nxw_signal_hup;
    (void) sigaction(SIGHUP, &sa, NULL);

    sa.sa_handler = SIG_IGN;
    (void) sigaction(SIGPIPE, &sa, NULL);
}


static void
nxw_signal_stop(int signo)
{
    static const char  msg[] = "{\"level\":\"warn\",\"msg\":"
                               "\"second signal: exiting at once\"}\n";

    (void) signo;

    if (nxw_stop) {
        /* what is in hand is reclaimed by the visibility timeout */
        (void) write(STDERR_FILENO, msg, sizeof(msg) - 1);
        _exit(1);
    }

    nxw_stop = 1;
}


static void
nxw_signal_hup(int signo)
{
    (void) signo;

    nxw_hup = 1;
}
