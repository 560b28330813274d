#!/usr/bin/perl

# Nothing blocks the event loop. With one worker: while a key lookup waits
# on a locked table, and while Redis is paused, the same worker answers
# /healthz at once. Clients that go away while their request waits on
# PostgreSQL or Redis leave no dangling callback: no crash, no alert, the
# worker stays. A query that outlives query_timeout gets a 503 and the
# pool recovers.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(redis_timeout => '5s'), workers => 1);
my $t2 = nexus_nginx(nexus_conf(pg => 'pool=1 query_timeout=500ms'),
    workers => 1);

nexus_plan(24);

my $port = $t->port;
my $tenant = make_tenant('loop');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub lock_keys {
    my ($secs) = @_;
    my $pid = psql_bg('BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;'
        . " SELECT pg_sleep($secs); COMMIT;");
    # until the lock is held
    my $deadline = time + 5;
    while (time < $deadline) {
        last if psql("SELECT count(*) FROM pg_locks l JOIN pg_class c"
            . " ON c.oid = l.relation WHERE c.relname = 'api_keys'"
            . " AND l.mode = 'AccessExclusiveLock' AND l.granted") eq '1';
        sleep 0.05;
    }
    return $pid;
}

# the slowest of five /healthz answers, in seconds
sub healthz_max {
    my $max = 0;
    for (1 .. 5) {
        my $r = http_req($port, 'GET', '/healthz');
        return 99 unless $r->{status} == 200;
        $max = $r->{elapsed} if $r->{elapsed} > $max;
    }
    return $max;
}

my ($worker) = $t->worker_pids;

# --- a key lookup waits on a locked table ---------------------------------------
my $key = make_key($tenant, name => 'locked');
my $lock = lock_keys(1.5);
my $h = http_start($port, 'GET', '/v1/me', bearer => $key, json => 1);
sleep 0.2;
my $slow = healthz_max();
ok($slow < 0.1, sprintf('/healthz answers while PostgreSQL waits (%.1f ms)',
    $slow * 1000));
my $r = http_finish($h);
is($r->{status}, 200, 'the waiting request completes when the lock goes');
ok($r->{elapsed} > 0.5, 'it did wait for the lock');
is(wait_pid($lock), 0, 'lock holder done');

# --- Redis paused -----------------------------------------------------------------
redis_cli('CLIENT', 'PAUSE', '1500', 'ALL');
$h = http_start($port, 'GET', '/readyz', json => 1);
sleep 0.2;
$slow = healthz_max();
ok($slow < 0.1, sprintf('/healthz answers while Redis is paused (%.1f ms)',
    $slow * 1000));
$r = http_finish($h);
is($r->{status}, 200, '/readyz completes when Redis resumes');
ok($r->{elapsed} > 0.5, 'it did wait for Redis');

# --- clients that leave while waiting on PostgreSQL -------------------------------
my $key2 = make_key($tenant, name => 'abort-pg');
$lock = lock_keys(1);
my @aborted;
for (1 .. 5) {
    my $a = http_start($port, 'GET', '/v1/me', bearer => $key2);
    push @aborted, $a;
}
sleep 0.3;
http_abort($_) for @aborted;
is(wait_pid($lock), 0, 'lock released');
sleep 0.3;
is(http_req($port, 'GET', '/healthz')->{status}, 200, 'worker answers after aborts');
is(http_req($port, 'GET', '/v1/me', bearer => $key2)->{status}, 200,
    'the key works afterwards');
is_deeply([$t->worker_pids], [$worker], 'same worker: no crash');
like($t->access_log, qr/" 499 /, 'aborts logged as 499');

# --- clients that leave while waiting on Redis -------------------------------------
redis_cli('CLIENT', 'PAUSE', '1000', 'ALL');
@aborted = map { http_start($port, 'GET', '/readyz') } 1 .. 5;
sleep 0.3;
http_abort($_) for @aborted;
sleep 1;
my $deadline = time + 5;
$r = http_req($port, 'GET', '/readyz');
while ($r->{status} != 200 && time < $deadline) {
    sleep 0.1;
    $r = http_req($port, 'GET', '/readyz');
}
is($r->{status}, 200, 'ready after aborted Redis waits');
is_deeply([$t->worker_pids], [$worker], 'same worker after Redis aborts');

# --- aborts while waiting for a free PostgreSQL connection ------------------------
# pool=1 on $t2: one request holds the connection, others queue
my $key3 = make_key($tenant, name => 'queue');
my $p2 = $t2->port;
my ($worker2) = $t2->worker_pids;
# keys are made before the lock: creating one needs the table too
my @queued = map { make_key($tenant) } 1 .. 3;
$lock = lock_keys(2);
my $first = http_start($p2, 'GET', '/v1/me', bearer => $key3, json => 1);
@aborted = map { http_start($p2, 'GET', '/v1/me', bearer => $_) } @queued;
sleep 0.2;
http_abort($_) for @aborted;

# --- query_timeout ------------------------------------------------------------------
$r = http_finish($first);
is($r->{status}, 503, 'a lookup beyond query_timeout gets 503');
is(code($r), 'DEPENDENCY_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE');
ok($r->{elapsed} < 1.5, sprintf('answered at the timeout (%.2f s)',
    $r->{elapsed}));
is(wait_pid($lock), 0, 'lock released');
$deadline = time + 5;
$r = http_req($p2, 'GET', '/v1/me', bearer => $key3);
while ($r->{status} != 200 && time < $deadline) {
    sleep 0.1;
    $r = http_req($p2, 'GET', '/v1/me', bearer => $key3);
}
is($r->{status}, 200, 'the pool recovers after the timeout');
is_deeply([$t2->worker_pids], [$worker2], 'same worker on the second nginx');

# --- one-byte writes do not confuse the request path ---------------------------------
$r = http_req($port, 'GET', '/v1/me', bearer => $key, slow_write => 0.001,
    json => 1);
is($r->{status}, 200, 'request sent one byte at a time');
is($r->{json}{data}{tenant}, $tenant, 'and answered correctly');

# --- many concurrent waiters, one worker ----------------------------------------------
my @keys = map { make_key($tenant) } 1 .. 20;
$lock = lock_keys(1);
my @many = map {
    http_start($port, 'GET', '/v1/me', bearer => $_, json => 1)
} @keys;
sleep 0.2;
$slow = healthz_max();
ok($slow < 0.1, sprintf('/healthz answers with 20 lookups waiting (%.1f ms)',
    $slow * 1000));
my $ok = grep { http_finish($_)->{status} == 200 } @many;
is($ok, 20, 'all 20 waiting lookups complete');
wait_pid($lock);
