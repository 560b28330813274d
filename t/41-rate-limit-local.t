#!/usr/bin/perl

# Rate limits on a single node without Redis: the same buckets, kept in
# the shared zone, exact across the node's workers, and kept across a
# reload.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(listen => 'reuseport', locations => <<'EOF');
        location /l/v1/ { nexus_api; nexus_rate_limit on;
                          nexus_rate_limits key=2:10 tenant=1000:1000;
                          add_header X-Pid $pid always; }
        location /t/v1/ { nexus_api; nexus_rate_limit on;
                          nexus_rate_limits key=1000:1000 tenant=1:4; }
EOF
# the same configuration, without nexus_redis
$conf =~ s/^\s*nexus_redis [^\n]*\n//m;
my $t = nexus_nginx($conf, workers => 2);

nexus_plan(9);

my $tenant = make_tenant('local');
my $key = make_key($tenant, name => 'local');

sub get {
    my ($path, $k) = @_;
    return http_req($t->port, 'GET', $path, bearer => $k, json => 1);
}

my (%pids, @st);
my $start = time;
for (1 .. 30) {
    my $r = get('/l/v1/me', $key);
    push @st, $r;
    $pids{$r->{headers}{'x-pid'}} = 1;
}
my $elapsed = time - $start;
my $ok = grep { $_->{status} == 200 } @st;
ok($ok >= 10 && $ok <= 10 + int($elapsed * 2) + 1,
    sprintf('burst of 10 across the workers (%d in %.2f s)', $ok, $elapsed));
is(scalar keys %pids, 2, 'both workers answered');
my ($lim) = grep { $_->{status} == 429 } @st;
is($lim->{json}{error}{code}, 'RATE_LIMITED', 'RATE_LIMITED without Redis');
is($lim->{headers}{'x-ratelimit-scope'}, 'api_key', 'scope api_key');
ok($lim->{headers}{'x-ratelimit-retry-after-ms'} > 0, 'retry hint');

my @keys = map { make_key($tenant, name => "k$_") } 1 .. 2;
$ok = grep { get('/t/v1/me', $keys[$_ % 2])->{status} == 200 } 1 .. 8;
ok($ok >= 4 && $ok <= 5, "tenant burst of 4 shared by two keys ($ok)");

# buckets live in the zone: a reload does not refill them
my $k2 = make_key($tenant, name => 'reload');
get('/l/v1/me', $k2) for 1 .. 10;
ok($t->reload, 'reloaded');
my $r = get('/l/v1/me', $k2);
is($r->{status}, 429, 'the emptied bucket is still empty after the reload');
sleep 0.6;
is(get('/l/v1/me', $k2)->{status}, 200, 'and refills with time');
