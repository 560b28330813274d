#!/usr/bin/perl

# bench/governance.pl: the gateway with the whole governance chain on, side
# by side with plain nginx, in one run.
#
# The canned upstream of bench/gateway.pl, reached twice from one nginx
# (one worker):
#   /plain/   proxy_pass with upstream keepalive, no Nexus
#   /v1/      nexus_api with key auth (cache hit), the rate limits in
#             Redis (nexus_rate_limit on, rates far above what is sent),
#             the tenant's daily and monthly quota, the key's daily token
#             budget (reserved before the call, settled after it), and
#             usage metering
# wrk drives each in turn, at 1 and 64 connections, twice; the best of
# the two is kept.  The governed path runs twice: exact (one admission
# round trip per request) and with admission blocks (nexus_admit_block 256:
# most requests admitted locally from a block taken in Redis), each in an
# nginx of its own.  Redis's INFO commandstats is read before and after
# each governed run: its calls over the requests served are the Redis
# work per request.  Commands a script runs count in commandstats too, so
# the round trips (what the gateway sends: EVALSHA or EVAL) are printed
# apart from the total.
#
# Run with `make bench` (t/run starts PostgreSQL, Redis and the mock).
# BENCH_SECONDS (default 5) tunes it.  Targets (issue #4): throughput
# ratio >= 0.75, added p99 <= 0.6 ms at one connection.

use strict;
use warnings;

use Nexus::Test;
use Nexus::Fixtures;

my $secs = $ENV{BENCH_SECONDS} // 5;

my $completion = '{"id":"chatcmpl-1","object":"chat.completion","created":1,'
    . '"model":"canned","choices":[{"index":0,"message":{"role":"assistant",'
    . '"content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":'
    . '3,"completion_tokens":1,"total_tokens":4}}';
my $models = '{"object":"list","data":[{"id":"canned","object":"model"}]}';

my $conf = <<"EOF";
    access_log off;
    nexus_postgres "%%PG%%" pool=2;
    nexus_redis %%REDIS%% pool=2 timeout=100ms;
    nexus_zone nexus 8m;
    nexus_key_pepper_file %%PEPPER%%;
    nexus_usage_flush 1s;

    upstream canned {
        server 127.0.0.1:%%PORT2%%;
        keepalive 64;
    }

    nexus_provider canned type=openai upstream=canned;
    nexus_model canned canned;

    server {
        listen 127.0.0.1:%%PORT2%%;
        location = /v1/chat/completions {
            default_type application/json;
            return 200 '$completion';
        }
        location = /v1/models {
            default_type application/json;
            return 200 '$models';
        }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /plain/ {
            proxy_set_header Connection "";
            proxy_pass http://canned/;
        }
        location /v1/ {
            nexus_api;
            nexus_rate_limit on;
            nexus_rate_limits key=999999:9999999 tenant=999999:9999999;
        }
    }
EOF

my $t = nexus_nginx($conf, workers => 1, log_level => 'error');
my $tb = nexus_nginx("    nexus_admit_block 256;\n$conf", workers => 1,
    log_level => 'error');

my $tenant = make_tenant('govbench');
psql("UPDATE tenants SET allow_all_models = true, quota ="
    . q{ '{"daily": 1000000000, "monthly": 1000000000}'}
    . " WHERE name = '$tenant'");
my $key = make_key($tenant, name => 'bench');
psql(q{UPDATE api_keys SET token_budget = '{"daily": 100000000000}'}
    . " WHERE prefix = '" . key_prefix($key) . "'");
my $body = '{"model":"canned","max_tokens":16,'
    . '"messages":[{"role":"user","content":"hi"}]}';

for my $n ($t, $tb) {
    my $r = http_req($n->port, 'POST', '/v1/chat/completions',
        bearer => $key, body => $body);
    die "nexus path answered $r->{status}: $r->{body}\n"
        unless $r->{status} == 200;
    for my $h (qw(x-ratelimit-limit x-quota-limit x-budget-tokens-remaining)) {
        die "the governance chain is not on: no $h\n"
            unless defined $r->{headers}{$h};
    }
}

my $lua = "$ENV{NEXUS_TEST_TMP}/bench-gov-post.lua";
open my $fh, '>', $lua or die "$lua: $!";
print $fh "wrk.method = 'POST'\nwrk.body = '$body'\n"
    . "wrk.headers['Content-Type'] = 'application/json'\n";
close $fh;

sub wrk {
    my ($port, $path, $c) = @_;
    my @cmd = ('wrk', '-t1', "-c$c", "-d${secs}s", '--latency', '-s', $lua,
        '-H', "Authorization: Bearer $key",
        "http://127.0.0.1:$port$path");
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my ($n) = $out =~ /(\d+) requests in/;
    my %lat;
    for my $p (qw(50 99)) {
        my ($v, $u) = $out =~ /^\s+$p(?:\.000)?%\s+([\d.]+)(us|ms|s)\b/m;
        $lat{$p} = defined $v
            ? $v * ($u eq 'us' ? 0.001 : $u eq 's' ? 1000 : 1) : undef;
    }
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    die "wrk: $path had $non2xx non-2xx responses\n" if $non2xx;
    die "wrk failed:\n$out" unless defined $rps;
    return { rps => $rps, p50 => $lat{50}, p99 => $lat{99}, n => $n };
}

# calls by command, from INFO commandstats; "<command> usec" the time
# Redis spent in them
sub commandstats {
    my %c;
    for (split /\n/, redis_cli('INFO', 'commandstats')) {
        next unless /^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/;
        $c{$1} = $2;
        $c{"$1 usec"} = $3;
    }
    return \%c;
}

printf "bench: %ds per run; chat completions (non-stream) through a canned"
    . " upstream; auth, Redis rate limits, quota, token budget, metering\n",
    $secs;

my @cases = (['plain', $t, '/plain/v1/chat/completions'],
             ['exact', $t, '/v1/chat/completions'],
             ['blocks', $tb, '/v1/chat/completions']);
my (%res, %calls, %served);
for my $round (1, 2) {
    for my $case (@cases) {
        my ($name, $n, $path) = @$case;
        for my $c (1, 64) {
            my $before = commandstats();
            my $w = wrk($n->port, $path, $c);
            my $after = commandstats();
            push @{ $res{$name}{$c}{$_} }, $w->{$_} for qw(rps p50 p99);
            next if $name eq 'plain';
            $served{$name} += $w->{n};
            $calls{$name}{$_} += $after->{$_} - ($before->{$_} // 0)
                for keys %$after;
        }
    }
}

sub best { my @v = sort { $a <=> $b } @{ $_[0] }; return $_[1] ? $v[-1] : $v[0] }

printf "%-30s %12s %12s %8s %12s %8s\n", '', 'plain nginx', 'exact',
    'ratio', 'blocks', 'ratio';
for my $c (1, 64) {
    my $p = best($res{plain}{$c}{rps}, 1);
    my ($e, $b) = map { best($res{$_}{$c}{rps}, 1) } qw(exact blocks);
    printf "%-30s %12.0f %12.0f %8.2f %12.0f %8.2f\n", "requests/s, $c conn",
        $p, $e, $e / $p, $b, $b / $p;
    for my $q (qw(p50 p99)) {
        my $pv = best($res{plain}{$c}{$q});
        my ($ev, $bv) = map { best($res{$_}{$c}{$q}) } qw(exact blocks);
        printf "%-30s %12.3f %12.3f %+8.3f %12.3f %+8.3f\n",
            "$q latency, $c conn (ms)", $pv, $ev, $ev - $pv, $bv, $bv - $pv;
    }
}

for my $mode (qw(exact blocks)) {
    my $k = $calls{$mode};
    my $served = $served{$mode};
    # INFO is the benchmark's own, not the gateway's
    delete @$k{'info', 'info usec'};
    my $usec = ($k->{'evalsha usec'} // 0) + ($k->{'eval usec'} // 0);
    delete @$k{grep { / usec$/ } keys %$k};
    my $total = 0;
    $total += $_ for values %$k;
    my $sent = ($k->{evalsha} // 0) + ($k->{eval} // 0);
    printf "redis, %s: %d governed requests; %.2f calls per request in"
        . " commandstats, of which %.3f EVALSHA/EVAL (round trips)\n",
        $mode, $served, $total / $served, $sent / $served;
    printf "redis, %s: %.1f us of Redis time per request in EVALSHA/EVAL\n",
        $mode, $usec / $served;
    printf "redis, %s: per request by command: %s\n", $mode, join(', ', map {
        sprintf '%s %.3f', $_, $k->{$_} / $served }
        sort { $k->{$b} <=> $k->{$a} } grep { $k->{$_} } keys %$k);
}
print "bench: targets: ratio >= 0.75 and added p99 <= 0.6 ms at 1 conn\n";
