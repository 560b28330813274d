#!/usr/bin/perl

# Editors and a document's grants: an editor key lists, gives and revokes
# the grants of a document it may share (the decision order for "share":
# its owner or share grant, a tenant boundary nothing crosses, the kill
# switch, ABAC), in its own tenant only; it may neither grant "owner" nor
# revoke an owner grant. A reader gets 403 with required_role editor.
# A denial is the same for a document of another tenant and for one that
# does not exist. Editors' writes are audited and take Idempotency-Key.
# Key grants name a key of the document's tenant, tenant grants the
# document's tenant.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify qw(wait_for);

my $t = nexus_nginx(nexus_conf(
    extra => 'nexus_audit_key_file %%AUDIT_KEY%%; nexus_audit_flush 100ms;',
    locations => 'location /hook/v1/ { nexus_api; nexus_acl_test_hook on; }'));
my $port = $t->port;

my $tenant = make_tenant('share');
my $admin = make_key($tenant, name => 'admin', role => 'admin');
my $editor = make_key($tenant, name => 'editor', role => 'editor');
my $editor2 = make_key($tenant, name => 'editor2', role => 'editor');
my $reader = make_key($tenant, name => 'reader');
my $tid = psql("SELECT id FROM tenants WHERE name = '$tenant'");

my $other = make_tenant('shareother');
my $oeditor = make_key($other, name => 'editor', role => 'editor');

my $ops = make_tenant('shareops', platform => 1);
my $peditor = make_key($ops, name => 'editor', role => 'editor');

my $P = '/v1/admin/authz/documents';

sub api {
    my ($method, $path, $key, $body, %h) = @_;
    return http_req($port, $method, $path, bearer => $key, json => 1,
        defined $body ? (json_body => $body) : (),
        %h ? (headers => \%h) : ());
}

sub code {
    my ($r) = @_;
    return ref $r->{json} eq 'HASH' && $r->{json}{error}
        ? $r->{json}{error}{code} : '';
}

# the answer without its request id, to compare two denials
sub bare {
    my ($r) = @_;
    my $j = $r->{json};
    return json_encode([$r->{status}, ref $j eq 'HASH' ? $j->{error} : $j]);
}

sub grants {
    my ($doc) = @_;
    return psql("SELECT string_agg(principal_type || ':' || principal_id"
        . " || ':' || permission, ',' ORDER BY id) FROM document_acl"
        . " WHERE document_id = '$doc'");
}

# wait_event($type, $actor): the newest audit row of that type and actor
sub wait_event {
    my ($type, $actor, $n) = @_;
    my $deadline = time + 10;
    while (time < $deadline) {
        my $c = psql("SELECT count(*) FROM audit_events WHERE event_type ="
            . " '$type' AND actor = '$actor'");
        if ($c >= ($n // 1)) {
            return json_decode(psql("SELECT metadata FROM audit_events"
                . " WHERE event_type = '$type' AND actor = '$actor'"
                . " ORDER BY id DESC LIMIT 1"));
        }
        sleep 0.1;
    }
    return undef;
}

my $ep = key_prefix($editor);
my $rp = key_prefix($reader);

# the editor creates a document: it owns it
is(api('POST', "/hook/v1/authz/documents/doc-s/owner", $editor)->{status},
    201, 'an editor owns the document it creates');

# --- an editor who owns the document ----------------------------------------

my $r = api('GET', "$P/doc-s/permissions", $editor);
is($r->{status}, 200, 'the owner lists the grants');
is_deeply([map { "$_->{principal_id}:$_->{permission}" } @{ $r->{json}{data} }],
    ["$ep:owner"], 'its owner grant');

$r = api('POST', "$P/doc-s/permissions", $editor,
    { principal_type => 'key', principal_id => $rp, permission => 'read' });
is($r->{status}, 201, 'the owner gives read to a reader');
is($r->{json}{data}{granted_by}, $ep, 'granted by the editor');
my $read_grant = $r->{json}{data}{id};

$r = api('POST', "$P/doc-s/permissions", $editor,
    { principal_type => 'key', principal_id => key_prefix($editor2),
      permission => 'share' });
is($r->{status}, 201, 'and share to another editor');
my $share_grant = $r->{json}{data}{id};

my $m = wait_event('authz.document_acl.granted', $ep, 2);
is($m->{result}{permission}, 'share', 'an editor\'s grant is audited');

# --- owner is an admin's ----------------------------------------------------

$r = api('POST', "$P/doc-s/permissions", $editor,
    { principal_type => 'key', principal_id => key_prefix($editor2),
      permission => 'owner' });
is($r->{status}, 403, 'an editor may not grant owner');
is(code($r), 'FORBIDDEN', 'FORBIDDEN');
is($r->{json}{error}{details}{required_role}, 'admin', 'that is an admin\'s');
$m = wait_event('rbac.forbidden', $ep);
is($m->{details}{required_role}, 'admin', 'audited as rbac.forbidden');

my $owner_grant = psql("SELECT id FROM document_acl WHERE document_id ="
    . " 'doc-s' AND permission = 'owner'");
$r = api('DELETE', "$P/doc-s/permissions/$owner_grant", $editor2);
is($r->{status}, 403, 'an editor with share may not revoke the owner grant');
is($r->{json}{error}{details}{required_role}, 'admin', 'required_role admin');
$r = api('DELETE', "$P/doc-s/permissions/$owner_grant", $editor);
is($r->{status}, 403, 'nor may the owner itself');
is(grants('doc-s'), "key:$ep:owner,key:$rp:read,key:"
    . key_prefix($editor2) . ':share', 'every grant is still there');

# --- an editor with share (not owner) ---------------------------------------

$r = api('GET', "$P/doc-s/permissions", $editor2);
is($r->{status}, 200, 'an editor with share lists the grants');
is(scalar @{ $r->{json}{data} }, 3, 'all three');
$r = api('DELETE', "$P/doc-s/permissions/$read_grant", $editor2);
is($r->{status}, 200, 'and revokes a read grant');
is($r->{json}{data}{permission}, 'read', 'the grant as it was');
$m = wait_event('authz.document_acl.revoked', key_prefix($editor2));
is($m->{result}{id}, $read_grant, 'the revocation is audited');
is(code(api('DELETE', "$P/doc-s/permissions/$read_grant", $editor2)),
    'GRANT_NOT_FOUND', 'a revoked grant is gone');

# --- without share ----------------------------------------------------------

$r = api('POST', "$P/doc-s/permissions", $admin,
    { principal_type => 'key', principal_id => key_prefix($editor2),
      permission => 'write' });
is($r->{status}, 201, 'the admin still grants (write)');
$r = api('DELETE', "$P/doc-s/permissions/$share_grant", $admin);
is($r->{status}, 200, 'and revokes the share grant');

my $deny = api('GET', "$P/doc-s/permissions", $editor2);
is($deny->{status}, 403, 'write is not share: 403');
is(code($deny), 'FORBIDDEN', 'FORBIDDEN');
is_deeply($deny->{json}{error}{details}, { permission => 'share' },
    'names the permission, not the step');
$m = wait_event('authz.document_acl.denied', key_prefix($editor2));
is_deeply([@$m{qw(method code)}, $m->{details}{permission}],
    ['GET', 'FORBIDDEN', 'share'], 'audited as authz.document_acl.denied');
is(code(api('POST', "$P/doc-s/permissions", $editor2,
    { principal_type => 'role', principal_id => 'reader',
      permission => 'read' })), 'FORBIDDEN', 'nor grant');
is(code(api('DELETE', "$P/doc-s/permissions/$owner_grant", $editor2)),
    'FORBIDDEN', 'nor revoke');

# another tenant's document looks like one that does not exist
my $gone = api('GET', "$P/no-such-doc/permissions", $oeditor);
my $theirs = api('GET', "$P/doc-s/permissions", $oeditor);
is($theirs->{status}, 403, 'another tenant\'s editor: 403');
is(bare($theirs), bare($gone),
    'the same answer as for a document that does not exist');
unlike($theirs->{body}, qr/\Q$tenant\E|\Q$ep\E/, 'nothing of the tenant');
is(bare(api('POST', "$P/doc-s/permissions", $oeditor, { principal_type =>
    'role', principal_id => 'reader', permission => 'read' })),
    bare(api('POST', "$P/no-such-doc/permissions", $oeditor,
    { principal_type => 'role', principal_id => 'reader',
      permission => 'read' })), 'a grant likewise');
is(bare(api('DELETE', "$P/doc-s/permissions/$owner_grant", $oeditor)),
    bare(api('DELETE', "$P/no-such-doc/permissions/$owner_grant", $oeditor)),
    'a revocation likewise');
is(grants('doc-s'), "key:$ep:owner,key:" . key_prefix($editor2) . ':write',
    'and nothing changed');

# a platform tenant's editor is an editor of its own tenant
is(api('GET', "$P/doc-s/permissions", $peditor)->{status}, 403,
    'a platform tenant\'s editor does not see other tenants\' documents');
is(code(api('POST', "$P/doc-s/permissions", $peditor,
    { principal_type => 'role', principal_id => 'reader', permission => 'read',
      tenant => $tenant })), 'VALIDATION_ERROR',
    'nor may it name a tenant');

# --- the kill switch and ABAC hold for editors ------------------------------

psql("INSERT INTO kill_switches (name, enabled) VALUES ('kill.documents',"
    . " true) ON CONFLICT (name) DO UPDATE SET enabled = true");
ok(wait_for(sub {
    api('GET', "$P/doc-s/permissions", $editor)->{status} == 403 }),
    'kill.documents: even the owner may not share');
is(api('GET', "$P/doc-s/permissions", $admin)->{status}, 200,
    'an admin is not subject to the decision order');
psql("UPDATE kill_switches SET enabled = false"
    . " WHERE name = 'kill.documents'");
ok(wait_for(sub {
    api('GET', "$P/doc-s/permissions", $editor)->{status} == 200 }),
    'switched back');

$r = api('POST', '/v1/admin/authz/policies', $admin, { name => 'no-sharing',
    effect => 'deny', resource_type => 'document', action => 'share',
    condition => { eq => [{ var => 'resource.id' }, 'doc-s'] } });
is($r->{status}, 201, 'a deny rule for share');
ok(wait_for(sub {
    code(api('GET', "$P/doc-s/permissions", $editor)) eq 'FORBIDDEN' }),
    'denies the owner too');
api('DELETE', "/v1/admin/authz/policies/$r->{json}{data}{id}", $admin);
ok(wait_for(sub {
    api('GET', "$P/doc-s/permissions", $editor)->{status} == 200 }),
    'and no longer once it is gone');

# --- readers ----------------------------------------------------------------

$r = api('GET', "$P/doc-s/permissions", $reader);
is($r->{status}, 403, 'a reader: 403');
is_deeply($r->{json}{error}{details}, { required_role => 'editor' },
    'required_role editor');
$m = wait_event('rbac.forbidden', $rp);
is($m->{details}{required_role}, 'editor', 'audited as rbac.forbidden');
is(api('POST', "$P/doc-s/permissions", $reader, { principal_type => 'role',
    principal_id => 'reader', permission => 'read' })->{status}, 403,
    'a reader may not grant');

# --- the exception is narrow ------------------------------------------------

for my $c (['GET', '/v1/admin/authz/policies'],
           ['PUT', "$P/doc-s/permissions"],
           ['GET', "$P/doc-s/permissions/$owner_grant"],
           ['GET', '/v1/admin/tenants'],
           ['GET', "/v1/admin/authz/documents/doc-s/permissionsx"]) {
    $r = api($c->[0], $c->[1], $editor);
    is("$r->{status} " . ($r->{json}{error}{details}{required_role} // ''),
        '403 admin', "an editor: $c->[0] $c->[1] needs an admin");
}

# --- Idempotency-Key --------------------------------------------------------

my $before = psql("SELECT count(*) FROM audit_events WHERE actor = '$ep'"
    . " AND event_type = 'authz.document_acl.granted'");
my %idem = ('Idempotency-Key' => 'share-' . time);
my $body = { principal_type => 'role', principal_id => 'editor',
    permission => 'read' };
my $r1 = api('POST', "$P/doc-s/permissions", $editor, $body, %idem);
my $r2 = api('POST', "$P/doc-s/permissions", $editor, $body, %idem);
is($r1->{status}, 201, 'an editor\'s write with an Idempotency-Key');
is($r2->{headers}{'idempotent-replayed'}, 'true', 'is replayed');
is($r2->{body}, $r1->{body}, 'byte for byte');
is(code(api('POST', "$P/doc-s/permissions", $editor,
    { %$body, permission => 'write' }, %idem)), 'IDEMPOTENCY_KEY_CONFLICT',
    'another body: 409');
# a later event of the same key marks the point where the batch is written
my $marks = psql("SELECT count(*) FROM audit_events WHERE actor = '$ep'"
    . " AND event_type = 'rbac.forbidden'");
api('GET', '/v1/admin/tenants', $editor);
wait_event('rbac.forbidden', $ep, $marks + 1);
is(psql("SELECT count(*) FROM audit_events WHERE actor = '$ep'"
    . " AND event_type = 'authz.document_acl.granted'"), $before + 1,
    'one audit event for the write and its replay');

# --- what a grant names -----------------------------------------------------

$r = api('POST', "$P/doc-s/permissions", $editor, { principal_type => 'key',
    principal_id => key_prefix($oeditor), permission => 'read' });
is(code($r), 'KEY_NOT_FOUND', 'a key grant names a key of the tenant');
is(code(api('POST', "$P/doc-s/permissions", $admin, { principal_type => 'key',
    principal_id => '0123456789ab', permission => 'read' })), 'KEY_NOT_FOUND',
    'a key that does not exist: the same');
is(code(api('POST', "$P/doc-s/permissions", $admin, {
    principal_type => 'tenant', principal_id => $other,
    permission => 'read' })), 'VALIDATION_ERROR',
    'a tenant grant names the document\'s tenant');
is(api('POST', "$P/doc-s/permissions", $editor, { principal_type => 'tenant',
    principal_id => $tenant, permission => 'read' })->{status}, 201,
    'its own tenant');
is(psql("SELECT count(*) FROM document_acl WHERE document_id = 'doc-s'"
    . " AND (principal_id = '$other' OR principal_id = '"
    . key_prefix($oeditor) . "')"), 0, 'no grant names the other tenant');

nexus_done_testing();
