#!/usr/bin/perl

# Cost budgets and the pricing catalog: prices loaded into the zone and
# reloaded on NOTIFY, versions by effective_from, the X-Cost-* headers on
# whole answers and streams, warn, block at the cap (429 BUDGET_EXCEEDED,
# capped), degrade to the tenant's cheaper model with fewer output tokens
# (the mock sees the switch), unpriced models refused or allowed, spend
# that cannot overshoot under concurrency, and Redis down in both fail
# modes.  The mock counts words: "one ... ten" is 10 prompt tokens and its
# reply, "mock reply to: one ... eight", 11.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Nexus::Test;
use Nexus::Fixtures;

my $TRUE = JSON::PP::true();

my $conf = nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 16; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_model cheap mock model=mock-tiny;
    nexus_model free mock model=mock-free;
    nexus_model later mock model=mock-later;
    nexus_model slow mock model=fault-gap;
    nexus_token_ceiling 100;
    nexus_cost_degrade_max_tokens 5;
    nexus_budget_ttl 1500ms;
EOF
    locations => 'location /open/v1/ { nexus_api; nexus_fail_mode open; }',
);
my $n1 = nexus_nginx($conf, workers => 2);

nexus_plan(63);

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

# chat($key, %o): one chat completion; model, max_tokens, stream, prefix
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
    my @a = ($n1->port, 'POST', ($o{prefix} // '') . '/v1/chat/completions',
        bearer => $key, json_body => $body, json => !$o{stream},
        timeout => 15);
    return $o{start} ? http_start(@a) : http_req(@a);
}

# the tenant's month in Redis: micro-dollars settled and held
sub month {
    my ($tenant) = @_;
    my ($sec) = split /\n/, redis_cli('TIME');
    my $mon = strftime('%Y-%m', gmtime $sec);
    my %h = split /\n/, redis_cli('HGETALL', 'nx:cost:' . tenant_id($tenant)
        . ":m:$mon");
    return { used => $h{used} // 0, res => $h{res} // 0,
        key => 'nx:cost:' . tenant_id($tenant) . ":m:$mon" };
}

sub settled {
    my ($tenant, $secs) = @_;
    my $deadline = time + ($secs // 5);
    while (time < $deadline) {
        return 1 if month($tenant)->{res} == 0
            && redis_cli('ZCARD', 'nx:cost:' . tenant_id($tenant) . ':r')
               eq '0';
        sleep 0.05;
    }
    return 0;
}

# until the workers reloaded the catalog after a change: a request shows it
sub until_ok {
    my ($what, $cond) = @_;
    my $deadline = time + 5;
    my $r;
    do {
        $r = $cond->();
        return $r if $r;
        sleep 0.05;
    } while (time < $deadline);
    return undef;
}

# --- the catalog: shipped list, versions -----------------------------------------
my ($c, $out, $err) = nexusctl('import-prices', '--file',
    "$ENV{NEXUS_TEST_ROOT}/config/pricing.json");
like($out, qr/^imported \d+ of 15 prices/, 'import-prices: the shipped list');
($c, $out) = nexusctl('import-prices', '--file',
    "$ENV{NEXUS_TEST_ROOT}/config/pricing.json");
like($out, qr/^imported 0 of 15 /, 'again: nothing new');

ctl('set-price', '--model', 'm', '--input', '1', '--output', '2');
ctl('set-price', '--model', 'cheap', '--input', '0.1', '--output', '0.2');
ctl('set-price', '--model', 'slow', '--input', '1', '--output', '2');
($c, $out) = nexusctl('show-prices', '--model', 'gpt-4o-mini');
like($out, qr/gpt-4o-mini\s+0\.00015\s+0\.0006\s+2025-01-01T00:00:00Z\s+current/,
    'show-prices: a shipped price');

# --- a tenant without costs: nothing changes --------------------------------------
my $plain = make_tenant('plain', models => '*');
my $kp = make_key($plain);
my $r = chat($kp, max_tokens => 20);
is($r->{status}, 200, 'no cost budget: a call');
ok(!defined $r->{headers}{'x-cost-status'}, 'and no X-Cost-* headers');
$r = chat($kp, model => 'free', max_tokens => 20);
is($r->{status}, 200, 'an unpriced model: nobody pays, nobody refuses');

# --- headers on whole answers and streams, warn -----------------------------------
my $tb = make_tenant('costb', models => '*');
my $kb = make_key($tb);
ctl('set-cost-budget', '--tenant', $tb, '--monthly-usd', '1',
    '--warn-ratio', '0.5');
$r = until_ok('budget', sub {
    my $r = chat($kb, max_tokens => 20);
    return defined $r->{headers}{'x-cost-status'} ? $r : undef });
ok($r, 'a cost budget reaches the workers without a reload');
is($r->{status}, 200, 'a call within the budget');
is($r->{headers}{'x-cost-month-budget-usd'}, '1.00', 'X-Cost-Month-Budget-Usd');
is($r->{headers}{'x-cost-month-spend-usd'}, '0.032',
    'X-Cost-Month-Spend-Usd: 10 tokens in at $1/1K, 11 out at $2/1K');
is($r->{headers}{'x-cost-month-remaining-usd'}, '0.968',
    'X-Cost-Month-Remaining-Usd');
is($r->{headers}{'x-cost-status'}, 'ok', 'X-Cost-Status: ok');
is($r->{headers}{'x-cost-estimated'}, 'false', 'X-Cost-Estimated: false');
ok(settled($tb), 'settled: nothing held');
is(month($tb)->{used}, 32000, 'the month counts 32000 micro-dollars');

$r = chat($kb, max_tokens => 20, stream => 1);
is($r->{status}, 200, 'a stream');
is($r->{headers}{'x-cost-month-spend-usd'}, '0.032',
    'its spend: what was settled before it');
is($r->{headers}{'x-cost-estimated'}, 'true', 'X-Cost-Estimated: true');
ok($r->{headers}{'x-cost-month-remaining-usd'} < 0.968,
    'its remaining: its reservation held');
ok(settled($tb), 'settled when it ends');
is(month($tb)->{used}, 64000, 'with the usage the provider reported');

redis_cli('HSET', month($tb)->{key}, 'used', 600000);
$r = chat($kb, max_tokens => 20);
is($r->{headers}{'x-cost-status'}, 'warn', 'past the warn ratio: warn');
is($r->{headers}{'x-cost-month-remaining-usd'}, '0.368',
    'the remaining: less the spend and this answer');
is($r->{status}, 200, 'and still served');

# --- the hard cap: block ----------------------------------------------------------
redis_cli('HSET', month($tb)->{key}, 'used', 990000);
$r = chat($kb, max_tokens => 20);
is($r->{status}, 429, 'at the cap: 429');
is(code($r), 'BUDGET_EXCEEDED', 'BUDGET_EXCEEDED');
is($r->{headers}{'x-cost-status'}, 'capped', 'X-Cost-Status: capped');
my $d = $r->{json}{error}{details};
is_deeply([ @$d{qw(budget period limit_usd spend_usd hard_cap_mode)} ],
    [ 'cost', 'month', 1, 0.99, 'block' ], 'details: the budget and spend');
my $ra = $r->{headers}{'retry-after'} // 0;
ok($ra > 0 && $ra <= 31 * 86400, "Retry-After: until the month ends ($ra)");

# --- unpriced models --------------------------------------------------------------
$r = chat($kb, model => 'free', max_tokens => 1);
is($r->{status}, 403, 'a model without a price: 403');
is(code($r), 'MODEL_NOT_PRICED', 'MODEL_NOT_PRICED');
is($r->{json}{error}{details}{model}, 'free', 'naming the model');
ctl('set-cost-budget', '--tenant', $tb, '--allow-unpriced');
$r = until_ok('unpriced', sub {
    my $r = chat($kb, model => 'free', max_tokens => 1);
    return $r->{status} == 200 ? $r : undef });
ok($r, 'allowed once the tenant opts in');
is($r->{headers}{'x-cost-month-spend-usd'}, '0.99', 'and it costs nothing');

# --- degrade ----------------------------------------------------------------------
my $tc = make_tenant('costc', models => '*');
my $kc = make_key($tc);
ctl('set-cost-budget', '--tenant', $tc, '--monthly-usd', '0.1',
    '--mode', 'degrade', '--degrade-model', 'cheap');
until_ok('degrade', sub {
    defined chat($kc, max_tokens => 20)->{headers}{'x-cost-status'} });
settled($tc);
redis_cli('HSET', month($tc)->{key}, 'used', 100000);
mock_reset();
$r = chat($kc, max_tokens => 20);
is($r->{status}, 200, 'at the cap in degrade mode: served');
is($r->{headers}{'x-cost-status'}, 'degraded', 'X-Cost-Status: degraded');
is($r->{json}{model}, 'mock-tiny', 'by the degrade model');
my @sent = grep { $_->{path} eq '/v1/chat/completions' }
    @{ mock_req('GET', '/__mock/requests', json => 1)->{json}{requests} };
my $sent = json_decode($sent[-1]{body});
is($sent->{model}, 'mock-tiny', 'the provider was asked for the cheap model');
is($sent->{max_tokens}, 5, 'with max_tokens capped');
is($r->{json}{usage}{completion_tokens}, 5, 'which the answer kept to');
is($r->{headers}{'x-cost-month-spend-usd'}, '0.102',
    'at the cheap model\'s price: 10 in at $0.1/1K, 5 out at $0.2/1K');
ok(settled($tc), 'settled');
is(month($tc)->{used}, 102000, 'and counted');

# a key whose models leave out the degrade model cannot be degraded
my $kn = make_key($tc, name => 'no cheap');
ctl('set-models', '--prefix', key_prefix($kn), '--models', 'm');
$r = chat($kn, max_tokens => 20);
is($r->{status}, 429, 'the degrade model outside the key\'s set: blocked');
is($r->{json}{error}{details}{hard_cap_mode}, 'degrade', 'though in degrade mode');

# --- price versions by effective_from ---------------------------------------------
my $te = make_tenant('coste', models => '*');
my $ke = make_key($te);
ctl('set-price', '--model', 'later', '--input', '1', '--output', '2');
ctl('set-price', '--model', 'later', '--input', '5', '--output', '2',
    '--effective-from', '2020-01-01T00:00:00Z', '--allow-past');
my $when = int(time + 3);
my $at = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime $when);
ctl('set-price', '--model', 'later', '--input', '2', '--output', '4',
    '--effective-from', $at);
ctl('set-cost-budget', '--tenant', $te, '--monthly-usd', '100');
$r = until_ok('later', sub {
    my $r = chat($ke, model => 'later', max_tokens => 20);
    return defined $r->{headers}{'x-cost-status'} ? $r : undef });
is($r->{headers}{'x-cost-month-spend-usd'}, '0.032',
    'the latest version in effect, not an older one');
($c, $out) = nexusctl('show-prices', '--model', 'later');
like($out, qr/later\s+2\s+4\s+\Q$at\E\s+scheduled/,
    'show-prices: the next version, scheduled');
sleep 0.1 while time < $when + 0.2;
$r = chat($ke, model => 'later', max_tokens => 20);
is($r->{headers}{'x-cost-month-spend-usd'}, '0.096',
    'from its time on, the new price, without a reload: 0.032 + 0.064');

# --- concurrency: the spend cannot overshoot --------------------------------------
my $tf = make_tenant('costf', models => '*');
my $kf = make_key($tf);
ctl('set-cost-budget', '--tenant', $tf, '--monthly-usd', '0.2');
until_ok('fleet', sub {
    defined chat($kf, max_tokens => 1)->{headers}{'x-cost-status'} });
settled($tf);
my @h = map { chat($kf, model => 'slow', stream => 1, max_tokens => 20,
    start => 1) } 1 .. 12;
my @r = map { http_finish($_) } @h;
my $ok = grep { $_->{status} == 200 } @r;
ok($ok >= 1 && $ok < 12, "$ok of 12 streams fit the budget at once");
ok(settled($tf, 10), 'no reservation left open');
ok(month($tf)->{used} <= 200000, 'the spend never passed the budget ('
    . month($tf)->{used} . ')');

# --- Redis down: fail closed, fail open, recovery ---------------------------------
redis_stop();
$r = chat($kb, model => 'free', max_tokens => 1);
is($r->{status}, 503, 'Redis down, fail closed: 503');
is(code($r), 'RATE_LIMIT_UNAVAILABLE', 'RATE_LIMIT_UNAVAILABLE');
$r = chat($kb, model => 'free', max_tokens => 1, prefix => '/open');
is($r->{status}, 200, 'fail open: allowed');
is($r->{headers}{'x-ratelimit-status'}, 'degraded',
    'X-RateLimit-Status: degraded');
ok(!defined $r->{headers}{'x-cost-status'}, 'no cost figures it cannot know');
redis_start();
$r = until_ok('redis', sub {
    my $r = chat($kb, model => 'free', max_tokens => 1);
    return $r->{status} == 200 ? $r : undef });
ok($r && defined $r->{headers}{'x-cost-status'},
    'recovered without a reload, with its figures');
$n1->allow_errors(qr/nexus redis/, qr/nexus token budget/);

# --- directives at nginx -t -------------------------------------------------------
for my $cf (
    [ 'nexus_cost_degrade_max_tokens 0;',
      qr/"nexus_cost_degrade_max_tokens" must be 1..99999999/ ],
    [ 'nexus_credit_grant_max 0;', qr/invalid amount "0"/ ],
    [ 'nexus_credit_grant_daily 1.0000001;', qr/invalid amount "1.0000001"/ ],
    [ "nexus_credit_grant_max 5;\n    nexus_credit_grant_max 6;",
      qr/"nexus_credit_grant_max" directive is duplicate/ ],
    [ 'nexus_credit_flush x;', qr/"nexus_credit_flush" directive invalid/ ],
) {
    my ($code, $out) = nexus_nginx_t(nexus_conf(extra => $cf->[0]));
    (my $name = $cf->[0]) =~ s/\n\s*/ /g;
    ok($code != 0 && $out =~ $cf->[1], "nginx -t refuses: $name")
        or diag($out);
}
($c, $out) = nexus_nginx_t(nexus_conf(extra => 'nexus_cost_degrade_max_tokens'
    . ' 256; nexus_credit_grant_max 100.50; nexus_credit_grant_daily 1000;'
    . ' nexus_credit_flush 2s;'));
is($c, 0, 'and accepts valid ones') or diag($out);
