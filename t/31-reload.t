#!/usr/bin/perl

# nginx -s reload with requests in flight: requests waiting on PostgreSQL
# and Redis in the old workers complete, new requests work in the new
# workers, the key cache survives in the shared zone, and revocation still
# reaches the new workers (they LISTEN again). The old workers exit: the
# harness fails the file if one lingers.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

# at debug level, so that every debug log call on these paths runs too
my $t = nexus_nginx(nexus_conf(redis_timeout => '5s'), workers => 2,
    log_level => 'debug');

nexus_plan(14);

my $port = $t->port;
my $tenant = make_tenant('reload');
my $warm = make_key($tenant, name => 'warm');
my $cold = make_key($tenant, name => 'cold');
my $late = make_key($tenant, name => 'late');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

is(http_req($port, 'GET', '/v1/me', bearer => $warm)->{status}, 200,
    'warm key cached before the reload');

# requests in flight: lookups held by a table lock, readiness held by a
# paused Redis
my $lock = psql_bg('BEGIN; LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE;'
    . ' SELECT pg_sleep(1.5); COMMIT;');
sleep 0.3;
my @pg = map {
    http_start($port, 'GET', '/v1/me', bearer => $cold, json => 1)
} 1 .. 4;
redis_cli('CLIENT', 'PAUSE', '1000', 'ALL');
my @redis = map { http_start($port, 'GET', '/readyz', json => 1) } 1 .. 2;
sleep 0.2;

my @old = $t->worker_pids;
ok($t->reload, 'reloaded while requests wait');
my @new = $t->worker_pids;
ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old), 'new workers');

is(http_req($port, 'GET', '/healthz')->{status}, 200,
    'new workers answer at once');
# the table is still locked: only the shared cache can answer this
my $r0 = http_req($port, 'GET', '/v1/me', bearer => $warm);
is($r0->{status}, 200, 'cached key served by the new workers');
ok($r0->{elapsed} < 0.5, 'from the cache kept across the reload');

my $ok = grep { http_finish($_)->{status} == 200 } @pg;
is($ok, 4, 'requests waiting on PostgreSQL completed across the reload');
$ok = grep { http_finish($_)->{status} == 200 } @redis;
is($ok, 2, 'requests waiting on Redis completed across the reload');
is(wait_pid($lock), 0, 'lock holder done');

# the old workers leave once their requests are done
my $deadline = time + 10;
my @left;
do {
    my %now = map { $_ => 1 } $t->worker_pids(all => 1);
    @left = grep { $now{$_} } @old;
    sleep 0.1 if @left;
} while (@left && time < $deadline);
is(scalar @left, 0, 'old workers exited');

is(http_req($port, 'GET', '/v1/me', bearer => $late)->{status}, 200,
    'uncached key looked up by the new workers');

nexusctl('revoke-key', '--prefix', key_prefix($warm));
sleep 1;
my $r = http_req($port, 'GET', '/v1/me', bearer => $warm, json => 1);
is(code($r), 'AUTH_REVOKED_KEY', 'revocation reaches the new workers');

# and once more, with nothing in flight
$t->reload;
is(http_req($port, 'GET', '/v1/me', bearer => $late)->{status}, 200,
    'works after a second reload');
is(http_req($port, 'GET', '/readyz')->{status}, 200, 'ready after reloads');
