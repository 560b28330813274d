#!/usr/bin/perl

# Budget events and the self-serve reads of a tenant's admin: budget.warn when a key's token budget or a tenant's cost
# budget reaches its warn ratio (80% for tokens), budget.exhausted when a
# reservation is refused by a token budget or a cost budget is at its cap;
# each once per period and key or tenant, in the audit log and in the
# nx:events stream; GET /v1/self-serve/usage/summary and
# /v1/self-serve/costs/budget for the caller's own tenant.  The mock counts words: "one ... ten" is 10 prompt
# tokens and its reply 11.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 16; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model bm mock model=mock-small;
    nexus_token_ceiling 100;
    nexus_budget_ttl 1500ms;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
    nexus_usage_flush 100ms;
EOF
);
my $n1 = nexus_nginx($conf);

nexus_plan(31);

sub ctl {
    my ($code, $out, $err) = nexusctl(@_);
    die "nexusctl @_: $err" if $code;
    return $out;
}

sub tid {
    return psql('SELECT id FROM tenants WHERE name = ' . sql_quote($_[0]));
}

sub chat {
    my ($key) = @_;
    return http_req($n1->port, 'POST', '/v1/chat/completions', bearer => $key,
        json => 1, timeout => 15, json_body => { model => 'bm',
            max_tokens => 20, messages => [ { role => 'user',
            content => 'one two three four five six seven eight nine ten' } ] });
}

# the nx:events entries of a type for a tenant, as hashes of their fields
sub events {
    my ($tid, $type) = @_;
    my @e;
    for my $e (split /\n(?=\d+-\d+\n)/, redis_cli('XRANGE', 'nx:events', '-', '+')) {
        my (undef, @kv) = split /\n/, $e;
        my %h = @kv;
        push @e, \%h if ($h{type} // '') eq $type
            && ($h{tenant_id} // '') eq $tid;
    }
    return @e;
}

# the audit_events rows of a type for a tenant, once the writer flushed
sub audit_rows {
    my ($tid, $type, $n) = @_;
    my $deadline = time + 10;
    my $c;
    while (time < $deadline) {
        $c = psql("SELECT count(*) FROM audit_events WHERE tenant_id = $tid"
            . " AND event_type = '$type'");
        return $c if $c >= $n;
        sleep 0.1;
    }
    return $c;
}

# --- a key's token budget ------------------------------------------------------
my $t = make_tenant('bev', models => '*');
my $tid = tid($t);
my $k = make_key($t);
psql(q{UPDATE api_keys SET token_budget = '{"daily": 200}' WHERE prefix = '}
    . key_prefix($k) . "'");
my @st;
for (1 .. 20) {
    push @st, chat($k)->{status};
    last if $st[-1] == 429;
}
is($st[-1], 429, 'the daily token budget runs out (' . join(',', @st) . ')');
is(chat($k)->{status}, 429, 'and refuses again');

my @w = events($tid, 'budget.warn');
is(scalar @w, 1, 'one budget.warn in nx:events');
is(join(' ', map { $w[0]{$_} // '' } qw(budget period limit)),
    'tokens day 200', 'for the day of the token budget');
ok($w[0]{used} >= 160 && $w[0]{key_id} eq psql(
    "SELECT id FROM api_keys WHERE prefix = '" . key_prefix($k) . "'"),
    "at 80% or more ($w[0]{used}), with the key");
my @x = events($tid, 'budget.exhausted');
is(scalar @x, 1, 'one budget.exhausted however many are refused');
is($x[0]{budget} . ' ' . $x[0]{period}, 'tokens day', 'for the day');
is(audit_rows($tid, 'budget.warn', 1), 1, 'budget.warn in the audit log');
is(audit_rows($tid, 'budget.exhausted', 1), 1,
    'budget.exhausted in the audit log');
is(psql("SELECT outcome || ' ' || (metadata::jsonb ->> 'budget') || ' '"
    . " || (metadata::jsonb ->> 'period') FROM audit_events WHERE tenant_id"
    . " = $tid AND event_type = 'budget.exhausted'"), 'failure tokens day',
    'with its outcome and period');

# --- a tenant's cost budget ------------------------------------------------------
# 10 in at $1/1K and 11 out at $2/1K: $0.032 a call, $0.05 reserved
ctl('set-price', '--model', 'bm', '--input', '1', '--output', '2');
my $tc = make_tenant('bevc', models => '*');
my $tcid = tid($tc);
my $kc = make_key($tc);
ctl('set-cost-budget', '--tenant', $tc, '--monthly-usd', '0.1',
    '--warn-ratio', '0.5');
my $deadline = time + 5;
my $r;
do {
    $r = chat($kc);
    sleep 0.05 unless defined $r->{headers}{'x-cost-status'};
} while (!defined $r->{headers}{'x-cost-status'} && time < $deadline);
@st = ($r->{status});
for (1 .. 10) {
    push @st, chat($kc)->{status};
    last if $st[-1] == 429;
}
is($st[-1], 429, 'the cost budget blocks at its cap (' . join(',', @st) . ')');
chat($kc);
@w = events($tcid, 'budget.warn');
is(scalar @w, 1, 'one cost budget.warn');
is(join(' ', map { $w[0]{$_} // '' } qw(budget period limit)),
    'cost month 100000', 'for the month, in micro-dollars');
ok(!exists $w[0]{key_id}, 'of the tenant, not a key');
@x = events($tcid, 'budget.exhausted');
is(scalar @x, 1, 'one cost budget.exhausted');
is(audit_rows($tcid, 'budget.warn', 1), 1, 'cost budget.warn audited');
is(audit_rows($tcid, 'budget.exhausted', 1), 1,
    'cost budget.exhausted audited');

# --- self-serve: the usage summary -------------------------------------------------
my $ka = make_key($tc, role => 'admin', name => 'admin');
sub get {
    my ($path, $key) = @_;
    return http_req($n1->port, 'GET', $path, bearer => $key, json => 1);
}
my $u;
$deadline = time + 5;
do {
    $r = get('/v1/self-serve/usage/summary?period=month', $ka);
    $u = $r->{json}{data} // {};
    sleep 0.1 unless ($u->{requests} // 0) >= 2;
} while (($u->{requests} // 0) < 2 && time < $deadline);
is($r->{status}, 200, 'usage summary: 200');
is($u->{tenant} . ' ' . $u->{period}, "$tc month", 'of the caller\'s tenant, the month');
ok($u->{requests} >= 2 && $u->{total_tokens} >= 42,
    "its calls ($u->{requests}, $u->{total_tokens} tokens)");
is($u->{models}[0]{model}, 'bm', 'by model');
$r = get('/v1/self-serve/usage/summary', $ka);
is($r->{json}{data}{period}, 'day', 'the day by default');
$r = get('/v1/self-serve/usage/summary?period=week', $ka);
is($r->{status} . ' ' . $r->{json}{error}{code}, '400 VALIDATION_ERROR',
    'another period: 400');
$r = get('/v1/self-serve/usage/summary', $kc);
is($r->{status} . ' ' . $r->{json}{error}{code}, '403 FORBIDDEN',
    'a key that is not an admin: 403');

# --- self-serve: the cost budget ---------------------------------------------------
$r = get('/v1/self-serve/costs/budget', $ka);
is($r->{status}, 200, 'cost budget: 200');
my $b = $r->{json}{data};
is(join(' ', map { $b->{$_} } qw(tenant period status hard_cap_mode)),
    "$tc month warn block", 'the month, warn past the warn ratio, block');
is_deeply([ map { $b->{$_} + 0 } qw(budget_usd spend_usd reserved_usd
    remaining_usd warn_ratio) ], [ 0.1, 0.064, 0, 0.036, 0.5 ],
    'budget, spend, reserved, remaining, warn ratio');
like($b->{month}, qr/^\d{4}-\d\d$/, 'the month');
ok($b->{resets_in_ms} > 0 && $b->{resets_in_ms} <= 31 * 86400000,
    'resets at the end of the month');
$r = get('/v1/self-serve/costs/budget', make_key($t, role => 'admin'));
is(join(' ', $r->{status}, $r->{json}{data}{status},
    defined $r->{json}{data}{budget_usd} ? 'a budget' : 'null'),
    '200 none null', 'a tenant without a cost budget: none');
$r = get('/v1/self-serve/costs/budget', $kc);
is($r->{status}, 403, 'a key that is not an admin: 403');
