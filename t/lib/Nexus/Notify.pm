package Nexus::Notify;

# Helpers for the notification tests (t/6x-notify-*.t): the reference
# receiver (t/notify/receiver.js) and nexus-notify, each started by the
# test file and stopped when it ends, plus the nginx configuration with a
# seal key.
#
#   my $rcv = receiver_start();            # {port, pid, url}
#   receiver_config($rcv, path => '/a', secret => 's', fail_first => 2);
#   receiver_received($rcv, '/a') → [deliveries];  receiver_stats($rcv)
#   my $w = worker_start(env => {NEXUS_NOTIFY_MAX_ATTEMPTS => 3});
#   worker_stop($w) → exit code (SIGTERM, waits);  worker_kill($w) (-9)
#   worker_log($w) → its JSON lines, decoded
#   wait_for(sub { ... }, 10[, 0.05]) → 1 when the sub returned true in
#       time (polled every 0.05 s)
#   notify_nginx(%opt) → $t: nexus_conf() plus nexus_seal_key_file
#   seal_key_file() → the path of this file's seal key (hex)
#   admin($t, $key, METHOD, path, json) → http_req() result with {json}
#   job_rows($where) → [{...}] of notify_jobs, decoded from psql
#
# Workers get short timeouts by default (see %WORKER_ENV): the suite must
# stay fast. A worker's stderr (JSON lines) goes to <file dir>/worker-N.log.

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);
use Test::More ();
use Nexus::Test;
use Nexus::Fixtures;

our @EXPORT = qw(
    receiver_start receiver_config receiver_received receiver_stats
    receiver_reset receiver_stop
    worker_start worker_stop worker_kill worker_log worker_alive
    wait_for notify_nginx seal_key_file admin job_rows sha256_hex
    hmac_sha256_hex notify_cleanup
);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;
my $ROOT = $ENV{NEXUS_TEST_ROOT} // '.';
my $PID = $$;
my @RECEIVERS;
my @WORKERS;
my $SEQ = 0;
my $SEAL_KEY;

our %WORKER_ENV = (
    NEXUS_LOG_LEVEL => 'info',
    NEXUS_HEARTBEAT_INTERVAL => '500ms',
    NEXUS_HEARTBEAT_TTL => '30s',
    NEXUS_SHUTDOWN_TIMEOUT => '5s',
    NEXUS_VISIBILITY_TIMEOUT => '3s',
    NEXUS_BLOCK => '100ms',
    NEXUS_NOTIFY_POLL_INTERVAL => '100ms',
    NEXUS_NOTIFY_TIMEOUT => '1500ms',
    NEXUS_NOTIFY_CONNECT_TIMEOUT => '1s',
    NEXUS_NOTIFY_BACKOFF => '100ms',
    NEXUS_NOTIFY_BACKOFF_MAX => '400ms',
    NEXUS_NOTIFY_ALLOW_CIDRS => '127.0.0.1/32',
);

sub _dir {
    # the per-file dir Nexus::Test made (or makes) under NEXUS_TEST_TMP
    return Nexus::Test::_file_dir();
}

sub _free_port {
    return Nexus::Test::_free_port();
}

# seal_key_file(): a 32-byte key in hex, made once per test file; nginx
# workers run as nobody, so it is world-readable (test data only).
sub seal_key_file {
    return $SEAL_KEY if $SEAL_KEY;
    $SEAL_KEY = _dir() . '/seal.key';
    open my $fh, '>', $SEAL_KEY or die "seal key: $!";
    print $fh unpack('H*', join '', map { chr int rand 256 } 1 .. 32), "\n";
    close $fh;
    chmod 0644, $SEAL_KEY;
    return $SEAL_KEY;
}

sub notify_nginx {
    my (%opt) = @_;
    my $key = seal_key_file();
    my $extra = ($opt{extra} // '') . "\n    nexus_seal_key_file $key;\n";
    return nexus_nginx(nexus_conf(%opt, extra => $extra),
        workers => $opt{workers} // 1);
}

###############################################################################
# the receiver

sub receiver_start {
    my (%opt) = @_;
    my $port = $opt{port} // _free_port();
    my $log = _dir() . '/receiver-' . $port . '.log';
    my @cmd = ('node', "$ROOT/t/notify/receiver.js", '--port', $port,
        '--host', '127.0.0.1', '--quiet');
    push @cmd, '--secret', $opt{secret} if defined $opt{secret};
    push @cmd, '--max-skew', $opt{max_skew} if defined $opt{max_skew};
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    my $r = { port => $port, pid => $pid, url => "http://127.0.0.1:$port",
              log => $log };
    push @RECEIVERS, $r;
    my $ok = wait_for(sub {
        my $res = eval { http_req($port, 'GET', '/__health', timeout => 1) };
        return $res && ($res->{status} // 0) == 200;
    }, 10);
    die "receiver did not start on $port" unless $ok;
    return $r;
}

sub receiver_config {
    my ($r, %cfg) = @_;
    my $res = http_req($r->{port}, 'POST', '/__config', json_body => \%cfg,
        json => 1);
    die "receiver config failed" unless ($res->{status} // 0) == 200;
    return $res->{json};
}

sub receiver_received {
    my ($r, $path) = @_;
    my $q = defined $path ? "?path=$path" : '';
    my $res = http_req($r->{port}, 'GET', "/__received$q", json => 1,
        timeout => 10);
    return $res->{json} // [];
}

sub receiver_stats {
    my ($r) = @_;
    return http_req($r->{port}, 'GET', '/__stats', json => 1)->{json};
}

sub receiver_reset {
    my ($r) = @_;
    http_req($r->{port}, 'POST', '/__reset');
}

sub receiver_stop {
    my ($r) = @_;
    return unless $r->{pid};
    kill 'TERM', $r->{pid};
    wait_pid($r->{pid}, 5);
    $r->{pid} = undef;
}

###############################################################################
# nexus-notify

# worker_start(env => {...}, consumer => 'name', args => [...], nowait => 1):
# starts build/nexus-notify with the test database and Redis, the short
# timeouts above, and env on top; waits until it logs "starting" unless
# nowait. Returns {pid, log, consumer}.
sub worker_start {
    my (%opt) = @_;
    my $bin = "$ROOT/build/nexus-notify";
    die "nexus-notify is not built" unless -x $bin;
    $SEQ++;
    my $log = $opt{log} // (_dir() . "/worker-$SEQ.log");
    my $consumer = $opt{consumer} // "t-$PID-$SEQ";
    my %env = (%WORKER_ENV,
        NEXUS_SEAL_KEY_FILE => seal_key_file(),
        NEXUS_CONSUMER => $consumer,
        %{ $opt{env} || {} });
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $ENV{$_} = $env{$_} for keys %env;
        delete $ENV{$_} for grep { !defined $env{$_} } keys %env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log;
        open STDERR, '>&', \*STDOUT;
        exec { $bin } $bin, @{ $opt{args} || [] } or POSIX::_exit(127);
    }
    my $w = { pid => $pid, log => $log, consumer => $consumer };
    push @WORKERS, $w;
    # up when it logged "starting" (nowait: the caller times it itself)
    if (!$opt{nowait}) {
        wait_for(sub { grep { $_->{msg} eq 'starting' } worker_log($w) }, 10)
            or Test::More::diag("nexus-notify did not log 'starting'");
    }
    return $w;
}

sub worker_alive {
    my ($w) = @_;
    return 0 unless $w->{pid};
    my $r = waitpid $w->{pid}, WNOHANG;
    if ($r == $w->{pid}) {
        $w->{status} = $?;
        $w->{pid} = undef;
        return 0;
    }
    return 1;
}

# worker_stop($w, $signal = 'TERM', $timeout = 15): the exit code, or undef
# if it did not exit in time (then it is killed).
sub worker_stop {
    my ($w, $sig, $timeout) = @_;
    return $w->{exit} unless $w->{pid};
    kill($sig // 'TERM', $w->{pid});
    my $code = wait_pid($w->{pid}, $timeout // 15);
    $w->{pid} = undef;
    $w->{exit} = $code;
    return $code;
}

sub worker_kill {
    my ($w) = @_;
    return unless $w->{pid};
    kill 'KILL', $w->{pid};
    waitpid $w->{pid}, 0;
    $w->{pid} = undef;
}

sub worker_log {
    my ($w) = @_;
    open my $fh, '<', $w->{log} or return ();
    my @lines;
    while (my $l = <$fh>) {
        my $j = eval { $JSON->decode($l) };
        push @lines, $j // { msg => '(not JSON)', raw => $l };
    }
    return @lines;
}

###############################################################################
# misc

sub wait_for {
    my ($cond, $timeout, $step) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        return 1 if $cond->();
        sleep($step // 0.05);
    }
    return $cond->() ? 1 : 0;
}

sub admin {
    my ($t, $key, $method, $path, $body) = @_;
    return http_req($t->port, $method, $path, bearer => $key, json => 1,
        defined $body ? (json_body => $body) : ());
}

# job_rows($where): notify_jobs rows as hashes
sub job_rows {
    my ($where) = @_;
    my $out = psql("SELECT coalesce(json_agg(j ORDER BY j.seq),"
        . " '[]') FROM notify_jobs j WHERE $where");
    return $JSON->decode($out);
}

# over the UTF-8 bytes of a (decoded) string
sub sha256_hex {
    my ($s) = @_;
    require Digest::SHA;
    utf8::encode($s) if utf8::is_utf8($s);
    return Digest::SHA::sha256_hex($s);
}

sub hmac_sha256_hex {
    my ($data, $key) = @_;
    require Digest::SHA;
    utf8::encode($data) if utf8::is_utf8($data);
    return Digest::SHA::hmac_sha256_hex($data, $key);
}

# notify_cleanup(): what these tests leave in Redis that other files read:
# the worker heartbeat registry (/v1/ops/health would say "degraded").
sub notify_cleanup {
    eval { redis_cli('SREM', 'nx:hb:roles', 'notify'); };
    eval { redis_cli('DEL', 'nx:hb:notify'); };
}

END {
    return unless $$ == $PID;
    for my $w (@WORKERS) {
        next unless $w->{pid};
        kill 'KILL', $w->{pid};
        waitpid $w->{pid}, 0;
    }
    for my $r (@RECEIVERS) {
        next unless $r->{pid};
        kill 'TERM', $r->{pid};
        waitpid $r->{pid}, 0;
    }
    notify_cleanup();
}

1;
