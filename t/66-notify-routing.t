#!/usr/bin/perl

# Routing: routes are tried by priority (lower first) and the first that
# matches takes the event to its destinations, in order; arrays, "*" and
# "prefix.*" match; a disabled route is skipped; no match falls back to
# the tenant's enabled destinations, then to the global fallback URLs
# (signed with their own secret), which also take platform events. And
# one slow receiver does not hold the others.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(22);

my $rcv = receiver_start();
my $fsecret = 'whsec-fallback-66';
receiver_config($rcv, path => '/fallback', secret => $fsecret);
my $fsfile = Nexus::Test::_file_dir() . '/fallback.secret';
open my $fh, '>', $fsfile or die;
print $fh "$fsecret\n";
close $fh;

my $tn = make_tenant('route');
my $key = make_key($tn, role => 'admin');
my $padmin = make_key(make_tenant('rplat', platform => 1), role => 'admin');

my %d;
for my $n (qw(a b c d)) {
    $d{$n} = admin($t, $key, 'POST', '/v1/admin/notifications/destinations',
        { url => "$rcv->{url}/$n", enabled => ($n eq 'd' ? JSON::PP::false
                                                         : JSON::PP::true) })
        ->{json}{data}{id};
}

sub route {
    my (%r) = @_;
    my $res = admin($t, $key, 'POST', '/v1/admin/notifications/routes', \%r);
    die "route: $res->{body}" unless $res->{status} == 201;
    return $res->{json}{data}{id};
}

my $r1 = route(name => 'critical', priority => 10,
    match_json => { event_type => ['incident.opened'],
                    severity => ['high', 'critical'] },
    destinations_json => [{ destination_id => $d{b} }, { destination_id => $d{a} }]);
my $r2 = route(name => 'incidents', priority => 20,
    match_json => { event_type => 'incident.*' }, destinations_json => [$d{c}]);
route(name => 'off', priority => 1, enabled => JSON::PP::false,
    match_json => { event_type => '*' }, destinations_json => [$d{d}]);
my $r4 = route(name => 'billing', priority => 30,
    match_json => { event_type => '*', source => 'billing' },
    destinations_json => [$d{b}]);

my $w = worker_start(env => {
    NEXUS_NOTIFY_FALLBACK_URLS => qq(["$rcv->{url}/fallback"]),
    NEXUS_NOTIFY_FALLBACK_SECRET_FILE => $fsfile });

# the destinations an event was routed to, in job order, as names
my %name = reverse %d;
sub routed {
    my ($key_, %ev) = @_;
    my $r = admin($t, $key_, 'POST', '/v1/admin/notifications/events', \%ev);
    die "event: $r->{body}" unless $r->{status} == 202;
    my $eid = $r->{json}{data}{event_id};
    my $jobs;
    wait_for(sub { $jobs = job_rows("event_id = '$eid'"); @$jobs }, 5);
    sleep 0.2;      # the whole batch is one transaction: all or none
    $jobs = job_rows("event_id = '$eid'");
    return ($jobs, join ',', map {
        $_->{kind} eq 'fallback' ? 'fallback' : $name{$_->{destination_id}}
    } @$jobs);
}

my ($jobs, $to) = routed($key, event_type => 'incident.opened',
    severity => 'critical');
is($to, 'b,a', 'priority 10 wins over 20: its destinations, in order');
is($jobs->[0]{route_id}, $r1, 'the job names its route');
($jobs, $to) = routed($key, event_type => 'incident.opened', severity => 'low');
is($to, 'c', 'severity not in the array: the next route');
($jobs, $to) = routed($key, event_type => 'incident.resolved');
is($to, 'c', 'incident.* matches');
($jobs, $to) = routed($key, event_type => 'invoice.paid', source => 'billing');
is($to, 'b', '"*" with a source');
is($jobs->[0]{route_id}, $r4, 'route 4');
($jobs, $to) = routed($key, event_type => 'invoice.paid');
is($to, 'a,b,c', 'no match: the tenant\'s enabled destinations, not d');
is($jobs->[0]{route_id}, undef, 'no route');

# a disabled destination of a matching route: its job is dead-lettered
admin($t, $key, 'PATCH', "/v1/admin/notifications/routes/$r2",
    { destinations_json => [$d{d}] });
($jobs, $to) = routed($key, event_type => 'incident.closed');
is($to, 'd', 'a matching route keeps the event for its disabled destination');
ok(wait_for(sub { job_rows("id = '$jobs->[0]{id}'")->[0]{status} eq 'dlq' }, 5),
    'which goes to the DLQ (destination_disabled), nowhere else');

# a tenant without destinations, and a platform event: the fallback URLs
my $lonely = make_tenant('rlonely');
my $lkey = make_key($lonely, role => 'admin');
($jobs, $to) = routed($lkey, event_type => 'quota.x');
is($to, 'fallback', 'no destination at all: the global fallback URL');
is($jobs->[0]{url}, "$rcv->{url}/fallback", 'that URL');
my $listed = admin($t, $lkey, 'GET', '/v1/admin/notifications/jobs')
    ->{json}{data}[0];
ok($listed->{kind} eq 'fallback' && !defined $listed->{url},
    'the tenant sees a fallback job, not the platform\'s URL');
($jobs, $to) = routed($padmin, event_type => 'system.test', tenant => undef);
is($to, 'fallback', 'a platform event: the fallback URL');
ok(wait_for(sub { @{ receiver_received($rcv, '/fallback') } >= 2 }, 10),
    'both delivered to it');
my @fb = @{ receiver_received($rcv, '/fallback') };
is(scalar(grep { $_->{signed} } @fb), 2, 'signed with the fallback secret');
is(receiver_stats($rcv)->{rejected}, 0, 'and verified');
is($fb[-1]{tenant}, undef, 'a platform event has no tenant header');

ok(wait_for(sub { @{ receiver_received($rcv, '/a') } >= 2
    && @{ receiver_received($rcv, '/c') } >= 2 }, 10), 'routed ones delivered');
is(worker_stop($w), 0, 'stopped');

# --- one slow receiver does not hold the others --------------------------------------
receiver_config($rcv, path => '/slow', delay_ms => 1500);
my $f = make_tenant('rfair');
my $fkey = make_key($f, role => 'admin');
my $slow = admin($t, $fkey, 'POST', '/v1/admin/notifications/destinations',
    { url => "$rcv->{url}/slow" })->{json}{data}{id};
my $fast = admin($t, $fkey, 'POST', '/v1/admin/notifications/destinations',
    { url => "$rcv->{url}/fast" })->{json}{data}{id};
admin($t, $fkey, 'POST', '/v1/admin/notifications/routes', { name => 'slow',
    match_json => { event_type => 'slow.*' }, destinations_json => [$slow] });
admin($t, $fkey, 'POST', '/v1/admin/notifications/routes', { name => 'fast',
    match_json => { event_type => 'fast.*' }, destinations_json => [$fast] });
for (1 .. 30) {
    admin($t, $fkey, 'POST', '/v1/admin/notifications/events',
        { event_type => 'slow.x' });
}
$w = worker_start(env => { NEXUS_NOTIFY_CONCURRENCY => 6,
    NEXUS_NOTIFY_PER_DESTINATION => 3, NEXUS_NOTIFY_TIMEOUT => '3s',
    NEXUS_VISIBILITY_TIMEOUT => '5s' });
wait_for(sub { psql("SELECT count(*) FROM notify_jobs WHERE destination_id ="
    . " $slow AND status = 'delivering'") == 3 }, 10);
my $t0 = time;
admin($t, $fkey, 'POST', '/v1/admin/notifications/events',
    { event_type => 'fast.x' });
ok(wait_for(sub { @{ receiver_received($rcv, '/fast') } >= 1 }, 5)
    && time - $t0 < 1.2,
    sprintf('a fast receiver is served at once behind 30 slow deliveries '
        . '(%.2fs)', time - $t0));
is(psql("SELECT count(*) > 20 FROM notify_jobs WHERE destination_id = $slow"
    . " AND status <> 'delivered'"), 't',
    'while the slow one is still working through its backlog');
worker_stop($w, 'KILL');
