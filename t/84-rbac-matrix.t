#!/usr/bin/perl

# The built-in role matrix of docs/api.md ("Roles"), cell by cell: for
# every route family, probes made with a reader, an editor, an admin and a
# platform admin key, each with the exact status and error code (and the
# role or permission a 403 names) it must get. The table below is the
# test; it must have all four cells of every row, its rows must be the
# rows of api.md's matrix, and every cell api.md marks as refused ("403",
# "no") must be refused by every probe of that cell, every other cell
# allowed by at least one. Document actions go through the decision
# order with nexus_acl_test_hook; scopes of the gateway come last.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 4; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_provider llama type=ollama upstream=mock_up discovery=off;
    nexus_model mock-small mock;
    nexus_model mock-embed mock;
    nexus_model ollama-small llama model=mock-small;
    nexus_audit_key_file %%AUDIT_KEY%%;
EOF
    locations => <<'EOF'));
        location /api/     { nexus_api; }
        location /hook/v1/ { nexus_api; nexus_acl_test_hook on; }
EOF
my $port = $t->port;

# a node takes gateway calls once its pricing catalog is loaded
for (1 .. 200) {
    last if (http_req($port, 'GET', '/readyz')->{status} // 0) == 200;
    sleep 0.05;
}

my @ROLES = qw(reader editor admin platform);

my $tenant = make_tenant('matrix', models => '*');
my $ops = make_tenant('matrixops', platform => 1, models => '*');
my $other = make_tenant('matrixother');
my $spare = make_tenant('matrixspare');    # platform-wide writes land here

my %key = (
    reader => make_key($tenant, name => 'reader', role => 'reader'),
    editor => make_key($tenant, name => 'editor', role => 'editor'),
    admin => make_key($tenant, name => 'admin', role => 'admin'),
    platform => make_key($ops, name => 'padmin', role => 'admin'),
);
my $other_admin = make_key($other, name => 'admin', role => 'admin');
my $ops_admin2 = make_key($ops, name => 'padmin2', role => 'admin');

sub api {
    my ($method, $path, $key, $body) = @_;
    return http_req($port, $method, $path, bearer => $key, json => 1,
        defined $body ? (json_body => $body) : ());
}

# --- the documents each role acts on ----------------------------------------

# %DOC%: a document of the key's tenant that every key of the tenant owns
# (a tenant grant of owner); %NODOC%: one with no grant; %THEIRS%: another
# tenant's; %GRANT%: a grant on %DOC% the role may revoke; %OWNER%: an
# owner grant on %DOC%, revoked by the first key allowed to
my %doc = (reader => 'mx-doc', editor => 'mx-doc', admin => 'mx-doc',
    platform => 'mx-pdoc');

sub grant {
    my ($admin, $doc, $type, $id, $perm) = @_;
    my $r = api('POST', "/v1/admin/authz/documents/$doc/permissions",
        $admin, { principal_type => $type, principal_id => $id,
        permission => $perm });
    die "grant $doc $type $id $perm: $r->{status} $r->{body}"
        unless $r->{status} == 201;
    return $r->{json}{data}{id};
}

grant($key{admin}, 'mx-doc', 'tenant', $tenant, 'owner');
grant($key{platform}, 'mx-pdoc', 'tenant', $ops, 'owner');
grant($other_admin, 'mx-theirs', 'tenant', $other, 'owner');

my %grant;
for my $role (qw(reader editor admin)) {
    $grant{$role} = grant($key{admin}, 'mx-doc', 'role', 'reader', 'read')
        if $role eq 'reader';
    $grant{$role} //= grant($key{admin}, 'mx-doc', 'key',
        key_prefix($key{$role}), 'write');
}
$grant{platform} = grant($key{platform}, 'mx-pdoc', 'role', 'reader', 'read');

my %owner = (
    (map { $_ => grant($key{admin}, 'mx-doc', 'key', key_prefix($key{admin}),
        'owner') } qw(reader editor admin)),
    platform => grant($key{platform}, 'mx-pdoc', 'key',
        key_prefix($ops_admin2), 'owner'),
);

my %subst;
for my $role (@ROLES) {
    $subst{$role} = {
        DOC => $doc{$role}, NODOC => 'mx-none', THEIRS => 'mx-theirs',
        GRANT => $grant{$role}, OWNER => $owner{$role},
        TENANT => $role eq 'platform' ? $ops : $tenant,
        OTHER => $other, SPARE => $spare,
    };
}

sub expand {
    my ($s, $role) = @_;
    return $s unless defined $s;
    if (ref $s eq 'HASH') {
        return { map { $_ => expand($s->{$_}, $role) } keys %$s };
    }
    $s =~ s/%(\w+)%/$subst{$role}{$1} \/\/ die "no %$1%"/ge;
    return $s;
}

# --- the matrix -------------------------------------------------------------

my $R403 = '403 FORBIDDEN required_role=admin';
my $E403 = '403 FORBIDDEN required_role=editor';
my $P403 = '403 FORBIDDEN required=platform_admin';
my $chat = { model => 'mock-small',
    messages => [{ role => 'user', content => 'hi' }] };

sub all4 { my ($x) = @_; return { map { $_ => $x } @ROLES } }

sub check {
    my ($perm, $reader, $others) = @_;
    return ['GET', "/hook/v1/authz/documents/%DOC%/check?permission=$perm",
        undef, { reader => $reader, map { $_ => $others } qw(editor admin
        platform) }];
}

sub nocheck {
    my ($perm, $reader, $others) = @_;
    my $p = check($perm, $reader, $others);
    $p->[1] =~ s/%DOC%/%NODOC%/;
    return $p;
}

my $ALLOW = '200 allow:document_acl';
my $DEFAULT = '200 deny:default';
my $RBAC = '200 deny:rbac';
my $D = '/v1/admin/authz/documents';

my @MATRIX = (
    { row => 'gateway', probes => [
        ['POST', '/v1/chat/completions', $chat, all4('200')],
        ['POST', '/v1/embeddings', { model => 'mock-embed', input => 'hi' },
            all4('200')],
        ['GET', '/v1/models', undef, all4('200')],
        ['POST', '/api/chat', { %$chat, model => 'ollama-small',
            stream => JSON::PP::false() }, all4('200')],
        ['POST', '/api/generate', { model => 'ollama-small', prompt => 'hi',
            stream => JSON::PP::false() }, all4('200')],
        ['GET', '/api/tags', undef, all4('200')],
    ] },
    { row => '`GET /v1/me`', probes => [
        ['GET', '/v1/me', undef, all4('200')],
    ] },
    { row => '`GET /v1/self-serve/plan`', probes => [
        ['GET', '/v1/self-serve/plan', undef, all4('200')],
    ] },
    { row => '`GET /v1/self-serve/usage/summary`', probes => [
        ['GET', '/v1/self-serve/usage/summary', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
    ] },
    { row => '`GET /v1/self-serve/costs/budget`', probes => [
        ['GET', '/v1/self-serve/costs/budget', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
    ] },
    { row => 'document read', probes => [
        check('read', $ALLOW, $ALLOW),
        nocheck('read', $DEFAULT, $DEFAULT),
    ] },
    { row => 'document write, delete', probes => [
        check('write', $RBAC, $ALLOW),
        check('delete', $RBAC, $ALLOW),
        nocheck('write', $RBAC, $DEFAULT),
        nocheck('delete', $RBAC, $DEFAULT),
    ] },
    { row => 'document share', probes => [
        check('share', $RBAC, $ALLOW),
        nocheck('share', $RBAC, $DEFAULT),
    ] },
    { row => 'document permissions', probes => [
        ['GET', "$D/%DOC%/permissions", undef, { reader => $E403,
            editor => '200', admin => '200', platform => '200' }],
        ['POST', "$D/%DOC%/permissions", { principal_type => 'role',
            principal_id => 'editor', permission => 'read' },
            { reader => $E403, editor => '201', admin => '201',
              platform => '201' }],
        ['POST', "$D/%DOC%/permissions", { principal_type => 'role',
            principal_id => 'editor', permission => 'owner' },
            { reader => $E403, editor => $R403, admin => '201',
              platform => '201' }],
        ['DELETE', "$D/%DOC%/permissions/%GRANT%", undef,
            { reader => $E403, editor => '200', admin => '200',
              platform => '200' }],
        ['DELETE', "$D/%DOC%/permissions/%OWNER%", undef,
            { reader => $E403, editor => $R403, admin => '200',
              platform => '200' }],
        ['GET', "$D/%NODOC%/permissions", undef, { reader => $E403,
            editor => '403 FORBIDDEN permission=share', admin => '200',
            platform => '200' }],
        # another tenant's document: refused to an editor as if it did not
        # exist; an admin sees no grant of it; a platform admin all
        ['GET', "$D/%THEIRS%/permissions", undef, { reader => $E403,
            editor => '403 FORBIDDEN permission=share', admin => '200',
            platform => '200' }],
    ] },
    { row => 'other `/v1/admin/*`', probes => [
        ['GET', '/v1/admin/tenants', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/api-keys', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['POST', '/v1/admin/api-keys', { name => 'made', role => 'reader' },
            { reader => $R403, editor => $R403, admin => '201',
              platform => '201' }],
        ['GET', '/v1/admin/quotas/%TENANT%', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/quotas/%OTHER%', undef, { reader => $R403,
            editor => $R403, admin => '404 TENANT_NOT_FOUND',
            platform => '200' }],
        ['GET', '/v1/admin/usage/%TENANT%', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/credits/%TENANT%', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/plans', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/plans/%TENANT%/overrides', undef,
            { reader => $R403, editor => $R403, admin => '200',
              platform => '200' }],
        ['GET', '/v1/admin/authz/policies', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/notifications/routes', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
        ['GET', '/v1/admin/plans/%OTHER%', undef, { reader => $R403,
            editor => $R403, admin => '404 TENANT_NOT_FOUND',
            platform => '200' }],
    ] },
    { row => 'platform-wide `/v1/admin/*`', probes => [
        ['GET', '/v1/admin/rollouts/killswitches', undef, { reader => $R403,
            editor => $R403, admin => $P403, platform => '200' }],
        ['PATCH', '/v1/admin/rollouts/killswitches',
            { kill_switches => { 'kill.rbac_matrix' => JSON::PP::false() } },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['PATCH', '/v1/admin/quotas/%SPARE%', { daily => 100000 },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['PUT', '/v1/admin/plans/%SPARE%', { plan_id => 'pro' },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['PUT', '/v1/admin/plans/%SPARE%/overrides',
            { feature_key => 'feature.tts', enabled => JSON::PP::false() },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['DELETE', '/v1/admin/plans/%SPARE%/overrides', undef,
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['POST', '/v1/admin/credits/%SPARE%/grant',
            { amount_usd => 1, reason => 'the role matrix test' },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '200' }],
        ['POST', '/v1/admin/tenants', { name => unique_name('mxnew') },
            { reader => $R403, editor => $R403, admin => $P403,
              platform => '201' }],
    ] },
    { row => '`GET /v1/audit/events`', probes => [
        ['GET', '/v1/audit/events', undef, { reader => $R403,
            editor => $R403, admin => '200', platform => '200' }],
    ] },
    { row => '`/v1/ops/*`', probes => [
        ['GET', '/v1/ops/health', undef, { reader => $P403,
            editor => $P403, admin => $P403, platform => '200' }],
        ['GET', '/v1/ops/circuit-breakers', undef, { reader => $P403,
            editor => $P403, admin => $P403, platform => '200' }],
        ['GET', '/v1/ops/circuit-breakers/mock', undef, { reader => $P403,
            editor => $P403, admin => $P403, platform => '200' }],
        ['POST', '/v1/ops/circuit-breakers/mock/reset', undef,
            { reader => $P403, editor => $P403, admin => $P403,
              platform => '200' }],
        ['POST', '/v1/ops/circuit-breakers/reset-all', undef,
            { reader => $P403, editor => $P403, admin => $P403,
              platform => '200' }],
        ['GET', '/v1/ops/notifications', undef, { reader => $P403,
            editor => $P403, admin => $P403, platform => '200' }],
    ] },
);

# --- the matrix is api.md's -------------------------------------------------

my $root = $ENV{NEXUS_TEST_ROOT} // '.';
open my $fh, '<', "$root/docs/api.md" or die "api.md: $!";
my $api = do { local $/; <$fh> };
close $fh;

my ($section) = $api =~ /^### Roles\n(.*?)^#/ms;
ok(defined $section, 'api.md has a Roles section');
my @lines = grep { /^\|/ } split /\n/, $section // '';
my @head = map { s/^\s+|\s+$//gr } split /\|/, shift(@lines) // '';
shift @head;
is_deeply(\@head, ['route family', 'reader', 'editor', 'admin',
    'platform admin'], 'its columns are the four roles');
shift @lines;    # |---|
my %doc_cells;
for my $l (@lines) {
    my @c = map { s/^\s+|\s+$//gr } split /\|/, $l;
    shift @c;
    my $row = shift @c;
    $doc_cells{$row} = { map { $ROLES[$_] => $c[$_] } 0 .. 3 };
}
is_deeply([sort keys %doc_cells], [sort map { $_->{row} } @MATRIX],
    'the test has a row for every row of api.md\'s matrix, and no other');

# --- every cell -------------------------------------------------------------

sub allowed {
    my ($o) = @_;
    return $o =~ /^2\d\d/ && $o !~ / deny:/;
}

for my $m (@MATRIX) {
    for my $role (@ROLES) {
        my $cell = $doc_cells{ $m->{row} }{$role} // '';
        my $refused = $cell =~ /^(?:403|no\b)/;
        my ($n_ok, $n_allowed, $n) = (0, 0, 0);
        for my $p (@{ $m->{probes} }) {
            my ($method, $path, $body, $want) = @$p;
            $n++;
            my $exp = $want->{$role};
            if (!defined $exp) {
                fail("$m->{row}: $method $path has no $role cell");
                next;
            }
            $path = expand($path, $role);
            my $r = api($method, $path, $key{$role}, expand($body, $role));
            my $got = outcome($r);
            $n_ok++ if $got eq $exp;
            $n_allowed++ if allowed($got);
            is($got, $exp, "$m->{row} / $role: $method $path")
                or diag($r->{body});
        }
        if ($refused) {
            is($n_allowed, 0, "$m->{row} / $role: refused, as api.md says");
        } else {
            ok($n_allowed > 0, "$m->{row} / $role: allowed, as api.md says"
                . " ($cell)");
        }
    }
}

# --- scopes: the gateway's, whatever the role -------------------------------

my $embed_only = make_key($tenant, name => 'embed', role => 'admin',
    scopes => 'embeddings');
my $chat_only = make_key($tenant, name => 'chat', role => 'reader',
    scopes => 'chat');
my $all = make_key($tenant, name => 'all', role => 'reader', scopes => '*');

is(outcome(api('POST', '/v1/chat/completions', $embed_only, $chat)),
    '403 SCOPE_MISSING scope=chat', 'chat needs the scope chat, even for '
    . 'an admin');
is(outcome(api('POST', '/api/chat', $embed_only, { %$chat,
    model => 'ollama-small', stream => JSON::PP::false() })),
    '403 SCOPE_MISSING scope=chat', 'so does Ollama\'s chat');
is(outcome(api('POST', '/v1/embeddings', $chat_only,
    { model => 'mock-embed', input => 'hi' })),
    '403 SCOPE_MISSING scope=embeddings', 'embeddings needs embeddings');
is(outcome(api('GET', '/v1/models', $chat_only)), '200',
    'listing models needs no scope');
is(outcome(api('POST', '/v1/embeddings', $all,
    { model => 'mock-embed', input => 'hi' })), '200', '"*" is every scope');
is(outcome(api('GET', '/v1/admin/tenants', $embed_only)), '200',
    'the admin routes do not look at scopes');

nexus_done_testing();
