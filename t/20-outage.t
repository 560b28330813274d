#!/usr/bin/perl

# Dependency outages: PostgreSQL stopped (uncached keys get 503, cached
# keys keep working, /readyz says so) and restarted (recovery without a
# reload); Redis stopped and restarted; a flushed Redis script cache
# (EVALSHA falls back to EVAL).

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1_hex);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(), workers => 1);

nexus_plan(28);

my $port = $t->port;
my $tenant = make_tenant('outage');
my $cached = make_key($tenant, name => 'cached', role => 'admin');
my $cold = make_key($tenant, name => 'cold');

sub req {
    my ($path, $key) = @_;
    return http_req($port, 'GET', $path, json => 1,
        defined $key ? (bearer => $key) : ());
}

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

# poll until $cond->() holds or $secs pass; returns whether it held
sub eventually {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return $cond->();
}

is(req('/v1/me', $cached)->{status}, 200, 'key cached while PostgreSQL is up');
my $r = req('/readyz');
is($r->{status}, 200, 'ready');
is_deeply($r->{json}{checks}, { postgres => 'up', redis => 'up' },
    'both dependencies up');

my @workers = $t->worker_pids;

# --- PostgreSQL down ------------------------------------------------------------
pg_stop();

$r = req('/v1/me', $cold);
is($r->{status}, 503, 'uncached key while PostgreSQL is down: 503');
is(code($r), 'DEPENDENCY_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE');
is($r->{headers}{'retry-after'}, '1', 'Retry-After');
ok($r->{elapsed} < 5, 'answered within the bounded timeout');

$r = req('/v1/me', $cold);
is($r->{status}, 503, 'still 503, never allowed');

is(req('/v1/me', $cached)->{status}, 200, 'cached key still served');

$r = req('/readyz');
is($r->{status}, 503, '/readyz 503 while PostgreSQL is down');
is(code($r), 'DEPENDENCY_UNAVAILABLE', '/readyz code');
is($r->{json}{error}{details}{checks}{postgres}, 'down', '/readyz names postgres');
is($r->{json}{error}{details}{checks}{redis}, 'up', '/readyz: redis up');

$r = req('/v1/admin/tenants', $cached);
is($r->{status}, 503, 'admin API while PostgreSQL is down: 503');

is(req('/healthz')->{status}, 200, '/healthz does not touch PostgreSQL');

# --- PostgreSQL back ------------------------------------------------------------
pg_start();

ok(eventually(10, sub { req('/v1/me', $cold)->{status} == 200 }),
    'uncached key works again after PostgreSQL restarts');
ok(eventually(10, sub { req('/readyz')->{status} == 200 }),
    '/readyz 200 again');
is_deeply([$t->worker_pids], \@workers, 'recovered without a reload');

# revocation works again: the LISTEN connection came back too
my ($code) = nexusctl('revoke-key', '--prefix', key_prefix($cold));
ok(eventually(2, sub { code(req('/v1/me', $cold)) eq 'AUTH_REVOKED_KEY' }),
    'revocation after the outage reaches the worker');

# --- Redis down -----------------------------------------------------------------
redis_stop();

$r = req('/readyz');
is($r->{status}, 503, '/readyz 503 while Redis is down');
is($r->{json}{error}{details}{checks}{redis}, 'down', '/readyz names redis');
is($r->{json}{error}{details}{checks}{postgres}, 'up', '/readyz: postgres up');
is(req('/v1/me', $cached)->{status}, 200, 'auth does not need Redis');

redis_start();

ok(eventually(10, sub { req('/readyz')->{status} == 200 }),
    '/readyz 200 after Redis restarts, without a reload');
is_deeply([$t->worker_pids], \@workers, 'same worker');

# --- a flushed script cache -----------------------------------------------------
my $sha = sha1_hex("return redis.call('PING')");
redis_cli('SCRIPT', 'FLUSH');
is(redis_cli('SCRIPT', 'EXISTS', $sha), '0', 'script cache flushed');
is(req('/readyz')->{status}, 200, 'EVALSHA fell back to EVAL on NOSCRIPT');
is(redis_cli('SCRIPT', 'EXISTS', $sha), '1', 'and EVAL loaded the script again');
