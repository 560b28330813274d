#!/usr/bin/perl

# Idempotency keys on the admin write endpoints: a retry with the same key
# and body gets the first response again (Idempotent-Replayed: true) and
# applies once, on any node; another body is 409 IDEMPOTENCY_KEY_CONFLICT;
# a retry while the first still runs is 409 IDEMPOTENCY_KEY_IN_PROGRESS;
# keys are scoped per tenant, method and path; a malformed key is 400; a
# 4xx is replayed, a 5xx is not; Redis down refuses to run the request
# (503 IDEMPOTENCY_UNAVAILABLE); Redis holds responses sealed, for 24 h.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $audit = 'nexus_audit_key_file %%AUDIT_KEY%%; nexus_audit_flush 200ms;';
my $n1 = nexus_nginx(nexus_conf(extra => $audit), workers => 2);
my $n2 = nexus_nginx(nexus_conf(extra => $audit), workers => 2);

nexus_plan(87);

my $ops = make_tenant('idem-ops', platform => 1);
my $padmin = make_key($ops, name => 'ops', role => 'admin');
my $ta = make_tenant('idem-a');
my $admin_a = make_key($ta, name => 'admin', role => 'admin');
my $tb = make_tenant('idem-b');
my $admin_b = make_key($tb, name => 'admin', role => 'admin');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

# req($node, $method, $path, $key, $body, $idempotency_key)
# A first response is stored as it is sent, so a retry made the moment it
# arrives may find the key still in progress: like a client, try again
# (Retry-After: 1; here sooner), except where the test wants that answer.
sub req {
    my ($n, $method, $path, $k, $body, $ik, %opt) = @_;
    my $busy = delete $opt{busy};
    my $r;
    for my $try (1 .. 40) {
        $r = http_req($n->port, $method, $path, json => 1,
            defined $k ? (bearer => $k) : (),
            defined $body ? (json_body => $body) : (),
            defined $ik ? (headers => ['Idempotency-Key' => $ik]) : (),
            %opt);
        last if $busy || code($r) ne 'IDEMPOTENCY_KEY_IN_PROGRESS';
        sleep 0.05;
    }
    return $r;
}

sub replayed {
    my ($r) = @_;
    return $r->{headers}{'idempotent-replayed'} // '';
}

sub tenants_named {
    my ($name) = @_;
    return psql('SELECT count(*) FROM tenants WHERE name = '
        . sql_quote($name));
}

# --- a retry is answered with the first response, applied once ----------------

my $x = unique_name('idem-x');
my $r1 = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $x }, 'k-1');
is($r1->{status}, 201, 'the first POST creates the tenant');
is(replayed($r1), '', 'and is not a replay');
my $r2 = req($n2, 'POST', '/v1/admin/tenants', $padmin, { name => $x }, 'k-1');
is($r2->{status}, 201, 'the retry, on another node: the same status');
is(replayed($r2), 'true', 'Idempotent-Replayed: true');
is($r2->{body}, $r1->{body}, 'the very same body');
is($r2->{headers}{'content-type'}, 'application/json', 'the same type');
isnt($r2->{headers}{'x-request-id'}, $r1->{headers}{'x-request-id'},
    'a request id of its own');
is(tenants_named($x), 1, 'one tenant');
is(code(req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $x })),
    'TENANT_EXISTS', 'without the key the same POST would have failed');
my $deadline = time + 5;
my $created = 0;
while (time < $deadline) {
    $created = psql("SELECT count(*) FROM audit_events WHERE event_type ="
        . " 'admin.tenant.created' AND outcome = 'success' AND"
        . " metadata::jsonb -> 'request' ->> 'name' = " . sql_quote($x));
    last if $created;
    sleep 0.1;
}
sleep 0.5;
is(psql("SELECT count(*) FROM audit_events WHERE event_type ="
    . " 'admin.tenant.created' AND outcome = 'success' AND"
    . " metadata::jsonb -> 'request' ->> 'name' = " . sql_quote($x)), 1,
    'one audit event: a replay is not a write');
is(req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $x }, 'k-1')
    ->{status}, 201, 'a third time, still replayed');

# --- another body ------------------------------------------------------------------

my $y = unique_name('idem-y');
my $r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $y }, 'k-1');
is($r->{status}, 409, 'the same key with another body: 409');
is(code($r), 'IDEMPOTENCY_KEY_CONFLICT', 'IDEMPOTENCY_KEY_CONFLICT');
is($r->{json}{error}{details}{header}, 'Idempotency-Key', 'names the header');
is(tenants_named($y), 0, 'nothing created');
is(code(req($n1, 'POST', '/v1/admin/tenants?x=1', $padmin, { name => $x },
    'k-1')), 'IDEMPOTENCY_KEY_CONFLICT', 'the query string counts too');

# --- scope: method and path, tenant ----------------------------------------------

$r = req($n1, 'POST', '/v1/admin/api-keys', $padmin,
    { name => 'same key', tenant => $x }, 'k-1');
is($r->{status}, 201, 'the same key on another endpoint is another key');
is(replayed($r), '', 'not a replay');

my $ra = req($n1, 'POST', '/v1/admin/api-keys', $admin_a, { name => 'ci' }, 'k-2');
my $rb = req($n1, 'POST', '/v1/admin/api-keys', $admin_b, { name => 'ci' }, 'k-2');
is($ra->{status}, 201, 'tenant a uses k-2');
is($rb->{status}, 201, 'tenant b uses k-2 with the same body');
is(replayed($rb), '', 'tenant b gets no replay of tenant a');
is($rb->{json}{data}{tenant}, $tb, 'a key of its own tenant');
isnt($rb->{json}{data}{key}, $ra->{json}{data}{key}, 'another key');

# --- API key creation: the secret is replayed to a retry -------------------------

$r = req($n2, 'POST', '/v1/admin/api-keys', $admin_a, { name => 'ci' }, 'k-2');
is(replayed($r), 'true', 'tenant a retries: replay');
is($r->{json}{data}{key}, $ra->{json}{data}{key}, 'with the key shown again');
is(psql('SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id'
    . " WHERE t.name = " . sql_quote($ta) . " AND k.name = 'ci'"), 1,
    'one key created');
is(req($n1, 'GET', '/v1/me', $ra->{json}{data}{key})->{status}, 200,
    'and it works');

my @records = grep { length } split /\n/,
    redis_cli('--scan', '--pattern', 'nx:idem:*');
ok(@records >= 4, 'records in Redis');
my $dump = join '', map { redis_cli('HGET', $_, 'r') } @records;
my $secret = $ra->{json}{data}{key};
ok(index($dump, $secret) < 0 && index($dump, substr($secret, 16)) < 0,
    'no stored response holds the key in clear');
ok(index($dump, $x) < 0, 'nor any other value');
my ($mine) = grep { /^nx:idem:\d+:[0-9a-f]{64}$/ } @records;
ok($mine, 'records are named by tenant id and a hash');
my $pttl = redis_cli('PTTL', $mine);
ok($pttl > 23 * 3600 * 1000 && $pttl <= 24 * 3600 * 1000,
    'kept for 24 h') or diag("pttl $pttl");

# --- other write endpoints ----------------------------------------------------------

my $kid = $ra->{json}{data}{id};
$r1 = req($n1, 'POST', "/v1/admin/api-keys/$kid/revoke", $admin_a, undef, 'k-3');
is($r1->{status}, 200, 'revoke');
$r2 = req($n2, 'POST', "/v1/admin/api-keys/$kid/revoke", $admin_a, undef, 'k-3');
is(replayed($r2), 'true', 'revoke retried: replay');
is($r2->{body}, $r1->{body}, 'identical');

$r1 = req($n1, 'PATCH', '/v1/admin/rollouts/killswitches', $padmin,
    { kill_switches => { 'kill.idem_test' => JSON::PP::false() } }, 'k-4');
is($r1->{status}, 200, 'kill switches');
sleep 0.01;
$r2 = req($n1, 'PATCH', '/v1/admin/rollouts/killswitches', $padmin,
    { kill_switches => { 'kill.idem_test' => JSON::PP::false() } }, 'k-4');
is(replayed($r2), 'true', 'kill switches retried: replay');
is($r2->{json}{data}[0]{updated_at}, $r1->{json}{data}[0]{updated_at},
    'not applied again (same updated_at)');

$r1 = req($n1, 'PUT', "/v1/admin/plans/$ta", $padmin, { plan_id => 'pro' }, 'k-5');
is($r1->{status}, 200, 'plans');
$r2 = req($n2, 'PUT', "/v1/admin/plans/$ta", $padmin, { plan_id => 'pro' }, 'k-5');
is(replayed($r2), 'true', 'plans retried: replay');

$r1 = req($n1, 'PATCH', "/v1/admin/quotas/$ta", $padmin, { daily => 5 }, 'k-6');
is($r1->{status}, 200, 'quotas');
is(replayed(req($n1, 'PATCH', "/v1/admin/quotas/$ta", $padmin, { daily => 5 },
    'k-6')), 'true', 'quotas retried: replay');

my $len = redis_cli('XLEN', 'nx:events');
$r1 = req($n1, 'POST', '/v1/admin/notifications/events', $admin_b,
    { event_type => 'test.idem' }, 'k-12');
is($r1->{status}, 202, 'a notification event');
$r2 = req($n2, 'POST', '/v1/admin/notifications/events', $admin_b,
    { event_type => 'test.idem' }, 'k-12');
is(replayed($r2), 'true', 'notification events retried: replay');
is($r2->{json}{data}{event_id}, $r1->{json}{data}{event_id}, 'the same event');
is(redis_cli('XLEN', 'nx:events'), $len + 1,
    'appended once (tenant b has no quota to add events of its own)');

my $tc = make_tenant('idem-credits');
$r1 = req($n1, 'POST', "/v1/admin/credits/$tc/grant", $padmin,
    { amount_usd => 2, reason => 'one grant, retried' }, 'k-13');
is($r1->{status}, 200, 'a credit grant');
$r2 = req($n2, 'POST', "/v1/admin/credits/$tc/grant", $padmin,
    { amount_usd => 2, reason => 'one grant, retried' }, 'k-13');
is(replayed($r2), 'true', 'credit grant retried: replay');
is($r2->{body}, $r1->{body}, 'the same transaction');
is(req($n1, 'GET', "/v1/admin/credits/$tc", $padmin)->{json}{data}
    {balance_musd}, 2000000, 'granted once: 2 dollars');

# reads ignore the header
$r = req($n1, 'GET', '/v1/admin/tenants', $padmin, undef, 'k-1');
is($r->{status}, 200, 'a GET with a key is served');
is(replayed(req($n1, 'GET', '/v1/admin/tenants', $padmin, undef, 'k-1')), '',
    'and never replayed');

# --- errors are replayed, a 5xx is not ----------------------------------------------

$r1 = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => 'Bad Name' }, 'k-7');
is($r1->{status}, 400, 'a 400');
$r2 = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => 'Bad Name' }, 'k-7');
is(replayed($r2), 'true', 'is stored and replayed');
is($r2->{body}, $r1->{body}, 'identical');

my $v = unique_name('idem-v');
req($n1, 'GET', '/v1/admin/tenants', $padmin) for 1 .. 4;   # keys cached
req($n2, 'GET', '/v1/admin/tenants', $padmin) for 1 .. 4;
pg_stop();
$r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $v }, 'k-8');
is($r->{status}, 503, 'PostgreSQL down: 503');
is(code($r), 'DEPENDENCY_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE');
pg_start();
$deadline = time + 10;
$r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $v }, 'k-8');
while ($r->{status} == 503 && time < $deadline) {
    sleep 0.2;
    $r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $v }, 'k-8');
}
is($r->{status}, 201, 'the retry runs once PostgreSQL is back');
is(replayed($r), '', 'a 5xx was not stored');
is(tenants_named($v), 1, 'one tenant');

# --- malformed keys ----------------------------------------------------------------------

my $z = unique_name('idem-z');
$r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $z }, 'k' x 129);
is($r->{status}, 400, '129 characters: 400');
is(code($r), 'VALIDATION_ERROR', 'VALIDATION_ERROR');
is($r->{json}{error}{details}{max_length}, 128, 'max_length 128');
is(tenants_named($z), 0, 'not run');
is(req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $z }, 'k' x 128)
    ->{status}, 201, '128 characters are fine');
is(code(req($n1, 'POST', '/v1/admin/tenants', $padmin,
    { name => unique_name('idem-c') }, "a\x01b")), 'VALIDATION_ERROR',
    'a control character: 400');
is(code(http_req($n1->port, 'POST', '/v1/admin/tenants', json => 1,
    bearer => $padmin, json_body => { name => unique_name('idem-d') },
    headers => ['Idempotency-Key' => 'a', 'Idempotency-Key' => 'b'])),
    'VALIDATION_ERROR', 'two Idempotency-Key headers: 400');
is(code(http_req($n1->port, 'POST', '/v1/admin/tenants', json => 1,
    bearer => $padmin, json_body => { name => unique_name('idem-e') },
    headers => ['Idempotency-Key' => ''])), 'VALIDATION_ERROR',
    'an empty one: 400');
is(req($n1, 'POST', '/v1/admin/tenants', undef, { name => 'x' }, 'k-9')
    ->{status}, 401, 'authentication comes first');

# --- in flight ------------------------------------------------------------------------------

my $w = unique_name('idem-w');
my $lock = psql_bg('BEGIN; LOCK TABLE tenants IN SHARE MODE;'
    . ' SELECT pg_sleep(1.5); COMMIT;');
sleep 0.3;
my $h = http_start($n1->port, 'POST', '/v1/admin/tenants', json => 1,
    bearer => $padmin, json_body => { name => $w },
    headers => ['Idempotency-Key' => 'k-10']);
sleep 0.3;
$r = req($n2, 'POST', '/v1/admin/tenants', $padmin, { name => $w }, 'k-10',
    busy => 1);
is($r->{status}, 409, 'a retry while the first runs: 409');
is(code($r), 'IDEMPOTENCY_KEY_IN_PROGRESS', 'IDEMPOTENCY_KEY_IN_PROGRESS');
is($r->{headers}{'retry-after'}, 1, 'Retry-After: 1');
is(code(req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => 'other' },
    'k-10')), 'IDEMPOTENCY_KEY_CONFLICT', 'another body is a conflict');
$r1 = http_finish($h);
is($r1->{status}, 201, 'the first completes');
is(wait_pid($lock, 10), 0, 'the lock is gone');
$r2 = req($n2, 'POST', '/v1/admin/tenants', $padmin, { name => $w }, 'k-10');
is(replayed($r2), 'true', 'then the retry is a replay');
is($r2->{body}, $r1->{body}, 'of that response');
is(tenants_named($w), 1, 'one tenant');

# --- Redis down: fail closed ---------------------------------------------------------------

my $u = unique_name('idem-u');
redis_stop();
$r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $u }, 'k-11');
is($r->{status}, 503, 'Redis down: 503');
is(code($r), 'IDEMPOTENCY_UNAVAILABLE', 'IDEMPOTENCY_UNAVAILABLE');
is($r->{headers}{'retry-after'}, 1, 'Retry-After');
is(tenants_named($u), 0, 'the request did not run');
is(req($n1, 'POST', '/v1/admin/tenants', $padmin,
    { name => unique_name('idem-t') })->{status}, 201,
    'a write without a key does not need Redis');
redis_start();
$deadline = time + 5;
$r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $u }, 'k-11');
while ($r->{status} == 503 && time < $deadline) {
    sleep 0.1;
    $r = req($n1, 'POST', '/v1/admin/tenants', $padmin, { name => $u }, 'k-11');
}
is($r->{status}, 201, 'Redis back: the retry runs');
is(tenants_named($u), 1, 'once');

# --- configuration ----------------------------------------------------------------------------

my ($code, $out) = nexus_nginx_t(nexus_conf(extra => 'nexus_idempotency_lock 500ms;'));
isnt($code, 0, 'a lock under 1s is refused');
like($out, qr/\[emerg\] "nexus_idempotency_lock" must be at least 1s/,
    'with a message');
