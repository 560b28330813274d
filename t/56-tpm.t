#!/usr/bin/perl

# Tokens per minute, per key and per tenant, on the gateway: pre-checked
# with the request's worst case (prompt estimate + max_tokens) and settled
# with the actual tokens (a refund, or an extra debit), 429 RATE_LIMITED
# with the X-RateLimit-* headers of a rate limit, the limits from the
# location's nexus_tpm or from PostgreSQL (key, then tenant), and a key
# with a budget too checked in the same Redis round trip.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_tpm key=200 tenant=1000;
EOF
    locations => <<'EOF',
        location /none/v1/ { nexus_api; nexus_tpm key=0; }
EOF
), workers => 2);

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} // '' : '';
}

sub chat {
    my ($key, %o) = @_;
    return http_req($t->port, 'POST',
        ($o{prefix} // '') . '/v1/chat/completions', bearer => $key,
        json => 1, json_body => { model => 'm', max_tokens => $o{max} // 50,
            messages => [ { role => 'user', content => $o{text}
                // 'one two three four five six seven eight nine ten' } ] });
}

# the tokens in a bucket now, as the gateway would see them
sub bucket {
    my ($name, $tpm) = @_;
    my %h = split /\n/, redis_cli('HGETALL', $name);
    return $tpm unless defined $h{tk};
    my ($sec, $usec) = split /\n/, redis_cli('TIME');
    my $now = $sec * 1000 + int($usec / 1000);
    my $tk = $h{tk} + ($now - $h{ts}) * $tpm / 60000;
    return $tk > $tpm ? $tpm : $tk;
}

sub wait_settled {
    my ($key) = @_;
    my $deadline = time + 5;
    sleep 0.05 while redis_cli('ZCARD', 'nx:tb:' . key_id($key) . ':r') ne '0'
        && time < $deadline;
}

my $tenant = make_tenant('tpm', models => '*');

# --- the location's nexus_tpm: pre-check, then settle ------------------------------
my $k = make_key($tenant, name => 'k');
my $r = chat($k);
is($r->{status}, 200, 'within the key\'s tokens per minute');
my $total = $r->{json}{usage}{total_tokens};
is($r->{headers}{'x-ratelimit-limit-tokens'}, '200', 'X-RateLimit-Limit-Tokens');
my $left = $r->{headers}{'x-ratelimit-remaining-tokens'};
my $pe = 200 - 50 - $left;
ok($pe > 0 && $pe < 30, "X-RateLimit-Remaining-Tokens: the worst case taken"
    . " (prompt estimate $pe + 50)");
wait_settled($k);
my $tk = bucket('nx:tpm:k:' . key_id($k), 200);
ok($tk >= 200 - $total && $tk < 200 - $total + 5,
    "settled: the unused part given back ($tk ~ 200 - $total)");

$r = chat($k, max => 190);
is($r->{status}, 429, 'a worst case the bucket cannot cover: 429');
is(code($r), 'RATE_LIMITED', 'RATE_LIMITED');
my $d = $r->{json}{error}{details};
is_deeply([ @$d{qw(scope route_class unit limit requested)} ],
    [ 'api_key', 'mutation', 'tokens_per_minute', 200, $pe + 190 ],
    'details: scope, route class, unit, limit, requested');
is($r->{headers}{'x-ratelimit-scope'}, 'api_key', 'X-RateLimit-Scope');
is($r->{headers}{'x-ratelimit-route-class'}, 'mutation',
    'X-RateLimit-Route-Class');
is($r->{headers}{'x-ratelimit-limit'}, '200', 'X-RateLimit-Limit');
my $rem = $r->{headers}{'x-ratelimit-remaining'};
ok($rem >= 200 - $total && $rem < 200, "X-RateLimit-Remaining ($rem)");
my $ms = $r->{headers}{'x-ratelimit-retry-after-ms'};
my $expect = (200 - $rem) * 300;
ok($ms > $expect - 400 && $ms <= $expect,
    "X-RateLimit-Retry-After-Ms: until the bucket is full again ($ms)");
is($r->{headers}{'retry-after'}, int(($ms + 999) / 1000), 'Retry-After');

# an answer that uses more than its estimate: charged the excess
my $kx = make_key($tenant, name => 'excess');
my $many = join ' ', ('a') x 80;
$r = chat($kx, text => $many, max => 11);
$total = $r->{json}{usage}{total_tokens};
my $want = 200 - $r->{headers}{'x-ratelimit-remaining-tokens'};
ok($total > $want, "the answer used more than reserved ($total > $want)");
wait_settled($kx);
$tk = bucket('nx:tpm:k:' . key_id($kx), 200);
ok($tk >= 200 - $total && $tk < 200 - $total + 5,
    "settled: the excess charged ($tk ~ 200 - $total)");

# --- overrides from PostgreSQL: the tenant's, then the key's ------------------------
my $small = make_tenant('tpm-small', models => '*');
psql("UPDATE tenants SET tpm = 150 WHERE name = '$small'");
my $ka = make_key($small, name => 'a');
my $kb = make_key($small, name => 'b');
$r = chat($ka);
is($r->{headers}{'x-ratelimit-limit-tokens'}, '150',
    'a tenant\'s own TPM binds when it is the lower one');
wait_settled($ka);
$r = chat($kb, max => 130);
is($r->{status}, 429, 'another key of the tenant: the tenant\'s bucket');
is($r->{json}{error}{details}{scope}, 'tenant', 'scope tenant');
is($r->{headers}{'x-ratelimit-limit'}, '150', 'its limit');

my $kown = make_key($tenant, name => 'own');
psql("UPDATE api_keys SET tpm = 5000 WHERE id = " . key_id($kown));
$r = chat($kown, max => 500);
is($r->{status}, 200, 'a key with its own TPM');
wait_settled($kown);
ok(bucket('nx:tpm:k:' . key_id($kown), 5000) > 4000,
    'its bucket holds 5000 a minute, not the location\'s 200');
is($r->{headers}{'x-ratelimit-limit-tokens'}, '1000',
    'the tenant\'s (1000, nexus_tpm) binds now');

$r = chat($k, prefix => '/none');
is($r->{status}, 200, 'nexus_tpm key=0 in a location: no key limit there');
is($r->{headers}{'x-ratelimit-limit-tokens'}, undef,
    'and no token headers');

# --- a budget and TPM: one round trip to reserve, one to settle -------------------
my $kbt = make_key($tenant, name => 'both');
psql(q{UPDATE api_keys SET token_budget = '{"daily": 10000}'}
    . ' WHERE id = ' . key_id($kbt));
sleep 0.3;

sub scripts {
    my $n = 0;
    for (split /\n/, redis_cli('INFO', 'commandstats')) {
        $n += $1 if /^cmdstat_eval(?:sha)?:calls=(\d+)/;
    }
    return $n;
}

my $before = scripts();
$r = chat($kbt, max => 20);
wait_settled($kbt);
is(scripts() - $before, 2, 'two scripts: the reservation and the settlement');
ok(defined $r->{headers}{'x-budget-tokens-remaining'}
    && defined $r->{headers}{'x-ratelimit-remaining-tokens'},
    'both answered by the one reservation');

# --- without nexus_redis: tokens per minute in the shared zone, per node -------
(my $local_conf = nexus_conf(extra => <<'EOF')) =~ s/^\s*nexus_redis .*\n//m;
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_tpm key=100;
EOF
my $local = nexus_nginx($local_conf, workers => 2);

sub local_chat {
    my ($key, $max, $text) = @_;
    return http_req($local->port, 'POST', '/v1/chat/completions',
        bearer => $key, json => 1, json_body => { model => 'm',
            max_tokens => $max, messages => [ { role => 'user', content =>
                $text // 'one two three four five six seven eight nine ten' }
            ] });
}

my $kl = make_key($tenant, name => 'local');
$r = local_chat($kl, 50);
is($r->{status}, 200, 'no Redis: within the key\'s tokens per minute');
is($r->{headers}{'x-ratelimit-remaining-tokens'}, 100 - $pe - 50,
    'the worst case taken in the shared zone');
# the settlement runs when the request is freed, just after its answer is
# sent: the next call may reach the other worker before it under load
sleep 0.3;
$r = local_chat($kl, 80);
is(code($r), 'RATE_LIMITED', 'and refused when it does not fit');
$rem = $r->{headers}{'x-ratelimit-remaining'};
ok($rem >= 79 && $rem <= 81,
    "the unused part was given back ($rem ~ 100 - 21)");
my $klb = make_key($tenant, name => 'local-budget');
psql(q{UPDATE api_keys SET token_budget = '{"daily": 1000}'}
    . ' WHERE id = ' . key_id($klb));
$r = local_chat($klb, 5, 'hi');
is(code($r), 'RATE_LIMIT_UNAVAILABLE',
    'a budget cannot be counted without Redis: fail closed');
$local->allow_errors(qr/nexus token budget/);

# --- the directives at nginx -t --------------------------------------------------
for my $c (
    [ 'nexus_tpm key=-1;', qr/invalid parameter "key=-1"/ ],
    [ 'nexus_tpm key=1 key=2;', qr/invalid parameter "key=2"/ ],
    [ 'nexus_tpm rate=5;', qr/invalid parameter "rate=5"/ ],
    [ "nexus_tpm key=1;\n    nexus_tpm tenant=1;", qr/"nexus_tpm" directive is duplicate/ ],
    [ 'nexus_token_ceiling 0;', qr/invalid number of tokens "0"/ ],
    [ 'nexus_token_ceiling 10 gpt-4o;', qr/invalid parameter "gpt-4o"/ ],
    [ "nexus_token_ceiling 10 model=a;\n    nexus_token_ceiling 20 model=a;",
      qr/duplicate ceiling for model "a"/ ],
    [ "nexus_token_ceiling 10;\n    nexus_token_ceiling 20;",
      qr/"nexus_token_ceiling" directive is duplicate/ ],
    [ 'nexus_budget_ttl 100ms;', qr/"nexus_budget_ttl" must be at least 300ms/ ],
) {
    my ($code, $out) = nexus_nginx_t(nexus_conf(extra => $c->[0]));
    (my $name = $c->[0]) =~ s/\n\s*/ /g;
    ok($code != 0 && $out =~ $c->[1], "nginx -t refuses: $name")
        or diag($out);
}
my ($code, $out) = nexus_nginx_t(nexus_conf(extra => 'nexus_tpm key=0 tenant=5;'
    . ' nexus_token_ceiling 8 model=a; nexus_token_ceiling 9;'
    . ' nexus_budget_ttl 300ms;'));
is($code, 0, 'and accepts valid ones') or diag($out);

nexus_done_testing();
