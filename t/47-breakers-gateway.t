#!/usr/bin/perl

# Circuit breakers and metrics with real gateway traffic: a provider's
# breaker opens after 5 failed attempts (500s from the mock, or connect
# errors to a port with nothing behind it), refuses with 503
# UPSTREAM_UNAVAILABLE and Retry-After while open, lets one probe through
# at a time after the open window, closes after 2 successful probes and
# opens again on a failed one; a reset closes it at once; its state and
# the metrics survive a reload, matched by provider name; /metrics counts
# requests, tokens, durations, first tokens and attempts, with escaped
# label values and "_other" for model names nothing vouches for, and
# holds at most 2048 label sets, folding new ones into "_other".

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $TRUE = JSON::PP::true();

# the provider "flaky" points at a port of its own: nothing listens there
# until the test starts a second mock on it
sub conf {
    my ($first, $many) = @_;
    my $extra = <<'EOF';
    upstream mock_up { server %%MOCK%%; keepalive 4; }
    upstream flaky_up { server 127.0.0.1:%%PORT2%%; }
    nexus_max_attempts 1;

    # a request is counted when nginx frees it: without lingering close,
    # before the client sees the connection close
    lingering_close off;
    nexus_breaker failures=5 successes=2 open=1s;
EOF
    my @p = (
        "nexus_provider alpha type=openai upstream=mock_up discovery=off;\n",
        "nexus_provider flaky type=openai upstream=flaky_up discovery=off;\n",
    );
    @p = reverse @p if $first && $first eq 'flaky';
    $extra .= join '', map { "    $_" } @p;
    $extra .= <<'EOF';
    nexus_model m500 alpha model=fault-500;
    nexus_model good alpha model=mock-small;
    nexus_model "we\"ird\\name" alpha model=mock-small;
    nexus_model via-flaky flaky model=mock-small;
    nexus_model slow-flaky flaky model=fault-slow;
EOF
    $extra .= "    nexus_model many-$_ alpha model=mock-small;\n" for 1 .. ($many // 0);
    return nexus_conf(extra => $extra,
        locations => 'location = /metrics { nexus_metrics; }');
}

my $t = nexus_nginx(conf(), workers => 2);
my $port = $t->port;

nexus_plan(78);

my $ops = make_tenant('cbgw-ops', platform => 1);
my $admin = make_key($ops, name => 'ops', role => 'admin');
my $tenant = make_tenant('cbgw');
psql("UPDATE tenants SET allow_all_models = true WHERE name = '$tenant'");
my $key = make_key($tenant);

sub chat {
    my ($model, %o) = @_;
    my $body = { model => $model, messages => [
        { role => 'system', content => 'be brief' },
        { role => 'user', content => 'hello there how are you' },
    ] };
    $body->{stream} = $TRUE if $o{stream};
    return http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
        json_body => $body, json => !$o{stream}, timeout => 15);
}

sub chat_start {
    my ($model) = @_;
    return http_start($port, 'POST', '/v1/chat/completions', bearer => $key,
        json_body => { model => $model,
                       messages => [ { role => 'user', content => 'hi' } ] },
        json => 1, timeout => 15);
}

sub breaker {
    my ($name) = @_;
    my $r = http_req($port, 'GET', "/v1/ops/circuit-breakers/$name",
        bearer => $admin, json => 1);
    return $r->{json}{data} // {};
}

sub metrics {
    return http_req($port, 'GET', '/metrics')->{body};
}

# sample($text, $name, %labels): the value of one sample, or undef
sub sample {
    my ($m, $name, %l) = @_;
    for my $line (split /\n/, $m) {
        next unless $line =~ /^\Q$name\E(?:\{(.*)\})? (\S+)$/;
        my ($labels, $v) = ($1 // '', $2);
        my %have;
        while ($labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) {
            $have{$1} = $2;
        }
        next if grep { !defined $have{$_} || $have{$_} ne $l{$_} } keys %l;
        return $v;
    }
    return undef;
}

sub statuses {
    my ($model, $n) = @_;
    return join ',', map { chat($model)->{status} } 1 .. $n;
}

# --- 500s open the breaker -------------------------------------------------------
is(chat('good')->{status}, 200, 'a healthy provider answers');
is(breaker('alpha')->{state}, 'closed', 'closed');

my $mark = $t->log_mark;
is(statuses('m500', 4), '500,500,500,500', 'four 500s, passed to the client');
is(breaker('alpha')->{state}, 'closed', 'still closed after 4');
is(breaker('alpha')->{failure_count}, 4, 'four consecutive failures');
is(chat('m500')->{status}, 500, 'the fifth 500');

my $b = breaker('alpha');
is($b->{state}, 'open', 'open after 5 failures');
is($b->{opened_count}, 1, 'opened once');
like($b->{opened_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'opened_at');
is($b->{seconds_until_retry}, 1, 'seconds until retry');
like($t->error_log($mark),
    qr/\[warn\].*circuit breaker of provider "alpha" opened after 5 consecutive failures/,
    'opening is logged at warn');

my $before = mock_stats()->{total};
my $r = chat('good');
is($r->{status}, 503, 'open: 503 for every model of the provider');
is($r->{json}{error}{code}, 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_UNAVAILABLE');
is($r->{headers}{'retry-after'}, 1, 'with Retry-After');
is(mock_stats()->{total}, $before, 'nothing reached the provider');

my $m = metrics();
is(sample($m, 'nexus_circuit_state', provider => 'alpha'), 1,
    'metrics: alpha open');
is(sample($m, 'nexus_circuit_opened_total', provider => 'alpha'), 1,
    'metrics: opened once');
is(sample($m, 'nexus_upstream_attempts_total', provider => 'alpha',
    outcome => 'http_5xx'), 5, 'metrics: five 5xx attempts');
is(sample($m, 'nexus_upstream_attempts_total', provider => 'alpha',
    outcome => 'breaker_open'), 1, 'metrics: one attempt skipped');

# --- half-open, then closed after 2 successes --------------------------------------
sleep 1.1;
is(breaker('alpha')->{state}, 'half_open', 'half-open after the window');
is(sample(metrics(), 'nexus_circuit_state', provider => 'alpha'), 2,
    'metrics: half-open is 2');
$mark = $t->log_mark;
is(chat('good')->{status}, 200, 'the probe goes through');
$b = breaker('alpha');
is($b->{state}, 'half_open', 'one success is not enough');
is($b->{success_count}, 1, 'one successful probe');
is(chat('good')->{status}, 200, 'the second probe');
is(breaker('alpha')->{state}, 'closed', 'closed after 2 successes');
my $log = $t->error_log($mark);
like($log, qr/\[notice\].*provider "alpha" is half-open/, 'half-open logged');
like($log, qr/\[notice\].*provider "alpha" closed after 2 successful probes/,
    'closing logged');
is(statuses('good', 3), '200,200,200', 'traffic flows again');

# --- connect errors; a failed probe reopens -----------------------------------------
is(statuses('via-flaky', 5), '502,502,502,502,502',
    'five connect errors: 502');
$b = breaker('flaky');
is($b->{state}, 'open', 'connect errors open the breaker');
is(sample(metrics(), 'nexus_upstream_attempts_total', provider => 'flaky',
    outcome => 'error'), 5, 'metrics: five error attempts');
sleep 1.1;
$mark = $t->log_mark;
is(chat('via-flaky')->{status}, 502, 'a probe to a dead port fails');
$b = breaker('flaky');
is($b->{state}, 'open', 'a failed probe reopens');
is($b->{opened_count}, 2, 'opened twice');
like($t->error_log($mark), qr/\[warn\].*provider "flaky" reopened/,
    'reopening logged at warn');

# the provider comes back: a second mock on the flaky port
my $mock_pid = fork // die "fork: $!";
if (!$mock_pid) {
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    exec('node', "$ENV{NEXUS_TEST_ROOT}/t/mock/server.js", '--port',
        $t->port2, '--host', '127.0.0.1') or POSIX::_exit(127);
}
END { kill 'TERM', $mock_pid if $mock_pid; }
for (1 .. 100) {
    last if IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port2);
    sleep 0.05;
}
sleep 1.1;

# one probe at a time: while a slow probe is out, others are refused
my $h = chat_start('slow-flaky');
sleep 0.3;
$r = chat('via-flaky');
is($r->{status}, 503, 'a second request while the probe is out: 503');
is($r->{json}{error}{code}, 'UPSTREAM_UNAVAILABLE', 'UPSTREAM_UNAVAILABLE');
is(http_finish($h)->{status}, 200, 'the slow probe succeeds');
is(breaker('flaky')->{success_count}, 1, 'one probe counted');
is(chat('via-flaky')->{status}, 200, 'the next probe');
is(breaker('flaky')->{state}, 'closed', 'closed again');

# --- a reset closes at once -----------------------------------------------------------
statuses('m500', 5);
is(breaker('alpha')->{state}, 'open', 'alpha open again');
is(chat('good')->{status}, 503, 'refused');
$r = http_req($port, 'POST', '/v1/ops/circuit-breakers/alpha/reset',
    bearer => $admin, json => 1);
is($r->{json}{data}{state}{state}, 'closed', 'reset');
is($r->{json}{data}{state}{opened_count}, 2, 'the count of openings stays');
is(chat('good')->{status}, 200, 'served at once after the reset');

# --- metrics from real traffic -------------------------------------------------------
$m = metrics();
my %tm = (tenant => $tenant, model => 'good');
my $ok = sample($m, 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200);
my $prompt = sample($m, 'nexus_tokens_total', %tm, direction => 'prompt');
my $count = sample($m, 'nexus_request_duration_seconds_count', %tm);
my $ttft = sample($m, 'nexus_ttft_seconds_count', %tm) // 0;

is(chat('good')->{status}, 200, 'one more chat');
is(chat('good', stream => 1)->{status}, 200, 'and a stream');
$m = metrics();
is(sample($m, 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200), $ok + 2, 'requests counted');
is(sample($m, 'nexus_tokens_total', %tm, direction => 'prompt'),
    $prompt + 14, 'prompt tokens counted');
ok(sample($m, 'nexus_tokens_total', %tm, direction => 'completion') >= 16,
    'completion tokens counted');
is(sample($m, 'nexus_request_duration_seconds_count', %tm), $count + 2,
    'durations observed');
is(sample($m, 'nexus_request_duration_seconds_bucket', %tm, le => '+Inf'),
    $count + 2, 'the +Inf bucket is the count');
is(sample($m, 'nexus_ttft_seconds_count', %tm), $ttft + 1,
    'the stream\'s first token observed');
ok(sample($m, 'nexus_requests_total', %tm, provider => '', status => 503),
    'refusals counted with their status, served by no provider');

my @cum = map { sample($m, 'nexus_request_duration_seconds_bucket', %tm,
    le => $_) } qw(0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 30 60 120 +Inf);
ok(!(grep { !defined } @cum)
    && !(grep { $cum[$_] < $cum[$_ - 1] } 1 .. $#cum),
    'histogram buckets are cumulative');

# label values escaped; made-up model names are "_other"
is(chat('we"ird\\name')->{status}, 200, 'a model name with a quote');
like(metrics(), qr/^nexus_requests_total\{tenant="\Q$tenant\E",model="we\\"ird\\\\name",provider="alpha",status="200"\} 1$/m,
    'its label value is escaped');
chat("made-up-$_") for 1 .. 3;
$m = metrics();
unlike($m, qr/made-up/, 'made-up model names are not labels');
ok(sample($m, 'nexus_requests_total', tenant => $tenant, model => '_other'),
    'they count as _other');
unlike($m, qr/\Q$key\E|key_id|nx_[0-9a-f]{12}/, 'no key in any label');

# --- a reload keeps breakers (by name) and counters ------------------------------
statuses('m500', 5);
my $opened = breaker('alpha')->{opened_count};
is(breaker('alpha')->{state}, 'open', 'alpha open before the reload');
my $reqs = sample(metrics(), 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200);
ok($t->reconfigure(conf('flaky')), 'reload, the providers in another order');
is(breaker('alpha')->{opened_count}, $opened, 'alpha keeps its breaker');
is(breaker('flaky')->{opened_count}, 2, 'flaky keeps its own');
is(sample(metrics(), 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200), $reqs, 'the counters survive');

# --- at most 2048 label sets ---------------------------------------------------------
ok($t->reconfigure(conf('alpha', 1100)), 'reload with 1100 more models');
http_req($port, 'POST', '/v1/ops/circuit-breakers/reset-all',
    bearer => $admin);
$m = metrics();
my $series = sample($m, 'nexus_metrics_series');
ok($series < 2048, "$series label sets so far");
is(sample($m, 'nexus_metrics_overflow_total'), 0, 'nothing folded yet');

# two label sets per new model: tenant and model; and with provider, status
my $n = int((2048 - $series) / 2) + 5;
my %codes;
$codes{ chat("many-$_")->{status} }++ for 1 .. $n;
is_deeply(\%codes, { 200 => $n }, "$n requests for as many models")
    or diag(explain(\%codes));
$m = metrics();
$series = sample($m, 'nexus_metrics_series');
ok($series >= 2048 && $series <= 2052, "the bound holds: $series");
ok(sample($m, 'nexus_metrics_overflow_total') >= 5, 'folded requests counted');
ok(sample($m, 'nexus_requests_total', tenant => '_other', model => '_other',
    provider => 'alpha', status => 200) >= 5, 'into tenant and model _other');
ok(sample($m, 'nexus_tokens_total', tenant => '_other', model => '_other',
    direction => 'prompt'), 'tokens too');
unlike($m, qr/model="many-$n"/, 'the last model has no label set');
like($m, qr/model="many-1"/, 'the first has');
$ok = sample($m, 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200);
chat('good');
is(sample(metrics(), 'nexus_requests_total', %tm, provider => 'alpha',
    status => 200), $ok + 1, 'label sets already there keep counting');
