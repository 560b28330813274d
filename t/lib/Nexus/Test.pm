package Nexus::Test;

# Per-file harness for the Nexus integration tests, in the manner of
# nginx-tests' Test::Nginx. t/run starts the shared services (PostgreSQL,
# Redis, the mock upstream) once and exports NEXUS_TEST_*; each t/*.t file
# holds its own nginx.conf and starts its nginx through nexus_nginx().
#
#   use Test::More;
#   use Nexus::Test;
#
#   my $t = nexus_nginx(<<'EOF');
#       nexus_postgres "%%PG%%";
#       server {
#           listen 127.0.0.1:%%PORT%%;
#           location / { return 200 "ok\n"; }
#       }
#   EOF
#   nexus_plan(2);                      # plan tests => 2 + 1 (the log check)
#   my $r = http_req($t->port, 'GET', '/');
#   is($r->{status}, 200, 'status');
#   like($r->{body}, qr/ok/, 'body');
#
# The error log check. Every nginx a file starts is stopped gracefully (QUIT,
# so shutdown-time alerts such as "open socket left" are seen) and its error
# log and sanitizer logs are searched for [alert], [emerg], [crit],
# AddressSanitizer, LeakSanitizer and "runtime error:". The result counts as
# one test, like nginx-tests' "no alerts":
#   - nexus_plan(N) plans N + 1 tests; the check runs when the file ends
#     (from an END block, so it also runs after a die);
#   - or call nexus_done_testing() at the end instead of done_testing();
#   - a file that uses plain plan()/done_testing() still fails on bad log
#     lines: the END block then adds one failing test (and nothing when the
#     logs are clean).
# An nginx that does not exit within 5 s of QUIT counts as a failure too:
# something (a connection, a timer that is not cancelable) keeps it alive,
# which is exactly what would block a reload in production.
# Expected lines can be excused with $t->allow_errors(qr/.../).
#
# At a glance (each function is documented where it is defined):
#   nexus_nginx($conf, %opt) → $t      start an nginx; $t->port, port2, dir,
#                                      reload, reconfigure, stop, start,
#                                      worker_pids, master_pid, error_log,
#                                      log_mark, access_log, allow_errors
#   nexus_nginx_t($conf, %opt) → (code, output)   nginx -t only
#   nexus_plan($n), nexus_done_testing()          the log check, counted
#   http_req($port, $method, $path, %opt) → {status, headers, headers_all,
#       body, raw, elapsed, ttfb, timeout, incomplete, json}
#   http_start(...) → $h; http_read_until($h, qr//, $s) → bytes so far;
#   http_finish($h) → as http_req; http_abort($h)
#   mock_req(...) → as http_req; mock_stats() → {...}; mock_reset()
#   psql($sql) → stdout; psql_bg($sql) → pid; wait_pid($pid, $s) → exit code
#   nexusctl(@args) → (exit code, stdout, stderr)
#   pg_stop(), pg_start(), redis_cli(@args) → stdout, redis_stop(),
#   redis_start()
#   unique_name($base), sql_quote($s), json_encode, json_decode,
#   sse_data($body) → data payloads, ndjson($body) → decoded lines
#
# Each nginx gets its own dir under $NEXUS_TEST_TMP and its own two ports
# (58100-58899). When the tests run as root, nginx's workers run as nobody
# (nginx's default): the test pepper file is world-readable for that reason.
#
# Modes (environment, set by t/run or by hand), after OpenResty's Test::Nginx:
#   NEXUS_TEST_LD_PRELOAD   nginx runs with this LD_PRELOAD (t/run sets it to
#                           libasan with NEXUS_ASAN=1); sanitizer logs go to
#                           <instance dir>/san/ and count in the log check
#   NEXUS_TEST_VALGRIND=1   nginx runs under valgrind (t/run: NEXUS_VALGRIND=1);
#                           reports in <instance dir>/san/valgrind.<pid> count
#                           in the log check; waits are 5 times longer
#   NEXUS_TEST_HUP=1        every request to a running instance is preceded by
#                           a reload (HUP), to shake out reload bugs
#   NEXUS_TEST_SLOW_WRITE=1 every request is written one byte at a time
#
# All helpers die with a clear message when the environment is missing
# (run the files through t/run, not prove alone).

use strict;
use warnings;

use Test::More ();
use Exporter 'import';
use File::Path ();
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(:sys_wait_h);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

our @EXPORT = qw(
    nexus_nginx nexus_nginx_t nexus_plan nexus_done_testing
    http_req http_start http_finish http_read_until http_abort
    psql psql_bg wait_pid sql_quote
    nexusctl
    pg_stop pg_start redis_cli redis_stop redis_start
    mock_req mock_stats mock_reset
    unique_name json_encode json_decode sse_data ndjson
);

my $NGINX = $ENV{NEXUS_TEST_NGINX} || '/usr/sbin/nginx';
my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

my @INSTANCES;          # every nginx this file started (Nexus::Test::Nginx)
my %PORTS_TAKEN;        # ports handed out by this process
my $NEXT_PORT;
my $INSTANCE_SEQ = 0;
my $FILE_DIR;           # per-file temp dir under $NEXUS_TEST_TMP
my $NEXUS_PLAN = 0;     # nexus_plan() was used
my $LOG_CHECKED = 0;    # the log check has been emitted
my $UNIQUE_SEQ = 0;
my $PID = $$;           # END blocks of forked children do nothing
my $VALGRIND = $ENV{NEXUS_TEST_VALGRIND} ? 1 : 0;
my $SLOW = $VALGRIND ? 5 : 1;    # wait multiplier

# A Ctrl-C or kill still runs END (stops nginx, reports).
$SIG{INT} = sub { exit 130 };
$SIG{TERM} = sub { exit 143 };
$SIG{PIPE} = 'IGNORE';

sub _env {
    my ($name) = @_;
    my $v = $ENV{$name};
    die "Nexus::Test: \$$name is not set: run the tests through t/run\n"
        unless defined $v && $v ne '';
    return $v;
}

# _file_dir(): the temp dir of this test file, created on first use.
sub _file_dir {
    return $FILE_DIR if $FILE_DIR;
    my $base = $0;
    $base =~ s{.*/}{};
    $base =~ s/\.t$//;
    $base =~ s/[^A-Za-z0-9_.-]/_/g;
    $FILE_DIR = File::Temp::tempdir("$base.XXXXXX", DIR => _env('NEXUS_TEST_TMP'));
    chmod 0755, $FILE_DIR;
    return $FILE_DIR;
}

sub _port_free {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
        Listen => 1, ReuseAddr => 1) or return 0;
    close $s;
    return 1;
}

# _free_port(): a port in 58100-58899 that is free now and not yet handed
# out by this process. Starts at 58100 + (pid % 800).
sub _free_port {
    $NEXT_PORT //= 58100 + ($$ % 800);
    for (1 .. 800) {
        my $p = $NEXT_PORT;
        $NEXT_PORT = $NEXT_PORT >= 58899 ? 58100 : $NEXT_PORT + 1;
        next if $PORTS_TAKEN{$p};
        next unless _port_free($p);
        $PORTS_TAKEN{$p} = 1;
        return $p;
    }
    die "Nexus::Test: no free port in 58100-58899\n";
}

sub _pg_conninfo {
    return 'hostaddr=127.0.0.1 port=' . _env('NEXUS_TEST_PG_PORT')
        . ' dbname=nexus_test user=postgres';
}

sub _read_file {
    my ($path, $offset) = @_;
    open my $fh, '<:raw', $path or return '';
    if ($offset) {
        seek $fh, $offset, 0;
    }
    local $/;
    my $s = <$fh>;
    close $fh;
    return $s // '';
}

sub _write_file {
    my ($path, $content) = @_;
    open my $fh, '>:raw', $path or die "Nexus::Test: write $path: $!\n";
    print $fh $content;
    close $fh or die "Nexus::Test: write $path: $!\n";
}

# _run(\@cmd, %opt): runs a command, returns (exit code, stdout, stderr).
# opt: stdin => $bytes, env => {K => V}, cwd => $dir.
sub _run {
    my ($cmd, %opt) = @_;
    local %ENV = (%ENV, %{ $opt{env} || {} });
    my $in_tmp = File::Temp->new;
    print $in_tmp $opt{stdin} if defined $opt{stdin};
    close $in_tmp;
    open my $in, '<', $in_tmp->filename or die $!;
    my $out_tmp = File::Temp->new;
    my $err_tmp = File::Temp->new;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        chdir $opt{cwd} if defined $opt{cwd};
        open STDIN, '<&', $in;
        open STDOUT, '>', $out_tmp->filename;
        open STDERR, '>', $err_tmp->filename;
        exec { $cmd->[0] } @$cmd or POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $code = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($code, _read_file($out_tmp->filename), _read_file($err_tmp->filename));
}

###############################################################################
# nginx

# nexus_nginx($conf, %opt): writes <dir>/nginx.conf with $conf as the body of
# http { } and starts nginx (daemon, master process) in its own dir under
# $NEXUS_TEST_TMP. Dies if nginx does not start. Returns a Nexus::Test::Nginx
# object (methods: port, port2, dir, reload, stop, start, reconfigure,
# worker_pids, master_pid, error_log, access_log, log_mark, allow_errors).
#
# Placeholders in $conf (and in opt main/events):
#   %%PORT%% %%PORT2%%  two free ports picked for this instance
#   %%PG%%              libpq conninfo of the test database
#   %%REDIS%%           127.0.0.1:<redis port>
#   %%MOCK%%            127.0.0.1:<mock port>
#   %%PEPPER%%          the key pepper file
#   %%AUDIT_KEY%%       the audit log's key file
#   %%DIR%%             this instance's dir
#   %%ROOT%%            the repo root
#   %%PG_PORT%% %%REDIS_PORT%% %%MOCK_PORT%%
# opt:
#   module => 0         no load_module line (plain nginx)
#   workers => N        worker_processes (1)
#   log_level => L      error_log level (info)
#   main => $text       extra main-context directives (e.g. "env FOO;")
#   events => $text     extra events { } directives
#   user => 'u [g]'     user directive (default: none, i.e. nobody when root)
#   port => N, port2 => N   use these instead of picking free ones
#   env => {K => V}     extra environment for the nginx process
#   wait => 0           return at once (default: wait until %%PORT%% accepts
#                       connections and the workers are up, 10 s at most)
#   no_listen => 1      wait for the workers only (%%PORT%% not listened on)
sub nexus_nginx {
    my ($conf, %opt) = @_;
    my $t = Nexus::Test::Nginx->_new($conf, %opt);
    $t->start;
    return $t;
}

# nexus_nginx_t($conf, %opt): like nexus_nginx() but only runs "nginx -t" on
# the config (for directive validation tests). Returns (exit code, output).
sub nexus_nginx_t {
    my ($conf, %opt) = @_;
    my $t = Nexus::Test::Nginx->_new($conf, %opt);
    $t->{checked_only} = 1;
    my ($code, $out, $err) = _run([$NGINX, '-t', $t->_args],
        env => $t->_start_env);
    return ($code, $out . $err);
}

# nexus_plan($n): plan($n + 1): the extra test is the error log check, which
# runs when the file ends.
sub nexus_plan {
    my ($n) = @_;
    $NEXUS_PLAN = 1;
    Test::More::plan(tests => $n + 1);
}

# nexus_done_testing(): stops every nginx of this file, runs the error log
# check (one test), then done_testing().
sub nexus_done_testing {
    _log_check();
    Test::More::done_testing();
}

# _log_problems(): stops all instances, returns the offending log lines.
sub _log_problems {
    my @bad;
    for my $t (@INSTANCES) {
        push @bad, $t->_stop_for_check;
        push @bad, $t->_bad_lines;
    }
    return @bad;
}

sub _log_check {
    return if $LOG_CHECKED;
    $LOG_CHECKED = 1;
    my @bad = _log_problems();
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!@bad, 'no alerts or sanitizer reports in error logs')
        or Test::More::diag(join "\n", 'offending lines:', @bad);
}

END {
    if ($$ == $PID) {
        my $status = $?;
        if ($NEXUS_PLAN) {
            _log_check();
        } elsif (!$LOG_CHECKED) {
            # plain plan()/done_testing(): only a failure adds a test
            $LOG_CHECKED = 1;
            my @bad = _log_problems();
            if (@bad) {
                Test::More::ok(0, 'no alerts or sanitizer reports in error logs');
                Test::More::diag(join "\n", 'offending lines:', @bad);
            }
        }
        $? = $status;
    }
}

###############################################################################
# HTTP client

# _request_bytes($method, $path, %opt): the request as bytes.
sub _request_bytes {
    my ($method, $path, %opt) = @_;
    return $opt{raw} if defined $opt{raw};

    my @h = ref $opt{headers} eq 'HASH' ? %{ $opt{headers} }
        : @{ $opt{headers} || [] };
    my $body = $opt{body};
    if (exists $opt{json_body}) {
        $body = $JSON->encode($opt{json_body});
        push @h, 'Content-Type' => 'application/json';
    }
    push @h, 'Authorization' => "Bearer $opt{bearer}" if defined $opt{bearer};

    my %have;
    for (my $i = 0; $i < @h; $i += 2) {
        $have{ lc $h[$i] } = 1;
    }
    my $req = "$method $path HTTP/1.1\r\n";
    $req .= "Host: localhost\r\n" unless $have{host};
    $req .= "Connection: close\r\n" unless $have{connection};
    if ($opt{body_chunks}) {
        $req .= "Transfer-Encoding: chunked\r\n"
            unless $have{'transfer-encoding'};
    } elsif (defined $body && !$have{'content-length'}) {
        $req .= 'Content-Length: ' . length($body) . "\r\n";
    }
    for (my $i = 0; $i < @h; $i += 2) {
        $req .= "$h[$i]: $h[$i + 1]\r\n";
    }
    $req .= "\r\n";
    if ($opt{body_chunks}) {
        for my $c (@{ $opt{body_chunks} }) {
            $req .= sprintf("%x\r\n%s\r\n", length $c, $c) if length $c;
        }
        $req .= "0\r\n\r\n";
    } elsif (defined $body) {
        $req .= $body;
    }
    return $req;
}

# http_start($port, $method, $path, %opt): connects, sends the request and
# returns a handle without reading the response. Same options as http_req.
# Dies if it cannot connect.
sub http_start {
    my ($port, $method, $path, %opt) = @_;
    if ($ENV{NEXUS_TEST_HUP}) {
        my ($t) = grep { $_->{running} && $_->{port} == $port } @INSTANCES;
        $t->reload if $t;
    }
    $opt{slow_write} //= 0.0002 if $ENV{NEXUS_TEST_SLOW_WRITE};
    my $t0 = time;
    my $sock = IO::Socket::INET->new(
        PeerAddr => $opt{host} || '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => $opt{timeout} || 10)
        or die "Nexus::Test: connect to port $port: $!\n";
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    $sock->autoflush(1);
    my $bytes = _request_bytes($method, $path, %opt);
    if ($opt{slow_write}) {
        # one byte per write: shakes out partial-read handling
        for my $b (split //, $bytes) {
            syswrite($sock, $b) // last;
            sleep($opt{slow_write} > 0 ? $opt{slow_write} : 0.001);
        }
    } else {
        my $off = 0;
        while ($off < length $bytes) {
            my $n = syswrite($sock, $bytes, length($bytes) - $off, $off);
            last unless defined $n;
            $off += $n;
        }
    }
    return {
        sock => $sock, t0 => $t0, buf => '', eof => 0, ttfb => undef,
        timeout => $opt{timeout} || 10, json => $opt{json},
        method => $method,
    };
}

# _read_more($h, $deadline): reads what is available, up to the deadline.
# Returns bytes read (0 at EOF, undef on timeout).
sub _read_more {
    my ($h, $deadline) = @_;
    return 0 if $h->{eof};
    my $sel = IO::Select->new($h->{sock});
    my $left = $deadline - time;
    return undef if $left <= 0;
    return undef unless $sel->can_read($left);
    my $n = sysread($h->{sock}, my $chunk, 65536);
    if (!$n) {
        $h->{eof} = 1;
        return 0;
    }
    $h->{ttfb} //= time - $h->{t0};
    $h->{buf} .= $chunk;
    return $n;
}

# http_read_until($h, $re, $timeout): reads until the raw response bytes
# received so far (status line and headers included) match $re, EOF, or the
# timeout (seconds, default 10). Returns the bytes received so far.
sub http_read_until {
    my ($h, $re, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while ($h->{buf} !~ $re) {
        my $n = _read_more($h, $deadline);
        last unless $n;
    }
    return $h->{buf};
}

# http_finish($h, timeout => $s): reads the rest of the response (until EOF
# or the timeout, default the one given to http_start) and parses it; the
# return value is that of http_req.
sub http_finish {
    my ($h, %opt) = @_;
    my $deadline = time + ($opt{timeout} // $h->{timeout});
    my $timed_out = 0;
    while (!$h->{eof}) {
        my $n = _read_more($h, $deadline);
        if (!defined $n) {
            $timed_out = 1;
            last;
        }
    }
    close $h->{sock};
    my $r = _parse_response($h->{buf}, $h->{method});
    $r->{elapsed} = time - $h->{t0};
    $r->{ttfb} = $h->{ttfb};
    $r->{timeout} = 1 if $timed_out;
    if ($h->{json} && defined $r->{body}) {
        $r->{json} = eval { $JSON->decode($r->{body}) };
        $r->{json_error} = $@ if $@;
    }
    return $r;
}

# http_abort($h): closes the connection without reading the response
# (a client that goes away).
sub http_abort {
    my ($h) = @_;
    close $h->{sock} if $h->{sock};
    $h->{eof} = 1;
}

# http_req($port, $method, $path, %opt): one HTTP/1.1 request over a fresh
# connection (Connection: close), response read until EOF.
# opt:
#   headers => [k => v, ...]   in order, duplicates allowed, any bytes in
#                              values (NUL, non-ASCII); a hashref works too.
#                              Host and Connection are added unless given.
#   body => $bytes             with Content-Length unless given
#   json_body => $ref          JSON-encoded body + Content-Type
#   bearer => $key             Authorization: Bearer $key
#   body_chunks => [...]       body sent with Transfer-Encoding: chunked
#   raw => $bytes              send exactly these bytes instead
#   timeout => $s              overall (default 10)
#   json => 1                  decode the body into {json}
#   slow_write => $s           write one byte at a time
# Returns a hashref:
#   status       number (undef if no status line arrived)
#   reason       reason phrase
#   headers      { lowercased name => value } (last one wins for duplicates)
#   headers_all  { lowercased name => [values...] }
#   body         body, de-chunked
#   raw          the raw response bytes
#   elapsed      seconds until the response was complete
#   ttfb         seconds until the first response byte
#   timeout      1 if the timeout expired before EOF
#   incomplete   1 if the body ended early (chunked without last chunk,
#                or fewer bytes than Content-Length)
#   json         decoded body (json => 1); json_error if it did not parse
sub http_req {
    my ($port, $method, $path, %opt) = @_;
    my $h = http_start($port, $method, $path, %opt);
    return http_finish($h);
}

sub _parse_response {
    my ($raw, $method) = @_;
    my $r = {
        raw => $raw, status => undef, headers => {}, headers_all => {},
        body => undef,
    };
    my $end = index $raw, "\r\n\r\n";
    if ($end < 0) {
        $r->{incomplete} = 1;
        if ($raw =~ m{^HTTP/\d\.\d (\d{3})}) {
            $r->{status} = $1;
        }
        return $r;
    }
    my $head = substr $raw, 0, $end;
    my $body = substr $raw, $end + 4;
    my ($status_line, @lines) = split /\r\n/, $head;
    if ($status_line =~ m{^HTTP/\d\.\d (\d{3})(?: (.*))?$}) {
        $r->{status} = $1 + 0;
        $r->{reason} = $2 // '';
    }
    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):[ \t]*(.*?)[ \t]*$/ or next;
        $k = lc $k;
        $r->{headers}{$k} = $v;
        push @{ $r->{headers_all}{$k} }, $v;
    }
    my $te = $r->{headers}{'transfer-encoding'} // '';
    if ($method && $method eq 'HEAD') {
        $r->{body} = '';
    } elsif ($te =~ /chunked/i) {
        my $out = '';
        my $complete = 0;
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $len = hex $1;
            if ($len == 0) {
                $complete = 1;
                last;
            }
            if (length($body) < $len) {
                $out .= $body;
                $body = '';
                last;
            }
            $out .= substr $body, 0, $len;
            substr($body, 0, $len) = '';
            $body =~ s/^\r\n//;
        }
        $r->{incomplete} = 1 unless $complete;
        $r->{body} = $out;
    } else {
        my $cl = $r->{headers}{'content-length'};
        if (defined $cl && $cl =~ /^\d+$/) {
            $r->{incomplete} = 1 if length($body) < $cl;
            $body = substr $body, 0, $cl if length($body) > $cl;
        }
        $r->{body} = $body;
    }
    return $r;
}

# mock_req($method, $path, %opt): http_req() straight to the mock upstream.
sub mock_req {
    my ($method, $path, %opt) = @_;
    return http_req(_env('NEXUS_TEST_MOCK_PORT'), $method, $path, %opt);
}

# mock_stats(): the mock's counters (GET /__mock/stats), decoded.
sub mock_stats {
    my $r = mock_req('GET', '/__mock/stats', json => 1);
    die "Nexus::Test: mock stats: status " . ($r->{status} // 'none') . "\n"
        unless ($r->{status} // 0) == 200;
    return $r->{json};
}

# mock_reset(): clears the mock's counters and recorded requests.
sub mock_reset {
    my $r = mock_req('POST', '/__mock/reset');
    die "Nexus::Test: mock reset failed\n" unless ($r->{status} // 0) == 200;
    return 1;
}

###############################################################################
# PostgreSQL, Redis, nexusctl

sub _psql_cmd {
    return ('psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
        '-d', _env('NEXUS_DATABASE_URL'));
}

# psql($sql): runs $sql (one or more statements) on the test database;
# returns stdout trimmed (unaligned, tuples only: columns joined by "|",
# rows by "\n"). Dies with psql's stderr on error.
sub psql {
    my ($sql) = @_;
    my ($code, $out, $err) = _run([_psql_cmd()], stdin => $sql);
    die "psql failed ($code): $err\nSQL: $sql\n" if $code;
    $out =~ s/^\s+|\s+$//g;
    return $out;
}

# psql_bg($sql): runs $sql in a background psql; returns its pid (see
# wait_pid). E.g. hold a lock:
#   psql_bg('BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;'
#       . ' SELECT pg_sleep(3); COMMIT;');
sub psql_bg {
    my ($sql) = @_;
    my @cmd = _psql_cmd();
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        exec { $cmd[0] } @cmd, '-c', $sql or POSIX::_exit(127);
    }
    return $pid;
}

# wait_pid($pid, $timeout): waits for a child (default 30 s); returns its
# exit code, or undef on timeout (the child is then killed).
sub wait_pid {
    my ($pid, $timeout) = @_;
    my $deadline = time + ($timeout // 30);
    while (time < $deadline) {
        my $w = waitpid $pid, WNOHANG;
        return $? >> 8 if $w == $pid;
        return undef if $w < 0;
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    return undef;
}

# sql_quote($s): $s as an SQL string literal.
sub sql_quote {
    my ($s) = @_;
    return 'NULL' unless defined $s;
    $s =~ s/'/''/g;
    return "'$s'";
}

# nexusctl(@args): runs build/nexusctl with the test environment
# (NEXUS_DATABASE_URL, NEXUS_KEY_PEPPER_FILE, ...). Returns
# (exit code, stdout, stderr). A hashref first argument gives options:
# nexusctl({stdin => $s, env => {K => V}}, @args).
sub nexusctl {
    my %opt = ref $_[0] eq 'HASH' ? %{ shift @_ } : ();
    my $bin = _env('NEXUS_TEST_ROOT') . '/build/nexusctl';
    die "Nexus::Test: $bin not built\n" unless -x $bin;
    return _run([$bin, @_], %opt);
}

sub _as_postgres {
    my @cmd = @_;
    return $> == 0 ? ('runuser', '-u', 'postgres', '--', @cmd) : @cmd;
}

sub _pg_ctl {
    my @args = @_;
    my $bin = _env('NEXUS_TEST_PG_BIN');
    my $cmd = [_as_postgres("$bin/pg_ctl", '-D', _env('NEXUS_TEST_PG_DATA'),
        @args)];
    # cwd /: the postgres user may not be allowed into the current dir
    return _run($cmd, cwd => '/');
}

sub _wait_pg_ready {
    my ($timeout) = @_;
    my $bin = _env('NEXUS_TEST_PG_BIN');
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my ($code) = _run(["$bin/pg_isready", '-q', '-h', '127.0.0.1',
            '-p', _env('NEXUS_TEST_PG_PORT')]);
        return 1 if $code == 0;
        sleep 0.1;
    }
    return 0;
}

# pg_stop(): stops the shared PostgreSQL (pg_ctl stop -m fast); returns 1.
# Dies if it cannot. Call pg_start() before the file ends: other files
# need it.
sub pg_stop {
    my ($code, $out, $err) = _pg_ctl('-m', 'fast', '-w', '-t', '30', 'stop');
    die "pg_stop failed: $out$err\n" if $code;
    return 1;
}

# pg_start(): starts it again and waits until it accepts connections.
sub pg_start {
    my $log = $ENV{NEXUS_TEST_PG_LOG}
        || _env('NEXUS_TEST_PG_DATA') . '/../postgres.log';
    my ($code, $out, $err) = _pg_ctl('-l', $log, '-w', '-t', '30', 'start');
    die "pg_start failed: $out$err\n" if $code;
    die "pg_start: PostgreSQL not ready\n" unless _wait_pg_ready(30);
    return 1;
}

# redis_cli(@args): runs redis-cli -p <port> @args; returns stdout trimmed.
sub redis_cli {
    my (@args) = @_;
    my ($code, $out, $err) = _run(['redis-cli', '-p',
        _env('NEXUS_TEST_REDIS_PORT'), @args]);
    die "redis-cli failed ($code): $err\n" if $code;
    $out =~ s/^\s+|\s+$//g;
    return $out;
}

sub _redis_ping {
    my ($code, $out) = _run(['redis-cli', '-p', _env('NEXUS_TEST_REDIS_PORT'),
        'ping']);
    return $code == 0 && $out =~ /PONG/;
}

# redis_stop(): shuts the shared Redis down (no save) and waits until the
# port is closed.
sub redis_stop {
    _run(['redis-cli', '-p', _env('NEXUS_TEST_REDIS_PORT'), 'shutdown',
        'nosave']);
    my $deadline = time + 10;
    while (time < $deadline) {
        return 1 if _port_free(_env('NEXUS_TEST_REDIS_PORT'));
        sleep 0.05;
    }
    die "redis_stop: Redis still listening\n";
}

# redis_start(): starts Redis again with the arguments t/run used (recorded
# in $NEXUS_TEST_TMP/redis.args) and waits for PING.
sub redis_start {
    my $argf = _env('NEXUS_TEST_TMP') . '/redis.args';
    open my $fh, '<', $argf or die "redis_start: $argf: $!\n";
    chomp(my @args = <$fh>);
    close $fh;
    my ($code, $out, $err) = _run(['redis-server', @args]);
    die "redis_start failed: $out$err\n" if $code;
    my $deadline = time + 10;
    while (time < $deadline) {
        return 1 if _redis_ping();
        sleep 0.05;
    }
    die "redis_start: Redis does not answer\n";
}

###############################################################################
# misc

# unique_name($base): a name unique to this run of this file (the database is
# shared by all files of a run): lowercase [a-z0-9_-], starts with a letter
# or digit, at most 63 chars. E.g. unique_name('acme') = "acme-12345-1".
sub unique_name {
    my ($base) = @_;
    $base = lc($base // 'x');
    $base =~ s/[^a-z0-9_-]+/-/g;
    $base =~ s/^[^a-z0-9]+//;
    $base = 't' if $base eq '';
    my $suffix = '-' . $$ . '-' . ++$UNIQUE_SEQ;
    $base = substr $base, 0, 63 - length $suffix;
    return $base . $suffix;
}

# sse_data($body): the payloads of the "data:" lines of an SSE body, in
# order (multi-line data joined with "\n"); "[DONE]" included as is.
sub sse_data {
    my ($body) = @_;
    my @out;
    for my $ev (split /\r?\n\r?\n/, $body // '') {
        my @d = map { /^data: ?(.*)$/ ? $1 : () } split /\r?\n/, $ev;
        push @out, join "\n", @d if @d;
    }
    return @out;
}

# ndjson($body): the JSON lines of an NDJSON body, decoded (a line that does
# not parse is returned as {_unparsed => $line}).
sub ndjson {
    my ($body) = @_;
    my @out;
    for my $l (split /\n/, $body // '') {
        next unless $l =~ /\S/;
        my $v = eval { $JSON->decode($l) };
        push @out, defined $v ? $v : { _unparsed => $l };
    }
    return @out;
}

# json_encode($ref) / json_decode($bytes): canonical UTF-8 JSON.
sub json_encode { return $JSON->encode($_[0]) }
sub json_decode { return $JSON->decode($_[0]) }

###############################################################################

package Nexus::Test::Nginx;

use strict;
use warnings;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my @BAD_PATTERNS = (
    qr/\[alert\]/, qr/\[emerg\]/, qr/\[crit\]/, qr/AddressSanitizer/,
    qr/LeakSanitizer/, qr/runtime error:/,
);
my @VALGRIND_PATTERNS = (
    qr/Invalid (?:read|write|free)/, qr/Conditional jump/, qr/uninitialised/,
    qr/Mismatched free/, qr/Syscall param/, qr/overlap/,
    qr/Process terminating/,
);

sub _new {
    my ($class, $conf, %opt) = @_;
    my $seq = ++$INSTANCE_SEQ;
    my $dir = Nexus::Test::_file_dir() . "/nginx$seq";
    File::Path::make_path($dir);
    chmod 0755, $dir;
    my $self = bless {
        dir => $dir,
        opt => \%opt,
        port => $opt{port} // Nexus::Test::_free_port(),
        port2 => $opt{port2} // Nexus::Test::_free_port(),
        workers => $opt{workers} // 1,
        allow => [],
        running => 0,
    }, $class;
    $self->_write_conf($conf);
    push @INSTANCES, $self;
    return $self;
}

sub _expand {
    my ($self, $s) = @_;
    return '' unless defined $s;
    my %v = (
        PORT => $self->{port},
        PORT2 => $self->{port2},
        PG => Nexus::Test::_pg_conninfo(),
        REDIS => '127.0.0.1:' . Nexus::Test::_env('NEXUS_TEST_REDIS_PORT'),
        MOCK => '127.0.0.1:' . Nexus::Test::_env('NEXUS_TEST_MOCK_PORT'),
        PEPPER => Nexus::Test::_env('NEXUS_TEST_PEPPER_FILE'),
        AUDIT_KEY => Nexus::Test::_env('NEXUS_TEST_AUDIT_KEY_FILE'),
        DIR => $self->{dir},
        ROOT => Nexus::Test::_env('NEXUS_TEST_ROOT'),
        PG_PORT => Nexus::Test::_env('NEXUS_TEST_PG_PORT'),
        REDIS_PORT => Nexus::Test::_env('NEXUS_TEST_REDIS_PORT'),
        MOCK_PORT => Nexus::Test::_env('NEXUS_TEST_MOCK_PORT'),
    );
    $s =~ s/%%([A-Z0-9_]+)%%/exists $v{$1} ? $v{$1}
        : die "Nexus::Test: unknown placeholder %%$1%%\n"/ge;
    return $s;
}

sub _write_conf {
    my ($self, $conf) = @_;
    my %opt = %{ $self->{opt} };
    my $dir = $self->{dir};
    my $module = Nexus::Test::_env('NEXUS_TEST_ROOT')
        . '/build/ngx_nexus_module.so';
    my $use_module = $opt{module} // 1;
    die "Nexus::Test: $module is not built (make module)\n"
        if $use_module && !-f $module;
    my $level = $opt{log_level} // 'info';

    my $c = "# written by Nexus::Test for $0\n";
    $c .= "load_module $module;\n" if $use_module;
    $c .= "user $opt{user};\n" if $opt{user};
    $c .= "worker_processes $self->{workers};\n";
    $c .= "daemon on;\nmaster_process on;\n";
    $c .= "pid $dir/nginx.pid;\n";
    $c .= "error_log $dir/error.log $level;\n";
    $c .= $self->_expand($opt{main}) . "\n" if defined $opt{main};
    $c .= "events {\n    worker_connections 1024;\n";
    $c .= $self->_expand($opt{events}) . "\n" if defined $opt{events};
    $c .= "}\n\nhttp {\n";
    $c .= "    access_log $dir/access.log;\n";
    for my $p (qw(client_body proxy fastcgi uwsgi scgi)) {
        $c .= "    ${p}_temp_path $dir/${p}_temp;\n";
    }
    $c .= "\n" . $self->_expand($conf) . "\n}\n";
    $self->{conf} = $conf;
    Nexus::Test::_write_file("$dir/nginx.conf", $c);
}

sub _args {
    my ($self) = @_;
    my $dir = $self->{dir};
    return ('-p', "$dir/", '-c', "$dir/nginx.conf", '-e', "$dir/error.log");
}

sub _start_env {
    my ($self) = @_;
    my %env = %{ $self->{opt}{env} || {} };
    if ($ENV{NEXUS_TEST_LD_PRELOAD}) {
        $env{LD_PRELOAD} = $ENV{NEXUS_TEST_LD_PRELOAD};
        for my $v (qw(ASAN_OPTIONS UBSAN_OPTIONS)) {
            my $o = $ENV{$v} // '';
            $o =~ s/(^|:)log_path=[^:]*//;
            my $name = $v eq 'ASAN_OPTIONS' ? 'asan' : 'ubsan';
            # workers may run as nobody: a world-writable dir
            File::Path::make_path("$self->{dir}/san");
            chmod 01777, "$self->{dir}/san";
            $o .= ($o eq '' ? '' : ':') . "log_path=$self->{dir}/san/$name";
            $o =~ s/^://;
            $env{$v} = $o;
        }
    }
    return \%env;
}

sub _tail {
    my ($s, $n) = @_;
    my @l = split /\n/, $s;
    splice @l, 0, @l - $n if @l > $n;
    return join "\n", @l;
}

# $t->port, $t->port2: the ports %%PORT%% and %%PORT2%% stand for.
sub port { $_[0]{port} }
sub port2 { $_[0]{port2} }

# $t->dir: this instance's dir (nginx.conf, error.log, access.log, pid).
sub dir { $_[0]{dir} }

# $t->master_pid: the master's pid (from the pid file), undef if none.
sub master_pid {
    my ($self) = @_;
    my $pid = Nexus::Test::_read_file("$self->{dir}/nginx.pid");
    $pid =~ s/\s+//g;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub _alive {
    my ($pid) = @_;
    return 0 unless $pid;
    return 0 unless kill 0, $pid;
    # a zombie counts as dead
    my $st = Nexus::Test::_read_file("/proc/$pid/stat");
    return 0 if $st =~ /^\d+ \(.*\) Z/s;
    return 1;
}

sub _children {
    my ($ppid) = @_;
    my @kids;
    opendir my $d, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $d) {
        my $st = Nexus::Test::_read_file("/proc/$p/stat") or next;
        my ($state, $pp) = $st =~ /\) (\S) (\d+) / or next;
        next unless $pp == $ppid && $state ne 'Z';
        my $cmd = Nexus::Test::_read_file("/proc/$p/cmdline");
        $cmd =~ s/\0+/ /g;
        $cmd =~ s/\s+$//;
        push @kids, [$p, $cmd];
    }
    closedir $d;
    return @kids;
}

# $t->worker_pids(all => 1): pids of the master's active worker processes,
# sorted; with all => 1 also those shutting down after a reload.
sub worker_pids {
    my ($self, %opt) = @_;
    my $m = $self->master_pid or return ();
    my @w;
    for my $k (_children($m)) {
        my ($pid, $cmd) = @$k;
        # under valgrind the title is valgrind's: every child counts
        next unless $VALGRIND || $cmd =~ /worker process/;
        next if !$opt{all} && $cmd =~ /shutting down/;
        push @w, $pid;
    }
    @w = sort { $a <=> $b } @w;
    return wantarray ? @w : scalar @w;
}

# $t->start: starts nginx (done by nexus_nginx; again after stop()). Dies
# with the end of the error log if nginx does not start.
sub start {
    my ($self) = @_;
    die "Nexus::Test: nginx already running in $self->{dir}\n"
        if $self->{running};
    my $log = "$self->{dir}/error.log";
    my $mark = -s $log // 0;
    my @cmd = ($NGINX, $self->_args);
    if ($VALGRIND) {
        File::Path::make_path("$self->{dir}/san");
        chmod 01777, "$self->{dir}/san";
        unshift @cmd, 'valgrind', '-q', '--leak-check=no',
            '--trace-children=no', '--child-silent-after-fork=no',
            "--log-file=$self->{dir}/san/valgrind.%p";
    }
    my ($code, $out, $err) = Nexus::Test::_run(\@cmd,
        env => $self->_start_env);
    if ($code) {
        my $tail = _tail(Nexus::Test::_read_file($log, $mark), 30);
        die "Nexus::Test: nginx failed to start ($code): $out$err$tail\n";
    }
    $self->{running} = 1;
    return $self if defined $self->{opt}{wait} && !$self->{opt}{wait};

    my $deadline = time + 10 * $SLOW;
    my $listening = $self->{opt}{no_listen};
    while (time < $deadline) {
        if (!$listening) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                PeerPort => $self->{port}, Proto => 'tcp', Timeout => 1);
            if ($s) {
                close $s;
                $listening = 1;
            }
        }
        return $self if $listening
            && scalar($self->worker_pids) >= $self->{workers};
        sleep 0.02;
    }
    my $tail = _tail(Nexus::Test::_read_file($log, $mark), 30);
    die "Nexus::Test: nginx did not come up on port $self->{port}"
        . " with $self->{workers} worker(s) within " . 10 * $SLOW
        . "s\n$tail\n";
}

# $t->reload(timeout => $s, hup => 1): "nginx -s reload" (which checks the
# config first and, if it is valid, sends HUP), then waits until a new
# generation of workers is up (none of the active workers existed before).
# Returns 1, or 0 when "nginx -s reload" refused the config (its output is in
# $t->{reload_error}) or no new generation appeared in time (default 10 s).
# hup => 1 sends HUP to the master directly instead, so the master itself
# reads the config (a bad one leaves the old workers running: returns 0).
# Either way a bad config logs [emerg]: excuse it with allow_errors().
sub reload {
    my ($self, %opt) = @_;
    my %old = map { $_ => 1 } $self->worker_pids(all => 1);
    delete $self->{reload_error};
    if ($opt{hup}) {
        my $m = $self->master_pid
            or die "Nexus::Test: reload: no master pid\n";
        kill 'HUP', $m;
    } else {
        my ($code, $out, $err) = Nexus::Test::_run([$NGINX, $self->_args,
            '-s', 'reload'], env => $self->_start_env);
        if ($code) {
            $self->{reload_error} = $out . $err;
            return 0;
        }
    }
    my $deadline = time + ($opt{timeout} // 10) * $SLOW;
    while (time < $deadline) {
        my @w = $self->worker_pids;
        my @new = grep { !$old{$_} } @w;
        return 1 if @w >= $self->{workers} && @new == @w;
        sleep 0.02;
    }
    return 0;
}

# $t->reconfigure($conf, %opt): rewrites nginx.conf with a new http { } body
# (same ports and placeholders), then reload(); returns what reload returns.
# %opt: those of reload(), and of nexus_nginx() for the new config (workers,
# main, events, log_level, module, user); the others stay as they were.
sub reconfigure {
    my ($self, $conf, %opt) = @_;
    my %reload;
    for my $k (qw(timeout hup)) {
        $reload{$k} = delete $opt{$k} if exists $opt{$k};
    }
    %{ $self->{opt} } = (%{ $self->{opt} }, %opt);
    $self->{workers} = $opt{workers} if defined $opt{workers};
    $self->_write_conf($conf);
    return $self->reload(%reload);
}

# $t->stop(timeout => $s): graceful stop: QUIT, wait (default 5 s), then TERM
# and KILL the process group. Returns 1 if nginx exited on QUIT in time, 0
# if it had to be forced.
sub stop {
    my ($self, %opt) = @_;
    return 1 unless $self->{running};
    $self->{running} = 0;
    my $m = $self->master_pid;
    return 1 unless $m && _alive($m);
    my @procs = ($m, $self->worker_pids(all => 1));
    kill 'QUIT', $m;
    my $deadline = time + ($opt{timeout} // 5) * $SLOW;
    while (time < $deadline) {
        return 1 unless grep { _alive($_) } @procs;
        sleep 0.02;
    }
    kill 'TERM', -$m, @procs;
    $deadline = time + 3;
    while (time < $deadline && grep { _alive($_) } @procs) {
        sleep 0.02;
    }
    kill 'KILL', -$m, @procs;
    $self->{forced} = 1;
    return 0;
}

sub _stop_for_check {
    my ($self) = @_;
    return () if $self->{checked_only};
    my $graceful = $self->stop;
    return () if $graceful && !$self->{forced};
    return "$self->{dir}: nginx did not exit within " . 5 * $SLOW
        . "s of QUIT"
        . " (something keeps a worker alive)";
}

# $t->error_log($mark): the error log's content (from byte offset $mark when
# given; see log_mark).
sub error_log {
    my ($self, $mark) = @_;
    return Nexus::Test::_read_file("$self->{dir}/error.log", $mark);
}

# $t->log_mark: the error log's current size, to read only what follows.
sub log_mark {
    my ($self) = @_;
    return -s "$self->{dir}/error.log" // 0;
}

# $t->access_log: the access log's content.
sub access_log {
    my ($self) = @_;
    return Nexus::Test::_read_file("$self->{dir}/access.log");
}

# $t->allow_errors(qr/.../, ...): error log lines matching one of these are
# not held against the file (expected [crit]s, e.g. a dependency that was
# stopped on purpose).
sub allow_errors {
    my ($self, @re) = @_;
    push @{ $self->{allow} }, @re;
    return $self;
}

sub _bad_lines {
    my ($self) = @_;
    return () if $self->{checked_only};
    my @bad;
    my @files = ("$self->{dir}/error.log");
    if (opendir my $d, "$self->{dir}/san") {
        push @files, map { "$self->{dir}/san/$_" } grep { !/^\./ } readdir $d;
        closedir $d;
    }
    for my $f (@files) {
        my @pat = $f =~ m{/valgrind\.[^/]*$} ? @VALGRIND_PATTERNS : @BAD_PATTERNS;
        for my $l (split /\n/, Nexus::Test::_read_file($f)) {
            next unless grep { $l =~ $_ } @pat;
            next if grep { $l =~ $_ } @{ $self->{allow} };
            push @bad, "$f: $l";
        }
    }
    return @bad;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $@, $!);
    $self->stop if $$ == $PID && $self->{running};
}

1;
