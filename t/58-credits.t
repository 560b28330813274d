#!/usr/bin/perl

# Prepaid credits: grants by a platform admin (a cap per grant, a daily cap
# per admin key), the settled cost deducted from whole answers, streams
# and cut streams, X-Credits-Remaining-Usd, 402 INSUFFICIENT_CREDITS when
# the balance cannot cover the worst case, the credit_transactions ledger
# (balance before and after, chained, ending with Redis's balance), the
# admin read, and Redis down in both fail modes, then back without its
# data: the balances come back from the ledger.  The mock counts words:
# "one ... ten" is 10 prompt tokens and its reply 11; at $1/$2 per 1K
# tokens that is $0.032.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $TRUE = JSON::PP::true();

my $conf = nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 16; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_model cut mock model=fault-cut;
    nexus_token_ceiling 100;
    nexus_budget_ttl 1500ms;
    nexus_usage_flush 100ms;
    nexus_credit_grant_max 5;
    nexus_credit_grant_daily 8;
    nexus_credit_flush 200ms;
EOF
    locations => 'location /open/v1/ { nexus_api; nexus_fail_mode open; }',
);
my $n1 = nexus_nginx($conf, workers => 2);

nexus_plan(51);

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} // '' : '';
}

sub ctl {
    my ($code, $out, $err) = nexusctl(@_);
    die "nexusctl @_: $err" if $code;
    return $out;
}

sub tenant_id {
    return psql("SELECT id FROM tenants WHERE name = '$_[0]'");
}

sub chat {
    my ($key, %o) = @_;
    my $body = { model => $o{model} // 'm', messages => [
        { role => 'user', content => 'one two three four five six seven'
            . ' eight nine ten' } ] };
    $body->{max_tokens} = $o{max_tokens} if defined $o{max_tokens};
    if ($o{stream}) {
        $body->{stream} = $TRUE;
        $body->{stream_options} = { include_usage => $TRUE };
    }
    return http_req($n1->port, 'POST',
        ($o{prefix} // '') . '/v1/chat/completions', bearer => $key,
        json_body => $body, json => !$o{stream}, timeout => 15);
}

sub grant {
    my ($admin, $tenant, $amount, $reason) = @_;
    return http_req($n1->port, 'POST', "/v1/admin/credits/$tenant/grant",
        bearer => $admin, json => 1, json_body => { amount_usd => $amount,
            reason => $reason // 'a test grant of credits' });
}

# the balance in Redis, in micro-dollars, once nothing is held
sub balance {
    my ($tenant) = @_;
    my $deadline = time + 5;
    my %h;
    do {
        %h = split /\n/, redis_cli('HGETALL', 'nx:cr:' . tenant_id($tenant));
        return $h{bal} if ($h{res} // 0) == 0;
        sleep 0.05;
    } while (time < $deadline);
    return "held: $h{res}";
}

# the ledger rows of a tenant, oldest first, once there are n of them
sub ledger {
    my ($tenant, $n) = @_;
    my $deadline = time + 5;
    my @rows;
    do {
        @rows = map { [ split /\|/ ] } split /\n/, psql(
            'SELECT transaction_type, amount_musd, balance_before_musd,'
            . ' balance_after_musd, coalesce(created_by, \'\')'
            . ' FROM credit_transactions WHERE tenant_id = '
            . tenant_id($tenant) . ' ORDER BY entry_ms, entry_seq');
        return @rows if @rows >= $n;
        sleep 0.05;
    } while (time < $deadline);
    return @rows;
}

sub event_cost {
    my ($tenant, $n) = @_;
    my $deadline = time + 5;
    my ($count, $cost);
    do {
        ($count, $cost) = split /\|/, psql('SELECT count(*),'
            . ' coalesce(sum(prompt_tokens * 1000 + completion_tokens * 2000),'
            . ' 0) FROM usage_events WHERE tenant_id = ' . tenant_id($tenant));
        sleep 0.05 if $count < $n;
    } while ($count < $n && time < $deadline);
    return $cost;
}

ctl('set-price', '--model', 'm', '--input', '1', '--output', '2');
ctl('set-price', '--model', 'cut', '--input', '1', '--output', '2');

my $ops = make_tenant('ops', platform => 1, models => '*');
my $admin = make_key($ops, role => 'admin', name => 'admin one');
my $admin2 = make_key($ops, role => 'admin', name => 'admin two');

# --- grants and their caps --------------------------------------------------------
my $t = make_tenant('credits', models => '*');
my $k = make_key($t);
my $tadmin = make_key($t, role => 'admin', name => 'tenant admin');

my $r = grant($admin, $t, 1);
is($r->{status}, 200, 'a platform admin grants credits');
my $g = $r->{json}{data};
is_deeply([ @$g{qw(amount_usd balance_before_usd balance_after_usd type)} ],
    [ 1, 0, 1, 'admin_credit' ], 'from 0 to 1 dollar');
like($g->{transaction_id}, qr/^\d+-\d+$/, 'a transaction id');
is($g->{granted_by}, 'key:' . key_prefix($admin), 'granted by the admin key');
is(psql("SELECT credits FROM tenant_costs WHERE tenant_id = "
    . tenant_id($t)), 't', 'the tenant now runs on credits');

$r = grant($tadmin, $t, 1);
is($r->{status}, 403, 'a tenant admin cannot grant itself credits');

$r = grant($admin, $t, 6);
is($r->{status}, 400, 'more than nexus_credit_grant_max: 400');
is(code($r), 'GRANT_LIMIT_EXCEEDED', 'GRANT_LIMIT_EXCEEDED');
is($r->{json}{error}{details}{scope}, 'per_grant', 'per grant');

$r = grant($admin, $t, 1, 'short');
is($r->{status}, 400, 'a grant needs a reason');
$r = grant($admin, $t, '0');
is(code($r), 'VALIDATION_ERROR', 'and an amount above 0');

$r = grant($admin, $t, '5.00');
is($r->{status}, 200, 'a second grant');
is($r->{json}{data}{balance_after_usd}, 6, 'adds up');
$r = grant($admin, $t, 3);
is($r->{status}, 400, 'past nexus_credit_grant_daily for this admin key: 400');
is_deeply([ @{ $r->{json}{error}{details} }{qw(scope granted_today_usd)} ],
    [ 'daily', 6 ], 'the daily cap, with what was granted today');
is(balance($t), 6000000, 'Redis holds the balance');

# --- deductions -------------------------------------------------------------------
$r = until_ok(sub {
    my $r = chat($k, max_tokens => 20);
    return defined $r->{headers}{'x-credits-remaining-usd'} ? $r : undef });
ok($r, 'credits reach the workers without a reload');
is($r->{status}, 200, 'a call on credits');
is($r->{headers}{'x-credits-remaining-usd'}, '5.968',
    'X-Credits-Remaining-Usd: what the answer left');
is(balance($t), 5968000, 'deducted its cost');

$r = chat($k, max_tokens => 20, stream => 1);
is($r->{status}, 200, 'a stream');
is(balance($t), 5936000, 'deducted when it ended');

$r = chat($k, model => 'cut', max_tokens => 20, stream => 1);
like($r->{body}, qr/upstream_truncated/, 'a stream cut by the provider');
my $cost = event_cost($t, 3);
is(balance($t), 6000000 - $cost,
    'deducted the estimate its usage event recorded');

# --- the ledger -------------------------------------------------------------------
my @l = ledger($t, 5);
is(scalar(@l), 5, 'five transactions: two grants, three calls');
is_deeply([ map { $_->[0] } @l ],
    [ qw(admin_credit admin_credit api_usage api_usage api_usage) ],
    'in order');
is_deeply([ map { $_->[1] } @l[0 .. 3] ],
    [ 1000000, 5000000, -32000, -32000 ], 'with their amounts');
is_deeply([ @{ $l[0] }[2, 3] ], [ 0, 1000000 ], 'balance before and after');
ok(!grep({ $l[$_][2] != $l[$_ - 1][3] } 1 .. $#l),
    'each before is the previous after');
is($l[-1][3], balance($t), 'the last after is the balance in Redis');
is($l[0][4], 'key:' . key_prefix($admin), 'a grant names its admin');
is(redis_cli('XLEN', 'nx:cr:ledger'), '0', 'the stream is drained');

$r = http_req($n1->port, 'GET', "/v1/admin/credits/$t", bearer => $admin,
    json => 1);
is($r->{status}, 200, 'GET /v1/admin/credits/{tenant}');
is_deeply([ @{ $r->{json}{data} }{qw(tenant credits balance_musd)} ],
    [ $t, $TRUE, balance($t) ], 'the balance Redis holds');
is(scalar @{ $r->{json}{data}{transactions} }, 5, 'and the transactions');
is($r->{json}{data}{transactions}[0]{type}, 'api_usage', 'newest first');
$r = http_req($n1->port, 'GET', "/v1/admin/credits/$t", bearer => $tadmin,
    json => 1);
is($r->{status}, 200, 'a tenant admin reads its own credits');
$r = http_req($n1->port, 'GET', "/v1/admin/credits/$ops", bearer => $tadmin,
    json => 1);
is($r->{status}, 404, 'not another tenant\'s');

my ($c, $out) = nexusctl('show-credits', '--tenant', $t);
like($out, qr/credits of tenant \Q$t\E: on, ledger balance \$5\.9/,
    'nexusctl show-credits');

# --- 402 when the balance cannot cover the worst case ------------------------------
my $t2 = make_tenant('poor', models => '*');
my $k2 = make_key($t2);
grant($admin2, $t2, '0.05');
$r = until_ok(sub {
    my $r = chat($k2, max_tokens => 20);
    return $r->{status} == 402 ? $r : undef });
ok($r, '402 when the worst case is more than the balance');
is(code($r), 'INSUFFICIENT_CREDITS', 'INSUFFICIENT_CREDITS');
is($r->{json}{error}{details}{balance_usd}, 0.05, 'with the balance');
$r = chat($k2, max_tokens => 1);
is($r->{status}, 200, 'a smaller request fits');
is(balance($t2), 50000 - 12000, 'and pays 10 in and 1 out');

# a tenant without credits is not limited by them
my $plain = make_tenant('plain', models => '*');
$r = chat(make_key($plain), max_tokens => 20);
ok($r->{status} == 200 && !defined $r->{headers}{'x-credits-remaining-usd'},
    'no credits configured: no limit, no header');

# --- Redis down, then back without its data ----------------------------------------
ledger($t2, 2);
redis_stop();
$r = chat($k, max_tokens => 1);
is($r->{status}, 503, 'Redis down, fail closed: 503');
$r = chat($k, max_tokens => 1, prefix => '/open');
is($r->{status}, 200, 'fail open: allowed');
is($r->{headers}{'x-ratelimit-status'}, 'degraded', 'X-RateLimit-Status');
redis_start();
is(redis_cli('EXISTS', 'nx:cr:' . tenant_id($t)), '0',
    'Redis is back, empty');
$r = until_ok(sub {
    my $r = chat($k, max_tokens => 1);
    return $r->{status} == 200 ? $r : undef });
ok($r, 'the balance is restored from the ledger');
is($r->{headers}{'x-credits-remaining-usd'} * 1000000,
    $l[-1][3] - 12000, 'the ledger\'s last balance, less this call');
$n1->allow_errors(qr/nexus redis/, qr/nexus token budget/,
    qr/nexus credits/);

sub until_ok {
    my ($cond) = @_;
    my $deadline = time + 5;
    do {
        my $r = $cond->();
        return $r if $r;
        sleep 0.05;
    } while (time < $deadline);
    return undef;
}
