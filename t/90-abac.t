#!/usr/bin/perl

# ABAC policies: the admin API (CRUD, tenant isolation, write-time errors
# with their JSON path, simulate), their evaluation on the gateway
# (nexus_abac: a model restricted for a role, deny first, priority, the
# default), time_between in a time zone, and a change reaching both
# workers of two nginx nodes within a second, with no reload.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $keyfile = "$ENV{NEXUS_TEST_TMP}/abac-mock.key";
open my $kf, '>', $keyfile or die "$keyfile: $!";
print $kf "sk-mock-secret\n";
close $kf;

my $conf = nexus_conf(
    listen => 'reuseport',
    extra => <<"EOF",
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_provider mock type=openai upstream=mock_up key_file=$keyfile
                   discovery=off;
    nexus_model alpha mock model=mock-small;
    nexus_model beta mock model=mock-small;
    nexus_model embed mock model=mock-embed;
EOF
    locations => <<'EOF',
        location /abac/v1/   { nexus_api; nexus_abac on;
                               nexus_abac_default allow;
                               add_header X-Pid $pid always; }
        location /strict/v1/ { nexus_api; nexus_abac on; }
EOF
);

my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf, workers => 2);
my $port = $n1->port;

my $TRUE = JSON::PP::true();
my $FALSE = JSON::PP::false();

my $tenant = make_tenant('abac', models => '*');
my $admin = make_key($tenant, name => 'admin', role => 'admin');
my $reader = make_key($tenant, name => 'reader');
my $editor = make_key($tenant, name => 'editor', role => 'editor');

my $other = make_tenant('abacother', models => '*');
my $oadmin = make_key($other, name => 'admin', role => 'admin');
my $oreader = make_key($other, name => 'reader');

my $platform = make_tenant('abacplat', platform => 1);
my $padmin = make_key($platform, name => 'admin', role => 'admin');

sub api {
    my ($method, $path, $key, $body, %o) = @_;
    return http_req($o{port} // $port, $method, $path, bearer => $key,
        json => 1, defined $body ? (json_body => $body) : ());
}

sub code {
    my ($r) = @_;
    return ref $r->{json} eq 'HASH' && $r->{json}{error}
        ? $r->{json}{error}{code} : '';
}

sub chat {
    my ($model, $key, %o) = @_;
    return http_req($o{port} // $port, 'POST',
        ($o{prefix} // '/abac') . '/v1/chat/completions',
        bearer => $key, json => 1, timeout => 10,
        json_body => { model => $model,
            messages => [{ role => 'user', content => 'hi' }] });
}

# --- CRUD -------------------------------------------------------------

my $hs = {
    name => 'deny-high-sensitivity', effect => 'deny',
    resource_type => 'document', action => 'read', priority => 200,
    condition_json => {
        eq => [{ var => 'resource.labels.sensitivity' }, 'high'] },
};

my $r = api('POST', '/v1/admin/authz/policies', $admin, $hs);
is($r->{status}, 201, 'a policy in the reference\'s shape is created');
my $p = $r->{json}{data};
is($p->{tenant}, $tenant, 'in the admin\'s tenant');
is($p->{version}, 1, 'version 1');
ok($p->{enabled}, 'enabled by default');
is(scalar @{ $p->{rules} }, 1, 'one rule');
is($p->{rules}[0]{name}, 'deny-high-sensitivity', 'the rule as written');
my $hsid = $p->{id};

$r = api('POST', '/v1/admin/authz/policies', $admin, $hs);
is(code($r), 'POLICY_EXISTS', 'a name is unique in a tenant');

$r = api('GET', '/v1/admin/authz/policies', $admin);
is_deeply([map { $_->{id} } @{ $r->{json}{data} }], [$hsid],
    'the tenant\'s admin lists its policy');

$r = api('GET', "/v1/admin/authz/policies/$hsid", $admin);
is($r->{json}{data}{name}, 'deny-high-sensitivity', 'GET by id');

$r = api('PUT', "/v1/admin/authz/policies/$hsid", $admin,
    { %$hs, priority => 300, enabled => $FALSE });
is($r->{status}, 200, 'PUT replaces it');
is($r->{json}{data}{version}, 2, 'version 2');
is($r->{json}{data}{enabled}, $FALSE, 'disabled');
is($r->{json}{data}{rules}[0]{priority}, 300, 'new priority');

# another tenant's admin sees nothing of it

$r = api('GET', '/v1/admin/authz/policies', $oadmin);
is_deeply($r->{json}{data}, [], 'another tenant lists none');
my @iso = (
    ['GET', "/v1/admin/authz/policies/$hsid", undef],
    ['PUT', "/v1/admin/authz/policies/$hsid", $hs],
    ['DELETE', "/v1/admin/authz/policies/$hsid", undef],
    ['POST', "/v1/admin/authz/policies/$hsid/simulate",
        { resource_type => 'document', action => 'read' }],
);
is_deeply([map { api($_->[0], $_->[1], $oadmin, $_->[2])->{status} } @iso],
    [404, 404, 404, 404], 'another tenant\'s admin: 404 on every route');
$r = api('POST', '/v1/admin/authz/policies', $oadmin,
    { %$hs, tenant => $tenant });
is(code($r), 'TENANT_NOT_FOUND', 'and cannot write into another tenant');
is(api('GET', '/v1/admin/authz/policies', $reader)->{status}, 403,
    'a reader cannot manage policies');

# a platform admin sees both and writes platform-wide policies

$r = api('GET', "/v1/admin/authz/policies/$hsid", $padmin);
is($r->{status}, 200, 'a platform admin reads any tenant\'s policy');
$r = api('POST', '/v1/admin/authz/policies', $padmin,
    { name => 'platform-noop', rules => [{ id => 'never',
        effect => 'deny', resource_type => 'model', action => 'chat',
        condition => JSON::PP::false() }] });
is($r->{status}, 201, 'a platform-wide policy');
is($r->{json}{data}{tenant}, undef, 'with no tenant');
my $platid = $r->{json}{data}{id};

# --- write-time validation --------------------------------------------

sub invalid {
    my ($body, $path, $re, $name) = @_;
    my $r = api('POST', '/v1/admin/authz/policies', $admin, $body);
    subtest $name => sub {
        is($r->{status}, 400, 'status 400');
        is(code($r), 'VALIDATION_ERROR', 'VALIDATION_ERROR');
        is($r->{json}{error}{details}{path}, $path, "path $path");
        like($r->{json}{error}{details}{error} // '', $re, 'message');
    };
}

invalid({ %$hs, name => 'bad-regex',
        condition_json => { regex => [{ var => 'resource.name' }, '(a'] } },
    '$.condition.regex', qr/pattern/i, 'a bad regex, one-rule shape');
invalid({ name => 'bad-in', rules => [
        { id => 'ok', effect => 'allow', resource_type => 'model',
          action => 'chat' },
        { id => 'bad', effect => 'allow', resource_type => 'model',
          action => 'chat', condition => { all => [
            { eq => [{ var => 'principal.role' }, 'reader'] },
            { in => [{ var => 'resource.name' }, 'alpha'] }] } }] },
    '$.rules[1].condition.all[1].in[1]', qr/array/, 'in without an array');
invalid({ name => 'misspelt', rules => [{ id => 'x', effect => 'allow',
        resource_type => 'model', action => 'chat', conditon => {} }] },
    '$.rules[0]', qr/conditon/, 'an unknown member');
invalid({ name => 'noeffect', resource_type => 'model', action => 'chat' },
    '$', qr/effect/, 'a rule without effect');
invalid({ name => 'badtz', rules => [{ id => 'x', effect => 'allow',
        resource_type => 'model', action => 'chat',
        condition => { time_between => ['09:00', '17:00', 'Mars/Olympus'] },
    }] },
    '$.rules[0].condition.time_between[2]', qr/zone|Mars/i, 'an unknown zone');
$r = api('POST', '/v1/admin/authz/policies', $admin,
    { name => 'empty', rules => [] });
is($r->{json}{error}{details}{path}, '$.rules', 'an empty set');
$r = api('POST', '/v1/admin/authz/policies', $admin,
    { name => 'bad name!', %$hs{qw(effect resource_type action)} });
is(code($r), 'VALIDATION_ERROR', 'a bad name');

# --- simulate ------------------------------------------------------------

api('PUT', "/v1/admin/authz/policies/$hsid", $admin, $hs);

sub simulate {
    my ($id, $ctx) = @_;
    return api('POST', "/v1/admin/authz/policies/$id/simulate", $admin,
        $ctx)->{json}{data};
}

my $s = simulate($hsid, { resource_type => 'document', action => 'read',
    principal => { role => 'reader' },
    resource => { labels => { sensitivity => 'high' } } });
is($s->{decision}, 'deny', 'simulate: the high-sensitivity read is denied');
is($s->{rule}, 'deny-high-sensitivity', 'by the rule');
is($s->{matched}, $TRUE, 'matched');
is($s->{policy}{name}, 'deny-high-sensitivity', 'names the policy');

$s = simulate($hsid, { resource_type => 'document', action => 'read',
    resource => { labels => { sensitivity => 'low' } } });
is_deeply([@$s{qw(decision matched default_applied rule)}],
    ['deny', $FALSE, $TRUE, undef], 'no rule holds: the default, deny');

# deny first, then priority

$r = api('POST', '/v1/admin/authz/policies', $admin, { name => 'order',
    enabled => $FALSE, rules => [
    { id => 'allow-low', effect => 'allow', priority => 5,
      resource_type => 'document', action => 'write' },
    { id => 'allow-high', effect => 'allow', priority => 100,
      resource_type => 'document', action => 'write' },
    { id => 'deny-lowprio', effect => 'deny', priority => 1,
      resource_type => 'document', action => 'write',
      condition => { eq => [{ var => 'principal.role' }, 'reader'] } },
    { id => 'deny-highprio', effect => 'deny', priority => 50,
      resource_type => 'document', action => 'write',
      condition => { starts_with => [{ var => 'resource.id' }, 'tmp-'] } },
] });
my $oid = $r->{json}{data}{id};

$s = simulate($oid, { resource_type => 'document', action => 'write',
    principal => { role => 'editor' } });
is_deeply([@$s{qw(decision rule)}], ['allow', 'allow-high'],
    'of two allows, the higher priority is reported');
$s = simulate($oid, { resource_type => 'document', action => 'write',
    principal => { role => 'reader' } });
is_deeply([@$s{qw(decision rule)}], ['deny', 'deny-lowprio'],
    'a deny of lower priority still beats every allow');
$s = simulate($oid, { resource_type => 'document', action => 'write',
    principal => { role => 'reader' }, resource => { id => 'tmp-1' } });
is_deeply([@$s{qw(decision rule)}], ['deny', 'deny-highprio'],
    'of two denies, the higher priority is reported');
$s = simulate($oid, { resource_type => 'document', action => 'read' });
is($s->{default_applied}, $TRUE, 'other actions: the default');

# time_between in a time zone, across midnight

$r = api('POST', '/v1/admin/authz/policies', $admin, { name => 'hours',
    enabled => $FALSE, rules => [
    { id => 'tokyo-office', effect => 'allow', resource_type => 'model',
      action => 'chat', condition => { time_between =>
        [{ var => 'request.time' },
         { start => '09:00', end => '18:00', tz => 'Asia/Tokyo' }] } },
    { id => 'ny-night', effect => 'allow', resource_type => 'model',
      action => 'embeddings', condition => { time_between =>
        ['22:00', '06:00', 'America/New_York'] } },
] });
my $tid = $r->{json}{data}{id};
is($r->{status}, 201, 'a policy with time zones');

my @cases = (
    ['chat', '2025-01-15T01:00:00Z', 'allow', '10:00 in Tokyo'],
    ['chat', '2025-01-15T09:30:00Z', 'deny', '18:30 in Tokyo'],
    ['chat', '2025-01-14T23:59:59Z', 'deny', '08:59:59 in Tokyo'],
    ['embeddings', '2025-01-15T04:00:00Z', 'allow', '23:00 in New York'],
    ['embeddings', '2025-07-15T09:30:00Z', 'allow',
        '05:30 in New York (summer time)'],
    ['embeddings', '2025-07-15T10:30:00Z', 'deny',
        '06:30 in New York (summer time)'],
    ['embeddings', '2025-01-15T18:00:00Z', 'deny', '13:00 in New York'],
);
is_deeply([map { simulate($tid, { resource_type => 'model',
        action => $_->[0], request => { time => $_->[1] } })->{decision} }
        @cases],
    [map { $_->[2] } @cases],
    'time_between: ' . join(', ', map { $_->[3] } @cases));

# --- the gateway ------------------------------------------------------

is(chat('alpha', $reader)->{status}, 200, 'no policy of the tenant: allowed '
    . '(nexus_abac_default allow)');

$r = api('POST', '/v1/admin/authz/policies', $admin, { name => 'models',
    rules => [
    { id => 'no-beta-for-readers', effect => 'deny', priority => 10,
      resource_type => 'model', action => 'chat',
      condition => { all => [
        { eq => [{ var => 'principal.role' }, 'reader'] },
        { eq => [{ var => 'resource.name' }, 'beta'] }] } },
    { id => 'chat-for-all', effect => 'allow', resource_type => 'model',
      action => 'chat' },
] });
my $mid = $r->{json}{data}{id};
sleep 0.3;

$r = chat('beta', $reader);
is($r->{status}, 403, 'a reader asking for beta: 403');
is(code($r), 'POLICY_DENIED', 'POLICY_DENIED');
is_deeply($r->{json}{error}{details},
    { policy => 'models', rule => 'no-beta-for-readers' },
    'naming the policy and the rule, nothing else');
my $rp = key_prefix($reader);
unlike($r->{body}, qr/"beta"|"reader"|$rp/, 'no value is echoed');
is(chat('alpha', $reader)->{status}, 200, 'alpha is fine for a reader');
is(chat('beta', $editor)->{status}, 200, 'beta is fine for an editor');
is(chat('beta', $reader, prefix => '')->{status}, 200,
    'where nexus_abac is off, nothing is checked');

$r = chat('beta', $oreader);
is($r->{status}, 200, 'another tenant\'s policies do not apply');

# the default of the location: deny

$r = chat('alpha', $oreader, prefix => '/strict');
is_deeply([$r->{status}, code($r), $r->{json}{error}{details}{reason}],
    [403, 'POLICY_DENIED', 'default_deny'],
    'nexus_abac_default deny, no rule: 403');
is(chat('alpha', $reader, prefix => '/strict')->{status}, 200,
    'an allow rule lets it through');

# embeddings are their own action

$r = http_req($port, 'POST', '/strict/v1/embeddings', bearer => $reader,
    json => 1, json_body => { model => 'embed', input => 'x' });
is(code($r), 'POLICY_DENIED', 'embeddings: no allow rule, denied');

# --- a change reaches every worker of both nodes within a second -------

sub sweep {
    my ($model) = @_;
    my (%codes, %pids);
    for my $n ($n1, $n2) {
        for (1 .. 12) {
            my $r = chat($model, $reader, port => $n->port);
            $codes{$r->{status} == 200 ? 'ok' : code($r)}++;
            $pids{$r->{headers}{'x-pid'} // ''} = 1;
        }
    }
    return (\%codes, scalar keys %pids);
}

my ($codes, $npids) = sweep('alpha');
is_deeply($codes, { ok => 24 }, 'alpha allowed on both nodes');
is($npids, 4, 'all four workers answered');

my $t0 = time;
$r = api('PUT', "/v1/admin/authz/policies/$mid", $admin, { name => 'models',
    rules => [
    { id => 'no-alpha-for-readers', effect => 'deny', priority => 10,
      resource_type => 'model', action => 'chat',
      condition => { all => [
        { eq => [{ var => 'principal.role' }, 'reader'] },
        { in => [{ var => 'resource.name' }, ['alpha', 'beta']] }] } },
    { id => 'chat-for-all', effect => 'allow', resource_type => 'model',
      action => 'chat' },
] }, port => $n1->port);
is($r->{json}{data}{version}, 2, 'updated through node 1');
sleep 1 - (time - $t0) if time - $t0 < 1;

($codes, $npids) = sweep('alpha');
is_deeply($codes, { POLICY_DENIED => 24 },
    'denied by every worker of both nodes 1 s later, no reload');
is($npids, 4, 'all four workers answered');

# a platform-wide policy reaches every tenant
api('PUT', "/v1/admin/authz/policies/$platid", $padmin,
    { name => 'platform-noop', rules => [{ id => 'no-embed-model',
        effect => 'deny', resource_type => 'model', action => 'chat',
        condition => { eq => [{ var => 'resource.name' }, 'beta'] } }] });
sleep 1;
is(code(chat('beta', $oreader)), 'POLICY_DENIED',
    'a platform-wide policy applies to every tenant');
is(code(chat('beta', $oreader, port => $n2->port)), 'POLICY_DENIED',
    'on both nodes');
api('DELETE', "/v1/admin/authz/policies/$platid", $padmin);

$r = api('DELETE', "/v1/admin/authz/policies/$mid", $admin);
is($r->{status}, 200, 'DELETE');
is(api('GET', "/v1/admin/authz/policies/$mid", $admin)->{status}, 404,
    'gone');
sleep 1;
($codes) = sweep('beta');
is_deeply($codes, { ok => 24 }, 'and its rules with it');

nexus_done_testing();
