#!/usr/bin/perl

# The notifications admin API: destinations (secrets sealed, never shown;
# credential-looking header values redacted), routes, jobs, dead letters,
# events appended to nx:events, /v1/ops/notifications, and the worker
# heartbeats in /v1/ops/health. Who may do what, and a JSON error with a
# stable code for every bad input.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
my $bare = nexus_nginx(nexus_conf(), workers => 1);   # no seal key

nexus_plan(110);

my $ops = make_tenant('nops', platform => 1);
my $acme = make_tenant('nacme');
my $beta = make_tenant('nbeta');
my $padmin = make_key($ops, role => 'admin');
my $aadmin = make_key($acme, role => 'admin');
my $areader = make_key($acme, role => 'reader');
my $badmin = make_key($beta, role => 'admin');
my $acme_id = psql("SELECT id FROM tenants WHERE name = '$acme'");

sub err {
    my ($r, $status, $code, $name) = @_;
    my $ok = ($r->{status} // 0) == $status
        && ref $r->{json} eq 'HASH' && $r->{json}{error}
        && $r->{json}{error}{code} eq $code
        && ($r->{json}{meta}{request_id} // '') ne '';
    ok($ok, "$name: $status $code")
        or diag("got $r->{status}: $r->{body}");
}

my $D = '/v1/admin/notifications/destinations';
my $R = '/v1/admin/notifications/routes';

# --- destinations -----------------------------------------------------------------
my $r = admin($t, $aadmin, 'POST', $D, {
    url => 'https://hooks.example.com/in', name => 'primary',
    headers_json => { 'X-Env' => 'prod', 'Authorization' => 'Bearer tok-123' },
    secret => 'whsec-very-secret-value' });
is($r->{status}, 201, 'a tenant admin creates a destination');
my $d1 = $r->{json}{data};
is($d1->{tenant}, $acme, 'in its own tenant');
is($d1->{has_secret}, JSON::PP::true, 'has_secret');
ok(!exists $d1->{secret} && !exists $d1->{secret_sealed}, 'no secret field');
unlike($r->{raw}, qr/whsec-very-secret-value/, 'the secret is not in the answer');
is($d1->{headers_json}{'X-Env'}, 'prod', 'a plain header value is shown');
is($d1->{headers_json}{Authorization}, '[REDACTED]',
    'a credential-looking header value is redacted');
unlike($r->{raw}, qr/tok-123/, 'the header credential is not in the answer');
is($d1->{enabled}, JSON::PP::true, 'enabled by default');

my $sealed = psql("SELECT encode(secret_sealed, 'hex') FROM notify_destinations"
    . " WHERE id = $d1->{id}");
like($sealed, qr/^01[0-9a-f]{16}/, 'sealed at rest: version 1 and a key id');
is(length($sealed) / 2, 1 + 8 + 12 + 23 + 16, 'nonce, ciphertext and tag');
unlike(pack('H*', $sealed), qr/very-secret/, 'no plain text in the database');

$r = admin($t, $aadmin, 'POST', $D, { url => 'http://127.0.0.1:9/b' });
is($r->{status}, 201, 'a second destination, no secret');
my $d2 = $r->{json}{data};
is($d2->{has_secret}, JSON::PP::false, 'has_secret false');

$r = admin($t, $badmin, 'POST', $D, { url => 'https://beta.example/hook' });
is($r->{status}, 201, 'another tenant creates its own');
my $dbeta = $r->{json}{data};

err(admin($t, $aadmin, 'POST', $D, { tenant => $beta,
    url => 'https://x.example/' }), 404, 'TENANT_NOT_FOUND',
    'a tenant admin cannot create in another tenant');
$r = admin($t, $padmin, 'POST', $D, { tenant => $beta,
    url => 'https://x.example/', secret => 'platform-set' });
is($r->{status}, 201, 'a platform admin creates in any tenant, with a secret');
is($r->{json}{data}{tenant}, $beta, 'in that tenant');
err(admin($t, $padmin, 'POST', $D, { tenant => 'nope-nope',
    url => 'https://x.example/', secret => 'x' }), 404, 'TENANT_NOT_FOUND',
    'an unknown tenant, with a secret to seal');

$r = admin($t, $aadmin, 'GET', $D);
is($r->{status}, 200, 'list');
is_deeply([sort map { $_->{id} } @{ $r->{json}{data} }],
    [sort ($d1->{id}, $d2->{id})], 'a tenant admin lists its own only');
unlike($r->{raw}, qr/very-secret|tok-123/, 'no secret in the list');
$r = admin($t, $padmin, 'GET', "$D?tenant=$beta");
ok((grep { $_->{id} == $dbeta->{id} } @{ $r->{json}{data} })
    && !(grep { $_->{tenant} ne $beta } @{ $r->{json}{data} }),
    'a platform admin filters by tenant');
err(admin($t, $padmin, 'GET', "$D?tenant=Bad!"), 400, 'VALIDATION_ERROR',
    'a bad tenant filter');

for my $case (
    [{ url => 'ftp://x.example/' }, 'an ftp URL'],
    [{ url => 'file:///etc/passwd' }, 'a file URL'],
    [{ url => 'http:///nohost' }, 'a URL without a host'],
    [{ url => "http://x.example/a b" }, 'a URL with a space'],
    [{}, 'no URL'],
    [{ url => 'https://x.example/', headers_json => { 'Bad Name' => 'v' } },
        'a bad header name'],
    [{ url => 'https://x.example/',
        headers_json => { 'X-Notification-Id' => 'v' } }, 'a reserved header'],
    [{ url => 'https://x.example/', headers_json => { 'X-A' => "a\r\nb" } },
        'a header value with a line break'],
    [{ url => 'https://x.example/', headers_json => { 'X-A' => 1 } },
        'a header value that is not a string'],
    [{ url => 'https://x.example/', secret => '' }, 'an empty secret'],
    [{ url => 'https://x.example/', enabled => 'yes' }, 'enabled not a boolean'],
    [{ url => 'https://x.example/', colour => 'red' }, 'an unknown field'],
) {
    err(admin($t, $aadmin, 'POST', $D, $case->[0]), 400, 'VALIDATION_ERROR',
        $case->[1]);
}
err(http_req($t->port, 'POST', $D, bearer => $aadmin, body => '{"url":',
    json => 1, headers => ['Content-Type' => 'application/json']),
    400, 'INVALID_JSON', 'a body that is not JSON');
err(admin($t, $areader, 'POST', $D, { url => 'https://x.example/' }), 403,
    'FORBIDDEN', 'a reader');
is(admin($t, $aadmin, 'PUT', $D)->{status}, 405, 'PUT: 405');

# without nexus_seal_key_file a secret cannot be kept
err(admin($bare, $aadmin, 'POST', $D, { url => 'https://x.example/',
    secret => 's' }), 503, 'SEAL_KEY_NOT_CONFIGURED',
    'a secret without a seal key');
is(admin($bare, $aadmin, 'POST', $D, { url => 'https://x.example/n' })
    ->{status}, 201, 'no secret, no seal key needed');

# PATCH
$r = admin($t, $aadmin, 'PATCH', "$D/$d2->{id}", { enabled => JSON::PP::false });
is($r->{json}{data}{enabled}, JSON::PP::false, 'disabled');
is($r->{json}{data}{disabled_reason}, 'admin', 'disabled_reason admin');
$r = admin($t, $aadmin, 'PATCH', "$D/$d2->{id}", { enabled => JSON::PP::true,
    secret => 'new-secret', url => 'http://127.0.0.1:9/c' });
is($r->{status}, 200, 'patched');
is($r->{json}{data}{disabled_reason}, undef, 'enabled again: no reason');
is($r->{json}{data}{has_secret}, JSON::PP::true, 'a secret set by PATCH');
is($r->{json}{data}{url}, 'http://127.0.0.1:9/c', 'url changed');
unlike($r->{raw}, qr/new-secret/, 'not in the answer');
$r = admin($t, $aadmin, 'PATCH', "$D/$d2->{id}", { secret => undef });
is($r->{json}{data}{has_secret}, JSON::PP::false, 'secret null removes it');
err(admin($t, $badmin, 'PATCH', "$D/$d1->{id}", { enabled => JSON::PP::false }),
    404, 'DESTINATION_NOT_FOUND', 'another tenant\'s destination');
err(admin($t, $badmin, 'PATCH', "$D/$d1->{id}", { secret => 'x' }),
    404, 'DESTINATION_NOT_FOUND', 'another tenant\'s, with a secret');
err(admin($t, $aadmin, 'PATCH', "$D/99999999", { enabled => JSON::PP::true }),
    404, 'DESTINATION_NOT_FOUND', 'no such destination');
err(admin($t, $aadmin, 'PATCH', "$D/$d1->{id}", { tenant => $beta }),
    400, 'VALIDATION_ERROR', 'a destination cannot move');
is(admin($t, $aadmin, 'PATCH', "$D/abc", {})->{status}, 404, 'a bad id: 404');

# --- routes -------------------------------------------------------------------------
$r = admin($t, $aadmin, 'POST', $R, { name => 'critical-incidents',
    priority => 10, enabled => JSON::PP::true,
    match_json => { event_type => ['incident.opened'],
                    severity => ['high', 'critical'] },
    destinations_json => [{ destination_id => "$d1->{id}" },
                          { destination_id => $d2->{id} }] });
is($r->{status}, 201, 'a route');
my $route = $r->{json}{data};
is_deeply($route->{destinations_json},
    [{ destination_id => $d1->{id} }, { destination_id => $d2->{id} }],
    'destinations in order');
is_deeply($route->{match_json}, { event_type => ['incident.opened'],
    severity => ['high', 'critical'] }, 'match_json');
is($route->{priority}, 10, 'priority');

err(admin($t, $aadmin, 'POST', $R, { name => 'critical-incidents',
    destinations_json => [$d1->{id}] }), 409, 'ROUTE_EXISTS', 'same name');
err(admin($t, $aadmin, 'POST', $R, { name => 'r2',
    destinations_json => [$dbeta->{id}] }), 404, 'DESTINATION_NOT_FOUND',
    'a destination of another tenant');
err(admin($t, $aadmin, 'POST', $R, { name => 'r3', match_json => { evt => 'x' },
    destinations_json => [$d1->{id}] }), 400, 'VALIDATION_ERROR',
    'an unknown match key');
err(admin($t, $aadmin, 'POST', $R, { name => 'r4',
    match_json => { event_type => [] }, destinations_json => [$d1->{id}] }),
    400, 'VALIDATION_ERROR', 'an empty match array');
err(admin($t, $aadmin, 'POST', $R, { name => 'r5', destinations_json => [] }),
    400, 'VALIDATION_ERROR', 'no destination');
err(admin($t, $aadmin, 'POST', $R, { name => 'r6', priority => -1,
    destinations_json => [$d1->{id}] }), 400, 'VALIDATION_ERROR',
    'a negative priority');

$r = admin($t, $aadmin, 'PATCH', "$R/$route->{id}", { priority => 5,
    enabled => JSON::PP::false, destinations_json => [$d2->{id}] });
is($r->{status}, 200, 'route patched');
is($r->{json}{data}{priority}, 5, 'priority changed');
is_deeply($r->{json}{data}{destinations_json}, [{ destination_id => $d2->{id} }],
    'destinations changed');
err(admin($t, $aadmin, 'PATCH', "$R/$route->{id}",
    { destinations_json => [$dbeta->{id}] }), 404, 'DESTINATION_NOT_FOUND',
    'patched to another tenant\'s destination');
err(admin($t, $badmin, 'PATCH', "$R/$route->{id}", { priority => 1 }),
    404, 'ROUTE_NOT_FOUND', 'another tenant\'s route');
$r = admin($t, $aadmin, 'GET', $R);
is(scalar @{ $r->{json}{data} }, 1, 'route list');
is(admin($t, $aadmin, 'DELETE', "$R/$route->{id}")->{status}, 200, 'deleted');
err(admin($t, $aadmin, 'DELETE', "$R/$route->{id}"), 404, 'ROUTE_NOT_FOUND',
    'deleted twice');

# --- jobs and dead letters ------------------------------------------------------------
my $J = '/v1/admin/notifications/jobs';
is(admin($t, $aadmin, 'GET', "$J?status=retrying")->{status}, 200, 'jobs list');
err(admin($t, $aadmin, 'GET', "$J?status=lost"), 400, 'VALIDATION_ERROR',
    'an unknown status');
err(admin($t, $aadmin, 'GET', "$J?limit=0"), 400, 'VALIDATION_ERROR',
    'limit 0');
err(admin($t, $aadmin, 'GET', "$J/00000000-0000-0000-0000-000000000000/attempts"),
    404, 'JOB_NOT_FOUND', 'attempts of no job');
err(admin($t, $aadmin, 'POST', "$J/00000000-0000-0000-0000-000000000000/retry-now"),
    404, 'JOB_NOT_FOUND', 'retry-now of no job');
is(admin($t, $aadmin, 'GET', "$J/not-a-uuid/attempts")->{status}, 404,
    'a malformed job id');
is(admin($t, $aadmin, 'GET', '/v1/admin/notifications/dlq')->{status}, 200,
    'dlq list');
err(admin($t, $aadmin, 'POST', '/v1/admin/notifications/dlq/987654321/replay'),
    404, 'DLQ_NOT_FOUND', 'replay of no dead letter');
is(admin($t, $aadmin, 'GET', '/v1/admin/notifications/dlq/1/replay')->{status},
    405, 'replay is a POST');
is(admin($t, $aadmin, 'GET', '/v1/admin/notifications/nope')->{status}, 404,
    'an unknown notifications path');

# --- events --------------------------------------------------------------------------
my $E = '/v1/admin/notifications/events';
$r = admin($t, $aadmin, 'POST', $E, { event_type => 'test.ping',
    severity => 'high', data => { b => 2, a => [1, 'x'] } });
is($r->{status}, 202, 'an event is accepted');
my $eid = $r->{json}{data}{event_id};
like($eid, qr/^\d+-\d+$/, 'with its stream id');
my $entry = redis_cli('XRANGE', 'nx:events', $eid, $eid);
like($entry, qr/\ntype\ntest\.ping\n/, 'in nx:events: type');
like($entry, qr/\ntenant_id\n$acme_id\n/, 'the tenant\'s id');
like($entry, qr/\nseverity\nhigh\n/, 'severity');
like($entry, qr/\npayload\n\{"a":\[1,"x"\],"b":2\}\n/, 'data, canonical');
like($entry, qr/\nrequest_id\n\S+/, 'the request id');
err(admin($t, $aadmin, 'POST', $E, { event_type => 'Bad Type' }), 400,
    'VALIDATION_ERROR', 'a bad event type');
err(admin($t, $aadmin, 'POST', $E, { event_type => 'a.b', severity => 'HIGH' }),
    400, 'VALIDATION_ERROR', 'a bad severity');
err(admin($t, $aadmin, 'POST', $E, { event_type => 'a.b', data => [1] }), 400,
    'VALIDATION_ERROR', 'data not an object');
err(admin($t, $aadmin, 'POST', $E, { event_type => 'a.b', tenant => undef }),
    400, 'VALIDATION_ERROR', 'a tenant admin cannot send a platform event');
err(admin($t, $aadmin, 'POST', $E, { event_type => 'a.b', tenant => $beta }),
    404, 'TENANT_NOT_FOUND', 'nor an event of another tenant');
$r = admin($t, $padmin, 'POST', $E, { event_type => 'system.test',
    tenant => undef });
is($r->{status}, 202, 'a platform event');
unlike(redis_cli('XRANGE', 'nx:events', $r->{json}{data}{event_id},
    $r->{json}{data}{event_id}), qr/tenant_id/, 'without a tenant');

# --- ops --------------------------------------------------------------------------------
$r = admin($t, $padmin, 'GET', '/v1/ops/notifications');
is($r->{status}, 200, '/v1/ops/notifications');
ok(defined $r->{json}{data}{jobs}{queued} && defined $r->{json}{data}{dlq}{open}
    && defined $r->{json}{data}{destinations}{enabled}
    && defined $r->{json}{data}{last_hour}, 'jobs, dlq, destinations, last hour');
is($r->{json}{data}{queue}{stream}, 'nx:events', 'the queue side from Redis');
err(admin($t, $aadmin, 'GET', '/v1/ops/notifications'), 403, 'FORBIDDEN',
    'ops: not for a tenant admin');

# --- heartbeats in /v1/ops/health --------------------------------------------------------
notify_cleanup();
$r = admin($t, $padmin, 'GET', '/v1/ops/health');
is($r->{json}{data}{status}, 'ready', 'no worker ever ran: ready');

my $w = worker_start();
ok(wait_for(sub {
    my $h = admin($t, $padmin, 'GET', '/v1/ops/health');
    return ($h->{json}{data}{workers}{notify}{status} // '') eq 'ok';
}, 5), 'a running worker: heartbeat ok');
$r = admin($t, $padmin, 'GET', '/v1/ops/health');
is($r->{json}{data}{status}, 'ready', 'status ready');
ok($r->{json}{data}{workers}{notify}{heartbeat_age_s} < 1.5,
    'heartbeat_age_s is fresh');
is(worker_stop($w), 0, 'the worker stops on SIGTERM, exit 0');

# stale: the last beat was long ago (older than three intervals)
redis_cli('HSET', 'nx:hb:notify', 'ts', int((time() - 60) * 1000));
$r = admin($t, $padmin, 'GET', '/v1/ops/health');
is($r->{status}, 200, 'a stale worker: still 200');
is($r->{json}{data}{status}, 'degraded', 'status degraded');
is($r->{json}{data}{workers}{notify}{stale}, JSON::PP::true, 'flagged stale');
redis_cli('DEL', 'nx:hb:notify');
$r = admin($t, $padmin, 'GET', '/v1/ops/health');
is($r->{json}{data}{workers}{notify}{status}, 'missing',
    'an expired heartbeat: missing');
is(http_req($t->port, 'GET', '/readyz')->{status}, 200,
    '/readyz does not depend on the workers');
notify_cleanup();
