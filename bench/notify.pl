#!/usr/bin/perl

# bench/notify.pl: webhook deliveries per second, nexus-notify to the
# local reference receiver (t/notify/receiver.js), at concurrency 1 and
# 32. The jobs are made beforehand (INSERT ... generate_series), so what is
# measured is delivery: claim, HTTP POST, the attempt recorded, the job
# settled. A second figure includes intake: events in a Redis stream,
# routed into jobs, then delivered.
#
# Run with `make bench` (t/run starts PostgreSQL and Redis).
# BENCH_JOBS (default 2000) sets how many deliveries each run makes.

use strict;
use warnings;

use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $n = $ENV{BENCH_JOBS} // 2000;

my $rcv = receiver_start();
my $tenant = make_tenant('nbench');
my $tid = psql("SELECT id FROM tenants WHERE name = '$tenant'");
my $dest = psql("INSERT INTO notify_destinations (tenant_id, url)"
    . " VALUES ($tid, '$rcv->{url}/bench') RETURNING id");
my $payload = '{"data":{"n":1},"event_type":"bench.test","severity":"info"}';
my $sha = sha256_hex($payload);

sub delivered {
    return psql("SELECT count(*) FROM notify_jobs WHERE destination_id = $dest"
        . " AND status = 'delivered'");
}

sub run {
    my ($c, $count, $intake) = @_;
    psql("DELETE FROM notify_jobs WHERE destination_id = $dest");
    receiver_reset($rcv);
    my $stream = "nx:bench:$$:$c:" . ($intake ? 'i' : 'd');
    if ($intake) {
        my $cmds = join '', map {
            "XADD $stream * type bench.test tenant_id $tid n $_\n" } 1 .. $count;
        Nexus::Test::_run(['redis-cli', '-p', $ENV{NEXUS_TEST_REDIS_PORT}],
            stdin => $cmds);
    } else {
        psql("INSERT INTO notify_jobs (tenant_id, kind, destination_id, url,"
            . " event_id, event_type, severity, payload, payload_sha256)"
            . " SELECT $tid, 'destination', $dest, '$rcv->{url}/bench',"
            . " 'bench-' || g, 'bench.test', 'info', '$payload', '$sha'"
            . " FROM generate_series(1, $count) g");
    }
    # timed from the start of the process: its start-up is included
    my $t0 = time;
    my $w = worker_start(nowait => 1, env => { NEXUS_NOTIFY_CONCURRENCY => $c,
        NEXUS_NOTIFY_PER_DESTINATION => $c, NEXUS_LOG_LEVEL => 'warn',
        NEXUS_NOTIFY_STREAM => $stream, NEXUS_NOTIFY_BATCH => 100,
        NEXUS_NOTIFY_TIMEOUT => '10s', NEXUS_VISIBILITY_TIMEOUT => '60s' });
    wait_for(sub { delivered() == $count }, 600, 0.2)
        or die "bench: only " . delivered() . " of $count delivered\n";
    # the end is when the last job was settled, not when this poll saw it
    my $secs = psql("SELECT extract(epoch FROM max(delivered_at))"
        . " FROM notify_jobs WHERE destination_id = $dest") - $t0;
    worker_stop($w);
    my $st = receiver_stats($rcv);
    die "bench: the receiver counted $st->{unique}, not $count\n"
        unless $st->{unique} == $count;
    redis_cli('DEL', $stream) if $intake;
    return $count / $secs;
}

# a short warm-up (connections, caches), then the runs
run(8, 200, 0);

printf "bench: %d deliveries per run to the reference receiver on"
    . " 127.0.0.1\n", $n;
printf "%-40s %14s %14s\n", '', 'concurrency 1', 'concurrency 32';
my $d1 = run(1, int($n / 4), 0);
my $d32 = run(32, $n, 0);
printf "%-40s %14.0f %14.0f\n", 'deliveries/s (jobs made beforehand)',
    $d1, $d32;
my $i1 = run(1, int($n / 4), 1);
my $i32 = run(32, $n, 1);
printf "%-40s %14.0f %14.0f\n", 'deliveries/s (from stream events)',
    $i1, $i32;
