#!/usr/bin/perl

# Kill switches: set through the admin API of one node, they reach every
# node within a second, answer 503 KILL_SWITCH_ACTIVE before anything else
# (even without a key), leave other features alone, are loaded by a node
# that starts later, survive a reload, and can be lifted the same way.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(locations => <<'EOF');
        location /chat/v1/ { nexus_api; nexus_feature chat; }
        location /emb/v1/  { nexus_api; nexus_feature embeddings; }
EOF
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf, workers => 2);

nexus_plan(22);

my $ops = make_tenant('kill-ops', platform => 1);
my $admin = make_key($ops, name => 'ops', role => 'admin');
my $tenant = make_tenant('kill');
my $tadmin = make_key($tenant, name => 'tadmin', role => 'admin');
my $key = make_key($tenant, name => 'user');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub get {
    my ($n, $path, $k) = @_;
    return http_req($n->port, 'GET', $path, json => 1,
        defined $k ? (bearer => $k) : ());
}

sub patch {
    my ($n, $k, $body) = @_;
    return http_req($n->port, 'PATCH', '/v1/admin/rollouts/killswitches',
        bearer => $k, json => 1, json_body => $body);
}

# statuses of /chat on both nodes, several connections each
sub chat_codes {
    my ($k) = @_;
    my %c;
    for my $n ($n1, $n2) {
        $c{ get($n, '/chat/v1/me', $k)->{status} }++ for 1 .. 6;
    }
    return join ',', map { "$_=$c{$_}" } sort keys %c;
}

is(chat_codes($key), '200=12', 'chat works on both nodes');

my $r = patch($n1, $admin, { kill_switches => { 'kill.chat' => JSON::PP::true() } });
is($r->{status}, 200, 'kill.chat set through node 1');
is($r->{json}{data}[0]{name}, 'kill.chat', 'the switch is returned');
ok($r->{json}{data}[0]{enabled}, 'enabled');
sleep 1;

is(chat_codes($key), '503=12', 'chat refused on every worker of both nodes');
$r = get($n2, '/chat/v1/me', $key);
is(code($r), 'KILL_SWITCH_ACTIVE', 'KILL_SWITCH_ACTIVE');
is($r->{json}{error}{details}{switch}, 'kill.chat', 'the switch is named');
is(get($n1, '/chat/v1/me')->{status}, 503, 'refused before authentication');
is(get($n1, '/emb/v1/me', $key)->{status}, 200, 'other features unaffected');
is(get($n1, '/v1/me', $key)->{status}, 200, 'routes without a feature unaffected');

# only platform admins, only well-formed switches
is(patch($n1, $tadmin, { kill_switches => { 'kill.emb' => JSON::PP::true() } })->{status},
    403, 'a tenant admin cannot set a switch');
is(code(patch($n1, $admin, { kill_switches => { 'chat' => JSON::PP::true() } })),
    'VALIDATION_ERROR', 'a name without kill. is refused');
is(code(patch($n1, $admin, { kill_switches => { 'kill.chat' => 1 } })),
    'VALIDATION_ERROR', 'a non-boolean value is refused');
is(code(patch($n1, $admin, { nothing => 1 })), 'VALIDATION_ERROR',
    'a body without kill_switches is refused');

$r = http_req($n2->port, 'GET', '/v1/admin/rollouts/killswitches',
    bearer => $admin, json => 1);
my ($sw) = grep { $_->{name} eq 'kill.chat' } @{ $r->{json}{data} };
ok($sw && $sw->{enabled}, 'listed as enabled');
is($sw->{updated_by}, key_prefix($admin), 'who set it is recorded (key prefix)');

# a node that starts now loads the switches; a reload keeps them
my $n3 = nexus_nginx($conf, workers => 1);
my $deadline = time + 5;
$r = get($n3, '/chat/v1/me', $key);
while ($r->{status} != 503 && time < $deadline) {
    sleep 0.1;
    $r = get($n3, '/chat/v1/me', $key);
}
is($r->{status}, 503, 'a node started later loads the switch');
ok($n1->reload, 'node 1 reloaded');
is(get($n1, '/chat/v1/me', $key)->{status}, 503, 'still refused after a reload');

# lifted through the API, or by SQL: the trigger notifies either way
patch($n2, $admin, { kill_switches => { 'kill.chat' => JSON::PP::false() } });
sleep 1;
is(chat_codes($key), '200=12', 'lifted on both nodes within a second');
psql("UPDATE kill_switches SET enabled = true WHERE name = 'kill.chat'");
sleep 1;
is(chat_codes($key), '503=12', 'set by SQL reaches both nodes too');
psql("UPDATE kill_switches SET enabled = false WHERE name = 'kill.chat'");
sleep 1;
is(get($n3, '/chat/v1/me', $key)->{status}, 200, 'and lifted');
