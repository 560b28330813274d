#!/usr/bin/perl

# Crash safety and shutdown. nexus-notify is killed with SIGKILL at random
# points, 20 times, while events keep arriving: every event is still
# delivered at least once, and the receiver's dedupe shows no loss (one
# job per event, each received). SIGTERM with deliveries in flight lets
# them finish and exits 0; past shutdown_timeout the jobs are handed back
# and delivered by the next worker; a second SIGTERM exits at once, and
# what it held comes back too.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(25);

my $rcv = receiver_start();
# slow enough, and few enough at once, that kills land mid-delivery
receiver_config($rcv, path => '/crash', delay_ms => 120);

my $tn = make_tenant('crash');
my $key = make_key($tn, role => 'admin');
my $tid = psql("SELECT id FROM tenants WHERE name = '$tn'");
my $dest = admin($t, $key, 'POST', '/v1/admin/notifications/destinations',
    { url => "$rcv->{url}/crash" })->{json}{data}{id};

# a stream of this file's own, fed directly, as any producer would
my $stream = "nx:t63:$$";
# a kill in flight counts as an attempt (the receiver may have got it), and
# a stream entry read again as a delivery: limits far above what 20 kills
# can use up, since this test is about loss, not about giving up
my %crash = (NEXUS_NOTIFY_STREAM => $stream, NEXUS_NOTIFY_CONCURRENCY => 3,
    NEXUS_NOTIFY_PER_DESTINATION => 3, NEXUS_NOTIFY_BATCH => 4,
    NEXUS_NOTIFY_MAX_ATTEMPTS => 50, NEXUS_QUEUE_MAX_ATTEMPTS => 50);
my %env = (%crash, NEXUS_NOTIFY_CONCURRENCY => 8,
    NEXUS_NOTIFY_PER_DESTINATION => 8);

my @events;
sub produce {
    my ($n, $type) = @_;
    for (1 .. $n) {
        my $id = redis_cli('XADD', $stream, '*', 'type', $type // 'crash.test',
            'tenant_id', $tid, 'seq', scalar(@events) + 1);
        push @events, $id;
    }
}

# --- 20 random kills -----------------------------------------------------------------
srand($ENV{NEXUS_TEST_SEED} // time);
my $alive_ok = 0;
for my $run (1 .. 20) {
    produce(10);
    my $w = worker_start(consumer => 'crash-victim', env => \%crash);
    $alive_ok++ if worker_alive($w);
    sleep(0.05 + rand(0.5));
    worker_kill($w);
}
is($alive_ok, 20, '20 workers started and were killed with SIGKILL');

my $w = worker_start(consumer => 'crash-victim', env => \%env);
my $n = scalar @events;
ok(wait_for(sub {
    psql("SELECT count(*) FROM notify_jobs WHERE destination_id = $dest"
        . " AND status = 'delivered'") == $n }, 60),
    "all $n jobs delivered in the end");

my %jobs_per_event = map { split /\|/ } split /\n/, psql(
    "SELECT event_id, count(*) FROM notify_jobs WHERE destination_id = $dest"
    . " GROUP BY event_id");
is(scalar(keys %jobs_per_event), $n, 'every event became a job');
is(scalar(grep { $_ != 1 } values %jobs_per_event), 0,
    'exactly one job per event, however often an entry was taken again');

my $got = receiver_received($rcv, '/crash');
my %seen = map { $_->{body}{event_id} => 1 } @$got;
is(scalar(grep { !$seen{$_} } @events), 0,
    'every event reached the receiver at least once');
my $st = receiver_stats($rcv);
is($st->{unique}, $n, "the receiver's dedupe: $n distinct ids, no loss");
diag("deliveries $st->{deliveries}, duplicates $st->{duplicates} (at least "
    . "once: a killed worker's in-flight work is delivered again)");
is(psql("SELECT count(*) FROM notify_jobs WHERE destination_id = $dest"
    . " AND status <> 'delivered'"), 0, 'nothing left behind');
like(redis_cli('XPENDING', $stream, 'notify'), qr/^0\b/,
    'no stream entry left pending');
ok(psql("SELECT count(*) FROM notify_attempts a JOIN notify_jobs j"
    . " ON j.id = a.job_id WHERE j.destination_id = $dest") >= $n,
    'the attempts are recorded');
ok(psql("SELECT count(*) FROM notify_attempts a JOIN notify_jobs j"
    . " ON j.id = a.job_id WHERE j.destination_id = $dest"
    . " AND a.outcome = 'lost'") > 0,
    'some kills landed on deliveries in flight (attempts recorded as lost)');
is(worker_stop($w), 0, 'the last worker stops cleanly');

# --- SIGTERM with deliveries in flight: they finish ----------------------------------
receiver_reset($rcv);
receiver_config($rcv, path => '/crash', delay_ms => 1000);
@events = ();
$w = worker_start(consumer => 'drainer', env => \%env);
produce(6, 'drain.test');
ok(wait_for(sub {
    psql("SELECT count(*) FROM notify_jobs WHERE destination_id = $dest"
        . " AND status = 'delivering'") == 6 }, 10), 'six deliveries in flight');
my $t0 = time;
is(worker_stop($w, 'TERM', 10), 0, 'SIGTERM: exit 0');
my $took = time - $t0;
ok($took < 4, sprintf('after finishing them (%.1fs)', $took));
is(psql("SELECT count(*) FROM notify_jobs j WHERE destination_id = $dest"
    . " AND status = 'delivered' AND event_id IN ("
    . join(',', map { "'$_'" } @events) . ")"), 6, 'all six delivered');
is(receiver_stats($rcv)->{unique}, 6, 'and received');
ok((grep { $_->{msg} =~ /^draining/ } worker_log($w)), 'the drain is logged');

# --- past shutdown_timeout: handed back, delivered by the next worker -------------------
receiver_reset($rcv);
receiver_config($rcv, path => '/crash', delay_ms => 6000);
@events = ();
$w = worker_start(consumer => 'impatient',
    env => { %env, NEXUS_SHUTDOWN_TIMEOUT => '500ms',
             NEXUS_VISIBILITY_TIMEOUT => '10s', NEXUS_NOTIFY_TIMEOUT => '8s' });
produce(3, 'handback.test');
ok(wait_for(sub {
    psql("SELECT count(*) FROM notify_jobs WHERE destination_id = $dest"
        . " AND status = 'delivering'") == 3 }, 10), 'three in flight');
$t0 = time;
is(worker_stop($w, 'TERM', 10), 0, 'SIGTERM past the timeout: still exit 0');
ok(time - $t0 < 3, 'within the bound');
my $in = join(',', map { "'$_'" } @events);
is(psql("SELECT string_agg(DISTINCT status || ':' || attempts, ',')"
    . " FROM notify_jobs WHERE event_id IN ($in)"), 'queued:0',
    'handed back: queued again, the attempt not counted');
receiver_config($rcv, path => '/crash', delay_ms => 0);
$w = worker_start(consumer => 'next', env => \%env);
ok(wait_for(sub { psql("SELECT count(*) FROM notify_jobs WHERE event_id IN"
    . " ($in) AND status = 'delivered'") == 3 }, 10),
    'the next worker delivers them')
    or diag(psql("SELECT status, attempts, next_attempt_at, locked_by"
        . " FROM notify_jobs WHERE event_id IN ($in)"));
is(worker_stop($w), 0, 'stopped');

# --- a second SIGTERM exits at once -----------------------------------------------------
receiver_config($rcv, path => '/crash', delay_ms => 5000);
@events = ();
$w = worker_start(consumer => 'twice', env => \%env);
produce(1, 'twice.test');
wait_for(sub { psql("SELECT count(*) FROM notify_jobs WHERE event_id ="
    . " '$events[0]' AND status = 'delivering'") == 1 }, 10);
kill 'TERM', $w->{pid};
sleep 0.2;
$t0 = time;
my $code = worker_stop($w, 'TERM', 5);
ok(defined $code && $code != 0 && time - $t0 < 1,
    'the second SIGTERM exits at once, not 0');
receiver_config($rcv, path => '/crash', delay_ms => 0);
$w = worker_start(consumer => 'twice', env => \%env);
ok(wait_for(sub { psql("SELECT status FROM notify_jobs WHERE event_id ="
    . " '$events[0]'") eq 'delivered' }, 10),
    'what it held is taken back and delivered');
worker_stop($w);

redis_cli('DEL', $stream);
