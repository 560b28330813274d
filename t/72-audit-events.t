#!/usr/bin/perl

# The audit events of authentication, throttling, reads and nexusctl:
# auth.access.failure for each kind of refused key, in the key's tenant's
# chain when its prefix is a key's, else the platform's, never with any of
# the secret; a flood of bad keys aggregated per worker (the first at
# once, then one event a second with the count); auth.access.success once
# a key is checked against PostgreSQL, not per request;
# security.rate_limited for a request rate and for tokens per minute,
# aggregated the same way; ops.viewed, selfserve.usage.viewed and
# selfserve.costs.viewed; every write of nexusctl in its tenant's chain
# (actor nexusctl, the OS user) linked between the gateway's own rows,
# so that audit verify passes; without an audit key nexusctl still
# writes and warns; --audit-key-file.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(floor);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
EOF
    locations => <<'EOF',
        location /limited/v1/ { nexus_api; nexus_rate_limit on;
                                nexus_rate_limits key=1:3 tenant=1000:1000; }
EOF
), workers => 2);
my $port = $t->port;

nexus_plan(98);

sub tid {
    return psql('SELECT id FROM tenants WHERE name = ' . sql_quote($_[0]));
}

sub ctl {
    my ($code, $out, $err) = nexusctl(@_);
    die "nexusctl @_: $err" if $code;
    return $out;
}

# the events matching $where, as hashes (metadata decoded), oldest first
sub rows {
    my ($where) = @_;
    my $out = psql("SELECT coalesce(json_agg(json_build_object('tenant_id',"
        . " tenant_id, 'actor', actor, 'event_type', event_type, 'outcome',"
        . " outcome, 'request_id', request_id, 'metadata', metadata)"
        . " ORDER BY tenant_id, seq), '[]') FROM audit_events WHERE $where");
    return json_decode($out);
}

# until the events matching $where are at least $n (or their counts add
# up to $n with sum => 1); returns the rows
sub wait_rows {
    my ($where, $n, %o) = @_;
    my $deadline = time + 15;
    my $rows;
    while (1) {
        $rows = rows($where);
        my $have = $o{sum} ? sum_counts($rows) : scalar @$rows;
        return $rows if $have >= $n || time > $deadline;
        sleep 0.2;
    }
}

sub sum_counts {
    my $s = 0;
    $s += $_->{metadata}{count} // 0 for @{ $_[0] };
    return $s;
}

sub req {
    my ($method, $path, %opt) = @_;
    return http_req($port, $method, $path, json => 1, %opt);
}

my $acme = make_tenant('aev', models => '*');
my $acme_id = tid($acme);
my $ops = make_tenant('aev-ops', platform => 1);
my $ops_id = tid($ops);
my $padmin = make_key($ops, role => 'admin', name => 'platform');
my $admin = make_key($acme, role => 'admin', name => 'admin');
my $reader = make_key($acme, name => 'reader');

# --- auth.access.failure, one of each --------------------------------------------
my $revoked = make_key($acme, name => 'revoked');
ctl('revoke-key', '--prefix', key_prefix($revoked));
my $expired = make_key($acme, name => 'expired');
psql("UPDATE api_keys SET expires_at = now() - interval '1 minute'"
    . " WHERE prefix = '" . key_prefix($expired) . "'");
my $sus = make_tenant('aev-sus');
my $sus_id = tid($sus);
my $suskey = make_key($sus, name => 'sus');
psql("UPDATE tenants SET status = 'suspended' WHERE id = $sus_id");
(my $wrong = $reader) =~ s/_([0-9a-f])([0-9a-f]+)$/'_' . ($1 eq 'a' ? 'b' : 'a') . $2/e;
my $unknown = 'nx_' . ('e' x 12) . '_' . ('0' x 64);
my $secret_of_wrong = (split /_/, $wrong)[2];

my %cases = (
    missing          => [ {}, 0, '' ],
    malformed_header => [ { headers => { Authorization => 'Basic dXNlcjpwdw==' } }, 0, '' ],
    malformed_key    => [ { bearer => 'nx_short_sekrit' }, 0, '' ],
    unknown_key      => [ { bearer => $unknown }, 0, 'e' x 12 ],
    wrong_secret     => [ { bearer => $wrong }, $acme_id, key_prefix($reader) ],
    revoked          => [ { bearer => $revoked }, $acme_id, key_prefix($revoked) ],
    expired          => [ { bearer => $expired }, $acme_id, key_prefix($expired) ],
    tenant_suspended => [ { bearer => $suskey }, $sus_id, key_prefix($suskey) ],
);
my %rid;
for my $reason (sort keys %cases) {
    my $r = req('GET', "/v1/aev-$reason", %{ $cases{$reason}[0] });
    ok($r->{status} == 401 || $r->{status} == 403, "$reason: refused");
    $rid{$reason} = $r->{headers}{'x-request-id'};
}

my $fail = wait_rows("event_type = 'auth.access.failure' AND request_id IN ("
    . join(',', map { sql_quote($_) } values %rid) . ')', scalar keys %cases);
my %by = map { $_->{metadata}{reason} => $_ } @$fail;
for my $reason (sort keys %cases) {
    my ($opt, $tenant, $actor) = @{ $cases{$reason} };
    my $e = $by{$reason} // {};
    is(join(' ', $e->{tenant_id} // '-', $e->{actor} // '', $e->{outcome} // '-',
            $e->{request_id} // '-'),
        "$tenant $actor failure $rid{$reason}",
        "$reason: tenant, actor, outcome, request id");
    is_deeply([ @{ $e->{metadata} // {} }{qw(method path client count)} ],
        [ 'GET', "/v1/aev-$reason", '127.0.0.1', 1 ],
        "$reason: method, path, client, count");
}
is(psql("SELECT count(*) FROM audit_events WHERE metadata::text LIKE"
    . " '%sekrit%' OR metadata::text LIKE '%$secret_of_wrong%'"
    . " OR actor LIKE '%sekrit%'"), 0, 'no part of a secret anywhere');

# --- a flood of one bad key: a few events, the counts add up ---------------------
my $flood = make_key($acme, name => 'flood');
(my $fwrong = $flood) =~ s/_([0-9a-f])([0-9a-f]+)$/'_' . ($1 eq 'a' ? 'b' : 'a') . $2/e;
my $t0 = time;
my $n401 = 0;
for (1 .. 200) {
    $n401++ if req('GET', '/v1/aev-flood', bearer => $fwrong)->{status} == 401;
}
my $t1 = time;
is($n401, 200, '200 refused');
my $where = "event_type = 'auth.access.failure' AND metadata::jsonb ->> 'path'"
    . " = '/v1/aev-flood'";
$fail = wait_rows($where, 200, sum => 1);
is(sum_counts($fail), 200, 'the counts add up to the 200 refusals');
# per worker: one at once, then at most one per second the flood lasted
my $seconds = floor($t1) - floor($t0) + 1;
cmp_ok(scalar @$fail, '<=', 2 * ($seconds + 1),
    scalar(@$fail) . " events for $seconds second(s) of flood on two workers");
is_deeply([ grep { $_->{tenant_id} != $acme_id
    || $_->{actor} ne key_prefix($flood)
    || $_->{metadata}{reason} ne 'wrong_secret' } @$fail ], [],
    'all in the tenant\'s chain, by the key\'s prefix, wrong_secret');
is(scalar(grep { $_->{metadata}{count} == 1 } @$fail) >= 1, 1,
    'the first one at once, with a count of 1');

# --- a flood of 200 different unknown keys: every one counted -------------------
for my $i (1 .. 200) {
    req('GET', '/v1/aev-many', bearer => sprintf('nx_%012x_%s', 0xf00000 + $i,
        'ab' x 32));
}
$where = "event_type = 'auth.access.failure' AND metadata::jsonb ->> 'path'"
    . " = '/v1/aev-many'";
$fail = wait_rows($where, 200, sum => 1);
is(sum_counts($fail), 200, '200 unknown keys: counted');
is_deeply([ grep { $_->{tenant_id} != 0 } @$fail ], [],
    'in the platform\'s chain');
ok(!grep({ ($_->{actor} // '') ne '' && !$_->{metadata}{folded}
        && $_->{metadata}{count} != 1 } @$fail),
    'a key of its own is written at once; the rest folded, without actor');

# --- auth.access.success: once per node and cache lifetime ----------------------
my $fresh = make_key($acme, name => 'fresh', role => 'editor');
my @st = map { req('GET', '/v1/me', bearer => $fresh)->{status} } 1 .. 5;
is_deeply(\@st, [ (200) x 5 ], 'five requests');
$where = "event_type = 'auth.access.success' AND actor = '"
    . key_prefix($fresh) . "'";
my $ok = wait_rows($where, 1);
sleep 0.5;
$ok = rows($where);
ok(@$ok >= 1 && @$ok < 5, scalar(@$ok) . ' success event(s), not one per'
    . ' request');
is_deeply([ @{ $ok->[0] }{qw(tenant_id outcome)},
    @{ $ok->[0]{metadata} }{qw(role client method path)} ],
    [ $acme_id, 'success', 'editor', '127.0.0.1', 'GET', '/v1/me' ],
    'its tenant, role, client and request');

# --- security.rate_limited: a request rate --------------------------------------
my $busy = make_key($acme, name => 'busy');
my $n429 = 0;
for (1 .. 30) {
    $n429++ if req('GET', '/limited/v1/me', bearer => $busy)->{status} == 429;
}
ok($n429 > 0, "$n429 requests refused by the rate limit");
$where = "event_type = 'security.rate_limited' AND actor = '"
    . key_prefix($busy) . "'";
my $lim = wait_rows($where, $n429, sum => 1);
is(sum_counts($lim), $n429, 'security.rate_limited: the counts add up');
cmp_ok(scalar @$lim, '<', $n429 > 4 ? $n429 : 5, 'aggregated');
is_deeply([ @{ $lim->[0] }{qw(tenant_id outcome)},
    @{ $lim->[0]{metadata} }{qw(unit scope route_class path)} ],
    [ $acme_id, 'failure', 'requests', 'api_key', 'read', '/limited/v1/me' ],
    'tenant, unit, scope, route class');

# --- security.rate_limited: tokens per minute -----------------------------------
my $tpmkey = make_key($acme, name => 'tpm');
ctl('set-tpm', '--prefix', key_prefix($tpmkey), '--tpm', '20');
# the first call may take the whole bucket; the next finds it empty
my $r;
for (1 .. 3) {
    $r = req('POST', '/v1/chat/completions', bearer => $tpmkey, json_body => {
        model => 'm', max_tokens => 50,
        messages => [ { role => 'user', content => 'one two three' } ] });
    last if $r->{status} != 200;
}
is(outcome($r), '429 RATE_LIMITED scope=api_key',
    'over its tokens per minute: 429')
    or diag($r->{status}, $r->{body});
$lim = wait_rows("event_type = 'security.rate_limited' AND actor = '"
    . key_prefix($tpmkey) . "'", 1);
is_deeply([ @{ $lim->[0]{metadata} // {} }{qw(unit scope count)} ],
    [ 'tokens_per_minute', 'api_key', 1 ], 'the tokens per minute, audited');

# --- reads: ops.viewed, selfserve.usage.viewed, selfserve.costs.viewed ----------
$r = req('GET', '/v1/ops/health', bearer => $padmin);
my $ops_rid = $r->{headers}{'x-request-id'};
$r = req('GET', '/v1/ops/circuit-breakers', bearer => $padmin);
is($r->{status}, 200, 'a platform admin reads the breakers');
$r = req('GET', '/v1/self-serve/usage/summary', bearer => $admin);
is($r->{status}, 200, 'a tenant admin reads its usage');
my $usage_rid = $r->{headers}{'x-request-id'};
$r = req('GET', '/v1/self-serve/costs/budget', bearer => $admin);
my $costs_rid = $r->{headers}{'x-request-id'};
# (the platform admin's first request is also its auth.access.success)
my $views = wait_rows("event_type LIKE '%.viewed' AND request_id IN ("
    . join(',', map { sql_quote($_) } $ops_rid, $usage_rid, $costs_rid)
    . ')', 3);
my %view = map { $_->{event_type} => $_ } @$views;
is(join(' ', map { $_ // '-' } @{ $view{'ops.viewed'} // {} }{qw(tenant_id
    actor outcome)}), "$ops_id " . key_prefix($padmin) . ' success',
    'ops.viewed: the platform admin\'s chain, its key');
is($view{'ops.viewed'}{metadata}{path}, '/v1/ops/health', 'and the path');
is(scalar @{ rows("event_type = 'ops.viewed' AND tenant_id = $ops_id") }, 2,
    'each read of an operator route');
is(join(' ', map { $_ // '-' } @{ $view{'selfserve.usage.viewed'} // {} }
    {qw(tenant_id actor)}), "$acme_id " . key_prefix($admin),
    'selfserve.usage.viewed');
is(join(' ', map { $_ // '-' } @{ $view{'selfserve.costs.viewed'} // {} }
    {qw(tenant_id actor)}), "$acme_id " . key_prefix($admin),
    'selfserve.costs.viewed');
$r = req('GET', '/v1/self-serve/usage/summary', bearer => $reader);
is($r->{status}, 403, 'a reader may not');
$r = req('GET', '/v1/audit/events?event_type=ops.viewed', bearer => $padmin);
is(scalar @{ $r->{json}{data}{items} // [] } >= 2, 1,
    'GET /v1/audit/events finds them');

# --- nexusctl's writes, between the gateway's own rows ---------------------------
my $cli = make_tenant('aev-cli');
my $cli_id = tid($cli);
my $creader = make_key($cli, name => 'cli reader');
my $cprobe = make_key($cli, name => 'cli probe');
my @writes = (
    [ 'set-quota', '--tenant', $cli, '--daily', '100' ],
    [ 'set-limits', '--tenant', $cli, '--class', 'read', '--rps', '5' ],
    [ 'set-tpm', '--tenant', $cli, '--tpm', '5000' ],
    [ 'set-guardrails', '--tenant', $cli, '--max-tokens', '100' ],
    [ 'set-models', '--tenant', $cli, '--models', 'a,b' ],
    [ 'set-cost-budget', '--tenant', $cli, '--monthly-usd', '10' ],
    [ 'set-plan', '--tenant', $cli, '--plan', 'pro' ],
    [ 'set-budget', '--prefix', key_prefix($creader), '--daily', '1000' ],
    [ 'set-budget', '--prefix', key_prefix($creader), '--clear' ],
    [ 'set-limits', '--prefix', key_prefix($creader), '--class', 'read',
      '--rps', '2' ],
    [ 'set-quota', '--tenant', $cli, '--clear' ],
    [ 'revoke-key', '--prefix', key_prefix($creader) ],
);
for my $w (@writes) {
    my ($code, $out, $err) = nexusctl(@$w);
    is("$code $err", '0 ', "nexusctl $w->[0]: audited, no warning");
    # the gateway writes to the same chain in between: rbac.forbidden
    req('GET', '/v1/admin/tenants', bearer => $cprobe);
}
my $cli_rows = wait_rows("tenant_id = $cli_id AND actor = 'nexusctl'",
    3 + @writes);
my @types = map { $_->{event_type} } @$cli_rows;
is_deeply(\@types, [ qw(admin.tenant.created auth.api_key.created
    auth.api_key.created admin.quota.updated admin.rate_limits.updated
    admin.tpm.updated admin.guardrails.updated admin.models.updated
    admin.cost_budget.updated admin.plan.updated admin.token_budget.updated
    admin.token_budget.deleted
    admin.rate_limits.updated admin.quota.updated auth.api_key.revoked) ],
    'every write, in order, in the tenant\'s chain');
my %cev;
$cev{ $_->{event_type} } //= $_ for @$cli_rows;
my $m = $cev{'auth.api_key.revoked'}{metadata};
is(join(' ', $m->{via}, $m->{command}, $m->{result}{prefix},
    $m->{result}{status}), 'nexusctl revoke-key ' . key_prefix($creader)
    . ' revoked', 'auth.api_key.revoked via nexusctl, with the key\'s row');
like($m->{os_user} // '', qr/\S/, 'the OS user');
is($cev{'admin.quota.updated'}{metadata}{result}{quota}{daily}, 100,
    'admin.quota.updated: the new quota');
is($cev{'admin.plan.updated'}{metadata}{result}{plan_id}, 'pro',
    'admin.plan.updated: the plan');
is($cev{'auth.api_key.created'}{metadata}{result}{tenant}, $cli,
    'auth.api_key.created: the key\'s row');
is(psql("SELECT count(*) FROM audit_events WHERE actor = 'nexusctl'"
    . " AND (metadata::text LIKE '%key_hash%' OR metadata::text ~ 'nx_[0-9a-f]{12}_')"),
    0, 'no key or hash in nexusctl\'s events');
is(scalar @{ wait_rows("tenant_id = $cli_id AND event_type = 'rbac.forbidden'",
    scalar @writes) }, scalar @writes,
    'the gateway\'s rbac.forbidden in between, in the same chain');

# the platform's chain: the price list
my ($code, $out, $err) = nexusctl('set-price', '--model', 'aev-model',
    '--input', '0.001', '--output', '0.002');
is($code, 0, 'set-price');
my $price = wait_rows("tenant_id = 0 AND event_type = 'admin.pricing.updated'"
    . " AND metadata::jsonb #>> '{result,prices,0,model}' = 'aev-model'", 1);
is(join(' ', map { $_ // '-' } $price->[0]{metadata}{result}{added},
    $price->[0]{metadata}{result}{prices}[0]{input}), '1 1000000',
    'admin.pricing.updated in the platform\'s chain');

# the gateway's events are flushed; both writers' rows verify
wait_rows("tenant_id = $cli_id AND event_type = 'auth.access.success'", 1);
sleep 0.5;
($code, $out, $err) = nexusctl('audit', 'verify', '--tenant', $cli);
is($code, 0, 'audit verify passes on a chain of both writers') or diag($out, $err);
my $n = psql("SELECT count(*) FROM audit_events WHERE tenant_id = $cli_id");
like($out, qr/^tenant \Q$cli\E \(id $cli_id\): ok: rows 1 to $n,/m,
    "every row of it: $n");
($code, $out) = nexusctl('audit', 'verify');
like($out, qr/^platform \(chain 0\): ok: /m,
    'the platform\'s chain verifies too');
for my $tn ($acme, $ops, $sus) {
    like($out, qr/^tenant \Q$tn\E \(id \d+\): ok: /m, "$tn verifies");
}

# --- without an audit key: written, not audited, and said so --------------------
my $before = psql("SELECT count(*) FROM audit_events WHERE tenant_id = $cli_id");
($code, $out, $err) = nexusctl({ env => { NEXUS_AUDIT_KEY_FILE => '' } },
    'set-quota', '--tenant', $cli, '--daily', '7');
is($code, 0, 'without a key: the write is made');
like($out, qr/daily=7/, 'and shown');
my @lines = split /\n/, $err;
is(scalar @lines, 1, 'one line on stderr');
like($lines[0] // '', qr/^nexusctl: warning: no audit key .*not recorded in the audit log/,
    'a warning that the change is not audited');
is(psql("SELECT quota ->> 'daily' FROM tenants WHERE id = $cli_id"), 7,
    'the quota is set');
sleep 0.5;
is(psql("SELECT count(*) FROM audit_events WHERE tenant_id = $cli_id"
    . " AND actor = 'nexusctl'"), scalar(@$cli_rows), 'and no event');

# --- --audit-key-file -----------------------------------------------------------
($code, $out, $err) = nexusctl({ env => { NEXUS_AUDIT_KEY_FILE => '' } },
    'set-quota', '--tenant', $cli, '--daily', '8', '--audit-key-file',
    $ENV{NEXUS_TEST_AUDIT_KEY_FILE});
is("$code $err", '0 ', '--audit-key-file: audited, no warning');
is(psql("SELECT metadata::jsonb #>> '{result,quota,daily}' FROM audit_events"
    . " WHERE tenant_id = $cli_id AND actor = 'nexusctl' ORDER BY seq DESC"
    . " LIMIT 1"), 8, 'the event of that write');
($code, $out, $err) = nexusctl('set-quota', '--tenant', $cli, '--daily', '9',
    '--audit-key-file', '/nonexistent/audit.key');
is($code, 2, 'an unreadable key: exit 2');
like($err, qr/--audit-key-file: /, 'says which');
is(psql("SELECT quota ->> 'daily' FROM tenants WHERE id = $cli_id"), 8,
    'and the change was not made');
($code, $out, $err) = nexusctl('create-tenant', '--name', unique_name('aev-x'),
    '--audit-key-file', '/nonexistent/audit.key');
is($code, 2, 'create-tenant with an unreadable key: exit 2');

# a key that is not the gateway's would link rows that verify as tampered
my $wrongkey = "$ENV{NEXUS_TEST_TMP}/wrong-audit.key";
open my $wfh, '>', $wrongkey or die "$wrongkey: $!";
print $wfh unpack('H*', join '', map { chr(($_ * 7 + 1) % 256) } 1 .. 32), "\n";
close $wfh;
($code, $out, $err) = nexusctl('set-quota', '--tenant', $cli, '--daily', '9',
    '--audit-key-file', $wrongkey);
is($code, 2, 'another audit key than the gateway\'s: exit 2');
like($err, qr/does not check out under this audit key.*nothing was written/,
    'says so');
is(psql("SELECT quota ->> 'daily' FROM tenants WHERE id = $cli_id"), 8,
    'and the change was not made');
($code, $out, $err) = nexusctl('audit', 'verify', '--tenant', $cli,
    '--audit-key-file', $ENV{NEXUS_TEST_AUDIT_KEY_FILE});
is($code, 0, 'audit verify takes --audit-key-file too') or diag($out, $err);
($code, $out) = nexusctl('audit', 'verify', '--tenant', $cli);
is($code, 0, 'still intact') or diag($out);

# --- the actor filter of GET /v1/audit/events ----------------------------------
$r = req('GET', "/v1/audit/events?actor=nexusctl&tenant=$cli&limit=200",
    bearer => $padmin);
is($r->{status}, 200, 'actor=nexusctl is a valid filter');
is(scalar @{ $r->{json}{data}{items} // [] }, scalar(@$cli_rows) + 1,
    'nexusctl\'s events of the tenant');
