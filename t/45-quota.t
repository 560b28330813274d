#!/usr/bin/perl

# Request quotas per tenant, counted in Redis per UTC day and month across
# two nodes: X-Quota-* headers on every success, the soft cap warning and
# its one event per period, 402 QUOTA_EXCEEDED at the hard cap (enforce)
# or an overage event (observe), runs costing 3 units, and changes taking
# effect at once.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $locs = <<'EOF';
        location /run/v1/ { nexus_api; nexus_route_class run; }
EOF
my $n1 = nexus_nginx(nexus_conf(locations => $locs), workers => 2);
my $n2 = nexus_nginx(nexus_conf(locations => $locs), workers => 2);

nexus_plan(39);

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub quota_tenant {
    my ($base, $quota) = @_;
    my $t = make_tenant($base);
    psql("UPDATE tenants SET quota = '$quota' WHERE name = '$t'");
    return ($t, make_key($t));
}

sub events {
    my ($tid, $type) = @_;
    my $out = redis_cli('XRANGE', 'nx:events', '-', '+');
    my $n = 0;
    for my $e (split /\n(?=\d+-\d+\n)/, $out) {
        $n++ if $e =~ /\ntype\n\Q$type\E\n/ && $e =~ /\ntenant_id\n\Q$tid\E\n/;
    }
    return $n;
}

sub tid {
    return psql("SELECT id FROM tenants WHERE name = '$_[0]'");
}

# --- enforce, across both nodes -------------------------------------------------------
my ($t1, $k1) = quota_tenant('quota',
    '{"daily": 5, "soft_ratio": 0.6, "mode": "enforce"}');
my @r = map { http_req(($_ % 2 ? $n1 : $n2)->port, 'GET', '/v1/me',
    bearer => $k1, json => 1) } 1 .. 7;
is(scalar(grep { $_->{status} == 200 } @r), 5, 'five requests within the daily quota');
is($r[0]{headers}{'x-quota-period'}, 'day', 'X-Quota-Period');
is($r[0]{headers}{'x-quota-limit'}, '5', 'X-Quota-Limit');
is(join(',', map { $_->{headers}{'x-quota-used'} } @r[0 .. 4]), '1,2,3,4,5',
    'X-Quota-Used counts across both nodes');
is($r[4]{headers}{'x-quota-remaining'}, '0', 'X-Quota-Remaining');
ok(!$r[1]{headers}{'x-quota-warning'}, 'no warning below the soft cap');
is($r[2]{headers}{'x-quota-warning'}, 'soft-cap-reached', 'warning from the soft cap on');
is($r[5]{status}, 402, 'over the cap: 402');
is(code($r[5]), 'QUOTA_EXCEEDED', 'QUOTA_EXCEEDED');
is_deeply([@{ $r[5]{json}{error}{details} }{qw(period limit used remaining)}],
    ['day', 5, 5, 0], 'details: period, limit, used, remaining');
ok($r[5]{headers}{'retry-after'} > 0
    && $r[5]{headers}{'retry-after'} <= 86400, 'Retry-After until the period ends');
is(events(tid($t1), 'quota.soft_cap_reached'), 1, 'one soft cap event for the day');
is(events(tid($t1), 'quota.hard_cap_blocked'), 1,
    'one hard cap event, however many are blocked');

psql(q{UPDATE tenants SET quota = '{"daily": 10}'} . " WHERE name = '$t1'");
sleep 0.5;
is(http_req($n2->port, 'GET', '/v1/me', bearer => $k1)->{status}, 200,
    'a raised quota applies at once, fleet-wide');

# --- a run costs 3 units --------------------------------------------------------------
my ($t2, $k2) = quota_tenant('runs', '{"daily": 10}');
@r = map { http_req($n1->port, 'GET', '/run/v1/me', bearer => $k2) } 1 .. 4;
is(join(',', map { $_->{status} } @r), '200,200,200,402', 'three runs fit in 10 units');
is($r[2]{headers}{'x-quota-used'}, '9', 'each run counted 3');

# --- observe ----------------------------------------------------------------------------
my ($t3, $k3) = quota_tenant('observe', '{"daily": 2, "mode": "observe"}');
@r = map { http_req($n1->port, 'GET', '/v1/me', bearer => $k3) } 1 .. 4;
is(join(',', map { $_->{status} } @r), '200,200,200,200',
    'observe lets requests through past the cap');
is($r[3]{headers}{'x-quota-remaining'}, '0', 'and reports nothing left');
is(events(tid($t3), 'quota.overage'), 1, 'one overage event');

# --- monthly ----------------------------------------------------------------------------
my ($t4, $k4) = quota_tenant('monthly', '{"monthly": 3}');
@r = map { http_req($n2->port, 'GET', '/v1/me', bearer => $k4, json => 1) } 1 .. 4;
is(join(',', map { $_->{status} } @r), '200,200,200,402', 'monthly cap of 3');
is($r[0]{headers}{'x-quota-period'}, 'month', 'X-Quota-Period month');
is($r[3]{json}{error}{details}{period}, 'month', 'blocked by the month');

# --- the admin API ----------------------------------------------------------------------
my $ops = make_tenant('quota-ops', platform => 1);
my $padmin = make_key($ops, name => 'ops', role => 'admin');
my $tadmin = make_key($t1, name => 'admin', role => 'admin');

sub adm {
    my ($method, $who, $path, $body) = @_;
    return http_req($n1->port, $method, $path, bearer => $who, json => 1,
        defined $body ? (json_body => $body) : ());
}

my $r0 = adm('GET', $padmin, "/v1/admin/quotas/$t1");
is($r0->{status}, 200, 'platform admin reads a quota');
is($r0->{json}{data}{quota}{daily}, 10, 'the configuration');
like($r0->{json}{data}{usage}{day}{period} // '', qr/^\d{4}-\d{2}-\d{2}$/,
    'usage: the UTC day');
like($r0->{json}{data}{usage}{month}{period} // '', qr/^\d{4}-\d{2}$/,
    'usage: the UTC month');
ok($r0->{json}{data}{usage}{day}{used} >= 6, 'usage: used today');
is(adm('GET', $tadmin, "/v1/admin/quotas/$t1")->{status}, 200,
    'a tenant admin reads its own');
is(code(adm('GET', $tadmin, "/v1/admin/quotas/$t2")), 'TENANT_NOT_FOUND',
    'but not another tenant\'s');
is(adm('PATCH', $tadmin, "/v1/admin/quotas/$t1", { daily => 1000 })->{status},
    403, 'a tenant admin cannot raise its own quota');
$r0 = adm('PATCH', $padmin, "/v1/admin/quotas/$t1", { daily => 3 });
is($r0->{json}{data}{quota}{daily}, 3, 'a platform admin lowers it');
sleep 0.5;
is(http_req($n2->port, 'GET', '/v1/me', bearer => $k1)->{status}, 402,
    'the lowered quota applies at once');
$r0 = adm('PATCH', $padmin, "/v1/admin/quotas/$t1", { daily => undef });
ok(!exists $r0->{json}{data}{quota}{daily}, 'null removes a cap');
is(code(adm('PATCH', $padmin, "/v1/admin/quotas/$t1", { daily => 0 })),
    'VALIDATION_ERROR', 'daily 0 refused');
is(code(adm('PATCH', $padmin, "/v1/admin/quotas/$t1", { soft_ratio => 2 })),
    'VALIDATION_ERROR', 'soft_ratio 2 refused');
is(code(adm('PATCH', $padmin, "/v1/admin/quotas/$t1", { bogus => 1 })),
    'VALIDATION_ERROR', 'unknown field refused');
is(code(adm('PATCH', $padmin, '/v1/admin/quotas/no-such-tenant', { daily => 5 })),
    'TENANT_NOT_FOUND', 'unknown tenant');

# --- no quota, no headers; bad quota refused by the database ---------------------------
my $plain = make_key(make_tenant('noquota'));
ok(!defined http_req($n1->port, 'GET', '/v1/me', bearer => $plain)
    ->{headers}{'x-quota-limit'}, 'no quota, no X-Quota headers');
eval { psql(q{UPDATE tenants SET quota = '{"daily": -1}'} . " WHERE name = '$t4'") };
ok($@, 'an invalid quota is refused by the database');
