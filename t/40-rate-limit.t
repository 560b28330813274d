#!/usr/bin/perl

# Rate limits: a token bucket per key and per tenant, checked together in
# one Redis round trip, exact across two nginx nodes; the 429 and its
# headers; the defaults by route class; nexus_fail_mode closed and open
# while Redis is down, and recovery without a reload.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $locs = <<'EOF';
        location /burst/v1/  { nexus_api; nexus_rate_limit on;
                               nexus_rate_limits key=2:10 tenant=1000:1000; }
        location /tenant/v1/ { nexus_api; nexus_rate_limit on;
                               nexus_rate_limits key=1000:1000 tenant=1:5; }
        location /run/v1/    { nexus_api; nexus_rate_limit on;
                               nexus_route_class run; }
        location /closed/v1/ { nexus_api; nexus_rate_limit on;
                               nexus_fail_mode closed; }
        location /open/v1/   { nexus_api; nexus_rate_limit on;
                               nexus_fail_mode open; }
EOF

my $n1 = nexus_nginx(nexus_conf(locations => $locs), workers => 2);
my $n2 = nexus_nginx(nexus_conf(locations => $locs), workers => 2);

nexus_plan(35);

my $tenant = make_tenant('limits');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub get {
    my ($node, $path, $key) = @_;
    return http_req($node->port, 'GET', $path, bearer => $key, json => 1);
}

# --- a burst across two nodes -----------------------------------------------------
my $key = make_key($tenant, name => 'burst');
my $start = time;
my (@ok, @limited);
for my $i (1 .. 30) {
    my $r = get($i % 2 ? $n1 : $n2, '/burst/v1/me', $key);
    push @{ $r->{status} == 200 ? \@ok : \@limited }, $r;
}
my $elapsed = time - $start;
my $bound = 10 + int($elapsed * 2) + 1;
ok(@ok >= 10, 'the burst of 10 is granted (' . scalar(@ok) . ' accepted)');
ok(@ok <= $bound, sprintf('no more than burst + refill across both nodes'
    . ' (%d <= %d in %.2f s)', scalar(@ok), $bound, $elapsed));
is(scalar(@ok) + scalar(@limited), 30, 'every other request was limited');

my $r = $limited[-1];
is($r->{status}, 429, 'limited: status 429');
is(code($r), 'RATE_LIMITED', 'RATE_LIMITED');
is($r->{json}{error}{details}{scope}, 'api_key', 'details.scope');
is($r->{json}{error}{details}{route_class}, 'read', 'details.route_class');
ok($r->{json}{error}{details}{retry_after_ms} > 0, 'details.retry_after_ms');
is($r->{headers}{'x-ratelimit-scope'}, 'api_key', 'X-RateLimit-Scope');
is($r->{headers}{'x-ratelimit-route-class'}, 'read', 'X-RateLimit-Route-Class');
my $ms = $r->{headers}{'x-ratelimit-retry-after-ms'};
ok($ms > 0 && $ms <= 500, "X-RateLimit-Retry-After-Ms sane ($ms)");
is($r->{headers}{'retry-after'}, '1',
    'Retry-After in whole seconds');
is($r->{headers}{'x-ratelimit-limit'}, '10', 'X-RateLimit-Limit');
is($r->{headers}{'x-ratelimit-remaining'}, '0', 'X-RateLimit-Remaining 0');

like($ok[0]{headers}{'x-ratelimit-limit'} // '', qr/^10$/,
    'success carries X-RateLimit-Limit');
ok(defined $ok[0]{headers}{'x-ratelimit-remaining'},
    'success carries X-RateLimit-Remaining');

sleep 1.1;
is(get($n2, '/burst/v1/me', $key)->{status}, 200, 'tokens refill');

# --- the tenant bucket, shared by its keys -------------------------------------------
my @keys = map { make_key($tenant, name => "t$_") } 1 .. 3;
my $accepted = 0;
for my $i (0 .. 8) {
    $r = get($i % 2 ? $n1 : $n2, '/tenant/v1/me', $keys[$i % 3]);
    $accepted++ if $r->{status} == 200;
}
ok($accepted >= 5 && $accepted <= 6, "tenant burst of 5 shared by 3 keys ($accepted)");
is($r->{json}{error}{details}{scope}, 'tenant', 'limited by the tenant bucket');

# --- route class defaults (run: key 1 r/s, burst 5) ----------------------------------
my $rkey = make_key($tenant, name => 'run');
my @codes = map { get($n1, '/run/v1/me', $rkey)->{status} } 1 .. 7;
is(scalar(grep { $_ == 200 } @codes), 5, 'run class: default burst of 5');
$r = get($n1, '/run/v1/me', $rkey);
is($r->{headers}{'x-ratelimit-route-class'}, 'run', 'run class named');

# --- overrides stored in PostgreSQL ---------------------------------------------------
# a key's own limit beats the location's, and reaches every node at once
my $okey = make_key($tenant, name => 'override');
is(get($n1, '/burst/v1/me', $okey)->{headers}{'x-ratelimit-limit'}, '10',
    'the location limit applies first');
psql(q{UPDATE api_keys SET rate_limits = '{"read": {"rps": 1, "burst": 3}}'}
    . " WHERE prefix = '" . key_prefix($okey) . "'");
sleep 0.5;
$r = get($n2, '/burst/v1/me', $okey);
is($r->{headers}{'x-ratelimit-limit'}, '3', "the key's own limit wins");
$accepted = 1 + grep { get($_ % 2 ? $n1 : $n2, '/burst/v1/me', $okey)->{status} == 200 } 1 .. 6;
ok($accepted >= 3 && $accepted <= 4, "the key's burst of 3 holds ($accepted)");

# a tenant's limit is shared by its keys
my $small = make_tenant('small');
psql(q{UPDATE tenants SET rate_limits = '{"read": {"rps": 1, "burst": 4}}'}
    . " WHERE name = '$small'");
my @sk = map { make_key($small, name => "s$_") } 1 .. 2;
$accepted = grep { get($_ % 2 ? $n1 : $n2, '/closed/v1/me', $sk[$_ % 2])->{status} == 200 } 1 .. 8;
ok($accepted >= 4 && $accepted <= 5, "the tenant's burst of 4 holds ($accepted)");
is(psql("SELECT count(*) FROM tenants WHERE name = '$small'"
    . q{ AND rate_limits = '{"read": {"rps": 1, "burst": 4}}'}), '1',
    'stored as set');
eval { psql(q{UPDATE tenants SET rate_limits = '{"read": {"rps": 0}}'}
    . " WHERE name = '$small'") };
ok($@, 'an invalid override is refused by the database');

# --- with no class configured, the method decides ----------------------------------
my $mkey = make_key($tenant, name => 'method');
is(get($n1, '/closed/v1/me', $mkey)->{headers}{'x-ratelimit-limit'}, '20',
    'GET is of the read class (burst 20)');
$r = http_req($n1->port, 'POST', '/closed/v1/me', bearer => $mkey, body => '');
is($r->{headers}{'x-ratelimit-limit'}, '10',
    'POST is of the mutation class (burst 10)');

# --- Redis down: fail closed and fail open ------------------------------------------
my $fkey = make_key($tenant, name => 'fail');
redis_stop();
$r = get($n1, '/closed/v1/me', $fkey);
is($r->{status}, 503, 'fail closed: 503');
is(code($r), 'RATE_LIMIT_UNAVAILABLE', 'RATE_LIMIT_UNAVAILABLE');
$r = get($n2, '/open/v1/me', $fkey);
is($r->{status}, 200, 'fail open: allowed');
is($r->{headers}{'x-ratelimit-status'}, 'degraded', 'X-RateLimit-Status: degraded');
redis_start();

my $deadline = time + 10;
do {
    $r = get($n1, '/closed/v1/me', $fkey);
    sleep 0.1 if $r->{status} != 200;
} while ($r->{status} != 200 && time < $deadline);
is($r->{status}, 200, 'fail closed recovers without a reload');
$r = get($n2, '/open/v1/me', $fkey);
ok(!defined $r->{headers}{'x-ratelimit-status'}, 'fail open: no longer degraded');

$_->allow_errors(qr/nexus redis/) for $n1, $n2;
