#!/usr/bin/perl

# Concurrency leases: at most N requests of a key (and of a tenant) in
# flight across the fleet, held as leases in Redis that are renewed while
# the request lives, given back when it ends or its client leaves, and
# that expire by themselves when their node is gone.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $locs = <<'EOF';
        location /slow/ {
            nexus_auth on;
            nexus_concurrency key=2 tenant=3;
            proxy_set_header Authorization "";
            proxy_set_header X-Mock-Delay-Ms 800;
            proxy_pass http://%%MOCK%%/;
        }
        location /long/ {
            nexus_auth on;
            nexus_concurrency key=1;
            proxy_set_header Authorization "";
            proxy_set_header X-Mock-Delay-Ms 2500;
            proxy_pass http://%%MOCK%%/;
        }
EOF
my $conf = nexus_conf(extra => 'nexus_lease_ttl 1500ms;', locations => $locs);
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf, workers => 2);

nexus_plan(12);

my $tenant = make_tenant('leases');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub parallel {
    my ($path, @keys) = @_;
    my $i = 0;
    my @h = map {
        http_start(($i++ % 2 ? $n1 : $n2)->port, 'GET', $path, bearer => $_,
            json => 1)
    } @keys;
    return map { http_finish($_) } @h;
}

# --- a key's cap, across both nodes --------------------------------------------------
my $key = make_key($tenant, name => 'k');
my @r = parallel('/slow/v1/models', ($key) x 4);
is(scalar(grep { $_->{status} == 200 } @r), 2, 'two of four in flight');
my ($busy) = grep { $_->{status} == 429 } @r;
is(code($busy), 'CONCURRENCY_LIMITED', 'CONCURRENCY_LIMITED');
is($busy->{json}{error}{details}{scope}, 'api_key', 'scope api_key');
is($busy->{headers}{'x-concurrency-limit'}, '2', 'X-Concurrency-Limit');

sleep 0.3;
is(redis_cli('ZCARD', 'nx:cc:k:' . key_id($key)), '0',
    'every lease given back when the requests ended');

# --- the tenant's cap, shared by its keys ------------------------------------------
my @keys = map { make_key($tenant, name => "t$_") } 1 .. 5;
@r = parallel('/slow/v1/models', @keys);
is(scalar(grep { $_->{status} == 200 } @r), 3, 'three of five for the tenant');

# --- clients that leave give their lease back ----------------------------------------
my @h = map { http_start($n1->port, 'GET', '/slow/v1/models', bearer => $key) }
    1 .. 2;
sleep 0.3;
http_abort($_) for @h;
sleep 0.5;
is(redis_cli('ZCARD', 'nx:cc:k:' . key_id($key)), '0',
    'aborted requests released their leases');

# --- a lease outlives its ttl while its request runs ---------------------------------
my $lkey = make_key($tenant, name => 'long');
my $long = http_start($n1->port, 'GET', '/long/v1/models', bearer => $lkey);
sleep 2;
my $r = http_req($n2->port, 'GET', '/long/v1/models', bearer => $lkey,
    json => 1);
is(code($r), 'CONCURRENCY_LIMITED',
    'a 2.5 s request still holds its lease past the 1.5 s ttl (renewed)');
is(http_finish($long)->{status}, 200, 'the long request completes');

# --- a lease of a dead node expires ---------------------------------------------------
my $dkey = make_key($tenant, name => 'dead');
my ($sec, $usec) = split /\n/, redis_cli('TIME');
my $expiry = $sec * 1000 + int($usec / 1000) + 700;
redis_cli('ZADD', 'nx:cc:k:' . key_id($dkey), $expiry, 'a-node-that-died');
$r = http_req($n1->port, 'GET', '/long/v1/models', bearer => $dkey,
    json => 1);
is(code($r), 'CONCURRENCY_LIMITED', 'a live foreign lease counts');
sleep 0.8;
@h = (http_start($n2->port, 'GET', '/long/v1/models', bearer => $dkey));
$r = http_finish($h[0]);
is($r->{status}, 200, 'once expired, it no longer does');
is(redis_cli('ZSCORE', 'nx:cc:k:' . key_id($dkey), 'a-node-that-died'), '',
    'and it was swept');
