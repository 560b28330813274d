#!/usr/bin/perl

# Webhook delivery end to end: an event posted to the admin API (and a
# quota event the gateway itself appends) reaches the reference receiver,
# signed, with the X-Notification-* headers and the canonical payload;
# the job, its attempt and payload_sha256 are recorded; at most 1 KiB of
# the answer is kept; no secret reaches the worker's log; SIGHUP reloads
# what may change.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(45);

my $rcv = receiver_start();
my $secret = 'whsec-61-' . join '', map { int rand 10 } 1 .. 12;
receiver_config($rcv, path => '/signed', secret => $secret);
receiver_config($rcv, path => '/big', body => 'x' x 5000);

my $acme = make_tenant('dacme');
my $key = make_key($acme, role => 'admin');
my $acme_id = psql("SELECT id FROM tenants WHERE name = '$acme'");

my $d = admin($t, $key, 'POST', '/v1/admin/notifications/destinations', {
    url => "$rcv->{url}/signed", secret => $secret,
    headers_json => { 'X-Env' => 'test' } })->{json}{data};
my $big = admin($t, $key, 'POST', '/v1/admin/notifications/destinations', {
    url => "$rcv->{url}/big" })->{json}{data};
my $route = admin($t, $key, 'POST', '/v1/admin/notifications/routes', {
    name => 'incidents', priority => 10,
    match_json => { event_type => 'incident.*' },
    destinations_json => [$d->{id}, $big->{id}] });
is($route->{status}, 201, 'a route to both destinations');

my $w = worker_start();

my $ev = admin($t, $key, 'POST', '/v1/admin/notifications/events', {
    event_type => 'incident.opened', severity => 'high',
    source => 'alerts', data => { title => "disk \x{e9}t\x{e9} full", z => 1,
    a => { y => JSON::PP::true, b => undef } } });
is($ev->{status}, 202, 'event accepted');
my $event_id = $ev->{json}{data}{event_id};

ok(wait_for(sub { @{ receiver_received($rcv, '/signed') } >= 1
    && @{ receiver_received($rcv, '/big') } >= 1 }, 10),
    'delivered to both destinations');

my ($got) = @{ receiver_received($rcv, '/signed') };
my $jobs = job_rows("event_id = '$event_id'");
is(scalar @$jobs, 2, 'two jobs for the event');
my ($job) = grep { $_->{destination_id} == $d->{id} } @$jobs;

is($got->{id}, $job->{id}, 'X-Notification-Id is the job id');
is($got->{attempt}, 1, 'X-Notification-Attempt 1');
is($got->{event_type}, 'incident.opened', 'X-Notification-Event-Type');
is($got->{tenant}, $acme, 'X-Notification-Tenant-Id');
ok($got->{timestamp} && abs($got->{timestamp} - time) < 30,
    'X-Notification-Timestamp is now');
ok($got->{signed}, 'signed');
like($got->{headers}{'x-notification-signature'}, qr/^sha256=[0-9a-f]{64}$/,
    'the signature format');
is($got->{headers}{'x-notification-signature'},
    'sha256=' . hmac_sha256_hex("$got->{id}.$got->{timestamp}.$got->{raw}",
        $secret), 'HMAC over id.timestamp.body, checked here too');
is(receiver_stats($rcv)->{rejected}, 0, 'the receiver verified it');
is($got->{content_type}, 'application/json', 'Content-Type');
is($got->{headers}{'x-env'}, 'test', 'the destination\'s own header');
is($got->{duplicate}, JSON::PP::false, 'not a duplicate');

# the body: canonical, recorded, hashed
# (raw came decoded from the receiver's JSON: characters, not bytes)
my $canon = JSON::PP->new->canonical->encode(
    JSON::PP->new->decode($got->{raw}));
is($got->{raw}, $canon, 'the body is canonical JSON (keys sorted, compact)');
is($got->{raw}, $job->{payload}, 'the body is the job\'s payload');
is(sha256_hex($got->{raw}), $job->{payload_sha256}, 'payload_sha256');
is($got->{body}{event_type}, 'incident.opened', 'payload event_type');
is($got->{body}{event_id}, $event_id, 'payload event_id: the stream entry');
is($got->{body}{tenant}, $acme, 'payload tenant');
is($got->{body}{tenant_id}, $acme_id, 'payload tenant_id');
is($got->{body}{severity}, 'high', 'payload severity');
is($got->{body}{source}, 'alerts', 'payload source');
is($got->{body}{data}{title}, "disk \x{e9}t\x{e9} full", 'payload data, UTF-8');
like($got->{body}{occurred_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
    'occurred_at');
my ($bj) = grep { $_->{destination_id} == $big->{id} } @$jobs;
is($bj->{payload_sha256}, $job->{payload_sha256},
    'the same event gives the same payload for every destination');

ok(wait_for(sub {
    job_rows("event_id = '$event_id' AND status = 'delivered'")->[1] }, 5),
    'both jobs delivered');
my $att = admin($t, $key, 'GET',
    "/v1/admin/notifications/jobs/$job->{id}/attempts")->{json}{data};
is(scalar @{ $att->{attempts} }, 1, 'one attempt');
is($att->{attempts}[0]{outcome}, 'delivered', 'outcome delivered');
is($att->{attempts}[0]{http_status}, 200, 'http_status 200');
is($att->{attempts}[0]{payload_sha256}, $job->{payload_sha256},
    'the attempt stores payload_sha256');
is($att->{attempts}[0]{response_body}, '{"ok":true}', 'the answer is kept');
my $batt = admin($t, $key, 'GET',
    "/v1/admin/notifications/jobs/$bj->{id}/attempts")->{json}{data};
is(length $batt->{attempts}[0]{response_body}, 1023,
    'a 5000-byte answer: at most 1 KiB kept');

# --- an event of the gateway itself: the quota soft cap ------------------------------
my $q = make_tenant('dquota');
my $qkey = make_key($q, role => 'admin');
psql(qq{UPDATE tenants SET quota = '{"daily": 4, "soft_ratio": 0.5}'}
    . " WHERE name = '$q'");
my $qd = admin($t, $qkey, 'POST', '/v1/admin/notifications/destinations',
    { url => "$rcv->{url}/quota" })->{json}{data};
http_req($t->port, 'GET', '/v1/me', bearer => $qkey) for 1 .. 3;
ok(wait_for(sub { @{ receiver_received($rcv, '/quota') } >= 1 }, 10),
    'the gateway\'s quota event is delivered (no route: the tenant\'s '
    . 'destinations)');
my ($qgot) = @{ receiver_received($rcv, '/quota') };
is($qgot->{event_type}, 'quota.soft_cap_reached', 'its type');
is($qgot->{body}{data}{limit}, 4, 'its fields, digits as numbers');

# --- logs ------------------------------------------------------------------------------
my $log = do { local $/; open my $fh, '<', $w->{log}; <$fh> };
unlike($log, qr/\Q$secret\E/, 'the secret never reaches the worker log');
ok(!(grep { $_->{msg} eq '(not JSON)' } worker_log($w)),
    'every log line is JSON');
ok((grep { $_->{msg} eq 'delivered' && ($_->{job_id} // '') eq $job->{id} }
    worker_log($w)), 'the delivery is logged by job id');

# --- SIGHUP ----------------------------------------------------------------------------
is(worker_stop($w), 0, 'stopped');
my $conf = Nexus::Test::_file_dir() . '/notify.conf';
open my $fh, '>', $conf or die;
print $fh "# nexus-notify\nnotify_concurrency = 8\nnotify_stream nx:events\n";
close $fh;
$w = worker_start(args => ['-c', $conf]);
open $fh, '>', $conf or die;
print $fh "notify_concurrency = 16\nnotify_stream = \"nx:other\"\n";
close $fh;
kill 'HUP', $w->{pid};
ok(wait_for(sub { grep { $_->{msg} eq 'reloaded'
    && ($_->{key} // '') eq 'notify_concurrency' } worker_log($w) }, 5),
    'SIGHUP applies a key that may change');
ok((grep { ($_->{key} // '') eq 'notify_stream' && $_->{level} eq 'warn' }
    worker_log($w)), 'and says which one needs a restart');
is(worker_stop($w), 0, 'stopped again');
