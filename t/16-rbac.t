#!/usr/bin/perl

# Role and scope gates per location: nexus_require_role and
# nexus_require_scope, with 403 FORBIDDEN and 403 SCOPE_MISSING naming
# what is missing; "*" grants every scope.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(locations => <<'EOF'));
        location /edit/v1/  { nexus_api; nexus_require_role editor; }
        location /adm/v1/   { nexus_api; nexus_require_role admin; }
        location /chat/v1/  { nexus_api; nexus_require_scope chat; }
        location /docs/v1/  { nexus_api; nexus_require_role editor;
                              nexus_require_scope documents:write; }
EOF

nexus_plan(12);

my $tenant = make_tenant('rbac');
my $reader = make_key($tenant, name => 'r', role => 'reader');
my $editor = make_key($tenant, name => 'e', role => 'editor', scopes => 'documents:write');
my $admin = make_key($tenant, name => 'a', role => 'admin', scopes => '*');
my $noscope = make_key($tenant, name => 'n', role => 'admin', scopes => 'embeddings');

sub get {
    my ($path, $k) = @_;
    return http_req($t->port, 'GET', $path, bearer => $k, json => 1);
}

my $r = get('/edit/v1/me', $reader);
is($r->{status}, 403, 'reader on an editor route: 403');
is($r->{json}{error}{code}, 'FORBIDDEN', 'FORBIDDEN');
is($r->{json}{error}{details}{required_role}, 'editor', 'names the role');
is(get('/edit/v1/me', $editor)->{status}, 200, 'editor passes');
is(get('/edit/v1/me', $admin)->{status}, 200, 'admin passes (roles are ordered)');
is(get('/adm/v1/me', $editor)->{status}, 403, 'editor on an admin route: 403');

$r = get('/chat/v1/me', $noscope);
is($r->{status}, 403, 'a key without the scope: 403');
is($r->{json}{error}{code}, 'SCOPE_MISSING', 'SCOPE_MISSING');
is($r->{json}{error}{details}{scope}, 'chat', 'names the scope');
is(get('/chat/v1/me', $reader)->{status}, 200, 'default scopes include chat');
is(get('/chat/v1/me', $admin)->{status}, 200, '"*" grants every scope');
is(get('/docs/v1/me', $editor)->{status}, 200, 'role and scope both met');
