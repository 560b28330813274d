#!/usr/bin/perl

# The SSRF guard. Every address nexus-notify connects to is checked after
# resolution: 127.0.0.2 (the allowlist has 127.0.0.1 only), 10.x,
# 169.254.169.254, [::ffff:127.0.0.1], decimal-encoded IPs, a redirect to
# a private address and file:// are all refused, nothing reaches them,
# and each job records why. Without the allowlist, 127.0.0.1 is refused
# too.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(32);

my $rcv = receiver_start();
my $port = $rcv->{port};
receiver_config($rcv, path => '/redirect', status => 302,
    location => 'http://10.0.0.1/internal');

my $tn = make_tenant('ssrf');
my $key = make_key($tn, role => 'admin');
my $tid = psql("SELECT id FROM tenants WHERE name = '$tn'");

# name => [url, what the job must say]
my %cases = (
    loopback2 => ["http://127.0.0.2:$port/x", qr/127\.0\.0\.2 is loopback/],
    private   => ['http://10.1.2.3/x', qr/10\.1\.2\.3 is private/],
    metadata  => ['http://169.254.169.254/latest/meta-data/',
                  qr/169\.254\.169\.254 is link-local/],
    mapped    => ["http://[::ffff:127.0.0.1]:$port/x",
                  qr/::ffff:127\.0\.0\.1 is ipv4-mapped/],
    decimal   => ["http://2130706434:$port/x", qr/127\.0\.0\.2 is loopback/],
    decimal10 => ['http://167772161/x', qr/10\.0\.0\.1 is private/],
    redirect  => ["http://127.0.0.1:$port/redirect",
                  qr/HTTP 302: redirect to "http:\/\/10\.0\.0\.1\/internal" not followed/],
    ok        => ["http://127.0.0.1:$port/ok", undef],
);

my %dest;
for my $name (sort keys %cases) {
    my $r = admin($t, $key, 'POST', '/v1/admin/notifications/destinations',
        { url => $cases{$name}[0] });
    die "destination $name: $r->{status} $r->{body}" unless $r->{status} == 201;
    $dest{$name} = $r->{json}{data}{id};
    admin($t, $key, 'POST', '/v1/admin/notifications/routes', {
        name => $name, match_json => { event_type => "ssrf.$name" },
        destinations_json => [$dest{$name}] });
}

# file:// is refused by the admin API; a row written some other way is
# refused by the worker
$dest{file} = psql("INSERT INTO notify_destinations (tenant_id, url) VALUES"
    . " ($tid, 'file:///etc/passwd') RETURNING id");
admin($t, $key, 'POST', '/v1/admin/notifications/routes', { name => 'file',
    match_json => { event_type => 'ssrf.file' }, destinations_json => [$dest{file}] });
$cases{file} = ['file:///etc/passwd', qr/the URL scheme "file" is not allowed/];

my $w = worker_start();

my %job;
for my $name (sort keys %cases) {
    my $eid = admin($t, $key, 'POST', '/v1/admin/notifications/events',
        { event_type => "ssrf.$name" })->{json}{data}{event_id};
    wait_for(sub { $job{$name} = job_rows("event_id = '$eid'")->[0] }, 5);
}

ok(wait_for(sub {
    !grep { my $s = job_rows("id = '$job{$_}{id}'")->[0]{status};
            $s ne 'dlq' && $s ne 'delivered' } keys %job }, 15),
    'every job is settled');

for my $name (sort grep { $_ ne 'ok' } keys %cases) {
    my $j = job_rows("id = '$job{$name}{id}'")->[0];
    my $dlq = psql("SELECT reason FROM notify_dlq WHERE job_id = '$j->{id}'");
    is($j->{status} . '/' . $dlq, 'dlq/'
        . ($name eq 'redirect' ? 'redirect' : 'blocked'),
        "$name: refused, dead-lettered at once");
    like($j->{last_error}, $cases{$name}[1], "$name: the job says why");
    my $att = admin($t, $key, 'GET',
        "/v1/admin/notifications/jobs/$j->{id}/attempts")->{json}{data}{attempts};
    is(scalar @$att, 1, "$name: one attempt, no retry");
}

is(job_rows("id = '$job{ok}{id}'")->[0]{status}, 'delivered',
    '127.0.0.1, allowlisted: delivered');
my @paths = map { $_->{path} } @{ receiver_received($rcv) };
is(join(',', sort @paths), '/ok,/redirect',
    'the receiver saw the allowed one and the redirecting one only');
my $att = admin($t, $key, 'GET',
    "/v1/admin/notifications/jobs/$job{metadata}{id}/attempts")->{json}{data};
is($att->{attempts}[0]{outcome}, 'blocked', 'outcome blocked');
is(worker_stop($w), 0, 'stopped');

# --- without the allowlist, 127.0.0.1 is loopback too --------------------------------
$w = worker_start(env => { NEXUS_NOTIFY_ALLOW_CIDRS => '' });
my $eid = admin($t, $key, 'POST', '/v1/admin/notifications/events',
    { event_type => 'ssrf.ok' })->{json}{data}{event_id};
my $j;
ok(wait_for(sub { $j = job_rows("event_id = '$eid'")->[0];
    $j && $j->{status} eq 'dlq' }, 10), 'no allowlist: refused');
like($j->{last_error}, qr/127\.0\.0\.1 is loopback/, 'as loopback');
is(worker_stop($w), 0, 'stopped');
