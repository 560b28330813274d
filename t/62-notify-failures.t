#!/usr/bin/perl

# Failures: a receiver that fails N times sees the backoff schedule (the
# one nx_notify_backoff computes, recomputed here) and then success; one
# that always fails puts the job in the DLQ, and a replay delivers it under
# a new id, once; a job older than the maximum age goes to the DLQ as
# 'expired'; a 410 disables the destination; a timeout is retried;
# retry-now brings a retry forward.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX qw(floor);
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(40);

my $rcv = receiver_start();
receiver_config($rcv, path => '/flaky', fail_first => 3);
receiver_config($rcv, path => '/down', fail_first => 1000, fail_status => 503);
receiver_config($rcv, path => '/gone', status => 410);
receiver_config($rcv, path => '/slow', delay_ms => 3000);

my $tn = make_tenant('fail');
my $key = make_key($tn, role => 'admin');

my %dest;
for my $p (qw(flaky down gone slow later)) {
    $dest{$p} = admin($t, $key, 'POST', '/v1/admin/notifications/destinations',
        { url => "$rcv->{url}/$p" })->{json}{data}{id};
    admin($t, $key, 'POST', '/v1/admin/notifications/routes', {
        name => $p, match_json => { event_type => "t.$p" },
        destinations_json => [$dest{$p}] });
}

sub event {
    my ($type) = @_;
    my $r = admin($t, $key, 'POST', '/v1/admin/notifications/events',
        { event_type => $type });
    die "event: $r->{status}" unless $r->{status} == 202;
    return $r->{json}{data}{event_id};
}

sub job_of {
    my ($eid) = @_;
    my $j;
    wait_for(sub { $j = job_rows("event_id = '$eid'")->[0] }, 5);
    return $j;
}

sub attempts {
    my ($id) = @_;
    return admin($t, $key, 'GET',
        "/v1/admin/notifications/jobs/$id/attempts")->{json}{data}{attempts};
}

sub wait_status {
    my ($id, $status, $secs) = @_;
    return wait_for(sub {
        (job_rows("id = '$id'")->[0]{status} // '') eq $status }, $secs);
}

# nx_notify_backoff(), independently
sub backoff {
    my ($id, $n, $base, $max) = @_;
    my $raw = $base;
    for (my $i = 1; $i < $n && $raw < $max; $i++) { $raw *= 2 }
    $raw = $max if $raw > $max;
    my $u = unpack('N', pack('H8', substr(sha256_hex("$id:$n"), 0, 8)));
    return $raw - floor(floor($raw / 4) * $u / 2**32);
}

my $w = worker_start(env => { NEXUS_NOTIFY_MAX_ATTEMPTS => 4 });

# --- fails 3 times, then the 4th attempt gets through ---------------------------------
my $fj = job_of(event('t.flaky'));
ok(wait_status($fj->{id}, 'delivered', 10), 'delivered after failures');
my $a = attempts($fj->{id});
is(join(',', map { $_->{outcome} } @$a), 'failed,failed,failed,delivered',
    'three failures, then success');
is(join(',', map { $_->{http_status} } @$a), '500,500,500,200',
    'each status recorded');
is(join(',', map { $_->{error} // '' } @$a[0 .. 2]), 'HTTP 500,HTTP 500,HTTP 500',
    'each error recorded');
my @gap_ok;
for my $n (1 .. 3) {
    my $gap = (ts($a->[$n]{started_at}) - ts($a->[$n - 1]{started_at})) * 1000;
    my $want = backoff($fj->{id}, $n, 100, 400);
    push @gap_ok, ($gap >= $want - 5 && $gap <= $want + 900) ? 1 : 0;
    diag("gap $n: ${gap}ms, backoff ${want}ms") unless $gap_ok[-1];
}
is(join('', @gap_ok), '111', 'the gaps follow the backoff schedule');
my $st = receiver_stats($rcv);
is($st->{failed_on_purpose}, 3, 'the receiver failed three on purpose');
is(scalar(grep { $_->{id} eq $fj->{id} } @{ receiver_received($rcv, '/flaky') }),
    1, 'and accepted one, under the same id');

sub ts {
    my ($s) = @_;
    # 2024-05-01T12:00:00.123456+00:00
    my ($y, $mo, $d, $h, $mi, $sec) =
        $s =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+):([\d.]+)/ or return 0;
    require Time::Local;
    return Time::Local::timegm(0, $mi, $h, $d, $mo - 1, $y) + $sec;
}

# --- always fails: the DLQ, then a replay with a new id --------------------------------
my $dj = job_of(event('t.down'));
ok(wait_status($dj->{id}, 'dlq', 10), 'out of attempts: dlq');
is(scalar @{ attempts($dj->{id}) }, 4, 'four attempts made');
my $dlq = admin($t, $key, 'GET', '/v1/admin/notifications/dlq')->{json}{data};
my ($entry) = grep { $_->{job_id} eq $dj->{id} } @$dlq;
ok($entry, 'the DLQ lists it');
is($entry->{reason}, 'max_attempts', 'reason max_attempts');
is($entry->{last_error}, 'HTTP 503', 'with the last error');
is(admin($t, $key, 'GET', '/v1/admin/notifications/jobs?status=dlq')
    ->{json}{data}[0]{status}, 'dlq', 'jobs?status=dlq');
like(redis_cli('XRANGE', 'nx:notify:dead', '-', '+'), qr/\Q$dj->{id}\E/,
    'and the dead-letter stream has it');
is(admin($t, $key, 'POST', "/v1/admin/notifications/jobs/$dj->{id}/retry-now")
    ->{json}{error}{code}, 'JOB_NOT_RETRYABLE', 'a dead letter is not retried');

receiver_config($rcv, path => '/down', fail_first => 0, status => 200);
my $rp = admin($t, $key, 'POST',
    "/v1/admin/notifications/dlq/$entry->{id}/replay");
is($rp->{status}, 201, 'replayed');
my $nj = $rp->{json}{data};
isnt($nj->{id}, $dj->{id}, 'a new job id');
is($nj->{replay_of}, $entry->{id}, 'replay_of the dead letter');
ok(wait_status($nj->{id}, 'delivered', 10), 'the replay is delivered');
my ($rgot) = grep { $_->{id} eq $nj->{id} } @{ receiver_received($rcv, '/down') };
ok($rgot, 'X-Notification-Id is the new id');
is(sha256_hex($rgot->{raw}), $dj->{payload_sha256}, 'the same payload');
$rp = admin($t, $key, 'POST', "/v1/admin/notifications/dlq/$entry->{id}/replay");
is($rp->{json}{error}{code}, 'DLQ_ALREADY_REPLAYED', 'replayed once only');
is($rp->{json}{error}{details}{replay_job_id}, $nj->{id}, 'names the replay');

# --- 410 disables the destination -----------------------------------------------------------
my $gj = job_of(event('t.gone'));
ok(wait_status($gj->{id}, 'dlq', 10), '410: dlq at once');
is(scalar @{ attempts($gj->{id}) }, 1, 'after one attempt');
my $gd = psql("SELECT enabled, disabled_reason FROM notify_destinations"
    . " WHERE id = $dest{gone}");
is($gd, 'f|gone', 'the destination is disabled, reason gone');
is(admin($t, $key, 'GET', '/v1/admin/notifications/dlq')->{json}{data}[0]{reason},
    'gone', 'reason gone');
my $gj2 = job_of(event('t.gone'));
ok(!$gj2 || wait_status($gj2->{id}, 'dlq', 5),
    'a later event for it is not delivered');
is(psql("SELECT reason FROM notify_dlq WHERE job_id = '$gj2->{id}'"),
    'destination_disabled', 'dead-lettered as destination_disabled');

# --- a timeout is retried -------------------------------------------------------------------
my $sj = job_of(event('t.slow'));
ok(wait_for(sub { (attempts($sj->{id})->[0]{outcome} // '') eq 'timeout' }, 10),
    'a receiver slower than notify_timeout: timeout');
receiver_config($rcv, path => '/slow', delay_ms => 0);
ok(wait_status($sj->{id}, 'delivered', 10), 'then retried and delivered');

is(worker_stop($w), 0, 'worker stopped');

# --- expired: older than notify_max_age -----------------------------------------------------
receiver_config($rcv, path => '/down', fail_first => 100000, status => 200);
$w = worker_start(env => { NEXUS_NOTIFY_MAX_AGE => '2s',
    NEXUS_NOTIFY_MAX_ATTEMPTS => 100 });
my $ej = job_of(event('t.down'));
ok(wait_status($ej->{id}, 'dlq', 10), 'a job that keeps failing expires');
is(psql("SELECT reason FROM notify_dlq WHERE job_id = '$ej->{id}'"), 'expired',
    'reason expired');
ok(scalar @{ attempts($ej->{id}) } >= 2, 'after its attempts');
is(worker_stop($w), 0, 'worker stopped');

# --- retry-now ---------------------------------------------------------------------------------
receiver_config($rcv, path => '/later', fail_first => 1);
$w = worker_start(env => { NEXUS_NOTIFY_BACKOFF => '60s',
    NEXUS_NOTIFY_BACKOFF_MAX => '60s' });
my $lj = job_of(event('t.later'));
ok(wait_status($lj->{id}, 'retrying', 10), 'failed once, retry in a minute');
my $rn = admin($t, $key, 'POST', "/v1/admin/notifications/jobs/$lj->{id}/retry-now");
is($rn->{status}, 200, 'retry-now');
ok(wait_status($lj->{id}, 'delivered', 5), 'delivered at once, not in a minute');
is(worker_stop($w), 0, 'worker stopped');
