#!/usr/bin/perl

# Bulkheads: at most N requests of a route class in flight on a node,
# counted across its workers; the next one gets 503 SERVICE_BUSY, other
# classes are not affected, and places are given back when requests end,
# including when the client goes away.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(listen => 'reuseport',
    extra => 'nexus_bulkhead run 3;', locations => <<'EOF'), workers => 2);
        location /slow/ {
            nexus_auth on;
            nexus_route_class run;
            proxy_set_header Authorization "";
            proxy_set_header X-Mock-Delay-Ms 1000;
            proxy_pass http://%%MOCK%%/;
        }
        location /fast/ {
            nexus_auth on;
            nexus_route_class read;
            proxy_set_header Authorization "";
            proxy_pass http://%%MOCK%%/;
        }
EOF

nexus_plan(10);

my $tenant = make_tenant('bulkhead');
psql(q{UPDATE tenants SET quota = '{"daily": 1000}'} . " WHERE name = '$tenant'");
my $key = make_key($tenant);

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

my @h = map { http_start($t->port, 'GET', '/slow/v1/models', bearer => $key,
    json => 1) } 1 .. 5;
my @r = map { http_finish($_) } @h;
my $ok = grep { $_->{status} == 200 } @r;
my @busy = grep { $_->{status} == 503 } @r;
is($ok, 3, 'three run requests in flight across both workers');
is(scalar @busy, 2, 'the others are turned away');
is(code($busy[0]), 'SERVICE_BUSY', 'SERVICE_BUSY');
is($busy[0]{json}{error}{details}{route_class}, 'run', 'the class is named');
ok(!defined $busy[0]{headers}{'x-quota-used'}, 'turned away before the quota');
# three runs admitted (3 units each) and this read (1): the two turned
# away would have made it 16
is(http_req($t->port, 'GET', '/fast/v1/models', bearer => $key)
    ->{headers}{'x-quota-used'}, '10', 'a turned-away request spent no quota');

# other classes are not affected while run is full
@h = map { http_start($t->port, 'GET', '/slow/v1/models', bearer => $key) } 1 .. 3;
sleep 0.2;
is(http_req($t->port, 'GET', '/fast/v1/models', bearer => $key)->{status},
    200, 'a read request passes while run is full');
http_finish($_) for @h;

# clients that leave give their places back
@h = map { http_start($t->port, 'GET', '/slow/v1/models', bearer => $key) } 1 .. 3;
sleep 0.2;
http_abort($_) for @h;
sleep 1.5;
@h = map { http_start($t->port, 'GET', '/slow/v1/models', bearer => $key,
    json => 1) } 1 .. 3;
$ok = grep { http_finish($_)->{status} == 200 } @h;
is($ok, 3, 'places given back after client aborts');

# and a reload starts from what is really in flight
ok($t->reload, 'reloaded');
@h = map { http_start($t->port, 'GET', '/slow/v1/models', bearer => $key,
    json => 1) } 1 .. 4;
$ok = grep { http_finish($_)->{status} == 200 } @h;
is($ok, 3, 'the limit holds after a reload');
