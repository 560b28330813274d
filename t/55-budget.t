#!/usr/bin/perl

# Token budgets per key (daily, monthly, total) on two nodes sharing Redis:
# the worst case reserved before the provider is called (max_tokens, else
# nexus_token_ceiling), the actual tokens settled once the answer is over
# (whole answers, streams, cut streams, clients that leave), X-Budget-*
# on every answer, 429 BUDGET_EXCEEDED with Retry-After, the reservation
# of a node that dies expiring, Redis down in both fail modes, and 64
# streams on one budget across both nodes never spending past it.

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
    nexus_model m2 mock model=mock-small;
    nexus_model e mock model=mock-embed;
    nexus_model slow mock model=fault-gap;
    nexus_model cut mock model=fault-cut;
    nexus_model stall mock model=fault-stall;
    nexus_token_ceiling 100;
    nexus_token_ceiling 20 model=m2;
    nexus_budget_ttl 1500ms;
    nexus_usage_flush 100ms;
EOF
    locations => <<'EOF',
        location /open/v1/ { nexus_api; nexus_fail_mode open; }
        location /lim/v1/  { nexus_api; nexus_rate_limit on;
                             nexus_rate_limits key=1:3 tenant=1000:1000;
                             nexus_concurrency key=4; }
EOF
);
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf);

# a node takes gateway calls once it is ready: its pricing catalog loaded
sub wait_ready {
    my ($t) = @_;
    for (1 .. 100) {
        return 1 if (http_req($t->port, 'GET', '/readyz')->{status} // 0)
            == 200;
        sleep 0.05;
    }
    return 0;
}

wait_ready($_) for $n1, $n2;

nexus_plan(85);

my $tenant = make_tenant('budget', models => '*');

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} // '' : '';
}

sub budget_key {
    my ($budget, %o) = @_;
    my $key = make_key($tenant, name => $o{name} // 'b');
    psql("UPDATE api_keys SET token_budget = '$budget' WHERE prefix = '"
        . key_prefix($key) . "'");
    return $key;
}

# chat($node, $key, %o): one chat completion; model, max_tokens, stream
sub chat {
    my ($node, $key, %o) = @_;
    my $body = { model => $o{model} // 'm', messages => [
        { role => 'user', content => $o{text}
            // 'one two three four five six seven eight nine ten' } ] };
    $body->{max_tokens} = $o{max_tokens} if defined $o{max_tokens};
    if ($o{stream}) {
        $body->{stream} = $TRUE;
        $body->{stream_options} = { include_usage => $TRUE };
    }
    my @a = ($node->port, 'POST', ($o{prefix} // '') . '/v1/chat/completions',
        bearer => $key, json_body => $body, json => !$o{stream},
        timeout => 15);
    return $o{start} ? http_start(@a) : http_req(@a);
}

# the Redis hash of a key's period: day, month or total
sub period {
    my ($key, $p) = @_;
    my ($sec) = split /\n/, redis_cli('TIME');
    my $day = int($sec / 86400);
    my @t = gmtime($sec);
    my $name = $p eq 'day' ? "d:$day"
        : $p eq 'month' ? sprintf('m:%04d-%02d', $t[5] + 1900, $t[4] + 1)
        : 't';
    my %h = split /\n/, redis_cli('HGETALL', 'nx:tb:' . key_id($key)
        . ":$name");
    return { used => $h{used} // 0, res => $h{res} // 0 };
}

sub held {
    my ($key) = @_;
    return redis_cli('ZCARD', 'nx:tb:' . key_id($key) . ':r');
}

# wait_settled($key): until nothing is held (settlements are asynchronous)
sub wait_settled {
    my ($key, $secs) = @_;
    my $deadline = time + ($secs // 5);
    while (time < $deadline) {
        return 1 if held($key) eq '0' && period($key, 'total')->{res} == 0;
        sleep 0.05;
    }
    return 0;
}

sub frames {
    my ($r) = @_;
    return map { $_ eq '[DONE]' ? $_ : (eval { json_decode($_) } // {}) }
        sse_data($r->{body});
}

# --- whole answers: reserve, settle, the remaining on each answer ----------------
my $k = budget_key('{"daily": 1000, "monthly": 5000}');
my $r = chat($n1, $k, max_tokens => 20);
is($r->{status}, 200, 'a call within the budget');
my $t1 = $r->{json}{usage}{total_tokens};
is($r->{headers}{'x-budget-period'}, 'day', 'X-Budget-Period: the binding one');
is($r->{headers}{'x-budget-tokens-remaining'}, 1000 - $t1,
    'X-Budget-Tokens-Remaining: what the answer left');
ok(wait_settled($k), 'settled: nothing held');
is_deeply(period($k, 'day'), { used => $t1, res => 0 },
    'the day counts the actual tokens');
is(period($k, 'month')->{used}, $t1, 'so does the month');
is(period($k, 'total')->{used}, $t1, 'and the total');

$r = chat($n2, $k, max_tokens => 5);
my $t2 = $r->{json}{usage}{total_tokens};
is($r->{headers}{'x-budget-tokens-remaining'}, 1000 - $t1 - $t2,
    'the other node sees the same budget');
is($r->{json}{choices}[0]{finish_reason}, 'length', 'max_tokens was passed on');
wait_settled($k);
is(period($k, 'day')->{used}, $t1 + $t2, 'both counted once');

# the least remaining binds
my $kt = budget_key('{"daily": 1000, "total": 300}');
$r = chat($n1, $kt, max_tokens => 10);
is($r->{headers}{'x-budget-period'}, 'total', 'total binds when it is lower');

# embeddings reserve their prompt only
my $ke = budget_key('{"daily": 50}');
$r = http_req($n1->port, 'POST', '/v1/embeddings', bearer => $ke, json => 1,
    json_body => { model => 'e', input => 'a few words to embed' });
is($r->{status}, 200, 'an embedding fits a small budget');
is($r->{headers}{'x-budget-tokens-remaining'},
    50 - $r->{json}{usage}{total_tokens}, 'and is counted');

# --- the worst case: max_tokens, else the ceiling ---------------------------------
my $kc = budget_key('{"daily": 60}');
$r = chat($n1, $kc);
is($r->{status}, 429, 'no max_tokens: the ceiling (100) does not fit');
is(code($r), 'BUDGET_EXCEEDED', 'BUDGET_EXCEEDED');
my $d = $r->{json}{error}{details};
my $pe = $d->{requested} - 100;
ok($pe > 0 && $pe < 30, "requested: the prompt estimate ($pe) + 100");
is_deeply([ @$d{qw(period limit used reserved remaining)} ],
    [ 'day', 60, 0, 0, 60 ], 'details: period, limit, used, reserved, left');
is($r->{headers}{'x-budget-period'}, 'day', 'X-Budget-Period on the 429');
is($r->{headers}{'x-budget-tokens-remaining'}, '60',
    'X-Budget-Tokens-Remaining on the 429');
my $ra = $r->{headers}{'retry-after'} // 0;
ok($ra > 0 && $ra <= 86400, "Retry-After: until the day ends ($ra)");
is(held($kc), '0', 'a refusal holds nothing');
$r = chat($n1, $kc, model => 'm2');
is($r->{status}, 200, 'the model\'s own ceiling (20) fits');
$r = chat($n1, $kc, max_tokens => 100);
is($r->{json}{error}{details}{requested}, $pe + 100,
    'max_tokens is the worst case when given');

# --- exhaustion of a total budget ------------------------------------------------
my $kx = budget_key('{"total": 100}');
my @st;
for (1 .. 8) {
    $r = chat($_ % 2 ? $n1 : $n2, $kx, max_tokens => 5);
    push @st, $r->{status};
    last if $r->{status} == 429;
    # the settlement lands after the answer: wait for it, or the next call
    # may find the budget held by this one's reservation (Retry-After: 1)
    wait_settled($kx);
}
is($st[-1], 429, 'the budget runs out (' . join(',', @st) . ')');
is($r->{json}{error}{details}{period}, 'total', 'the total period');
is($r->{headers}{'retry-after'}, '86400', 'a total budget: Retry-After a day');
wait_settled($kx);
ok(period($kx, 'total')->{used} <= 100, 'never counted past the budget');

# --- streams, a cut stream, a client that leaves --------------------------------
my $ks = budget_key('{"daily": 100000}');
$r = chat($n1, $ks, stream => 1, max_tokens => 20);
my ($usage) = grep { ref $_ eq 'HASH' && $_->{usage} } frames($r);
is($r->{status}, 200, 'a stream');
is($r->{headers}{'x-budget-tokens-remaining'}, 100000 - $pe - 20,
    'its header: the reservation held while it streams');
ok(wait_settled($ks), 'settled when it ends');
is(period($ks, 'day')->{used}, $usage->{usage}{total_tokens},
    'with the usage the provider reported');

my $kcut = budget_key('{"daily": 100000}');
$r = chat($n2, $kcut, model => 'cut', stream => 1, max_tokens => 20);
like($r->{body}, qr/upstream_truncated/, 'a stream cut by the provider');
ok(wait_settled($kcut), 'the cut stream released its reservation');
is(period($kcut, 'day')->{used}, usage_tokens($kcut, 1),
    'and was counted once, as its usage event (an estimate)');

my $kab = budget_key('{"daily": 100000}');
my $h = chat($n1, $kab, model => 'stall', stream => 1, max_tokens => 20,
    start => 1);
http_read_until($h, qr/data: /, 5);
is(held($kab), '1', 'a stalled stream holds its reservation');
http_abort($h);
ok(wait_settled($kab), 'its client left: released');
is(period($kab, 'day')->{used}, usage_tokens($kab, 1),
    'and counted once, as its usage event');
sleep 0.3;
is(period($kab, 'day')->{used}, usage_tokens($kab, 1), 'still once');

# --- a client that leaves while Redis answers the reservation ------------------------
my $slow = nexus_nginx(nexus_conf(redis_timeout => '3s',
    extra => "upstream mock_up { server %%MOCK%%; }\n"
        . "    nexus_provider mock type=openai upstream=mock_up discovery=off;\n"
        . "    nexus_model m mock model=mock-small;"));
wait_ready($slow);
my $ko = budget_key('{"daily": 100000}');
chat($slow, $ko, max_tokens => 5);
wait_settled($ko);
my $used0 = period($ko, 'day')->{used};
my $pid = fork // die "fork: $!";
if (!$pid) {
    # Redis busy for 0.6 s (a script runs alone; DEBUG SLEEP is disabled)
    open STDOUT, '>', '/dev/null';
    exec 'redis-cli', '-p', $ENV{NEXUS_TEST_REDIS_PORT}, 'EVAL',
        "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2]"
        . " while true do local n = redis.call('TIME')"
        . " if n[1] * 1000000 + n[2] - s > 600000 then break end end"
        . " return 1", '0';
}
sleep 0.1;
$h = chat($slow, $ko, max_tokens => 5, start => 1);
sleep 0.1;
http_abort($h);
sleep 0.1;
like($slow->error_log, qr/client prematurely closed connection/,
    'a client leaves while Redis is busy');
waitpid $pid, 0;
ok(wait_settled($ko), 'its reservation, made after it left, is given back');
is(period($ko, 'day')->{used}, $used0, 'and it cost nothing');

# --- a reservation of a dead node expires ---------------------------------------
my $kd = budget_key('{"daily": 200}');
my $n3 = nexus_nginx($conf);
wait_ready($n3);
$h = chat($n3, $kd, model => 'stall', stream => 1, max_tokens => 100,
    start => 1);
http_read_until($h, qr/data: /, 5);
is(held($kd), '1', 'a node holds a reservation');
sleep 1.2;
is(held($kd), '1', 'renewed past its ttl while the node lives');
kill 'KILL', $n3->master_pid, $n3->worker_pids;
http_abort($h);
$r = chat($n1, $kd, max_tokens => 100);
is($r->{status}, 429, 'the dead node\'s reservation still counts');
sleep 1.6;
$r = chat($n1, $kd, max_tokens => 100);
is($r->{status}, 200, 'once expired, it no longer does');
ok(wait_settled($kd), 'and it was swept');

# --- one round trip: the limits taken with the reservation, or nothing ------------
# a gateway call's rate bucket, lease and quota are taken by the script that
# reserves its budget: a refusal by the budget leaves them as they were
my $tq = make_tenant('admit', models => '*');
psql(qq{UPDATE tenants SET quota = '{"daily": 100}' WHERE name = '$tq'});
my $tqid = psql("SELECT id FROM tenants WHERE name = '$tq'");
my $kq = make_key($tq, name => 'admit');
psql(q{UPDATE api_keys SET token_budget = '{"daily": 60}'}
    . " WHERE prefix = '" . key_prefix($kq) . "'");
my $bucket = 'nx:rl:k:' . key_id($kq) . ':mutation';
my $quota = sub {
    my ($sec) = split /\n/, redis_cli('TIME');
    return redis_cli('GET', "nx:q:$tqid:d:" . int($sec / 86400)) || 0;
};
$r = chat($n1, $kq, max_tokens => 5, prefix => '/lim');
is($r->{status}, 200, 'a limited call within its budget');
is($r->{headers}{'x-ratelimit-limit'}, '3', 'X-RateLimit-Limit');
is($r->{headers}{'x-ratelimit-remaining'}, '2', 'X-RateLimit-Remaining');
is($r->{headers}{'x-quota-used'}, '1', 'X-Quota-Used');
ok(defined $r->{headers}{'x-budget-tokens-remaining'}, 'and its budget');
is($quota->(), 1, 'one quota unit taken');
ok(redis_cli('PTTL', $bucket) > 0, 'the bucket expires when it would be full');
ok(wait_settled($kq), 'settled');
my $before = redis_cli('HGETALL', $bucket);
$r = chat($n2, $kq, max_tokens => 500, prefix => '/lim');
is($r->{status}, 429, 'refused by the budget');
is(code($r), 'BUDGET_EXCEEDED', 'BUDGET_EXCEEDED');
is(redis_cli('HGETALL', $bucket), $before, 'no rate token taken');
is($quota->(), 1, 'no quota unit taken');
is(redis_cli('ZCARD', 'nx:cc:k:' . key_id($kq)), '0', 'no lease held');
$r = chat($n1, $kq, max_tokens => 5, prefix => '/lim');
is($r->{headers}{'x-ratelimit-remaining'}, '1',
    'the next call finds the bucket as the refused one left it');
$r = chat($n2, $kq, max_tokens => 5, prefix => '/lim');
$r = chat($n1, $kq, max_tokens => 5, prefix => '/lim');
is($r->{status}, 429, 'the bucket empty: refused');
is(code($r), 'RATE_LIMITED', 'RATE_LIMITED');
is($r->{headers}{'x-ratelimit-scope'}, 'api_key', 'X-RateLimit-Scope');
ok(wait_settled($kq), 'nothing reserved for it');
is(period($kq, 'day')->{used} + 0, usage_tokens($kq, 5),
    'only the calls made are counted');
is(psql("SELECT count(*) FROM usage_events WHERE key_id = " . key_id($kq)
    . " AND status = 429 AND error_code = 'RATE_LIMITED'"), 1,
    'the refused call\'s usage event says why');

# --- refused before admission: the rate tokens are still taken -------------------
# a call refused before its admission (here: not JSON) still counts against
# the rate limits, from the log phase, without waiting; no quota unit, no lease
my $ki = make_key($tq, name => 'invalid');
my $ibucket = 'nx:rl:k:' . key_id($ki) . ':mutation';
my $qbefore = $quota->();
for my $node ($n1, $n2) {
    $r = http_req($node->port, 'POST', '/lim/v1/chat/completions',
        bearer => $ki, body => '{"model": "m", ', json => 1);
    is($r->{status}, 400, 'invalid JSON: 400, not a limit\'s refusal');
}
my $tk;
my $charged_by = time + 5;
while (time < $charged_by) {
    $tk = redis_cli('HGET', $ibucket, 'tk');
    last if length $tk && $tk < 1.5;
    sleep 0.05;
}
ok(length $tk && $tk < 1.5, "both refused calls took a rate token ($tk left)");
is($quota->(), $qbefore, 'but no quota unit');
is(redis_cli('ZCARD', 'nx:cc:k:' . key_id($ki)), '0', 'and no lease');

# --- Redis down: fail closed, fail open, recovery --------------------------------
my $kr = budget_key('{"daily": 100000}');
redis_stop();
$r = chat($n1, $kr, max_tokens => 5);
is($r->{status}, 503, 'Redis down, fail closed: 503');
is(code($r), 'RATE_LIMIT_UNAVAILABLE', 'RATE_LIMIT_UNAVAILABLE');
$r = chat($n1, $kr, max_tokens => 5, prefix => '/lim');
like($r->{json}{error}{message}, qr/^rate limits cannot be checked/,
    'with rate limits too, theirs first');
$r = chat($n2, $kr, max_tokens => 5, prefix => '/open');
is($r->{status}, 200, 'fail open: allowed');
is($r->{headers}{'x-ratelimit-status'}, 'degraded', 'X-RateLimit-Status: degraded');
ok(!defined $r->{headers}{'x-budget-tokens-remaining'},
    'no budget figures it cannot know');
redis_start();
my $deadline = time + 10;
do {
    $r = chat($n1, $kr, max_tokens => 5);
    sleep 0.1 if $r->{status} != 200;
} while ($r->{status} != 200 && time < $deadline);
is($r->{status}, 200, 'fail closed recovers without a reload');
ok(defined $r->{headers}{'x-budget-tokens-remaining'}, 'with its figures');
$_->allow_errors(qr/nexus redis/, qr/nexus token budget/) for $n1, $n2;

# --- 64 streams on one budget across both nodes -----------------------------------
my $kf = budget_key('{"total": 1000000}', name => 'fleet');
$r = chat($n1, $kf, model => 'slow', stream => 1, max_tokens => 10);
my $want = 1000000 - $r->{headers}{'x-budget-tokens-remaining'};
wait_settled($kf);
my $spent = period($kf, 'total')->{used};
my $budget = $spent + 20 * $want + int($want / 2);
psql("UPDATE api_keys SET token_budget = '{\"total\": $budget}'"
    . " WHERE id = " . key_id($kf));
sleep 0.3;
my @h = map { chat($_ % 2 ? $n1 : $n2, $kf, model => 'slow', stream => 1,
    max_tokens => 10, start => 1) } 1 .. 64;
my @r = map { http_finish($_) } @h;
my $ok = grep { $_->{status} == 200 } @r;
my @no = grep { $_->{status} == 429 } @r;
ok($ok >= 20 && $ok < 64, "$ok of 64 streams fit the budget");
is(scalar(@no), 64 - $ok, 'the others: 429');
is(scalar(grep { code({ json => eval { json_decode($_->{body}) } })
    eq 'BUDGET_EXCEEDED' } @no), 64 - $ok, 'BUDGET_EXCEEDED');
ok(wait_settled($kf, 10), 'no reservation left open afterwards');
my $used = period($kf, 'total')->{used};
ok($used <= $budget, "settled $used <= budget $budget");
is($used, usage_tokens($kf, 65), 'the settled tokens are the usage events\'');
