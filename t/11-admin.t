#!/usr/bin/perl

# The admin HTTP API: listing and creating tenants, creating, listing and
# revoking API keys, who may do what (platform admin, tenant admin, editor,
# reader, no key), body validation and limits, the response envelope, and
# the neighbouring ops and health endpoints.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Time::Local qw(timegm);
use Nexus::Test;
use Nexus::Fixtures;

my $plat = make_tenant('plat', platform => 1);
my $acme = make_tenant('acme');
my $beta = make_tenant('beta');

my $t = nexus_nginx(nexus_conf());

nexus_plan(233);

my $port = $t->port;

my $padmin = make_key($plat, name => 'platform admin', role => 'admin');
my $aadmin = make_key($acme, name => 'acme admin', role => 'admin');
my $aeditor = make_key($acme, name => 'acme editor', role => 'editor');
my $areader = make_key($acme, name => 'acme reader');
my $badmin = make_key($beta, name => 'beta admin', role => 'admin');

# every key value this file ever sees: none may reach a log
my @secrets = ($padmin, $aadmin, $aeditor, $areader, $badmin);

sub req {
    my ($method, $path, $k, %opt) = @_;
    return http_req($port, $method, $path, json => 1,
        defined $k ? (bearer => $k) : (), %opt);
}

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} // '' : '';
}

# envelope($r): meta.request_id is the X-Request-Id header, api_version v1
sub envelope {
    my ($r) = @_;
    my $j = $r->{json};
    return 0 unless ref $j eq 'HASH' && ref $j->{meta} eq 'HASH';
    my $id = $r->{headers}{'x-request-id'} // '';
    return $id ne '' && ($j->{meta}{request_id} // '') eq $id
        && ($j->{meta}{api_version} // '') eq 'v1';
}

# err($r, $status, $code, $what): two tests, status and error.code
sub err {
    my ($r, $status, $code, $what) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    is($r->{status}, $status, "$what: $status");
    is(code($r), $code, "$what: $code");
}

sub items {
    my ($r) = @_;
    return ref $r->{json}{data} eq 'ARRAY' ? @{ $r->{json}{data} } : ();
}

sub me {
    my ($k) = @_;
    return req('GET', '/v1/me', $k);
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return <$fh>;
}

# a PostgreSQL timestamptz in JSON ("2025-01-02T03:04:05.678+00:00") as epoch
sub pg_epoch {
    my ($s) = @_;
    return undef unless defined $s && $s =~
        /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d+)?(?:Z|([+-])(\d\d)(?::?(\d\d))?)?$/;
    my $e = timegm($6, $5, $4, $3, $2 - 1, $1);
    $e -= ($7 eq '-' ? -1 : 1) * ($8 * 3600 + ($9 // 0) * 60) if defined $7;
    return $e;
}

# --- GET /v1/admin/tenants ------------------------------------------------------
my $r = req('GET', '/v1/admin/tenants', $padmin);
is($r->{status}, 200, 'platform admin lists tenants: 200');
ok(envelope($r), 'list envelope: meta.request_id = X-Request-Id, api_version v1');
my %names = map { $_->{name} => $_ } items($r);
ok(items($r) >= 3 && $names{$plat} && $names{$acme} && $names{$beta},
    'platform admin sees its own and other tenants');
is($names{$plat}{platform}, JSON::PP::true, 'platform tenant flagged');
is($names{$acme}{platform}, JSON::PP::false, 'normal tenant not flagged');

$r = req('GET', '/v1/admin/tenants', $aadmin);
is($r->{status}, 200, 'tenant admin lists tenants: 200');
is_deeply([map { $_->{name} } items($r)], [$acme],
    'tenant admin sees exactly its own tenant');

err(req('GET', '/v1/admin/tenants', $aeditor), 403, 'FORBIDDEN', 'editor');
$r = req('GET', '/v1/admin/tenants', $areader);
err($r, 403, 'FORBIDDEN', 'reader');
ok(envelope($r), 'error envelope: meta.request_id = X-Request-Id, api_version v1');
$r = req('GET', '/v1/admin/tenants', undef);
err($r, 401, 'AUTH_MISSING', 'no key');
ok(envelope($r), '401 envelope');

# --- POST /v1/admin/tenants -----------------------------------------------------
my $new = unique_name('created');
$r = req('POST', '/v1/admin/tenants', $padmin, json_body => { name => $new });
is($r->{status}, 201, 'platform admin creates a tenant: 201');
is($r->{json}{data}{name}, $new, 'data.name');
is($r->{json}{data}{platform}, JSON::PP::false, 'data.platform false by default');
is($r->{json}{data}{status}, 'active', 'data.status active');
ok(envelope($r), 'create envelope');
is(psql("SELECT count(*) FROM tenants WHERE name = " . sql_quote($new)), '1',
    'tenant in the database');

my $newp = unique_name('createdp');
$r = req('POST', '/v1/admin/tenants', $padmin,
    json_body => { name => $newp, platform => JSON::PP::true });
is($r->{status}, 201, 'platform tenant created: 201');
is($r->{json}{data}{platform}, JSON::PP::true, 'data.platform true as sent');

$r = req('POST', '/v1/admin/tenants', $padmin, json_body => { name => $new });
err($r, 409, 'TENANT_EXISTS', 'duplicate tenant');
ok(envelope($r), '409 envelope');

for my $bad ('Bad Name', '', 'a' x 64, '-x') {
    err(req('POST', '/v1/admin/tenants', $padmin, json_body => { name => $bad }),
        400, 'VALIDATION_ERROR', "tenant name \"" . substr($bad, 0, 8) . "\""
        . " (" . length($bad) . " chars)");
}
err(req('POST', '/v1/admin/tenants', $padmin, json_body => { name => 42 }),
    400, 'VALIDATION_ERROR', 'tenant name not a string');
err(req('POST', '/v1/admin/tenants', $padmin, json_body => {}),
    400, 'VALIDATION_ERROR', 'tenant name missing');
ok(psql("SELECT count(*) FROM tenants WHERE name = " . sql_quote('a' x 63)) eq '0'
    && psql("SELECT count(*) FROM tenants WHERE name LIKE '%Bad%'") eq '0',
    'no invalid tenant was created');

my $np = unique_name('np');
err(req('POST', '/v1/admin/tenants', $padmin,
    json_body => { name => $np, platform => 'yes' }),
    400, 'VALIDATION_ERROR', '"platform" a string');
err(req('POST', '/v1/admin/tenants', $padmin,
    json_body => { name => $np, platform => 1 }),
    400, 'VALIDATION_ERROR', '"platform" a number');
is(psql("SELECT count(*) FROM tenants WHERE name = " . sql_quote($np)), '0',
    'nothing created on a bad "platform"');

$r = req('POST', '/v1/admin/tenants', $padmin, body => 'name=foo',
    headers => ['Content-Type' => 'application/json']);
err($r, 400, 'INVALID_JSON', 'non-JSON body');
ok(envelope($r), 'INVALID_JSON envelope');
err(req('POST', '/v1/admin/tenants', $padmin, body => '{"name": "x"',
    headers => ['Content-Type' => 'application/json']),
    400, 'INVALID_JSON', 'truncated JSON');
err(req('POST', '/v1/admin/tenants', $padmin, json_body => [{ name => $np }]),
    400, 'INVALID_JSON', 'JSON array body');

err(req('POST', '/v1/admin/tenants', $aadmin,
    json_body => { name => unique_name('nope') }),
    403, 'FORBIDDEN', 'tenant admin creating a tenant');
err(req('POST', '/v1/admin/tenants', $aeditor,
    json_body => { name => unique_name('nope') }),
    403, 'FORBIDDEN', 'editor creating a tenant');

my $big = '{"name":"' . unique_name('big') . '","pad":"' . ('x' x 70000) . '"}';
$r = req('POST', '/v1/admin/tenants', $padmin, body => $big,
    headers => ['Content-Type' => 'application/json']);
err($r, 413, 'PAYLOAD_TOO_LARGE', 'body over 64 KiB (Content-Length)');
ok(envelope($r), '413 envelope');
$r = req('POST', '/v1/admin/tenants', $padmin,
    body_chunks => [map { substr $big, $_ * 8192, 8192 } 0 .. length($big) / 8192],
    headers => ['Content-Type' => 'application/json']);
err($r, 413, 'PAYLOAD_TOO_LARGE', 'body over 64 KiB (chunked)');

# over client_max_body_size (1m) nginx core answers before the module runs
$big = '{"name":"' . unique_name('huge') . '","pad":"' . ('x' x 2000000) . '"}';
$r = req('POST', '/v1/admin/tenants', $padmin, body => $big,
    headers => ['Content-Type' => 'application/json']);
err($r, 413, 'PAYLOAD_TOO_LARGE', '2 MB body (over client_max_body_size, nexus_error)');
ok(envelope($r), '2 MB body: envelope');

# a body under the limit that nginx still keeps in a temporary file
my $mid = unique_name('mid');
$r = req('POST', '/v1/admin/tenants', $padmin,
    body => '{"pad":"' . ('y' x 40000) . '","name":"' . $mid . '"}',
    headers => ['Content-Type' => 'application/json']);
is($r->{status}, 201, '40 KB body (spilled to a file) accepted: 201');
is($r->{json}{data}{name}, $mid, '40 KB body parsed');

# --- POST /v1/admin/api-keys ----------------------------------------------------
$r = req('POST', '/v1/admin/api-keys', $aadmin, json_body => {
    name => 'made over http', role => 'editor',
    scopes => ['chat', 'models:read'], expires_in => '30d' });
is($r->{status}, 201, 'tenant admin creates a key: 201');
ok(envelope($r), 'create key envelope');
my $d = $r->{json}{data} || {};
my $k1 = $d->{key} // '';
push @secrets, $k1;
like($k1, qr/^nx_[0-9a-f]{12}_[0-9a-f]{64}$/, 'data.key well formed');
is($d->{prefix}, key_prefix($k1), 'data.prefix is the key\'s prefix');
is($d->{tenant}, $acme, 'data.tenant is the admin\'s tenant');
is($d->{name}, 'made over http', 'data.name as sent');
is($d->{role}, 'editor', 'data.role as sent');
is_deeply($d->{scopes}, ['chat', 'models:read'], 'data.scopes as sent');
my $exp = pg_epoch($d->{expires_at});
ok(defined $exp && abs($exp - (time + 30 * 86400)) < 120,
    'data.expires_at is 30 days away')
    or diag("expires_at: " . ($d->{expires_at} // 'null'));
is($d->{status}, 'active', 'data.status active');
is($r->{headers}{'cache-control'}, 'no-store', 'Cache-Control: no-store');
my $k1_id = $d->{id};
like($k1_id // '', qr/^\d+$/, 'data.id numeric');

$r = me($k1);
is($r->{status}, 200, 'the new key works on /v1/me');
is($r->{json}{data}{tenant}, $acme, 'new key: tenant');
is($r->{json}{data}{role}, 'editor', 'new key: role');
is_deeply($r->{json}{data}{scopes}, ['chat', 'models:read'], 'new key: scopes');

$r = req('POST', '/v1/admin/api-keys', $aadmin, json_body => { name => 'defaults' });
is($r->{status}, 201, 'key with defaults: 201');
$d = $r->{json}{data} || {};
my $k2 = $d->{key} // '';
push @secrets, $k2;
is($d->{role}, 'reader', 'default role reader');
is_deeply($d->{scopes}, ['chat', 'embeddings'], 'default scopes chat,embeddings');
ok(exists $d->{expires_at} && !defined $d->{expires_at}, 'default expires_at null');
my $k2_id = $d->{id};
$r = me($k2);
is($r->{status}, 200, 'default key works');
is($r->{json}{data}{expires_at}, undef, 'default key does not expire');

$r = req('POST', '/v1/admin/api-keys', $aadmin,
    json_body => { name => 'own by name', tenant => $acme });
is($r->{status}, 201, 'tenant admin naming its own tenant: 201');
push @secrets, $r->{json}{data}{key} // '';

my $before = psql("SELECT count(*) FROM api_keys k JOIN tenants t"
    . " ON t.id = k.tenant_id WHERE t.name = " . sql_quote($beta));
$r = req('POST', '/v1/admin/api-keys', $aadmin,
    json_body => { name => 'sneaky', tenant => $beta, role => 'admin' });
err($r, 404, 'TENANT_NOT_FOUND', 'tenant admin creating a key in another tenant');
ok(!defined $r->{json}{data}, 'no key returned');
is(psql("SELECT count(*) FROM api_keys k JOIN tenants t"
    . " ON t.id = k.tenant_id WHERE t.name = " . sql_quote($beta)), $before,
    'no key was created in the other tenant');
err(req('POST', '/v1/admin/api-keys', $padmin,
    json_body => { name => 'ghost', tenant => unique_name('ghost') }),
    404, 'TENANT_NOT_FOUND', 'platform admin, unknown tenant');

$r = req('POST', '/v1/admin/api-keys', $padmin,
    json_body => { name => 'for beta', tenant => $beta, role => 'admin' });
is($r->{status}, 201, 'platform admin creates a key for another tenant: 201');
my $k3 = $r->{json}{data}{key} // '';
push @secrets, $k3;
is($r->{json}{data}{tenant}, $beta, 'data.tenant is the named tenant');
$r = me($k3);
is($r->{status}, 200, 'that key works');
is($r->{json}{data}{tenant}, $beta, 'its /v1/me tenant is the named tenant');
is($r->{json}{data}{role}, 'admin', 'its role as sent');

my @invalid = (
    ['missing name', { role => 'reader' }],
    ['empty name', { name => '' }],
    ['name with a control byte', { name => "a\tb" }],
    ['name of 129 chars', { name => 'n' x 129 }],
    ['bad role', { name => 'x', role => 'superuser' }],
    ['role not a string', { name => 'x', role => 2 }],
    ['scopes not an array', { name => 'x', scopes => 'chat' }],
    ['33 scopes', { name => 'x', scopes => [map { "s$_" } 1 .. 33] }],
    ['bad scope chars', { name => 'x', scopes => ['Chat!'] }],
    ['scope not a string', { name => 'x', scopes => [1] }],
    ['empty scope', { name => 'x', scopes => ['chat', ''] }],
    ['expires_in "0d"', { name => 'x', expires_in => '0d' }],
    ['expires_in "abc"', { name => 'x', expires_in => 'abc' }],
    ['expires_in a number', { name => 'x', expires_in => 3600 }],
    ['tenant not a valid name', { name => 'x', tenant => 'BAD!!' }],
);
my $nkeys = psql('SELECT count(*) FROM api_keys');
for my $c (@invalid) {
    err(req('POST', '/v1/admin/api-keys', $aadmin, json_body => $c->[1]),
        400, 'VALIDATION_ERROR', "create key, $c->[0]");
}
err(req('POST', '/v1/admin/api-keys', $aadmin, body => '',
    headers => ['Content-Type' => 'application/json']),
    400, 'VALIDATION_ERROR', 'create key, empty body');
err(req('POST', '/v1/admin/api-keys', $aadmin, body => 'nope',
    headers => ['Content-Type' => 'application/json']),
    400, 'INVALID_JSON', 'create key, non-JSON body');
is(psql('SELECT count(*) FROM api_keys'), $nkeys, 'no key created by a bad request');

err(req('POST', '/v1/admin/api-keys', $aadmin,
    json_body => { name => 'x', scopes => ['chat,admin'] }),
    400, 'VALIDATION_ERROR', 'create key, a scope holding a comma');
err(req('POST', '/v1/admin/api-keys', $aadmin,
    json_body => { name => 'x', scopes => [''] }),
    400, 'VALIDATION_ERROR', 'create key, an empty scope');
# strings are refused, never cut short, at an escaped NUL
err(req('POST', '/v1/admin/tenants', $padmin,
    body => '{"name":"' . unique_name('nul') . '\\u0000x"}'),
    400, 'INVALID_JSON', 'tenant name holding \\u0000');

err(req('POST', '/v1/admin/api-keys', $aeditor, json_body => { name => 'x' }),
    403, 'FORBIDDEN', 'editor creating a key');
err(req('POST', '/v1/admin/api-keys', $areader, json_body => { name => 'x' }),
    403, 'FORBIDDEN', 'reader creating a key');

# --- GET /v1/admin/api-keys -----------------------------------------------------
$r = req('GET', '/v1/admin/api-keys', $aadmin);
is($r->{status}, 200, 'tenant admin lists keys: 200');
ok(envelope($r), 'list keys envelope');
my @ik = items($r);
ok(@ik >= 6, 'tenant admin sees its keys (' . scalar(@ik) . ')');
is(scalar(grep { ($_->{tenant} // '') ne $acme } @ik), 0,
    'every item belongs to the admin\'s tenant');
my %ids = map { $_->{id} => $_ } @ik;
ok($ids{$k1_id} && $ids{$k2_id}, 'the keys made over http are listed');
is($ids{$k1_id}{prefix}, key_prefix($k1), 'listed prefix');
my $leak = grep { exists $_->{key} || exists $_->{key_hash} || exists $_->{hash} } @ik;
is($leak, 0, 'no item has a key or hash field');
my $listing = $r->{body};

$r = req('GET', '/v1/admin/api-keys?tenant=' . $beta, $aadmin);
is($r->{status}, 200, 'tenant admin filtering on another tenant: 200');
is(scalar(items($r)), 0, '... and sees nothing');

$r = req('GET', '/v1/admin/api-keys', $padmin);
is($r->{status}, 200, 'platform admin lists every key: 200');
my %tn = map { ($_->{tenant} // '') => 1 } items($r);
ok($tn{$acme} && $tn{$beta} && $tn{$plat}, 'platform admin sees keys of several tenants');
$listing .= $r->{body};

$r = req('GET', '/v1/admin/api-keys?tenant=' . $beta, $padmin);
is($r->{status}, 200, 'platform admin ?tenant=: 200');
my @bk = items($r);
ok(@bk >= 2, 'filtered list not empty');
is(scalar(grep { ($_->{tenant} // '') ne $beta } @bk), 0, 'filtered to the named tenant');
$listing .= $r->{body};

$r = req('GET', '/v1/admin/api-keys?tenant=BAD!!', $padmin);
err($r, 400, 'VALIDATION_ERROR', '?tenant=BAD!!');
ok(envelope($r), '?tenant=BAD!! envelope');
err(req('GET', '/v1/admin/api-keys', $aeditor), 403, 'FORBIDDEN', 'editor listing keys');

my $in_listing = 0;
for my $k (@secrets) {
    my ($secret) = $k =~ /_([0-9a-f]{64})$/ or next;
    $in_listing++ if index($listing, $secret) >= 0 || index($listing, $k) >= 0;
}
is($in_listing, 0, 'no key value in any listing');

# --- POST /v1/admin/api-keys/{id}/revoke ---------------------------------------
my $victim = make_key($acme, name => 'to revoke');
push @secrets, $victim;
is(me($victim)->{status}, 200, 'key works (and is cached) before revocation');
my ($vid) = psql("SELECT id FROM api_keys WHERE prefix = "
    . sql_quote(key_prefix($victim)));

$r = req('POST', "/v1/admin/api-keys/$vid/revoke", $aadmin);
is($r->{status}, 200, 'tenant admin revokes its own key: 200');
ok(envelope($r), 'revoke envelope');
is($r->{json}{data}{status}, 'revoked', 'data.status revoked');
my $revoked_at = $r->{json}{data}{revoked_at};
ok(defined pg_epoch($revoked_at), 'data.revoked_at set');
is($r->{json}{data}{prefix}, key_prefix($victim), 'data.prefix of the revoked key');

my $deadline = time + 1;
my $rv;
do {
    $rv = me($victim);
    sleep 0.05 if code($rv) ne 'AUTH_REVOKED_KEY';
} while (code($rv) ne 'AUTH_REVOKED_KEY' && time < $deadline);
err($rv, 401, 'AUTH_REVOKED_KEY', 'revoked key within 1 s');

$r = req('POST', "/v1/admin/api-keys/$vid/revoke", $aadmin);
is($r->{status}, 200, 'revoking again: 200 (idempotent)');
is($r->{json}{data}{status}, 'revoked', 'still revoked');
is($r->{json}{data}{revoked_at}, $revoked_at, 'revoked_at unchanged');

my $bkey = make_key($beta, name => 'beta victim');
push @secrets, $bkey;
my ($bid) = psql("SELECT id FROM api_keys WHERE prefix = "
    . sql_quote(key_prefix($bkey)));
err(req('POST', "/v1/admin/api-keys/$bid/revoke", $aadmin),
    404, 'KEY_NOT_FOUND', 'tenant admin revoking another tenant\'s key');
is(psql("SELECT status FROM api_keys WHERE id = $bid"), 'active',
    'the other tenant\'s key is still active');
sleep 0.3;
is(me($bkey)->{status}, 200, 'and still works');

my $pvict = make_key($beta, name => 'platform revokes');
push @secrets, $pvict;
my ($pvid) = psql("SELECT id FROM api_keys WHERE prefix = "
    . sql_quote(key_prefix($pvict)));
$r = req('POST', "/v1/admin/api-keys/$pvid/revoke", $padmin);
is($r->{status}, 200, 'platform admin revokes another tenant\'s key: 200');
is($r->{json}{data}{tenant}, $beta, 'data.tenant of the revoked key');

my $maxid = psql('SELECT coalesce(max(id), 0) FROM api_keys') + 1000000;
err(req('POST', "/v1/admin/api-keys/$maxid/revoke", $padmin),
    404, 'KEY_NOT_FOUND', 'unknown id');
err(req('POST', '/v1/admin/api-keys/999999999999999999/revoke', $padmin),
    404, 'KEY_NOT_FOUND', '18-digit unknown id');
$r = req('POST', '/v1/admin/api-keys/abc/revoke', $aadmin);
err($r, 404, 'NOT_FOUND', 'non-numeric id');
ok(envelope($r), 'NOT_FOUND envelope');
err(req('POST', '/v1/admin/api-keys/12a/revoke', $aadmin),
    404, 'NOT_FOUND', 'partly numeric id');
$r = req('GET', "/v1/admin/api-keys/$k2_id/revoke", $aadmin);
err($r, 405, 'METHOD_NOT_ALLOWED', 'GET on the revoke path');
is($r->{headers}{allow}, 'POST', 'GET on the revoke path: Allow: POST');
is(me($k2)->{status}, 200, 'GET on the revoke path revoked nothing');
err(req('POST', "/v1/admin/api-keys/$k2_id/revoke", $aeditor),
    403, 'FORBIDDEN', 'editor revoking a key');
is(me($k2)->{status}, 200, 'the editor revoked nothing');

# a body on revoke is ignored
$r = req('POST', "/v1/admin/api-keys/$k2_id/revoke", $aadmin,
    json_body => { reason => 'x' x 1000 });
is($r->{status}, 200, 'revoke with a body: 200');
is($r->{json}{data}{status}, 'revoked', 'revoked');

# --- other admin paths ----------------------------------------------------------
err(req('GET', '/v1/admin/nope', $aadmin), 404, 'NOT_FOUND', 'unknown admin path');
err(req('GET', '/v1/admin/tenants/extra', $aadmin), 404, 'NOT_FOUND',
    'path below tenants');
err(req('GET', '/v1/admin/api-keys//revoke', $aadmin), 404, 'NOT_FOUND',
    'revoke without id');
$r = req('DELETE', '/v1/admin/tenants', $padmin);
err($r, 405, 'METHOD_NOT_ALLOWED', 'DELETE /v1/admin/tenants');
is($r->{headers}{allow}, 'GET, HEAD, POST', 'DELETE /v1/admin/tenants: Allow');
ok(envelope($r), '405 envelope');
err(req('PUT', '/v1/admin/api-keys', $padmin, json_body => {}),
    405, 'METHOD_NOT_ALLOWED', 'PUT /v1/admin/api-keys');

$r = req('HEAD', '/v1/admin/tenants', $aadmin);
is($r->{status}, 200, 'HEAD /v1/admin/tenants: 200');
like($r->{raw}, qr/\r\n\r\n\z/, 'HEAD: no body');

# --- ops and health -------------------------------------------------------------
# operators see every tenant: a platform admin only
$r = req('GET', '/v1/ops/health', $padmin);
is($r->{status}, 200, '/v1/ops/health with a platform admin key: 200');
ok(envelope($r), '/v1/ops/health envelope');
is($r->{json}{data}{status}, 'ready', '/v1/ops/health: data.status ready');
is_deeply($r->{json}{data}{checks}, { postgres => 'up', redis => 'up' },
    '/v1/ops/health: both dependencies up');
$r = req('GET', '/v1/ops/health', $aadmin);
err($r, 403, 'FORBIDDEN', '/v1/ops/health, tenant admin');
is($r->{json}{error}{details}{required}, 'platform_admin',
    '/v1/ops/health, tenant admin: details.required platform_admin');
err(req('GET', '/v1/ops/health', $areader), 403, 'FORBIDDEN', '/v1/ops/health, reader');
err(req('GET', '/v1/ops/health', undef), 401, 'AUTH_MISSING', '/v1/ops/health, no key');

$r = http_req($port, 'HEAD', '/healthz');
is($r->{status}, 200, 'HEAD /healthz: 200');
like($r->{raw}, qr/\r\n\r\n\z/, 'HEAD /healthz: no body');
$r = http_req($port, 'POST', '/healthz', body => '{}', json => 1);
err($r, 405, 'METHOD_NOT_ALLOWED', 'POST /healthz');

# --- ?tenant= on more than 1000 keys ---------------------------------------------
# the filter applies before the limit of 1000 items
my $filler = make_tenant('filler');
psql("INSERT INTO api_keys (tenant_id, name, prefix, key_hash)"
    . " SELECT (SELECT id FROM tenants WHERE name = " . sql_quote($filler) . "),"
    . " 'filler', lpad(to_hex(g), 12, '0'), sha256(('$$-filler-' || g)::bytea)"
    . " FROM generate_series(1, 1100) g");
my $late = make_tenant('late');
push @secrets, make_key($late, name => 'late key');
$r = req('GET', '/v1/admin/api-keys?tenant=' . $late, $padmin);
is($r->{status}, 200, '?tenant= with more than 1000 keys: 200');
is(scalar(items($r)), 1, '?tenant= finds the tenant\'s key past the first 1000');
$r = req('GET', '/v1/admin/api-keys', $padmin);
is(scalar(items($r)), 1000, 'an unfiltered list stops at 1000 items');
psql("DELETE FROM api_keys WHERE name = 'filler' AND tenant_id ="
    . " (SELECT id FROM tenants WHERE name = " . sql_quote($filler) . ")");

# --- no key value in any log ----------------------------------------------------
my $logs = $t->error_log . $t->access_log . slurp($t->dir . '/nexus.log');
my $leaks = 0;
for my $k (@secrets) {
    my ($secret) = $k =~ /_([0-9a-f]{64})$/ or next;
    $leaks++ if index($logs, $secret) >= 0;
}
is(scalar(grep { /_[0-9a-f]{64}$/ } @secrets), scalar(@secrets),
    'every key checked is well formed');
is($leaks, 0, 'no key value in the error, access or nexus logs');
