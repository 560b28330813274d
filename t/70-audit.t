#!/usr/bin/perl

# The audit log as the gateway writes and serves it: rbac.forbidden on a
# 403 FORBIDDEN or SCOPE_MISSING, the admin writes with their outcome and
# their redacted request, system.rate_limit.degraded when fail-open lets a
# request through; events in PostgreSQL after the flush interval, chained;
# GET /v1/audit/events with its filters, tenant scoping, cursor pagination
# and INVALID_CURSOR; and no event lost when nginx reloads with events in
# flight. Tampering and nexusctl audit verify are in 71-audit-verify.t;
# the events of authentication, throttling, reads and nexusctl's writes
# (which share these chains: the fixtures' tenants and keys are made with
# nexusctl) are in 72-audit-events.t.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $audit = 'nexus_audit_key_file %%AUDIT_KEY%%; nexus_audit_flush 200ms;';
my $locs = <<'EOF';
        location /scoped/v1/ { nexus_api; nexus_require_scope documents:write; }
        location /open/v1/   { nexus_api; nexus_rate_limit on;
                               nexus_fail_mode open; }
EOF

my $t = nexus_nginx(nexus_conf(extra => $audit, locations => $locs),
    workers => 2);
my $port = $t->port;

nexus_plan(93);

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub req {
    my ($method, $path, $key, %opt) = @_;
    return http_req($port, $method, $path, bearer => $key, json => 1, %opt);
}

sub events {
    my ($key, $query) = @_;
    return req('GET', '/v1/audit/events' . ($query // ''), $key);
}

sub tid {
    return psql('SELECT id FROM tenants WHERE name = ' . sql_quote($_[0]));
}

# wait_rows($sql_where, $n): until audit_events has $n rows matching
sub wait_rows {
    my ($where, $n) = @_;
    my $deadline = time + 10;
    my $c;
    while (time < $deadline) {
        $c = psql("SELECT count(*) FROM audit_events WHERE $where");
        return $c if $c >= $n;
        sleep 0.1;
    }
    return $c;
}

my $acme = make_tenant('acme');
my $other = make_tenant('other');
my $ops = make_tenant('ops', platform => 1);
my $padmin = make_key($ops, role => 'admin', name => 'platform');
my $aadmin = make_key($acme, role => 'admin', name => 'acme admin');
my $areader = make_key($acme, name => 'acme reader');
my $oadmin = make_key($other, role => 'admin', name => 'other admin');
my ($acme_id, $other_id, $ops_id) = map { tid($_) } $acme, $other, $ops;

# --- rbac.forbidden --------------------------------------------------------------
my $r = req('GET', '/v1/admin/tenants', $areader);
is($r->{status}, 403, 'a reader on an admin route: 403');
my $rid1 = $r->{headers}{'x-request-id'};
$r = req('GET', '/scoped/v1/me', $areader);
is(code($r), 'SCOPE_MISSING', 'a key without the scope: SCOPE_MISSING');
my $rid2 = $r->{headers}{'x-request-id'};

my $t0 = time;
is(wait_rows("tenant_id = $acme_id AND event_type = 'rbac.forbidden'", 2),
    2, 'the two 403s are in audit_events');
ok(time - $t0 < 5, 'within the flush interval');

$r = events($aadmin, '?event_type=rbac.forbidden');
is($r->{status}, 200, "a tenant admin reads its audit log");
my @items = @{ $r->{json}{data}{items} };
is(scalar @items, 2, 'both events');
# two workers flush on their own: the chain's order (newest first) need
# not be the order the requests were made in
my ($role_ev) = grep { ($_->{request_id} // '') eq $rid1 } @items;
my ($scope_ev) = grep { ($_->{request_id} // '') eq $rid2 } @items;
$role_ev //= {};
$scope_ev //= {};
is($role_ev->{request_id}, $rid1, 'request id');
is($role_ev->{tenant}, $acme, 'tenant');
is($role_ev->{tenant_id}, $acme_id, 'tenant id');
is($role_ev->{actor}, key_prefix($areader), 'actor: the key prefix');
is($role_ev->{outcome}, 'failure', 'outcome failure');
is_deeply($role_ev->{metadata}, { method => 'GET', path => '/v1/admin/tenants',
    code => 'FORBIDDEN', details => { required_role => 'admin' } },
    'metadata: method, path, code and details');
like($role_ev->{created_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/,
    'created_at in UTC, microseconds');
is($scope_ev->{request_id}, $rid2, 'the scope event by its request id');
is($scope_ev->{metadata}{code}, 'SCOPE_MISSING', 'SCOPE_MISSING is audited');
is($scope_ev->{metadata}{details}{scope}, 'documents:write', 'with its scope');
my @seqs = map { $_->{seq} } @items;
ok(@seqs == 2 && $seqs[0] > $seqs[1] && $seqs[1] > 0,
    'one chain per tenant, newest first');
ok(!defined $r->{json}{data}{page}{next_cursor}
    && !$r->{json}{data}{page}{has_more}, 'one page');
like($r->{json}{meta}{request_id} // '', qr/\S/, 'the envelope');

is(psql("SELECT count(*) FROM audit_events e JOIN audit_chains c"
    . " ON c.tenant_id = e.tenant_id AND c.seq = e.seq"
    . " AND c.row_hmac = e.row_hmac WHERE e.tenant_id = $acme_id"),
    1, 'the chain head is the last row');
# (in one snapshot: the writers go on, the admin's first request was audited)
is(psql("SELECT (SELECT count(*) FROM audit_events a JOIN audit_events b"
    . " ON b.tenant_id = a.tenant_id AND b.seq = a.seq + 1"
    . " WHERE b.prev_hash = a.row_hmac AND a.tenant_id = $acme_id)"
    . " = (SELECT count(*) - 1 FROM audit_events"
    . " WHERE tenant_id = $acme_id)"), 't',
    'each row links to the one before');

# --- admin writes -------------------------------------------------------------------
my $newt = unique_name('fresh');
$r = req('POST', '/v1/admin/tenants', $padmin, json_body => { name => $newt });
is($r->{status}, 201, 'tenant created');
my $new_id = $r->{json}{data}{id};
$r = req('POST', '/v1/admin/tenants', $padmin, json_body => { name => $newt });
is(code($r), 'TENANT_EXISTS', 'the same tenant again');
$r = req('POST', '/v1/admin/api-keys', $padmin, json_body => {
    tenant => $newt, name => 'ci bot', role => 'reader',
    token => 'tok-sekrit-1', options => { password => 'pw-sekrit-2',
    content_type => 'kept', content => 'long text' } });
is($r->{status}, 201, 'key created');
my $newkey = $r->{json}{data}{key};
my $newkey_id = $r->{json}{data}{id};
$r = req('POST', "/v1/admin/api-keys/$newkey_id/revoke", $padmin);
is($r->{status}, 200, 'key revoked');
$r = req('POST', '/v1/admin/api-keys/999999999/revoke', $padmin);
is(code($r), 'KEY_NOT_FOUND', 'revoking no key');
$r = req('PATCH', "/v1/admin/quotas/$newt", $padmin,
    json_body => { daily => 1000 });
is($r->{status}, 200, 'quota changed');
$r = req('PATCH', '/v1/admin/rollouts/killswitches', $padmin,
    json_body => { kill_switches => { 'kill.audit_probe' => JSON::PP::true() } });
is($r->{status}, 200, 'kill switch changed');
$r = req('PATCH', "/v1/admin/quotas/$acme", $aadmin,
    json_body => { daily => 1 });
is($r->{status}, 403, 'a tenant admin may not change its quota');

is(wait_rows("tenant_id = $new_id", 4), 4,
    'tenant, key, revocation and quota: in the new tenant\'s chain');
is(wait_rows("tenant_id = $ops_id AND event_type LIKE 'admin.%'", 3), 3,
    'the failures and the kill switch: in the admin\'s own chain');

$r = events($padmin, "?tenant=$newt&limit=10");
is($r->{status}, 200, 'a platform admin reads another tenant\'s log');
my %ev = map { $_->{event_type} => $_ } @{ $r->{json}{data}{items} };
is_deeply([ sort keys %ev ], [ qw(admin.quota.updated admin.tenant.created
    auth.api_key.created auth.api_key.revoked) ], 'the four writes');
is($ev{'admin.tenant.created'}{outcome}, 'success', 'success');
is($ev{'admin.tenant.created'}{actor}, key_prefix($padmin),
    'the actor is the platform admin');
is($ev{'admin.tenant.created'}{metadata}{result}{name}, $newt,
    'the row created');
my $created = $ev{'auth.api_key.created'}{metadata};
is($created->{result}{prefix}, key_prefix($newkey), 'the key by its prefix');
is($created->{request}{token}, '[REDACTED]', 'token redacted');
is($created->{request}{options}{password}, '[REDACTED]',
    'password redacted, nested');
is($created->{request}{options}{content}, '[REDACTED]', 'content redacted');
is($created->{request}{options}{content_type}, 'kept', 'content_type kept');
is($created->{request}{name}, 'ci bot', 'the rest kept');
is($ev{'auth.api_key.revoked'}{metadata}{result}{status}, 'revoked',
    'the revocation');
is($ev{'admin.quota.updated'}{metadata}{result}{quota}{daily}, 1000,
    'the new quota');
is(psql("SELECT count(*) FROM audit_events WHERE metadata::text"
    . " ~ '(sekrit|" . substr($newkey, 3) . ")'"), 0,
    'no secret and no key anywhere in the log');

$r = events($padmin, "?tenant=$ops&outcome=failure");
%ev = map { $_->{event_type} => $_ } @{ $r->{json}{data}{items} };
is($ev{'admin.tenant.created'}{metadata}{code}, 'TENANT_EXISTS',
    'a failed write: its code');
is($ev{'admin.tenant.created'}{metadata}{target}, $newt, 'and its target');
is($ev{'auth.api_key.revoked'}{metadata}{code}, 'KEY_NOT_FOUND',
    'revoking no key: a failure');
$r = events($padmin, "?tenant=$ops&event_type=admin.kill_switch.updated");
is($r->{json}{data}{items}[0]{metadata}{result}[0]{name}, 'kill.audit_probe',
    'the kill switch change');
is(wait_rows("tenant_id = $acme_id AND event_type = 'rbac.forbidden'", 3), 3,
    'a tenant admin changing its quota: rbac.forbidden');

# --- reading: who sees what ---------------------------------------------------------
$r = events($areader);
is($r->{status}, 403, 'a reader may not read the audit log');
is(code($r), 'FORBIDDEN', 'FORBIDDEN');
$r = events($oadmin);
is_deeply([ grep { $_->{tenant_id} != $other_id } @{ $r->{json}{data}{items} } ],
    [], 'a tenant admin sees its own tenant only');
$r = events($oadmin, "?tenant=$acme");
is_deeply($r->{json}{data}{items}, [], 'even when asking for another');
$r = events($padmin, '?limit=200');
my %tenants = map { $_->{tenant_id} => 1 } @{ $r->{json}{data}{items} };
ok($tenants{$acme_id} && $tenants{$new_id}, 'a platform admin sees all');
$r = req('POST', '/v1/audit/events', $padmin);
is(code($r), 'METHOD_NOT_ALLOWED', 'POST: 405');

# --- filters -----------------------------------------------------------------------
$r = events($aadmin, '?actor=' . key_prefix($aadmin));
is_deeply([ grep { $_ ne key_prefix($aadmin) } map { $_->{actor} }
    @{ $r->{json}{data}{items} } ], [], 'actor');
$r = events($aadmin, '?outcome=success&event_type=rbac.forbidden');
is_deeply($r->{json}{data}{items}, [], 'outcome');
$r = events($aadmin, '?since=2999-01-01T00:00:00Z');
is_deeply($r->{json}{data}{items}, [], 'since, in the future');
$r = events($aadmin, '?until=2001-01-01T00:00:00%2B02:00');
is_deeply($r->{json}{data}{items}, [], 'until, in the past, with an offset');
# the reader's refused read above is a fourth rbac.forbidden: wait for it,
# so that the count does not depend on the flush
wait_rows("tenant_id = $acme_id AND event_type = 'rbac.forbidden'", 4);
$r = events($aadmin, '?since=2001-01-01T00:00:00Z&until=2999-01-01T00:00:00Z'
    . '&event_type=rbac.forbidden&outcome=failure');
is(scalar @{ $r->{json}{data}{items} }, 4, 'filters together');
for my $bad ('outcome=maybe', 'actor=xyz', 'event_type=Bad!', 'since=yesterday',
    'since=2024-13-45T00:00:00Z', 'limit=0', 'limit=201', 'limit=ten',
    'tenant=No!') {
    $r = events($aadmin, "?$bad");
    is(code($r), 'VALIDATION_ERROR', "$bad: VALIDATION_ERROR");
}

# --- pagination ---------------------------------------------------------------------
my $pag = make_tenant('pages');
my $pag_id = tid($pag);
my $preader = make_key($pag, name => 'pr');
my $padm = make_key($pag, role => 'admin', name => 'pa');
req('GET', '/v1/admin/tenants', $preader) for 1 .. 7;
is(wait_rows("tenant_id = $pag_id AND event_type = 'rbac.forbidden'", 7), 7,
    'seven events');
my @want = split /,/, psql("SELECT string_agg(seq::text, ',' ORDER BY seq"
    . " DESC) FROM audit_events WHERE tenant_id = $pag_id"
    . " AND event_type = 'rbac.forbidden'");

my (@seen, $cursor, $pages);
do {
    $r = events($padm, '?event_type=rbac.forbidden&limit=3'
        . ($cursor ? "&cursor=$cursor" : ''));
    push @seen, map { $_->{seq} } @{ $r->{json}{data}{items} };
    $cursor = $r->{json}{data}{page}{next_cursor};
    $pages++;
} while ($cursor && $pages < 10);
is($pages, 3, 'three pages of 3, 3 and 1');
is_deeply(\@seen, \@want, 'every event once, newest first');
ok(!$r->{json}{data}{page}{has_more}, 'the last page says so');

$r = events($padm, '?limit=3');
like($r->{json}{data}{page}{next_cursor}, qr/^[A-Za-z0-9_-]+$/,
    'the cursor is opaque base64url');
for my $bad ('garbage!', 'bm9wZQ', 'MTIz', '') {
    $r = events($padm, "?limit=3&cursor=$bad");
    is(code($r), 'INVALID_CURSOR', "cursor \"$bad\": INVALID_CURSOR");
}
is($r->{status}, 400, 'INVALID_CURSOR is a 400');

# --- system.rate_limit.degraded ---------------------------------------------------
redis_stop();
$r = req('GET', '/open/v1/me', $aadmin);
is($r->{headers}{'x-ratelimit-status'}, 'degraded', 'fail open: degraded');
my $rid4 = $r->{headers}{'x-request-id'};
redis_start();
is(wait_rows("request_id = " . sql_quote($rid4)
    . " AND event_type = 'system.rate_limit.degraded'", 1), 1,
    'system.rate_limit.degraded');
$r = events($aadmin, '?event_type=system.rate_limit.degraded');
is($r->{json}{data}{items}[0]{metadata}{decision}, 'allowed',
    'the request was allowed');

$t->allow_errors(qr/nexus redis|nexus rate limits unavailable/);

# --- quota events, once per period -----------------------------------------------
my $qt = make_tenant('quota');
my $qt_id = tid($qt);
psql("UPDATE tenants SET quota = '{\"daily\": 3, \"soft_ratio\": 0.5}'"
    . " WHERE id = $qt_id");
my $qadmin = make_key($qt, role => 'admin', name => 'qa');
my @st = map { req('GET', '/v1/me', $qadmin)->{status} } 1 .. 5;
is_deeply(\@st, [ 200, 200, 200, 402, 402 ], 'three within the quota');
is(wait_rows("tenant_id = $qt_id AND event_type LIKE 'quota.%'", 2), 2,
    'two quota events');
# the quota is spent: the platform admin reads
$r = events($padmin, "?tenant=$qt&event_type=quota.soft_cap_reached");
is_deeply($r->{json}{data}{items}[0]{metadata}, { method => 'GET',
    path => '/v1/me', period => 'day', limit => 3, used => 2 },
    'quota.soft_cap_reached, once for the day');
$r = events($padmin, "?tenant=$qt&event_type=quota.hard_cap_blocked");
is(scalar @{ $r->{json}{data}{items} }, 1,
    'quota.hard_cap_blocked, once however many are blocked');
is($r->{json}{data}{items}[0]{outcome}, 'failure', 'a failure');

# --- a reload with events in flight loses none --------------------------------------
my $slow = nexus_nginx(nexus_conf(extra => 'nexus_audit_key_file %%AUDIT_KEY%%;'
    . ' nexus_audit_flush 3s;'), workers => 2);
my $rel = make_tenant('reload');
my $rel_id = tid($rel);
my $rkey = make_key($rel, name => 'rr');
my @rids;
for (1 .. 20) {
    $r = http_req($slow->port, 'GET', '/v1/admin/tenants', bearer => $rkey);
    push @rids, $r->{headers}{'x-request-id'};
}
is(psql("SELECT count(*) FROM audit_events WHERE tenant_id = $rel_id"
    . " AND actor <> 'nexusctl'"), 0, 'the events wait for the flush');
$slow->reload;
my $forbidden = "tenant_id = $rel_id AND event_type = 'rbac.forbidden'";
is(wait_rows($forbidden, 20), 20, 'all 20 written after a reload');
is(psql("SELECT count(*) FROM audit_events WHERE $forbidden AND request_id"
    . " IN (" . join(',', map { sql_quote($_) } @rids) . ')'), 20,
    'the same 20');
is(psql("SELECT string_agg(seq::text, ',' ORDER BY seq)"
    . " = string_agg(n::text, ',' ORDER BY n) FROM (SELECT seq, row_number()"
    . " OVER (ORDER BY seq) AS n FROM audit_events"
    . " WHERE tenant_id = $rel_id) s"), 't',
    'one chain without gaps, written by two workers and nexusctl');
unlike($slow->error_log, qr/events lost/, 'none lost');
