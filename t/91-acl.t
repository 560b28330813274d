#!/usr/bin/perl

# Document ACLs: grants and revocations through the admin API, expired
# grants ignored, the owner grant on create, and the decision order for
# document actions (tenant boundary, kill switch, RBAC, ACL, ABAC,
# default), driven through nexus_acl_test_hook's check route.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(locations => <<'EOF'));
        location /strict/v1/ { nexus_api; nexus_acl_test_hook on; }
        location /open/v1/   { nexus_api; nexus_acl_test_hook on;
                               nexus_abac_default allow; }
        location /bypass/v1/ { nexus_api; nexus_acl_test_hook on;
                               nexus_acl_admin_bypass on; }
EOF
my $port = $t->port;

my $tenant = make_tenant('acl');
my $admin = make_key($tenant, name => 'admin', role => 'admin');
my $editor = make_key($tenant, name => 'editor', role => 'editor');
my $editor2 = make_key($tenant, name => 'editor2', role => 'editor');
my $reader = make_key($tenant, name => 'reader');

my $other = make_tenant('aclother');
my $oadmin = make_key($other, name => 'admin', role => 'admin');
my $oeditor = make_key($other, name => 'editor', role => 'editor');

sub api {
    my ($method, $path, $key, $body) = @_;
    return http_req($port, $method, $path, bearer => $key, json => 1,
        defined $body ? (json_body => $body) : ());
}

sub code {
    my ($r) = @_;
    return ref $r->{json} eq 'HASH' && $r->{json}{error}
        ? $r->{json}{error}{code} : '';
}

# "allow document_acl", "deny default", ...
sub check {
    my ($doc, $perm, $key, $loc) = @_;
    my $r = api('GET', ($loc // '/strict')
        . "/v1/authz/documents/$doc/check?permission=$perm", $key);
    return "$r->{status}" unless $r->{status} == 200;
    return "$r->{json}{data}{decision} $r->{json}{data}{step}";
}

sub grant {
    my ($doc, $key, $body) = @_;
    return api('POST', "/v1/admin/authz/documents/$doc/permissions",
        $key // $admin, $body);
}

is(api('GET', '/v1/authz/documents/d1/check?permission=read',
    $reader)->{status}, 404, 'no test hook where it is off');

# the owner grant on create

my $r = api('POST', '/strict/v1/authz/documents/doc-1/owner', $editor);
is($r->{status}, 201, 'owner grant for the creator');
is($r->{json}{data}{permission}, 'owner', 'owner');
is(check('doc-1', 'read', $editor), 'allow document_acl',
    'the owner reads');
is(check('doc-1', 'delete', $editor), 'allow document_acl',
    'owner implies delete');
is(check('doc-1', 'read', $editor2), 'deny default',
    'another editor: no grant, the default denies');
is(check('doc-1', 'read', $editor2, '/open'), 'allow default',
    'nexus_abac_default allow');

# grants through the admin API

my $rp = key_prefix($reader);
$r = grant('doc-1', $admin, { principal_type => 'key', principal_id => $rp,
    permission => 'read' });
is($r->{status}, 201, 'grant read to the reader\'s key');
my $g = $r->{json}{data};
is_deeply([@$g{qw(document_id tenant principal_type principal_id permission
    active)}], ['doc-1', $tenant, 'key', $rp, 'read', JSON::PP::true()],
    'the grant');
is(check('doc-1', 'read', $reader), 'allow document_acl', 'the reader reads');
is(check('doc-1', 'write', $reader), 'deny rbac',
    'but may not write: RBAC comes before the ACL');

$r = api('GET', '/v1/admin/authz/documents/doc-1/permissions', $admin);
is_deeply([sort map { $_->{permission} } @{ $r->{json}{data} }],
    ['owner', 'read'], 'the grants are listed');

# expiry

$r = grant('doc-1', $admin, { principal_type => 'key',
    principal_id => key_prefix($editor2), permission => 'write',
    expires_at => '2001-01-01T00:00:00Z' });
is($r->{json}{data}{active}, JSON::PP::false(), 'an expired grant');
is(check('doc-1', 'write', $editor2), 'deny default',
    'is ignored');

$r = grant('doc-1', $admin, { principal_type => 'role',
    principal_id => 'editor', permission => 'read', expires_in => '2s' });
is($r->{status}, 201, 'a role grant for 2 s');
is(check('doc-1', 'read', $editor2), 'allow document_acl',
    'every editor reads');
sleep 2.5;
is(check('doc-1', 'read', $editor2), 'deny default',
    'not once it expired');

$r = grant('doc-1', $admin, { principal_type => 'tenant',
    principal_id => $tenant, permission => 'share' });
is(check('doc-1', 'share', $editor2), 'allow document_acl',
    'a tenant grant covers every key of the tenant');

# revocation

$r = api('DELETE', "/v1/admin/authz/documents/doc-1/permissions/$g->{id}",
    $admin);
is($r->{status}, 200, 'revoked');
is(check('doc-1', 'read', $reader), 'deny default', 'the reader no longer reads');
is(api('DELETE', "/v1/admin/authz/documents/doc-1/permissions/$g->{id}",
    $admin)->{json}{error}{code}, 'GRANT_NOT_FOUND', 'a revoked grant is gone');

# validation

is(code(grant('doc-1', $admin, { principal_type => 'user',
    principal_id => 'x', permission => 'read' })), 'VALIDATION_ERROR',
    'an unknown principal type');
is(code(grant('doc-1', $admin, { principal_type => 'key',
    principal_id => 'nothex', permission => 'read' })), 'VALIDATION_ERROR',
    'a key is a prefix');
is(code(grant('doc-1', $admin, { principal_type => 'role',
    principal_id => 'reader', permission => 'own' })), 'VALIDATION_ERROR',
    'an unknown permission');
is(grant('doc-1', $reader, { principal_type => 'role',
    principal_id => 'reader', permission => 'read' })->{status}, 403,
    'a reader cannot grant');

# the tenant boundary

is(check('doc-1', 'read', $oeditor), 'deny tenant_boundary',
    'another tenant\'s key: denied at the boundary');
is(code(api('POST', '/strict/v1/authz/documents/doc-1/owner', $oeditor)),
    'DOCUMENT_NOT_FOUND', 'nor can it own the document');
is(code(grant('doc-1', $oadmin, { principal_type => 'role',
    principal_id => 'reader', permission => 'read' })), 'DOCUMENT_NOT_FOUND',
    'nor can its admin grant on it');
is_deeply(api('GET', '/v1/admin/authz/documents/doc-1/permissions',
    $oadmin)->{json}{data}, [], 'nor list its grants');
is(api('DELETE', "/v1/admin/authz/documents/doc-1/permissions/$g->{id}",
    $oadmin)->{status}, 404, 'nor revoke them');

# the kill switch

psql("INSERT INTO kill_switches (name, enabled) VALUES ('kill.documents',"
    . " true) ON CONFLICT (name) DO UPDATE SET enabled = true");
sleep 0.5;
is(check('doc-1', 'read', $editor), 'deny kill_switch',
    'kill.documents denies even the owner');
is(check('doc-1', 'read', $oeditor), 'deny tenant_boundary',
    'the boundary still comes first');
psql("UPDATE kill_switches SET enabled = false"
    . " WHERE name = 'kill.documents'");
sleep 0.5;
is(check('doc-1', 'read', $editor), 'allow document_acl', 'switched back');

# ABAC after the ACL: a deny rule beats a grant, an allow rule needs none

$r = api('POST', '/v1/admin/authz/policies', $admin, { name => 'docs',
    rules => [
    { id => 'no-secret-reads', effect => 'deny', resource_type => 'document',
      action => 'read',
      condition => { starts_with => [{ var => 'resource.id' }, 'secret-'] } },
    { id => 'public-reads', effect => 'allow', resource_type => 'document',
      action => 'read',
      condition => { starts_with => [{ var => 'resource.id' }, 'public-'] } },
] });
is($r->{status}, 201, 'document policies');
sleep 0.3;

api('POST', '/strict/v1/authz/documents/secret-1/owner', $editor);
$r = api('GET', '/strict/v1/authz/documents/secret-1/check?permission=read',
    $editor);
is_deeply([@{ $r->{json}{data} }{qw(decision step policy rule)}],
    ['deny', 'abac', 'docs', 'no-secret-reads'],
    'a deny rule beats the owner grant, and is named');
is(check('secret-1', 'delete', $editor), 'allow document_acl',
    'other actions of the owner are untouched');
is(check('public-1', 'read', $reader), 'allow abac',
    'an allow rule lets a reader read with no grant');
is(check('public-1', 'read', $oeditor), 'deny default',
    'not another tenant\'s reader: its policies are its own');

# admins and the ACL

is(check('doc-1', 'write', $admin), 'deny default',
    'an admin has no grant by default');
is(check('doc-1', 'write', $admin, '/bypass'), 'allow document_acl',
    'nexus_acl_admin_bypass gives it one');
is(check('doc-1', 'write', $oadmin, '/bypass'), 'deny tenant_boundary',
    'but never across the tenant boundary');

nexus_done_testing();
