#!/usr/bin/perl

# A fleet: two nginx nodes, two workers each, one PostgreSQL. A key
# revoked through one node's admin API stops working on every worker of
# both nodes within a second, with no reload; a suspended tenant likewise.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(listen => 'reuseport',
    locations => 'location /pid/v1/ { nexus_api; add_header X-Pid $pid always; }');
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf, workers => 2);

nexus_plan(9);

my $tenant = make_tenant('fleet');
my $admin = make_key($tenant, name => 'admin', role => 'admin');
my $key = make_key($tenant, name => 'victim');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

# status codes by pid over 20 fresh connections to each node
sub sweep {
    my ($k) = @_;
    my (%codes, %pids);
    for my $n ($n1, $n2) {
        for (1 .. 20) {
            my $r = http_req($n->port, 'GET', '/pid/v1/me', bearer => $k,
                json => 1);
            $codes{$r->{status} == 200 ? 'ok' : code($r)}++;
            $pids{$r->{headers}{'x-pid'}} = 1;
        }
    }
    return (\%codes, scalar keys %pids);
}

my ($codes, $npids) = sweep($key);
is_deeply($codes, { ok => 40 }, 'key accepted on both nodes');
is($npids, 4, 'all four workers answered');

my $r = http_req($n1->port, 'GET', '/v1/admin/api-keys', bearer => $admin,
    json => 1);
my ($item) = grep { $_->{prefix} eq key_prefix($key) } @{ $r->{json}{data} };
ok($item, 'key listed by the admin API');

$r = http_req($n1->port, 'POST', "/v1/admin/api-keys/$item->{id}/revoke",
    bearer => $admin, json => 1);
is($r->{status}, 200, 'revoked through node 1');
sleep 1;

($codes, $npids) = sweep($key);
is_deeply($codes, { AUTH_REVOKED_KEY => 40 },
    'rejected by every worker of both nodes 1 s later');
is($npids, 4, 'all four workers answered');

# a tenant suspended in the database: every key of it, everywhere
my $other = make_key($tenant, name => 'other');
($codes) = sweep($other);
is_deeply($codes, { ok => 40 }, 'another key of the tenant works');
psql("UPDATE tenants SET status = 'suspended' WHERE name = '$tenant'");
sleep 1;
($codes) = sweep($other);
is_deeply($codes, { TENANT_SUSPENDED => 40 },
    'suspension reaches both nodes within a second');
psql("UPDATE tenants SET status = 'active' WHERE name = '$tenant'");
sleep 0.5;
($codes) = sweep($other);
is_deeply($codes, { ok => 40 }, 'and so does reactivation');
