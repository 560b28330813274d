#!/usr/bin/perl

# Plans and entitlements: the catalog, a tenant's plan and feature
# overrides through the admin API and nexusctl, 403 FEATURE_NOT_ENABLED
# with details.feature_key where a location's feature is not in the
# tenant's plan, a change reaching every worker of two nodes without a
# reload (plan, override, catalog), the self-serve view, who may call
# what, and nexus_feature at nginx -t.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use File::Temp ();
use Nexus::Test;
use Nexus::Fixtures;

my $audit = 'nexus_audit_key_file %%AUDIT_KEY%%; nexus_audit_flush 200ms;';
my $conf = nexus_conf(extra => $audit, locations => <<'EOF');
        location /tts/v1/  { nexus_api; nexus_feature tts; }
        location /sso/v1/  { nexus_api; nexus_feature identity.sso; }
        location /chat/v1/ { nexus_api; nexus_feature chat; }
        location /int/v1/  { nexus_api; nexus_feature internal
                                                     entitlement=off; }
        location /open/    { nexus_auth on; nexus_feature tts;
                             proxy_pass http://%%MOCK%%/; }
        location /own/v1/  { nexus_api; nexus_feature internal; }
EOF
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf, workers => 2);

nexus_plan(125);

my $ops = make_tenant('plan-ops', platform => 1);
my $padmin = make_key($ops, name => 'ops', role => 'admin');
my $t1 = make_tenant('plan-a');
my $admin1 = make_key($t1, name => 'admin', role => 'admin');
my $user1 = make_key($t1, name => 'user');
my $t2 = make_tenant('plan-b');
my $admin2 = make_key($t2, name => 'admin', role => 'admin');
my $user2 = make_key($t2, name => 'user');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub req {
    my ($n, $method, $path, $k, $body) = @_;
    return http_req($n->port, $method, $path, json => 1,
        defined $k ? (bearer => $k) : (),
        defined $body ? (json_body => $body) : ());
}

# the statuses of GET $path on every worker of both nodes
sub statuses {
    my ($path, $k) = @_;
    my %c;
    for my $n ($n1, $n2) {
        $c{ req($n, 'GET', $path, $k)->{status} }++ for 1 .. 6;
    }
    return join ',', map { "$_=$c{$_}" } sort keys %c;
}

# polls statuses() until it is $want, for at most a second and a half
sub become {
    my ($path, $k, $want) = @_;
    my $deadline = time + 1.5;
    my $got = statuses($path, $k);
    while ($got ne $want && time < $deadline) {
        sleep 0.05;
        $got = statuses($path, $k);
    }
    return $got;
}

my $true = JSON::PP::true();
my $false = JSON::PP::false();

# --- the catalog -------------------------------------------------------------

my $r = req($n1, 'GET', '/v1/admin/plans', $admin1);
is($r->{status}, 200, 'a tenant admin reads the catalog');
my %plan = map { $_->{id} => $_ } @{ $r->{json}{data}{plans} };
is(join(',', map { $_->{id} } @{ $r->{json}{data}{plans} }),
    'free,pro,enterprise', 'free, pro and enterprise, in order');
ok($plan{free}{default} && !$plan{pro}{default}, 'free is the default');
my %has = map { my $p = $_; $p => { map { $_ => 1 } @{ $plan{$p}{features} } } }
    keys %plan;
ok(!$has{free}{'feature.tts'} && $has{pro}{'feature.tts'}
    && $has{enterprise}{'feature.tts'}, 'tts: pro and enterprise');
ok(!$has{pro}{'feature.identity.scim'} && $has{enterprise}{'feature.identity.scim'},
    'scim: enterprise only');
ok($has{free}{'feature.chat'} && $has{free}{'feature.retrieval.local_pgvector'},
    'free has the gateway and local retrieval');
is(scalar @{ $r->{json}{data}{features} }, 17, 'seventeen features');
is($r->{json}{data}{features}[0]{key}, 'feature.chat', 'with their keys');

# --- a new tenant is on the default plan ---------------------------------------

$r = req($n1, 'GET', "/v1/admin/plans/$t1", $padmin);
is($r->{status}, 200, 'a platform admin reads a tenant plan');
is($r->{json}{data}{plan}{id}, 'free', 'a new tenant is on free');
ok(!$r->{json}{data}{assigned}, 'by default, not assigned');
is(join(',', @{ $r->{json}{data}{features} }),
    'feature.chat,feature.embeddings,feature.retrieval.local_pgvector',
    'its effective features');
is_deeply($r->{json}{data}{overrides}, [], 'no overrides');

# --- enforcement -------------------------------------------------------------

$r = req($n1, 'GET', '/tts/v1/me', $user1);
is($r->{status}, 403, 'a feature outside the plan: 403');
is(code($r), 'FEATURE_NOT_ENABLED', 'FEATURE_NOT_ENABLED');
is($r->{json}{error}{details}{feature_key}, 'feature.tts',
    'details.feature_key names it');
is($r->{json}{error}{message}, 'Feature not enabled for tenant plan',
    'the message');
ok($r->{json}{meta}{request_id}, 'in the Nexus envelope');
is(code(req($n1, 'GET', '/sso/v1/me', $user1)), 'FEATURE_NOT_ENABLED',
    'a dotted feature too');
is(req($n1, 'GET', '/sso/v1/me', $user1)->{json}{error}{details}{feature_key},
    'feature.identity.sso', 'named with its dots');
is(req($n1, 'GET', '/chat/v1/me', $user1)->{status}, 200,
    'a feature in the plan: allowed');
is(req($n1, 'GET', '/int/v1/me', $user1)->{status}, 200,
    'entitlement=off: a kill switch only');
is(req($n1, 'GET', '/v1/me', $user1)->{status}, 200,
    'no nexus_feature: no entitlement check');
is(code(req($n1, 'GET', '/open/', $user1)), 'FEATURE_NOT_ENABLED',
    'any location with nexus_auth is checked');
is(req($n1, 'GET', '/tts/v1/me')->{status}, 401,
    'without a key: 401 first');

# every worker of both nodes has the key cached now
is(statuses('/tts/v1/me', $user1), '403=12', 'refused on both nodes');

# --- assignment reaches every node without a reload ---------------------------

$r = req($n1, 'PUT', "/v1/admin/plans/$t1", $padmin, { plan_id => 'pro' });
is($r->{status}, 200, 'PUT a plan');
is($r->{json}{data}{plan}{id}, 'pro', 'the tenant is on pro');
ok($r->{json}{data}{assigned}, 'assigned');
ok((grep { $_ eq 'feature.tts' } @{ $r->{json}{data}{features} }),
    'its features now include tts');
is(become('/tts/v1/me', $user1, '200=12'), '200=12',
    'every worker of both nodes allows tts within a second');
is(req($n2, 'GET', '/tts/v1/me', $user2)->{status}, 403,
    'another tenant is unaffected');

$r = req($n2, 'PATCH', "/v1/admin/plans/$t1", $padmin, { plan_id => 'enterprise' });
is($r->{status}, 200, 'PATCH works like PUT');
is($r->{json}{data}{plan}{id}, 'enterprise', 'enterprise');

# --- overrides ----------------------------------------------------------------

$r = req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $padmin,
    { feature_key => 'feature.tts', enabled => $false });
is($r->{status}, 200, 'an override that disables tts');
ok(!(grep { $_ eq 'feature.tts' } @{ $r->{json}{data}{features} }),
    'tts is out of the effective set');
is($r->{json}{data}{overrides}[0]{feature_key}, 'feature.tts', 'listed');
is($r->{json}{data}{overrides}[0]{updated_by}, key_prefix($padmin),
    'who set it (key prefix)');
is(become('/tts/v1/me', $user1, '403=12'), '403=12',
    'refused again on both nodes within a second');

$r = req($n2, 'PATCH', "/v1/admin/plans/$t2/overrides", $padmin,
    { feature_key => 'feature.identity.sso', enabled => $true,
      config_json => { voices => ['nova'] } });
is($r->{status}, 200, 'an override that enables sso on free');
is(become('/sso/v1/me', $user2, '200=12'), '200=12', 'sso allowed for it');
is(become('/tts/v1/me', $user2, '403=12'), '403=12', 'tts still not');

$r = req($n1, 'GET', "/v1/admin/plans/$t2/overrides", $admin2);
is($r->{status}, 200, 'a tenant admin lists its own overrides');
is($r->{json}{data}[0]{feature_key}, 'feature.identity.sso', 'the override');
ok($r->{json}{data}[0]{enabled}, 'enabled');
is_deeply($r->{json}{data}[0]{config_json}, { voices => ['nova'] },
    'config_json as sent');

$r = req($n1, 'PUT', "/v1/admin/plans/$t2/overrides", $padmin,
    { feature_key => 'feature.identity.sso', enabled => $true });
is_deeply($r->{json}{data}{overrides}[0]{config_json}, { voices => ['nova'] },
    'an override without config_json keeps its config');

$r = req($n1, 'DELETE',
    "/v1/admin/plans/$t1/overrides?feature_key=feature.tts", $padmin);
is($r->{status}, 200, 'DELETE one override');
is_deeply($r->{json}{data}{overrides}, [], 'gone');
is(become('/tts/v1/me', $user1, '200=12'), '200=12', 'the plan rules again');

$r = req($n1, 'DELETE', "/v1/admin/plans/$t2/overrides", $padmin);
is($r->{status}, 200, 'DELETE every override of a tenant');
is(become('/sso/v1/me', $user2, '403=12'), '403=12', 'sso refused again');

# back to the default plan
$r = req($n1, 'PUT', "/v1/admin/plans/$t2", $padmin, { plan_id => 'pro' });
$r = req($n1, 'PUT', "/v1/admin/plans/$t2", $padmin, { plan_id => undef });
is($r->{json}{data}{plan}{id}, 'free', 'plan_id null: back to the default');
ok(!$r->{json}{data}{assigned}, 'not assigned any more');

# --- a catalog change evicts every key ------------------------------------------

is(statuses('/tts/v1/me', $user1), '200=12', 'enterprise has tts');
psql("DELETE FROM plan_features WHERE plan_id = 'enterprise'"
    . " AND feature_key = 'feature.tts'");
is(become('/tts/v1/me', $user1, '403=12'), '403=12',
    'tts taken out of enterprise by SQL: refused everywhere');
my ($code, $out, $err) = nexusctl('load-plans');
is($code, 0, 'nexusctl load-plans restores the built-in catalog')
    or diag($err);
like($out, qr/^load-plans: loaded the built-in catalog: 3 plans, 17 features, default plan free$/m,
    'and says so');
is(become('/tts/v1/me', $user1, '200=12'), '200=12', 'tts back everywhere');

# --- nexusctl ---------------------------------------------------------------------

($code, $out) = nexusctl('set-plan', '--tenant', $t2, '--plan', 'pro');
is($code, 0, 'nexusctl set-plan');
like($out, qr/^plan of tenant \Q$t2\E: plan=pro assigned=yes features=\S*feature\.tts\S* overrides=none$/,
    'prints the plan');
is(become('/tts/v1/me', $user2, '200=12'), '200=12',
    'a plan set by nexusctl reaches both nodes');
($code, $out) = nexusctl('show-plan', '--tenant', $t2, '--json');
is($code, 0, 'nexusctl show-plan --json');
like($out, qr/"plan" ?: ?\{"id" ?: ?"pro"/, 'the API document');
($code, $out, $err) = nexusctl('set-plan', '--tenant', $t2, '--plan', 'gold');
is($code, 1, 'an unknown plan: exit 1');
like($err, qr/plan "gold" is not in the catalog/, 'and why');

my $tmp = File::Temp->new(SUFFIX => '.json');
print $tmp '{"default_plan":"free","features":[{"key":"feature.chat"}],'
    . '"plans":[{"id":"free","name":"Free","features":["feature.chat"]}]}';
close $tmp;
($code, $out, $err) = nexusctl('load-plans', '--file', $tmp->filename);
is($code, 1, 'a catalog without a plan tenants are on is refused');
like($err, qr/plan "(enterprise|pro)" is not in \S+ but 1 tenant\(s\) are on it/,
    'naming the plan');
is(req($n1, 'GET', '/v1/admin/plans', $admin1)->{json}{data}{plans}[1]{id},
    'pro', 'the catalog is unchanged');

# an operator's own catalog: the shipped one plus feature.internal in pro
my $cat = JSON::PP->new->decode(do {
    local $/;
    open my $fh, '<', "$ENV{NEXUS_TEST_ROOT}/config/plans.json" or die $!;
    <$fh>;
});
push @{ $cat->{features} }, { key => 'feature.internal' };
push @{ $cat->{plans}[1]{features} }, 'feature.internal';
my $own = File::Temp->new(SUFFIX => '.json');
print $own JSON::PP->new->encode($cat);
close $own;
is(become('/own/v1/me', $user2, '403=12'), '403=12',
    'a feature the catalog does not know: refused to all');
($code, $out, $err) = nexusctl('load-plans', '--file', $own->filename);
is($code, 0, 'load-plans --file') or diag($err);
like($out, qr/: 3 plans, 18 features, default plan free$/, 'eighteen features');
is(become('/own/v1/me', $user1, '403=12'), '403=12',
    'not in enterprise: still refused');
is(become('/own/v1/me', $user2, '200=12'), '200=12', 'allowed on pro');
($code) = nexusctl('load-plans');
is(become('/own/v1/me', $user2, '403=12'), '403=12',
    'the built-in catalog again: refused');

$cat->{plans}[0]{features}[0] = 'feature.nothing';
$own = File::Temp->new(SUFFIX => '.json');
print $own JSON::PP->new->encode($cat);
close $own;
($code, $out, $err) = nexusctl('load-plans', '--file', $own->filename);
is($code, 2, 'a plan with an undeclared feature: exit 2');
like($err, qr/plan "free": feature 1 is not a key of "features"/, 'says which');
$own = File::Temp->new(SUFFIX => '.json');
print $own '{"default_plan":';
close $own;
($code, $out, $err) = nexusctl('load-plans', '--file', $own->filename);
is($code, 2, 'invalid JSON: exit 2');
($code, $out, $err) = nexusctl('set-plan', '--tenant', $t2);
is($code, 2, 'set-plan without --plan or --default: exit 2');
($code, $out, $err) = nexusctl('show-plan', '--tenant', 'nosuch');
is($code, 1, 'show-plan of an unknown tenant: exit 1');
like($err, qr/tenant "nosuch" not found/, 'not found');

# --- self-serve ---------------------------------------------------------------------

$r = req($n1, 'GET', '/v1/self-serve/plan', $user1);
is($r->{status}, 200, 'any key reads its own plan');
is($r->{json}{data}{tenant}, $t1, 'its own tenant');
is($r->{json}{data}{plan}{id}, 'enterprise', 'its plan');
ok((grep { $_ eq 'feature.tts' } @{ $r->{json}{data}{features} }),
    'its effective features');
ok(!exists $r->{json}{data}{overrides}, 'not who set its overrides');
is(req($n1, 'GET', '/v1/self-serve/plan')->{status}, 401, 'no key: 401');
is(req($n1, 'POST', '/v1/self-serve/plan', $user1, {})->{status}, 405,
    'read only');

# --- who may call what ----------------------------------------------------------------

$r = req($n1, 'PUT', "/v1/admin/plans/$t1", $admin1, { plan_id => 'free' });
is($r->{status}, 403, 'a tenant admin cannot change its plan');
is($r->{json}{error}{details}{required}, 'platform_admin', 'platform admins only');
is(req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $admin1,
    { feature_key => 'feature.tts', enabled => $true })->{status}, 403,
    'nor its overrides');
is(req($n1, 'DELETE', "/v1/admin/plans/$t1/overrides", $admin1)->{status}, 403,
    'nor delete them');
is(req($n1, 'GET', "/v1/admin/plans/$t1", $admin1)->{status}, 200,
    'it reads its own plan');
is(code(req($n1, 'GET', "/v1/admin/plans/$t2", $admin1)), 'TENANT_NOT_FOUND',
    'not another tenant\'s');
is(code(req($n1, 'GET', "/v1/admin/plans/$t2/overrides", $admin1)),
    'TENANT_NOT_FOUND', 'nor its overrides');
is(req($n1, 'GET', '/v1/admin/plans', $user1)->{status}, 403,
    'a reader key gets no admin endpoint');
is(req($n1, 'GET', '/v1/admin/plans')->{status}, 401, 'no key: 401');
is(code(req($n1, 'GET', '/v1/admin/plans/nosuch', $padmin)), 'TENANT_NOT_FOUND',
    'an unknown tenant');
is(code(req($n1, 'PUT', '/v1/admin/plans/nosuch', $padmin, { plan_id => 'pro' })),
    'TENANT_NOT_FOUND', 'an unknown tenant, written');

# --- the audit log ----------------------------------------------------------------------

ok(audited('admin.plan.updated', $t1, 'success') >= 2,
    'plan changes are audited in the tenant\'s chain');
ok(audited('admin.plan_override.updated', $t2, 'success') >= 2,
    'override changes too');
ok(audited('admin.plan_override.deleted', $t1, 'success') >= 1,
    'and their removal');
ok(audited('rbac.forbidden', $t1, 'failure') >= 3,
    'a tenant admin\'s attempts are rbac.forbidden');
ok(audited('selfserve.plan.viewed', $t1, 'success') >= 1,
    'the self-serve view is selfserve.plan.viewed');
# two nodes write their events in batches of their own: compare the set,
# not the order
is(psql("SELECT string_agg(DISTINCT metadata::jsonb -> 'request' ->> 'plan_id',"
    . " ',') FROM audit_events WHERE event_type = 'admin.plan.updated'"
    . " AND actor <> 'nexusctl' AND outcome = 'success' AND tenant_id ="
    . " (SELECT id FROM tenants WHERE name = " . sql_quote($t1) . ")"),
    'enterprise,pro', 'with the request');
is(psql("SELECT metadata::jsonb #>> '{result,plan_id}' FROM audit_events"
    . " WHERE event_type = 'admin.plan.updated' AND actor = 'nexusctl'"
    . " AND tenant_id = (SELECT id FROM tenants WHERE name = "
    . sql_quote($t2) . ") ORDER BY id LIMIT 1"), 'pro',
    'nexusctl set-plan, audited in the tenant\'s chain');

# --- validation ------------------------------------------------------------------------

$r = req($n1, 'PUT', "/v1/admin/plans/$t1", $padmin, { plan_id => 'gold' });
is(code($r), 'VALIDATION_ERROR', 'an unknown plan');
is($r->{json}{error}{details}{field}, 'plan_id', 'names the field');
is(code(req($n1, 'PUT', "/v1/admin/plans/$t1", $padmin, {})),
    'VALIDATION_ERROR', 'plan_id is required');
is(code(req($n1, 'PUT', "/v1/admin/plans/$t1", $padmin, { plan_id => 'Pro!' })),
    'VALIDATION_ERROR', 'a malformed plan id');
$r = req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $padmin,
    { feature_key => 'feature.nothing', enabled => $true });
is(code($r), 'VALIDATION_ERROR', 'a feature not in the catalog');
is($r->{json}{error}{details}{field}, 'feature_key', 'names the field');
is(code(req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $padmin,
    { feature_key => 'tts', enabled => $true })), 'VALIDATION_ERROR',
    'a key without feature.');
is(code(req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $padmin,
    { feature_key => 'feature.tts' })), 'VALIDATION_ERROR', 'enabled is required');
is(code(req($n1, 'PUT', "/v1/admin/plans/$t1/overrides", $padmin,
    { feature_key => 'feature.tts', enabled => $true, config_json => [1] })),
    'VALIDATION_ERROR', 'config_json must be an object');
is(code(req($n1, 'DELETE', "/v1/admin/plans/$t1/overrides?feature_key=x", $padmin)),
    'VALIDATION_ERROR', 'DELETE with a malformed feature_key');
is(req($n1, 'DELETE', "/v1/admin/plans/$t1", $padmin)->{status}, 405,
    'a plan is not deleted');
is(req($n1, 'POST', '/v1/admin/plans', $padmin, {})->{status}, 405,
    'the catalog is read only');
is(req($n1, 'GET', "/v1/admin/plans/$t1/other", $padmin)->{status}, 404,
    'no such endpoint');

# --- nexus_feature at nginx -t -------------------------------------------------------------

sub refused {
    my ($what, $loc, $re) = @_;
    my ($c, $o) = nexus_nginx_t(nexus_conf(locations => $loc));
    isnt($c, 0, "$what: nginx -t fails");
    like($o, qr/\[emerg\] [^\n]*$re/, "$what: message") or diag($o);
}

refused('entitlement=maybe',
    'location /x/ { nexus_api; nexus_feature tts entitlement=maybe; }',
    qr/invalid parameter "entitlement=maybe"/);
refused('a leading dot', 'location /x/ { nexus_api; nexus_feature .tts; }',
    qr/invalid feature name "\.tts"/);
refused('two dots', 'location /x/ { nexus_api; nexus_feature a..b; }',
    qr/invalid feature name "a\.\.b"/);
