#!/usr/bin/perl

# API key authentication: the key lifecycle across two workers (revocation
# within a second, no reload), expiry, tenant-bound routes, suspended
# tenants, malformed Authorization headers, request ids, log variables,
# batched last_used_at, and that no secret reaches a log.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $acme = make_tenant('acme');
my $beta = make_tenant('beta');

my $t = nexus_nginx(nexus_conf(
    listen => 'reuseport',
    extra => "nexus_key_last_used_flush 500ms;\n    large_client_header_buffers 4 16k;",
    locations => <<"EOF"), workers => 2);
        location /acme/v1/ { nexus_api; nexus_tenant $acme;
                             add_header X-Pid \$pid always; }
        location /pid/v1/  { nexus_api; add_header X-Pid \$pid always; }
EOF

nexus_plan(57);

my $port = $t->port;
my $key = make_key($acme, name => 'lifecycle');
my $prefix = key_prefix($key);

sub me {
    my ($k, %opt) = @_;
    return http_req($port, 'GET', $opt{path} // '/v1/me', json => 1,
        defined $k ? (bearer => $k) : (), %opt);
}

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return <$fh>;
}

# --- a key that works ---------------------------------------------------------
my $r = me($key);
is($r->{status}, 200, 'valid key: 200');
is($r->{json}{data}{tenant}, $acme, 'principal tenant');
is($r->{json}{data}{key_prefix}, $prefix, 'principal prefix');
is($r->{json}{data}{role}, 'reader', 'default role');
is_deeply($r->{json}{data}{scopes}, ['chat', 'embeddings'], 'default scopes');
like($r->{headers}{'x-request-id'}, qr/^req_[0-9a-f]{24}$/, 'request id generated');
is($r->{json}{meta}{request_id}, $r->{headers}{'x-request-id'}, 'meta carries the same id');

# a sane incoming id is kept, an insane one replaced
$r = me($key, headers => ['X-Request-Id' => 'trace-42.a:b']);
is($r->{headers}{'x-request-id'}, 'trace-42.a:b', 'sane X-Request-Id kept');
$r = me($key, headers => ['X-Request-Id' => 'bad id <script>']);
like($r->{headers}{'x-request-id'}, qr/^req_/, 'insane X-Request-Id replaced');
$r = me($key, headers => ['X-Request-Id' => 'x' x 129]);
like($r->{headers}{'x-request-id'}, qr/^req_/, 'overlong X-Request-Id replaced');

# --- revocation reaches every worker within a second --------------------------
my (%pids, $ok);
$ok = 0;
for (1 .. 30) {
    $r = me($key, path => '/pid/v1/me');
    $ok++ if $r->{status} == 200;
    $pids{$r->{headers}{'x-pid'}} = 1;
}
is($ok, 30, 'key accepted on every request before revocation');
is(scalar keys %pids, 2, 'requests reached both workers');

my ($code, $out, $err) = nexusctl('revoke-key', '--prefix', $prefix);
is($code, 0, 'nexusctl revoke-key');
my $revoked_at = time;
sleep 1;

%pids = ();
my $rejected = 0;
for (1 .. 30) {
    $r = me($key, path => '/pid/v1/me');
    $rejected++ if $r->{status} == 401 && code($r) eq 'AUTH_REVOKED_KEY';
    $pids{$r->{headers}{'x-pid'}} = 1;
}
is($rejected, 30, 'revoked key rejected on every request 1 s after revoke');
is(scalar keys %pids, 2, 'rejections came from both workers');
like($r->{headers}{'www-authenticate'}, qr/^Bearer/, 'WWW-Authenticate on 401');

# --- expiry -------------------------------------------------------------------
my $short = make_key($acme, name => 'short', expires_in => '2s');
is(me($short)->{status}, 200, 'key valid before expiry (and now cached)');
sleep 2.2;
$r = me($short);
is($r->{status}, 401, 'expired key: 401');
is(code($r), 'AUTH_EXPIRED_KEY', 'expired key: AUTH_EXPIRED_KEY');

my $old = make_key($acme, name => 'old');
is(me($old)->{status}, 200, 'key valid');
psql("UPDATE api_keys SET expires_at = now() - interval '1 minute'"
    . " WHERE prefix = '" . key_prefix($old) . "'");
sleep 0.5;
is(code(me($old)), 'AUTH_EXPIRED_KEY', 'expiry set in the database applies at once');

# --- tenant-bound routes ------------------------------------------------------
my $akey = make_key($acme, name => 'acme');
my $bkey = make_key($beta, name => 'beta');
is(me($akey, path => '/acme/v1/me')->{status}, 200, 'own tenant route: 200');
$r = me($bkey, path => '/acme/v1/me');
is($r->{status}, 403, 'another tenant on a tenant route: 403');
is(code($r), 'FORBIDDEN', 'tenant mismatch: FORBIDDEN');
is(me($bkey)->{status}, 200, 'the same key works on the shared route');

# --- suspended tenant ---------------------------------------------------------
my $gamma = make_tenant('gamma');
my $gkey = make_key($gamma);
is(me($gkey)->{status}, 200, 'key of active tenant');
psql("UPDATE tenants SET status = 'suspended' WHERE name = '$gamma'");
sleep 0.5;
$r = me($gkey);
is($r->{status}, 403, 'suspended tenant: 403');
is(code($r), 'TENANT_SUSPENDED', 'suspended tenant: TENANT_SUSPENDED');

# --- malformed Authorization headers ------------------------------------------
$r = me(undef);
is($r->{status}, 401, 'no header: 401');
is(code($r), 'AUTH_MISSING', 'no header: AUTH_MISSING');
is($r->{json}{meta}{api_version}, 'v1', 'error envelope meta');

$r = me(undef, headers => [Authorization => '']);
is(code($r), 'AUTH_MISSING', 'empty header: AUTH_MISSING');
$r = me(undef, headers => [Authorization => 'Basic dXNlcjpwYXNz']);
is(code($r), 'AUTH_INVALID', 'Basic scheme: AUTH_INVALID');
$r = me(undef, headers => [Authorization => 'Bearer']);
is(code($r), 'AUTH_INVALID', 'Bearer without token: AUTH_INVALID');
$r = me(undef, headers => [Authorization => 'Bearer nx_zzz']);
is(code($r), 'AUTH_INVALID', 'malformed key: AUTH_INVALID');
$r = me(undef, headers => [Authorization => 'Bearer ' . ('A' x 10240)]);
is($r->{status}, 401, '10 KB key: 401');
is(code($r), 'AUTH_INVALID', '10 KB key: AUTH_INVALID');
$r = me(undef, headers => [Authorization => "Bearer nx_\xff\xfe\x80abc"]);
is(code($r), 'AUTH_INVALID', 'non-ASCII key: AUTH_INVALID');
$r = me(undef, headers => [Authorization => "Bearer " . substr($akey, 0, 20) . "\x01" . substr($akey, 21)]);
is(code($r), 'AUTH_INVALID', 'control byte in key: AUTH_INVALID');
# nginx core logs the offending header line at "info": use throwaway keys
my $junk1 = make_key($beta, name => 'junk1');
my $junk2 = make_key($beta, name => 'junk2');
$r = me(undef, headers => [Authorization => "Bearer $junk1\x00"]);
ok($r->{status} == 400 || $r->{status} == 401, "NUL byte: $r->{status}, not 500");
ok(defined $r->{headers}{'x-request-id'}, 'NUL byte answer has X-Request-Id');
is(code($r), 'BAD_REQUEST', 'NUL byte: JSON error via nexus_error');
$r = me(undef, headers => [Authorization => "Bearer $junk1",
    Authorization => "Bearer $junk2"]);
is($r->{status}, 400, 'duplicate Authorization: 400 (nginx core)');
is(code($r), 'BAD_REQUEST', 'duplicate Authorization: JSON BAD_REQUEST');
is($r->{json}{meta}{request_id}, $r->{headers}{'x-request-id'},
    'duplicate header answer carries the request id');
$r = me(undef, headers => [Authorization => 'Bearer ' . ('B' x 20000)]);
is($r->{status}, 400, '20 KB header: 400');
is(code($r), 'HEADER_TOO_LARGE', '20 KB header: HEADER_TOO_LARGE');

# the right prefix with a wrong secret, and an unknown prefix
(my $forged = $akey) =~ s/_([0-9a-f])([0-9a-f]{63})$/'_' . ($1 eq 'a' ? 'b' : 'a') . $2/e;
$r = me($forged);
is(code($r), 'AUTH_INVALID', 'wrong secret: AUTH_INVALID');
is(code(me($forged)), 'AUTH_INVALID', 'wrong secret again (negative cache)');
$r = me('nx_000000000000_' . ('0' x 64));
is(code($r), 'AUTH_INVALID', 'unknown key: AUTH_INVALID');
is(me($akey)->{status}, 200, 'the genuine key still works');
is(me(undef, headers => [Authorization => "bearer $akey"])->{status}, 200,
    'scheme is case-insensitive');

# --- log variables and batched last_used_at -----------------------------------
my $log = slurp($t->dir . '/nexus.log');
my $ap = key_prefix($akey);
like($log, qr/^req_[0-9a-f]{24} \Q$acme\E \Q$ap\E reader 200$/m,
    '$nexus_request_id $nexus_tenant $nexus_key_prefix $nexus_key_role logged');
like($log, qr/^trace-42\.a:b /m, 'kept request id logged');

my $used = psql("SELECT count(*) FROM api_keys WHERE prefix = '$ap'"
    . " AND last_used_at IS NOT NULL");
my $deadline = time + 5;
while ($used ne '1' && time < $deadline) {
    sleep 0.2;
    $used = psql("SELECT count(*) FROM api_keys WHERE prefix = '$ap'"
        . " AND last_used_at IS NOT NULL");
}
is($used, '1', 'last_used_at written by the batch flush');

# --- no secret in any log -------------------------------------------------------
my $all = $t->error_log . slurp($t->dir . '/nexus.log') . $t->access_log;
my $leaks = 0;
for my $k ($key, $short, $old, $akey, $bkey, $gkey) {
    my ($secret) = $k =~ /_([0-9a-f]{64})$/;
    $leaks++ if index($all, $secret) >= 0;
}
is($leaks, 0, 'no key secret in the error or access logs');
unlike($all, qr/AAAAAAAAAAAAAAAA/, 'the 10 KB garbage key is not logged');
