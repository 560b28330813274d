#!/usr/bin/perl

# Circuit breakers and Prometheus metrics: nexus_breaker is validated at
# nginx -t; /v1/ops/circuit-breakers lists every provider, resets are for
# admins, unknown providers are 404 and wrong methods 405; /metrics needs
# no key and exposes every family with HELP and TYPE, the circuit gauges
# among them.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $providers = <<'EOF';
    upstream mock_up { server %%MOCK%%; keepalive 4; }
    nexus_provider alpha type=openai upstream=mock_up;
    nexus_provider beta type=ollama upstream=mock_up;
    nexus_model gpt-test alpha;
    nexus_breaker failures=5 successes=2 open=1s;
EOF

my $metrics = <<'EOF';
        location = /metrics { nexus_metrics; allow 127.0.0.1; deny all; }
EOF

my $conf = nexus_conf(extra => $providers, locations => $metrics);

# --- nginx -t ------------------------------------------------------------------

# refused($what, $extra, $locations, qr/message/): two tests
sub refused {
    my ($what, $extra, $locs, $re) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($code, $out) = nexus_nginx_t(nexus_conf(extra => $extra,
        locations => $locs));
    isnt($code, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] [^\n]*$re[^\n]*\n? in \S+nginx\.conf:\d+/,
        "$what: message") or diag($out);
}

my @bad = (
    [ 'failures=0', 'nexus_breaker failures=0;', qr/invalid parameter "failures=0"/ ],
    [ 'failures=x', 'nexus_breaker failures=x;', qr/invalid parameter "failures=x"/ ],
    [ 'failures=1001', 'nexus_breaker failures=1001;',
        qr/invalid parameter "failures=1001"/ ],
    [ 'successes=0', 'nexus_breaker successes=0;',
        qr/invalid parameter "successes=0"/ ],
    [ 'open=0', 'nexus_breaker open=0;', qr/invalid parameter "open=0"/ ],
    [ 'open=soon', 'nexus_breaker open=soon;',
        qr/invalid parameter "open=soon"/ ],
    [ 'open=2d', 'nexus_breaker open=2d;', qr/invalid parameter "open=2d"/ ],
    [ 'unknown parameter', 'nexus_breaker window=5;',
        qr/invalid parameter "window=5"/ ],
    [ 'repeated parameter', 'nexus_breaker failures=3 failures=4;',
        qr/invalid parameter "failures=4"/ ],
    [ 'twice', "nexus_breaker failures=3;\n    nexus_breaker open=5s;",
        qr/"nexus_breaker" directive is duplicate/ ],
    [ 'no parameter', 'nexus_breaker;',
        qr/invalid number of arguments in "nexus_breaker" directive/ ],
);

nexus_plan(2 * (@bad + 3) + 2 + 49);

refused("nexus_breaker $_->[0]", $_->[1], '', $_->[2]) for @bad;
refused('nexus_metrics with an argument', '',
    'location = /m { nexus_metrics on; }',
    qr/invalid number of arguments in "nexus_metrics" directive/);
refused('nexus_metrics and nexus_api', '',
    'location = /m { nexus_api; nexus_metrics; }',
    qr/"nexus_metrics" directive is duplicate/);
refused('nexus_breaker in a location', '',
    'location = /m { nexus_breaker failures=3; }',
    qr/"nexus_breaker" directive is not allowed here/);

my ($code, $out) = nexus_nginx_t(nexus_conf(
    extra => "nexus_breaker open=500ms;", locations => $metrics));
is($code, 0, 'one parameter alone is enough') or diag($out);
($code, $out) = nexus_nginx_t(nexus_conf(extra => $providers,
    locations => $metrics));
is($code, 0, 'the test config passes nginx -t') or diag($out);

# --- the ops endpoints -----------------------------------------------------------

my $t = nexus_nginx($conf, workers => 2);

my $ops = make_tenant('cb-ops', platform => 1);
my $admin = make_key($ops, name => 'ops admin', role => 'admin');
my $reader = make_key($ops, name => 'ops reader', role => 'reader');
my $tenant = make_tenant('cb');
my $tadmin = make_key($tenant, name => 'tenant admin', role => 'admin');

sub req {
    my ($method, $path, $key) = @_;
    return http_req($t->port, $method, $path, json => 1,
        defined $key ? (bearer => $key) : ());
}

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

my $r = req('GET', '/v1/ops/circuit-breakers', $admin);
is($r->{status}, 200, 'list: 200');
my $d = $r->{json}{data};
is_deeply([ sort keys %{ $d->{circuit_breakers} } ], [ 'alpha', 'beta' ],
    'list: every provider');
is_deeply($d->{circuit_breakers}{alpha}, {
    provider => 'alpha', type => 'openai', state => 'closed',
    failure_count => 0, success_count => 0, opened_count => 0,
    opened_at => undef, seconds_until_retry => 0,
}, 'list: a closed breaker, every field');
is($d->{circuit_breakers}{beta}{type}, 'ollama', 'list: the type');
is_deeply([ @$d{qw(total_count open_count half_open_count closed_count)} ],
    [ 2, 0, 0, 2 ], 'list: the summary counts');
ok($r->{json}{meta}{request_id}, 'list: the envelope has the request id');

$r = req('GET', '/v1/ops/circuit-breakers/beta', $admin);
is($r->{status}, 200, 'one provider: 200');
is($r->{json}{data}{provider}, 'beta', 'one provider: its object');

$r = req('GET', '/v1/ops/circuit-breakers/gamma', $admin);
is($r->{status}, 404, 'unknown provider: 404');
is(code($r), 'NOT_FOUND', 'unknown provider: NOT_FOUND');

$r = req('POST', '/v1/ops/circuit-breakers/alpha/reset', $admin);
is($r->{status}, 200, 'reset: 200');
ok($r->{json}{data}{success}, 'reset: success');
like($r->{json}{data}{message}, qr/'alpha'/, 'reset: the message names it');
is($r->{json}{data}{state}{state}, 'closed', 'reset: the new state');

$r = req('POST', '/v1/ops/circuit-breakers/gamma/reset', $admin);
is($r->{status}, 404, 'reset of an unknown provider: 404');
is(code($r), 'NOT_FOUND', 'reset of an unknown provider: NOT_FOUND');

$r = req('POST', '/v1/ops/circuit-breakers/reset-all', $admin);
is($r->{status}, 200, 'reset-all: 200');
is($r->{json}{data}{reset_count}, 2, 'reset-all: reset_count');
is_deeply([ sort keys %{ $r->{json}{data}{states} } ], [ 'alpha', 'beta' ],
    'reset-all: every state');

$r = req('POST', '/v1/ops/circuit-breakers/alpha/reset', $reader);
is($r->{status}, 403, 'reset with a reader key: 403');
is(code($r), 'FORBIDDEN', 'reset with a reader key: FORBIDDEN');
is(req('POST', '/v1/ops/circuit-breakers/reset-all', $reader)->{status}, 403,
    'reset-all with a reader key: 403');
is(req('POST', '/v1/ops/circuit-breakers/reset-all', $tadmin)->{status}, 403,
    "reset-all with a tenant's admin key: 403");
is(req('GET', '/v1/ops/circuit-breakers', $tadmin)->{status}, 403,
    "list with a tenant's admin key: 403");
is(req('GET', '/v1/ops/circuit-breakers')->{status}, 401, 'list without a key: 401');

$r = req('GET', '/v1/ops/circuit-breakers/alpha/reset', $admin);
is($r->{status}, 405, 'GET on reset: 405');
is($r->{headers}{allow}, 'POST', 'GET on reset: Allow');
$r = req('DELETE', '/v1/ops/circuit-breakers', $admin);
is($r->{status}, 405, 'DELETE on the list: 405');
is($r->{headers}{allow}, 'GET, HEAD', 'DELETE on the list: Allow');
is(req('GET', '/v1/ops/circuit-breakers/reset-all', $admin)->{status}, 405,
    'GET on reset-all: 405');
is(req('GET', '/v1/ops/circuit-breakersx', $admin)->{status}, 404,
    'a longer name is not the endpoint');
is(req('GET', '/v1/ops/circuit-breakers/alpha/x', $admin)->{status}, 404,
    'a deeper path: 404');

# --- /metrics --------------------------------------------------------------------

$r = http_req($t->port, 'GET', '/metrics');
is($r->{status}, 200, 'metrics: 200 without a key');
like($r->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4},
    'metrics: the exposition content type');
my $m = $r->{body};

for my $f (
    [ 'nexus_requests_total', 'counter' ],
    [ 'nexus_tokens_total', 'counter' ],
    [ 'nexus_request_duration_seconds', 'histogram' ],
    [ 'nexus_ttft_seconds', 'histogram' ],
    [ 'nexus_upstream_attempts_total', 'counter' ],
    [ 'nexus_circuit_state', 'gauge' ],
    [ 'nexus_circuit_opened_total', 'counter' ],
) {
    my ($name, $type) = @$f;
    ok($m =~ /^# HELP $name \S.*\n# TYPE $name $type\n/m,
        "metrics: HELP and TYPE of $name");
}

like($m, qr/^nexus_circuit_state\{provider="alpha"\} 0$/m,
    'metrics: alpha closed');
like($m, qr/^nexus_circuit_state\{provider="beta"\} 0$/m,
    'metrics: beta closed');
like($m, qr/^nexus_circuit_opened_total\{provider="alpha"\} 0$/m,
    'metrics: opened count');
is(scalar(() = $m =~ /^nexus_upstream_attempts_total\{provider="beta",outcome="(?:ok|error|timeout|http_5xx|http_429|http_4xx|breaker_open|aborted)"\} 0$/mg),
    8, 'metrics: every outcome of a provider, from zero');
like($m, qr/^nexus_metrics_series \d+$/m, 'metrics: the series gauge');

# every line is a comment or a sample
my @odd = grep { !/^(?:# (?:HELP|TYPE) \w+ .+|\w+(?:\{[^}]*\})? \d+(?:\.\d+)?)$/ }
    split /\n/, $m;
is_deeply(\@odd, [], 'metrics: only HELP, TYPE and sample lines');

is(http_req($t->port, 'POST', '/metrics', body => 'x')->{status}, 405,
    'metrics: POST is 405');
$r = http_req($t->port, 'HEAD', '/metrics');
is($r->{status}, 200, 'metrics: HEAD');
