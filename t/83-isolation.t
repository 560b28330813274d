#!/usr/bin/perl

# Tenant isolation: tenant B has an object of every kind the gateway keeps
# for a tenant (keys, a token budget, guardrails, a cost budget, a quota,
# usage rows, credits, a plan and an override, an ABAC policy, document
# grants, a notification destination, route, jobs, attempts and a dead
# letter, audit events). With each of tenant A's keys (a reader, an
# editor, an admin) every endpoint of docs/api.md is tried against B's
# objects: by B's name, B's ids, B's keys' ids and prefixes, B's
# documents, filters naming B, B's Idempotency-Key. Every answer must be
# the documented refusal (403 or 404, with its code) or a list without B
# in it, never one of B's values; and B's rows must be unchanged after
# every write, and once more when every audit event has been written.
#
# The table of endpoints is checked against api.md: an endpoint that
# api.md documents (a "### METHOD /path" heading) and the table does not
# cover fails the test, so the table grows with the API. Endpoints that
# take no tenant object are listed with the reason they are exempt.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify qw(seal_key_file wait_for);
use MIME::Base64 qw(encode_base64url);

my $seal = seal_key_file();
my $t = nexus_nginx(nexus_conf(
    extra => <<"EOF",
    upstream mock_up { server %%MOCK%%; keepalive 4; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_provider llama type=ollama upstream=mock_up discovery=off;
    nexus_model mock-small mock;
    nexus_model mock-embed mock;
    nexus_model ollama-small llama model=mock-small;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 100ms;
    nexus_usage_flush 100ms;
    nexus_seal_key_file $seal;
EOF
    locations => <<'EOF'), workers => 1);
        location /api/     { nexus_api; }
        location /hook/v1/ { nexus_api; nexus_acl_test_hook on; }
EOF
my $port = $t->port;

for (1 .. 200) {
    last if (http_req($port, 'GET', '/readyz')->{status} // 0) == 200;
    sleep 0.05;
}

sub api {
    my ($method, $path, $key, $body, $headers) = @_;
    return http_req($port, $method, $path, bearer => $key, json => 1,
        defined $body ? (json_body => $body) : (),
        $headers ? (headers => $headers) : ());
}

sub must {
    my ($what, $r, $status) = @_;
    die "setup: $what: $r->{status} $r->{body}\n"
        unless ($r->{status} // 0) == $status;
    return $r->{json}{data};
}

sub cli {
    my ($code, $out, $err) = nexusctl(@_);
    die "setup: nexusctl @_: $err" if $code;
    return $out;
}

# --- the tenants and their keys ---------------------------------------------

my $A = make_tenant('isoa');
my $B = make_tenant('isob', models => '*');
my $ops = make_tenant('isoops', platform => 1);
my $padmin = make_key($ops, name => 'padmin', role => 'admin');

my %akey = (
    reader => make_key($A, name => 'a-reader', role => 'reader'),
    editor => make_key($A, name => 'a-editor', role => 'editor'),
    admin => make_key($A, name => 'a-admin', role => 'admin'),
);
my @AROLES = qw(reader editor admin);

my $breader = make_key($B, name => 'b-reader', role => 'reader');
my $beditor = make_key($B, name => 'b-editor', role => 'editor');
my $badmin = make_key($B, name => 'b-admin', role => 'admin');
my $bid = psql("SELECT id FROM tenants WHERE name = '$B'");
my $aid = psql("SELECT id FROM tenants WHERE name = '$A'");
my %bprefix = map { $_->[0] => key_prefix($_->[1]) }
    (['reader', $breader], ['editor', $beditor], ['admin', $badmin]);
my $bkeyid = psql("SELECT id FROM api_keys WHERE prefix = '$bprefix{admin}'");
my $breaderid = psql("SELECT id FROM api_keys WHERE prefix ="
    . " '$bprefix{reader}'");

# --- B's objects, of every kind ---------------------------------------------

my $r = api('POST', '/v1/chat/completions', $breader, { model => 'mock-small',
    messages => [{ role => 'user', content => 'isolation' }] });
must('a gateway call of B', $r, 200);
wait_for(sub { psql("SELECT count(*) FROM usage_events WHERE tenant_id"
    . " = $bid") > 0 }) or die "setup: no usage row for B\n";

cli('set-budget', '--prefix', $bprefix{reader}, '--daily', '876543219');
cli('set-guardrails', '--tenant', $B, '--max-tokens', '543219876');
cli('set-cost-budget', '--tenant', $B, '--monthly-usd', '65432.1987',
    '--allow-unpriced');

must('B\'s quota', api('PATCH', "/v1/admin/quotas/$B", $padmin,
    { daily => 987654321 }), 200);
must('B\'s plan', api('PUT', "/v1/admin/plans/$B", $padmin,
    { plan_id => 'pro' }), 200);
must('B\'s override', api('PUT', "/v1/admin/plans/$B/overrides", $padmin,
    { feature_key => 'feature.chargeback_reports', enabled => JSON::PP::true(),
      config_json => { marker => 'isob-override-marker' } }), 200);
must('B\'s credits', api('POST', "/v1/admin/credits/$B/grant", $padmin,
    { amount_usd => 987.654321, reason => 'isob credit marker reason' }), 200);

my $bpolicy = must('B\'s policy', api('POST', '/v1/admin/authz/policies',
    $badmin, { name => 'isob-policy', rules => [{ id => 'isob-rule',
    effect => 'deny', resource_type => 'model', action => 'chat',
    condition => { eq => [{ var => 'resource.name' }, 'isob-model'] } }] }),
    201)->{id};

my $bdoc = 'isob-doc-' . $$;
must('B\'s document', api('POST', "/hook/v1/authz/documents/$bdoc/owner",
    $beditor), 201);
my $bgrant = must('B\'s grant', api('POST',
    "/v1/admin/authz/documents/$bdoc/permissions", $badmin,
    { principal_type => 'role', principal_id => 'reader',
      permission => 'read' }), 201)->{id};

my $bdest = must('B\'s destination', api('POST',
    '/v1/admin/notifications/destinations', $badmin,
    { url => 'https://isob-dest.example/hook', name => 'isob-dest-name',
      secret => 'isob-secret-value',
      headers_json => { 'X-Isob' => 'isob-header-value' } }), 201)->{id};

my $idem = 'iso-shared-key-' . $$;
my $route_body = { name => 'isob-route', destinations_json => [$bdest] };
my $broute = must('B\'s route', api('POST', '/v1/admin/notifications/routes',
    $badmin, $route_body, ['Idempotency-Key' => $idem]), 201)->{id};

# jobs, an attempt and a dead letter, as nexus-notify writes them
my $job_sql = sub {
    my ($status, $n) = @_;
    return psql("INSERT INTO notify_jobs (tenant_id, kind, destination_id,"
        . " url, route_id, event_id, event_type, severity, payload,"
        . " payload_sha256, dedupe_key, status, attempts) VALUES ($bid,"
        . " 'destination', $bdest, 'https://isob-dest.example/hook',"
        . " $broute, 'isob-event-$n', 'isob.marker.event', 'info',"
        . " '{\"isob\":\"payload\"}', encode(sha256('{\"isob\":\"payload\"}'),"
        . " 'hex'), 'isob-event-$n:d:$bdest', '$status', 1) RETURNING id");
};
my $bjob = $job_sql->('retrying', 1);
my $bjob_dead = $job_sql->('dlq', 2);
$bjob =~ s/\s.*//s;
$bjob_dead =~ s/\s.*//s;
psql("INSERT INTO notify_attempts (job_id, attempt, started_at, duration_ms,"
    . " outcome, http_status, error, response_body, payload_sha256, worker)"
    . " VALUES ('$bjob', 1, now(), 3, 'failed', 500, 'HTTP 500',"
    . " 'isob-response-body', 'x', 'isob-worker')");
my $bdlq = psql("INSERT INTO notify_dlq (job_id, tenant_id, reason,"
    . " last_error) VALUES ('$bjob_dead', $bid, 'max_attempts',"
    . " 'isob-last-error') RETURNING id");
$bdlq =~ s/\s.*//s;

# --- A's own objects the probes point at ------------------------------------

my $adoc = 'isoa-doc-' . $$;
must('A\'s document', api('POST', "/hook/v1/authz/documents/$adoc/owner",
    $akey{editor}), 201);
my $adest = must('A\'s destination', api('POST',
    '/v1/admin/notifications/destinations', $akey{admin},
    { url => 'https://isoa.example/hook' }), 201)->{id};
my $aroute = must('A\'s route', api('POST', '/v1/admin/notifications/routes',
    $akey{admin}, { name => 'isoa-route', destinations_json => [$adest] }),
    201)->{id};

# --- B's state --------------------------------------------------------------

# every row of B, but what the gateway updates on its own (a key's
# last_used_at, written in batches)
my $STATE = <<"EOF";
SELECT md5(string_agg(x, E'\\n' ORDER BY x)) FROM (
 SELECT 'tenant ' || to_jsonb(t)::text AS x FROM tenants t WHERE id = $bid
 UNION ALL SELECT 'key ' || (to_jsonb(k) - 'last_used_at')::text
  FROM api_keys k WHERE tenant_id = $bid
 UNION ALL SELECT 'usage ' || to_jsonb(u)::text FROM usage_events u
  WHERE tenant_id = $bid
 UNION ALL SELECT 'plan ' || to_jsonb(p)::text FROM tenant_plans p
  WHERE tenant_id = $bid
 UNION ALL SELECT 'override ' || to_jsonb(o)::text
  FROM tenant_feature_overrides o WHERE tenant_id = $bid
 UNION ALL SELECT 'costs ' || to_jsonb(c)::text FROM tenant_costs c
  WHERE tenant_id = $bid
 UNION ALL SELECT 'credit ' || to_jsonb(c)::text FROM credit_transactions c
  WHERE tenant_id = $bid
 UNION ALL SELECT 'policy ' || to_jsonb(p)::text FROM authz_policies p
  WHERE tenant_id = $bid
 UNION ALL SELECT 'grant ' || to_jsonb(a)::text FROM document_acl a
  WHERE tenant_id = $bid
 UNION ALL SELECT 'dest ' || to_jsonb(d)::text FROM notify_destinations d
  WHERE tenant_id = $bid
 UNION ALL SELECT 'route ' || to_jsonb(r)::text FROM notify_routes r
  WHERE tenant_id = $bid
 UNION ALL SELECT 'job ' || to_jsonb(j)::text FROM notify_jobs j
  WHERE tenant_id = $bid
 UNION ALL SELECT 'attempt ' || to_jsonb(a)::text FROM notify_attempts a
  JOIN notify_jobs j ON j.id = a.job_id WHERE j.tenant_id = $bid
 UNION ALL SELECT 'dlq ' || to_jsonb(q)::text FROM notify_dlq q
  WHERE tenant_id = $bid
 UNION ALL SELECT 'audit ' || to_jsonb(e)::text FROM audit_events e
  WHERE tenant_id = $bid
 UNION ALL SELECT 'chain ' || to_jsonb(c)::text FROM audit_chains c
  WHERE tenant_id = $bid
) s
EOF

sub b_state {
    return psql($STATE) . ' ' . redis_cli('HGETALL', "nx:cr:$bid");
}

# a forbidden request of $key's tenant marks the end of its events so far:
# once its rbac.forbidden is written, so is everything before it (one
# worker writes the events in order)
sub flush_audit {
    my ($key, $tid) = @_;
    my $n = psql("SELECT count(*) FROM audit_events WHERE tenant_id = $tid"
        . " AND event_type = 'rbac.forbidden'");
    api('GET', '/v1/admin/rollouts/killswitches', $key);
    wait_for(sub { psql("SELECT count(*) FROM audit_events WHERE"
        . " tenant_id = $tid AND event_type = 'rbac.forbidden'") > $n })
        or die "the audit events of tenant $tid are not written\n";
}

# the grant reaches the ledger in PostgreSQL after nexus_credit_flush
wait_for(sub { psql("SELECT count(*) FROM credit_transactions WHERE"
    . " tenant_id = $bid") > 0 }) or die "setup: B's grant is not written\n";
flush_audit($badmin, $bid);
my $b_before = b_state();
ok(psql("SELECT count(*) FROM audit_events WHERE tenant_id = $bid") > 5,
    'B has audit events');

# what must never be in an answer to A: B's name, its keys' prefixes, its
# document, names, URL, header, secret and values
my @MARKERS = ($B, values %bprefix, $bdoc, 'isob-policy', 'isob-rule',
    'isob-dest', 'isob-header-value', 'isob-secret-value', 'isob-route',
    'isob.marker.event', 'isob-event', 'isob-response-body',
    'isob-last-error', 'isob-worker', 'isob-override-marker',
    'isob credit marker', '987654321', '876543219', '543219876',
    '65432.1987', '987.654321', $bjob, $bjob_dead);
my $MARKERS = join '|', map { quotemeta } @MARKERS;

# --- the endpoints ----------------------------------------------------------

# a cursor just past B's newest event, as the audit API makes them
my $bcursor = encode_base64url(psql("SELECT (extract(epoch FROM"
    . " created_at) * 1000000)::bigint + 1 || '.' || (id + 1)"
    . " FROM audit_events WHERE tenant_id = $bid ORDER BY id DESC LIMIT 1"));

my %SUBST = (BCURSOR => $bcursor, B => $B, BKEYID => $bkeyid,
    BREADERID => $breaderid,
    BPREFIX => $bprefix{admin}, BREADER => $bprefix{reader}, BDOC => $bdoc,
    BGRANT => $bgrant,
    BPOLICY => $bpolicy, BDEST => $bdest, BROUTE => $broute, BJOB => $bjob,
    BDLQ => $bdlq, ADOC => $adoc, AROUTE => $aroute);

sub expand {
    my ($s) = @_;
    return $s unless defined $s;
    return [map { expand($_) } @$s] if ref $s eq 'ARRAY';
    return { map { $_ => expand($s->{$_}) } keys %$s } if ref $s eq 'HASH';
    return $s if ref $s;
    $s =~ s/%(\w+)%/$SUBST{$1} \/\/ die "no %$1%"/ge;
    return $s;
}

my $R403 = '403 FORBIDDEN required_role=admin';
my $E403 = '403 FORBIDDEN required_role=editor';
my $S403 = '403 FORBIDDEN permission=share';
my $P403 = '403 FORBIDDEN required=platform_admin';

sub all3 { my ($x) = @_; return { map { $_ => $x } @AROLES } }
sub adm { my ($x) = @_; return { reader => $R403, editor => $R403,
    admin => $x } }
sub ops { return all3($P403) }

my $chat = { model => 'mock-small',
    messages => [{ role => 'user', content => 'hi' }] };
my $rule = { id => 'r', effect => 'deny', resource_type => 'model',
    action => 'chat', condition => JSON::PP::true() };
my $T = JSON::PP::true();

# each: ep => the api.md heading (one of its endpoints), and probes
# [method, path, body, {role => expected}, headers], or exempt => why
my @ENDPOINTS = (
    { ep => 'GET /healthz',
      exempt => 'no key: liveness of the worker, no tenant object' },
    { ep => 'GET /readyz',
      exempt => 'no key: readiness of the node, no tenant object' },

    { ep => 'GET /v1/me', probes => [
        ['GET', '/v1/me?tenant=%B%', undef, all3('200 own')] ] },
    { ep => 'GET /v1/self-serve/plan', probes => [
        ['GET', '/v1/self-serve/plan?tenant=%B%', undef, all3('200 own')] ] },
    { ep => 'GET /v1/self-serve/usage/summary', probes => [
        ['GET', '/v1/self-serve/usage/summary?tenant=%B%', undef,
         adm('200 own')] ] },
    { ep => 'GET /v1/self-serve/costs/budget', probes => [
        ['GET', '/v1/self-serve/costs/budget?tenant=%B%', undef,
         adm('200 own')] ] },

    # B may use every model, A none: B's allowlist is not A's
    { ep => 'POST /v1/chat/completions', probes => [
        ['POST', '/v1/chat/completions', $chat,
         all3('403 model_not_found')] ] },
    { ep => 'POST /v1/embeddings', probes => [
        ['POST', '/v1/embeddings', { model => 'mock-embed', input => 'x' },
         all3('403 model_not_found')] ] },
    { ep => 'GET /v1/models', probes => [
        ['GET', '/v1/models', undef, all3('200 empty')] ] },
    { ep => 'POST /api/chat', probes => [
        ['POST', '/api/chat', { %$chat, model => 'ollama-small' },
         all3('403 model_not_found')] ] },
    { ep => 'POST /api/generate', probes => [
        ['POST', '/api/generate', { model => 'ollama-small', prompt => 'x' },
         all3('403 model_not_found')] ] },
    { ep => 'GET /api/tags', probes => [
        ['GET', '/api/tags', undef, all3('200 own')] ] },

    { ep => 'GET /v1/ops/health', probes => [
        ['GET', '/v1/ops/health', undef, ops()] ] },
    { ep => 'GET /v1/ops/circuit-breakers', probes => [
        ['GET', '/v1/ops/circuit-breakers', undef, ops()],
        ['GET', '/v1/ops/circuit-breakers/mock', undef, ops()] ] },
    { ep => 'POST /v1/ops/circuit-breakers/{provider}/reset', probes => [
        ['POST', '/v1/ops/circuit-breakers/mock/reset', undef, ops()] ] },
    { ep => 'POST /v1/ops/circuit-breakers/reset-all', probes => [
        ['POST', '/v1/ops/circuit-breakers/reset-all', undef, ops()] ] },
    { ep => 'GET /v1/ops/notifications', probes => [
        ['GET', '/v1/ops/notifications?tenant=%B%', undef, ops()] ] },

    { ep => 'GET /v1/admin/tenants', probes => [
        ['GET', '/v1/admin/tenants?tenant=%B%', undef, adm('200 own')] ] },
    { ep => 'POST /v1/admin/tenants', probes => [
        ['POST', '/v1/admin/tenants', { name => '%B%', platform => $T },
         adm($P403)] ] },
    { ep => 'GET /v1/admin/api-keys', probes => [
        ['GET', '/v1/admin/api-keys?tenant=%B%', undef, adm('200 empty')] ] },
    { ep => 'POST /v1/admin/api-keys', probes => [
        ['POST', '/v1/admin/api-keys', { name => 'x', role => 'admin',
         tenant => '%B%' }, adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'POST /v1/admin/api-keys/{id}/revoke', probes => [
        ['POST', '/v1/admin/api-keys/%BKEYID%/revoke', undef,
         adm('404 KEY_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/rollouts/killswitches', probes => [
        ['GET', '/v1/admin/rollouts/killswitches', undef, adm($P403)] ] },
    { ep => 'PATCH /v1/admin/rollouts/killswitches', probes => [
        ['PATCH', '/v1/admin/rollouts/killswitches',
         { kill_switches => { 'kill.chat' => $T } }, adm($P403)] ] },
    { ep => 'GET /v1/admin/quotas/{tenant}', probes => [
        ['GET', '/v1/admin/quotas/%B%', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'PATCH /v1/admin/quotas/{tenant}', probes => [
        ['PATCH', '/v1/admin/quotas/%B%', { daily => 1 }, adm($P403)] ] },
    { ep => 'GET /v1/admin/usage/{tenant}', probes => [
        ['GET', '/v1/admin/usage/%B%', undef, adm('404 TENANT_NOT_FOUND')],
        ['GET', '/v1/admin/usage/%B%?period=month', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/credits/{tenant}', probes => [
        ['GET', '/v1/admin/credits/%B%', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'POST /v1/admin/credits/{tenant}/grant', probes => [
        ['POST', '/v1/admin/credits/%B%/grant', { amount_usd => 1,
         reason => 'an attempt from another tenant' }, adm($P403)] ] },
    { ep => 'GET /v1/admin/costs/budget', probes => [
        ['GET', '/v1/admin/costs/budget?tenant=%B%', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'PATCH /v1/admin/costs/budget', probes => [
        ['PATCH', '/v1/admin/costs/budget?tenant=%B%',
         { monthly_budget_usd => 1 }, adm('404 TENANT_NOT_FOUND')],
        ['PUT', '/v1/admin/costs/budget?tenant=%B%',
         { allow_unpriced => JSON::PP::false() },
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'DELETE /v1/admin/costs/budget', probes => [
        ['DELETE', '/v1/admin/costs/budget?tenant=%B%', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/api-keys/{id}/budget', probes => [
        ['GET', '/v1/admin/api-keys/%BREADERID%/budget', undef,
         adm('404 KEY_NOT_FOUND')] ] },
    { ep => 'PUT /v1/admin/api-keys/{id}/budget', probes => [
        ['PUT', '/v1/admin/api-keys/%BREADERID%/budget', { daily => 1 },
         adm('404 KEY_NOT_FOUND')] ] },
    { ep => 'PATCH /v1/admin/api-keys/{id}/budget', probes => [
        ['PATCH', '/v1/admin/api-keys/%BREADERID%/budget', { daily => undef },
         adm('404 KEY_NOT_FOUND')] ] },
    { ep => 'DELETE /v1/admin/api-keys/{id}/budget', probes => [
        ['DELETE', '/v1/admin/api-keys/%BREADERID%/budget', undef,
         adm('404 KEY_NOT_FOUND')] ] },
    # the catalog is every tenant's: B's name is no model of it
    { ep => 'GET /v1/admin/costs/pricing/catalog', probes => [
        ['GET', '/v1/admin/costs/pricing/catalog?model=%B%&all=true', undef,
         adm('200 empty')] ] },
    { ep => 'POST /v1/admin/costs/pricing/catalog', probes => [
        ['POST', '/v1/admin/costs/pricing/catalog',
         { prices => { 'isoa-model' => { input => 1, output => 1 } } },
         adm($P403)] ] },
    { ep => 'GET /v1/admin/plans', probes => [
        ['GET', '/v1/admin/plans?tenant=%B%', undef, adm('200 own')] ] },
    { ep => 'GET /v1/admin/plans/{tenant}', probes => [
        ['GET', '/v1/admin/plans/%B%', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'PUT /v1/admin/plans/{tenant}', probes => [
        ['PUT', '/v1/admin/plans/%B%', { plan_id => 'free' }, adm($P403)],
        ['PATCH', '/v1/admin/plans/%B%', { plan_id => 'free' },
         adm($P403)] ] },
    { ep => 'GET /v1/admin/plans/{tenant}/overrides', probes => [
        ['GET', '/v1/admin/plans/%B%/overrides', undef,
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'PUT /v1/admin/plans/{tenant}/overrides', probes => [
        ['PUT', '/v1/admin/plans/%B%/overrides',
         { feature_key => 'feature.chargeback_reports', enabled => $T },
         adm($P403)],
        ['PATCH', '/v1/admin/plans/%B%/overrides',
         { feature_key => 'feature.tts', enabled => $T }, adm($P403)] ] },
    { ep => 'DELETE /v1/admin/plans/{tenant}/overrides', probes => [
        ['DELETE', '/v1/admin/plans/%B%/overrides', undef, adm($P403)],
        ['DELETE', '/v1/admin/plans/%B%/overrides?feature_key='
         . 'feature.chargeback_reports', undef, adm($P403)] ] },

    { ep => 'GET /v1/admin/authz/policies', probes => [
        ['GET', '/v1/admin/authz/policies?tenant=%B%', undef,
         adm('200 empty')] ] },
    { ep => 'POST /v1/admin/authz/policies', probes => [
        ['POST', '/v1/admin/authz/policies', { name => 'p', tenant => '%B%',
         rules => [$rule] }, adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/authz/policies/{id}', probes => [
        ['GET', '/v1/admin/authz/policies/%BPOLICY%', undef,
         adm('404 POLICY_NOT_FOUND')] ] },
    { ep => 'PUT /v1/admin/authz/policies/{id}', probes => [
        ['PUT', '/v1/admin/authz/policies/%BPOLICY%', { name => 'p',
         rules => [$rule] }, adm('404 POLICY_NOT_FOUND')] ] },
    { ep => 'DELETE /v1/admin/authz/policies/{id}', probes => [
        ['DELETE', '/v1/admin/authz/policies/%BPOLICY%', undef,
         adm('404 POLICY_NOT_FOUND')] ] },
    { ep => 'POST /v1/admin/authz/policies/{id}/simulate', probes => [
        ['POST', '/v1/admin/authz/policies/%BPOLICY%/simulate',
         { resource_type => 'model', action => 'chat' },
         adm('404 POLICY_NOT_FOUND')] ] },

    { ep => 'GET /v1/admin/authz/documents/{id}/permissions', probes => [
        ['GET', '/v1/admin/authz/documents/%BDOC%/permissions', undef,
         { reader => $E403, editor => $S403, admin => '200 empty' }] ] },
    { ep => 'POST /v1/admin/authz/documents/{id}/permissions', probes => [
        ['POST', '/v1/admin/authz/documents/%BDOC%/permissions',
         { principal_type => 'role', principal_id => 'reader',
           permission => 'read' },
         { reader => $E403, editor => $S403,
           admin => '404 DOCUMENT_NOT_FOUND' }],
        ['POST', '/v1/admin/authz/documents/%BDOC%/permissions',
         { principal_type => 'role', principal_id => 'reader',
           permission => 'read', tenant => '%B%' },
         { reader => $E403, editor => '400 VALIDATION_ERROR',
           admin => '400 VALIDATION_ERROR' }],
        # A's own document, granted to B's key or to B
        ['POST', '/v1/admin/authz/documents/%ADOC%/permissions',
         { principal_type => 'key', principal_id => '%BREADER%',
           permission => 'read' },
         { reader => $E403, editor => '404 KEY_NOT_FOUND',
           admin => '404 KEY_NOT_FOUND' }],
        ['POST', '/v1/admin/authz/documents/%ADOC%/permissions',
         { principal_type => 'tenant', principal_id => '%B%',
           permission => 'read' },
         { reader => $E403, editor => '400 VALIDATION_ERROR',
           admin => '400 VALIDATION_ERROR' }] ] },
    { ep => 'DELETE /v1/admin/authz/documents/{id}/permissions/{grant_id}',
      probes => [
        ['DELETE', '/v1/admin/authz/documents/%BDOC%/permissions/%BGRANT%',
         undef, { reader => $E403, editor => $S403,
                  admin => '404 GRANT_NOT_FOUND' }],
        ['DELETE', '/v1/admin/authz/documents/%ADOC%/permissions/%BGRANT%',
         undef, { reader => $E403, editor => '404 GRANT_NOT_FOUND',
                  admin => '404 GRANT_NOT_FOUND' }] ] },

    { ep => 'GET /v1/audit/events', probes => [
        ['GET', '/v1/audit/events?tenant=%B%', undef, adm('200 empty')],
        ['GET', '/v1/audit/events?actor=%BPREFIX%', undef, adm('200 empty')],
        ['GET', '/v1/audit/events?event_type=authz.policy.created', undef,
         adm('200 empty')],
        ['GET', '/v1/audit/events?tenant=%B%&cursor=%BCURSOR%', undef,
         adm('200 empty')],
        # before B's newest event: A's own older ones only (nexusctl
        # made A and its keys before B's events, and audited it)
        ['GET', '/v1/audit/events?cursor=%BCURSOR%', undef,
         adm('200 own')] ] },

    { ep => 'GET /v1/admin/notifications/destinations', probes => [
        ['GET', '/v1/admin/notifications/destinations?tenant=%B%', undef,
         adm('200 empty')] ] },
    { ep => 'POST /v1/admin/notifications/destinations', probes => [
        ['POST', '/v1/admin/notifications/destinations',
         { tenant => '%B%', url => 'https://x.example/' },
         adm('404 TENANT_NOT_FOUND')] ] },
    { ep => 'PATCH /v1/admin/notifications/destinations/{id}', probes => [
        ['PATCH', '/v1/admin/notifications/destinations/%BDEST%',
         { enabled => JSON::PP::false() },
         adm('404 DESTINATION_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/notifications/routes', probes => [
        ['GET', '/v1/admin/notifications/routes?tenant=%B%', undef,
         adm('200 empty')] ] },
    { ep => 'POST /v1/admin/notifications/routes', probes => [
        ['POST', '/v1/admin/notifications/routes', { tenant => '%B%',
         name => 'x', destinations_json => ['%BDEST%'] },
         adm('404 TENANT_NOT_FOUND')],
        # B's Idempotency-Key and body: A's own request, not B's replay
        ['POST', '/v1/admin/notifications/routes', $route_body,
         adm('404 DESTINATION_NOT_FOUND'), ['Idempotency-Key' => $idem]] ] },
    { ep => 'PATCH /v1/admin/notifications/routes/{id}', probes => [
        ['PATCH', '/v1/admin/notifications/routes/%BROUTE%',
         { enabled => JSON::PP::false() }, adm('404 ROUTE_NOT_FOUND')],
        ['PATCH', '/v1/admin/notifications/routes/%AROUTE%',
         { destinations_json => ['%BDEST%'] },
         adm('404 DESTINATION_NOT_FOUND')] ] },
    { ep => 'DELETE /v1/admin/notifications/routes/{id}', probes => [
        ['DELETE', '/v1/admin/notifications/routes/%BROUTE%', undef,
         adm('404 ROUTE_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/notifications/jobs', probes => [
        ['GET', '/v1/admin/notifications/jobs?tenant=%B%', undef,
         adm('200 empty')] ] },
    { ep => 'GET /v1/admin/notifications/jobs/{id}/attempts', probes => [
        ['GET', '/v1/admin/notifications/jobs/%BJOB%/attempts', undef,
         adm('404 JOB_NOT_FOUND')] ] },
    { ep => 'POST /v1/admin/notifications/jobs/{id}/retry-now', probes => [
        ['POST', '/v1/admin/notifications/jobs/%BJOB%/retry-now', undef,
         adm('404 JOB_NOT_FOUND')] ] },
    { ep => 'GET /v1/admin/notifications/dlq', probes => [
        ['GET', '/v1/admin/notifications/dlq?tenant=%B%', undef,
         adm('200 empty')] ] },
    { ep => 'POST /v1/admin/notifications/dlq/{id}/replay', probes => [
        ['POST', '/v1/admin/notifications/dlq/%BDLQ%/replay', undef,
         adm('404 DLQ_NOT_FOUND')] ] },
    { ep => 'POST /v1/admin/notifications/events', probes => [
        ['POST', '/v1/admin/notifications/events', { tenant => '%B%',
         event_type => 'isoa.probe' }, adm('404 TENANT_NOT_FOUND')] ] },
);

# --- the table covers api.md ------------------------------------------------

my $root = $ENV{NEXUS_TEST_ROOT} // '.';
open my $fh, '<', "$root/docs/api.md" or die "api.md: $!";
my @documented;
while (my $l = <$fh>) {
    next unless $l =~ /^### ((?:GET|HEAD|POST|PUT|PATCH|DELETE) \/.*)$/;
    push @documented, split /,\s*/, $1;
}
close $fh;

my %table = map { $_->{ep} => $_ } @ENDPOINTS;
ok(@documented > 50, 'api.md documents ' . scalar(@documented)
    . ' endpoints');
my @missing = grep { !$table{$_} } @documented;
is_deeply(\@missing, [], 'every endpoint of api.md is in the table');
my %doc = map { $_ => 1 } @documented;
my @stale = grep { !$doc{$_} } map { $_->{ep} } @ENDPOINTS;
is_deeply(\@stale, [], 'and the table has none api.md does not document');
for my $e (@ENDPOINTS) {
    ok($e->{exempt} || @{ $e->{probes} // [] },
        "$e->{ep}: probed" . ($e->{exempt} ? " (exempt: $e->{exempt})" : ''));
}

# --- every endpoint, with every key of A ------------------------------------

# outcome() of Nexus::Fixtures, and for a success whether it holds
# anything: "200 empty" (a list with nothing in it) or "200 own" (the
# caller's own data)
sub answer {
    my ($r) = @_;
    my $s = outcome($r);
    return $s unless $s =~ /^2\d\d$/;
    my $d = ref $r->{json} eq 'HASH' ? $r->{json}{data} : undef;
    $d = $d->{items} if ref $d eq 'HASH' && exists $d->{items};
    return "$s " . (ref $d eq 'ARRAY' && !@$d ? 'empty' : 'own');
}

my ($probes, $writes) = (0, 0);

for my $e (grep { $_->{probes} } @ENDPOINTS) {
    for my $p (@{ $e->{probes} }) {
        my ($method, $path, $body, $want, $headers) = @$p;
        $path = expand($path);
        for my $role (@AROLES) {
            my $name = "$role: $method $path";
            my $r = api($method, $path, $akey{$role}, expand($body),
                $headers);
            my $got = answer($r);
            $probes++;
            is($got, $want->{$role} // 'no expectation', $name)
                or diag($r->{body});
            unlike($r->{raw} // '', qr/$MARKERS/, "$name: nothing of B")
                or diag($r->{raw});
            if ($method ne 'GET') {
                $writes++;
                is(b_state(), $b_before, "$name: B unchanged");
            }
        }
    }
}

ok($probes > 200, "$probes requests, $writes of them writes");

# once every event of A's attempts is written, B is still as it was: its
# chain did not grow
flush_audit($akey{admin}, $aid);
is(b_state(), $b_before, 'B unchanged once every audit event is written');
is(psql("SELECT count(*) FROM audit_events WHERE tenant_id = $bid"
    . " AND actor IN ('" . join("','", map { key_prefix($_) } values %akey)
    . "')"), 0, 'no event of A\'s keys is in B\'s chain');

nexus_done_testing();
