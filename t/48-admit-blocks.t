#!/usr/bin/perl

# Admission blocks (nexus_admit_block) on two nodes sharing Redis: a
# worker takes many requests' worth of a key's limits and token budget in
# one round trip and admits from it locally.  What must still hold: the
# headers count one request at a time; what a block did not use is given
# back (bucket tokens, quota units) and its reservation is settled once
# with the tokens actually used; a fleet's burst never passes the bucket;
# 64 streams across both nodes never spend past a budget, and leave no
# reservation open; near a cap the blocks stop and each request is exact;
# a node that is reloaded gives its blocks back.

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
    nexus_model slow mock model=fault-gap;
    nexus_admit_block 16 window=400ms;
    nexus_budget_ttl 1500ms;
    nexus_usage_flush 100ms;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
EOF
    locations => <<'EOF',
        location /lim/v1/ { nexus_api; nexus_rate_limit on;
                            nexus_rate_limits key=1:60 tenant=1000:1000; }
        location /cc/v1/  { nexus_api; nexus_concurrency key=8; }
EOF
);
my $n1 = nexus_nginx($conf);
my $n2 = nexus_nginx($conf);

for my $t ($n1, $n2) {
    for (1 .. 100) {
        last if (http_req($t->port, 'GET', '/readyz')->{status} // 0) == 200;
        sleep 0.05;
    }
}

nexus_plan(41);

sub code {
    my ($r) = @_;
    my $j = $r->{json} // eval { json_decode($r->{body}) };
    return ($j && ref $j eq 'HASH' && $j->{error}) ? $j->{error}{code} // ''
        : '';
}

sub tenant_with_quota {
    my ($name, $daily) = @_;
    my $tenant = make_tenant($name, models => '*');
    psql("UPDATE tenants SET quota = '{\"daily\": $daily,"
        . " \"monthly\": 10000000}' WHERE name = '$tenant'");
    return $tenant;
}

sub key_with_budget {
    my ($tenant, $budget) = @_;
    my $key = make_key($tenant, name => 'b');
    psql("UPDATE api_keys SET token_budget = '$budget' WHERE prefix = '"
        . key_prefix($key) . "'");
    return $key;
}

sub tenant_id {
    return psql("SELECT id FROM tenants WHERE name = '$_[0]'");
}

sub chat {
    my ($node, $key, %o) = @_;
    my $body = { model => $o{model} // 'm', max_tokens => $o{max_tokens}
        // 10, messages => [ { role => 'user', content => 'one two three' } ] };
    if ($o{stream}) {
        $body->{stream} = $TRUE;
        $body->{stream_options} = { include_usage => $TRUE };
    }
    my @a = ($node->port, 'POST', ($o{prefix} // '') . '/v1/chat/completions',
        bearer => $key, json_body => $body, json => !$o{stream},
        timeout => 15);
    return $o{start} ? http_start(@a) : http_req(@a);
}

sub evalsha {
    my ($c) = redis_cli('INFO', 'commandstats')
        =~ /cmdstat_evalsha:calls=(\d+)/;
    return $c // 0;
}

sub today { my ($sec) = split /\n/, redis_cli('TIME'); int($sec / 86400) }

sub quota_used {
    my ($tenant) = @_;
    return redis_cli('GET', 'nx:q:' . tenant_id($tenant) . ':d:' . today())
        || 0;
}

sub budget_total {
    my ($key) = @_;
    my %h = split /\n/, redis_cli('HGETALL', 'nx:tb:' . key_id($key) . ':t');
    return { used => $h{used} // 0, res => $h{res} // 0 };
}

# until nothing is held: the blocks' windows end, their requests settle
sub wait_settled {
    my ($key, $secs) = @_;
    my $deadline = time + ($secs // 5);
    while (time < $deadline) {
        return 1 if redis_cli('ZCARD', 'nx:tb:' . key_id($key) . ':r') eq '0'
            && budget_total($key)->{res} == 0;
        sleep 0.05;
    }
    return 0;
}

# --- one node: headers one request at a time, fewer round trips ---------------
my $ta = tenant_with_quota('blocks-a', 100000);
my $ka = key_with_budget($ta, '{"daily": 1000000}');
my $e0 = evalsha();
my $start = time;
my (@rl, @qu, @br, @st);
for (1 .. 30) {
    my $r = chat($n1, $ka, prefix => '/lim');
    push @st, $r->{status};
    push @rl, $r->{headers}{'x-ratelimit-remaining'} // -1;
    push @qu, $r->{headers}{'x-quota-used'} // -1;
    push @br, $r->{headers}{'x-budget-tokens-remaining'} // -1;
}
my $calls = evalsha() - $e0;
is(scalar(grep { $_ == 200 } @st), 30, '30 calls within the limits');
is_deeply(\@rl, [ map { 60 - $_ } 1 .. 30 ],
    'X-RateLimit-Remaining: one less each time, as if exact');
is_deeply(\@qu, [ 1 .. 30 ], 'X-Quota-Used: one more each time');
ok(!grep({ $_ <= 0 || $_ > 1000000 } @br),
    'X-Budget-Tokens-Remaining on every answer');
ok($calls < 30, "$calls Redis scripts for 30 calls and their settlements"
    . ' (exact: 60)');

ok(wait_settled($ka), 'the blocks are settled: nothing held');
is(quota_used($ta), 30, 'the quota counts the 30 calls: the rest was given back');
my $bt = budget_total($ka);
is($bt->{used}, usage_tokens($ka, 30),
    'the budget counts the tokens the usage events record');
my %bucket = split /\n/, redis_cli('HGETALL',
    'nx:rl:k:' . key_id($ka) . ':mutation');
my $level = $bucket{tk} // 0;
my $refill = time - $start + 1;
ok($level >= 29.9 && $level <= 30 + $refill,
    "the key's bucket got its unused tokens back ($level)");

# --- two nodes: a burst of 3 x the bucket ---------------------------------------
my $tb = tenant_with_quota('blocks-b', 100000);
my $kb = key_with_budget($tb, '{"daily": 1000000}');
$start = time;
my ($ok, $limited, $ra_ok, $cut) = (0, 0, 0, 0);
for my $i (1 .. 180) {
    my $r = chat($i % 2 ? $n1 : $n2, $kb, prefix => '/lim');
    if ($r->{status} == 200) {
        $ok++;
    } elsif ($r->{status} == 429 && code($r) eq 'RATE_LIMITED') {
        $limited++;
        my $ra = $r->{headers}{'retry-after'} // 0;
        $ra_ok++ if $ra >= 1 && $ra <= 2;
    }
}
my $allowance = 60 + int(time - $start) + 1;
ok($ok <= $allowance, "accepted $ok <= the bucket's $allowance across the fleet");
ok($ok >= 50, "most of the bucket was used ($ok): blocks near the limit stop");
is($ok + $limited, 180, 'every other call: 429 RATE_LIMITED');
is($ra_ok, $limited, 'each with a sane Retry-After');

# --- two nodes: 64 streams on one budget ------------------------------------------
my $tc = tenant_with_quota('blocks-c', 100000);
my $kc = key_with_budget($tc, '{"total": 1000000}');
my $r = chat($n1, $kc, model => 'slow', stream => 1);
my $want = 1000000 - $r->{headers}{'x-budget-tokens-remaining'};
ok(wait_settled($kc), 'the first stream settled');
my $spent = budget_total($kc)->{used};
my $budget = $spent + 40 * $want + int($want / 2);
psql("UPDATE api_keys SET token_budget = '{\"total\": $budget}'"
    . " WHERE id = " . key_id($kc));
sleep 0.3;
my @h = map { chat($_ % 2 ? $n1 : $n2, $kc, model => 'slow', stream => 1,
    start => 1) } 1 .. 64;
my @r = map { http_finish($_) } @h;
$ok = grep { $_->{status} == 200 } @r;
my @no = grep { $_->{status} == 429 } @r;
ok($ok >= 20 && $ok < 64, "$ok of 64 streams fit the budget");
is(scalar(@no), 64 - $ok, 'the others: 429');
is(scalar(grep { code($_) eq 'BUDGET_EXCEEDED' } @no), 64 - $ok,
    'BUDGET_EXCEEDED');
ok(wait_settled($kc, 10), 'no reservation left open afterwards');
my $used = budget_total($kc)->{used};
ok($used <= $budget, "settled $used <= budget $budget");
is($used, usage_tokens($kc, $ok + 1),
    'the settled tokens are the usage events\'');

# --- near a cap: exact, one request at a time ------------------------------------
sub soft_events {
    return scalar grep { $_ eq 'quota.soft_cap_reached' } split /\n/,
        redis_cli('XRANGE', 'nx:events', '-', '+');
}
my $soft0 = soft_events();
my $td = tenant_with_quota('blocks-d', 10);
my $kd = key_with_budget($td, '{"daily": 1000000}');
my @codes;
@qu = ();
for (1 .. 12) {
    my $r = chat($_ % 2 ? $n1 : $n2, $kd);
    push @codes, $r->{status};
    push @qu, $r->{headers}{'x-quota-used'} // -1;
}
is_deeply(\@codes, [ (200) x 10, 402, 402 ],
    'a quota of 10: ten calls, then 402, across both nodes');
is_deeply([ @qu[0 .. 9] ], [ 1 .. 10 ], 'X-Quota-Used: exact near the cap');
is(quota_used($td), 10, 'the counter holds the ten');
is(soft_events() - $soft0, 1, 'the soft cap event: in the stream once');
my $soft = audited('quota.soft_cap_reached', $td);
is($soft, 1, 'and audited once');

# --- an event a block's take fires: audited by its first call --------------------
my $tw = tenant_with_quota('blocks-w', 100000);
my $kw = key_with_budget($tw, '{"daily": 100000}');
$r = chat($n1, $kw);
my $wday = 'nx:tb:' . key_id($kw) . ':d:' . today();
for (1 .. 40) {
    last if redis_cli('EXISTS', $wday) eq '1';
    sleep 0.02;
}
# settled elsewhere: 80% of the day's budget used
redis_cli('HINCRBY', $wday, 'used', 80000);
my $wok = 0;
for (1 .. 8) {
    $wok++ if chat($n1, $kw)->{status} == 200;
}
is($wok, 8, 'calls from blocks past the warn ratio');
is(audited('budget.warn', $tw), 1,
    'budget.warn, fired by the next take, audited once');

# --- in-flight caps stay exact -----------------------------------------------------
my $te = tenant_with_quota('blocks-e', 100000);
my $ke = key_with_budget($te, '{"daily": 1000000}');
$e0 = evalsha();
my $fine = 0;
for (1 .. 10) {
    $fine++ if chat($n1, $ke, prefix => '/cc')->{status} == 200;
}
is($fine, 10, 'calls with an in-flight cap');
ok(evalsha() - $e0 >= 10, 'each admitted by its own round trip');

# --- a reload gives the blocks back -------------------------------------------------
my $tf = tenant_with_quota('blocks-f', 100000);
my $kf = key_with_budget($tf, '{"daily": 1000000}');
my $served = 0;
for (1 .. 6) {
    $served++ if chat($n1, $kf)->{status} == 200;
}
is($served, 6, 'six calls, the last ones from a block');
$n1->reload;
ok(wait_settled($kf), 'the old worker settled its block');
my $q = 0;
for (1 .. 40) {
    $q = quota_used($tf);
    last if $q == 6;
    sleep 0.05;
}
is($q, 6, 'and gave back its unused quota units');
$r = chat($n1, $kf);
is($r->{status}, 200, 'the new worker admits');
is($r->{headers}{'x-quota-used'}, 7, 'counting on from the given back');

# --- a dead node's block: its bucket tokens held for a while only ---------------------
my $tg = tenant_with_quota('blocks-g', 100000);
my $kg = key_with_budget($tg, '{"daily": 1000000}');
my $n3 = nexus_nginx($conf);
for (1 .. 100) {
    last if (http_req($n3->port, 'GET', '/readyz')->{status} // 0) == 200;
    sleep 0.05;
}
$r = chat($n3, $kg, prefix => '/lim');
my $gb = 'nx:rl:k:' . key_id($kg) . ':mutation';
my $held = 0;
for (1 .. 40) {
    $held = redis_cli('HGET', $gb, 'hd') || 0;
    last if $held > 0;
    sleep 0.02;
}
is($held, 4, 'a first block of 4: its tokens held in the bucket');
my ($sec, $usec) = split /\n/, redis_cli('TIME');
my $for = redis_cli('HGET', $gb, 'hx') - ($sec * 1000 + int($usec / 1000));
ok($for > 0 && $for <= 1400, "for its window and a second at most ($for ms)");
kill 'KILL', $n3->master_pid, $n3->worker_pids;
sleep 5.5;
$r = chat($n1, $kg, prefix => '/lim');
ok(($r->{headers}{'x-ratelimit-remaining'} // 0) >= 58,
    'the dead node\'s held tokens count no more: the bucket refilled them ('
    . ($r->{headers}{'x-ratelimit-remaining'} // '-') . ' left)');

# --- the directive -------------------------------------------------------------------
my ($code, $out) = nexus_nginx_t(nexus_conf(extra =>
    "    nexus_admit_block 1;\n"));
isnt($code, 0, 'a block of one request is refused');
like($out, qr/invalid block size/, 'with a clear message');
($code, $out) = nexus_nginx_t(nexus_conf(extra =>
    "    nexus_admit_block 8 window=5ms;\n"));
isnt($code, 0, 'so is a window under 10ms');
($code) = nexus_nginx_t(nexus_conf(extra =>
    "    nexus_admit_block 256 window=2s;\n"));
is($code, 0, 'nexus_admit_block 256 window=2s');
