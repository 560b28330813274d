#!/usr/bin/perl

# bench/gateway.pl: the gateway side by side with plain nginx, in one run.
#
# One nginx (one worker) serves a canned OpenAI-compatible upstream on one
# port: a chat completion as JSON, and a short SSE stream whose events are
# spread out by nginx's own limit_rate-free echo (sent at once). On
# another port the same upstream is reached twice:
#   /plain/   proxy_pass with upstream keepalive, no Nexus
#   /v1/      nexus_api: key auth (cache hit), rate limit from the shared
#             zone, the body parsed and checked, the model resolved, the
#             request rebuilt, the answer parsed, usage metered and counted
#   /pol/v1/  the same with policies on, for another tenant: nexus_abac
#             with a policy of 10 rules on the model (9 deny rules that do
#             not match, then an allow), and the tenant's guardrails (PII
#             redaction of every kind, a prompt size cap, a max_tokens cap)
# wrk drives each in turn, at 1 and 64 connections; the ratios are what
# matter, not the absolute numbers. The added time to first token is
# measured on the stream with a plain socket: the time to the first
# "data:" event, plain vs Nexus.
#
# Run with `make bench` (t/run starts PostgreSQL, Redis and the mock).
# BENCH_SECONDS (default 5) tunes it.

use strict;
use warnings;

use IO::Socket::INET;
use Time::HiRes qw(time);
use Nexus::Test;
use Nexus::Fixtures;

my $secs = $ENV{BENCH_SECONDS} // 5;

my $completion = '{"id":"chatcmpl-1","object":"chat.completion","created":1,'
    . '"model":"canned","choices":[{"index":0,"message":{"role":"assistant",'
    . '"content":"hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":'
    . '3,"completion_tokens":1,"total_tokens":4}}';
my $models = '{"object":"list","data":[{"id":"canned","object":"model"}]}';
my $chunk = '{"id":"c","object":"chat.completion.chunk","created":1,'
    . '"model":"canned","choices":[{"index":0,"delta":{"content":"x"},'
    . '"finish_reason":null}]}';
my $last = '{"id":"c","object":"chat.completion.chunk","created":1,'
    . '"model":"canned","choices":[{"index":0,"delta":{},'
    . '"finish_reason":"stop"}]}';
my $usage = '{"id":"c","object":"chat.completion.chunk","created":1,'
    . '"model":"canned","choices":[],"usage":{"prompt_tokens":3,'
    . '"completion_tokens":1,"total_tokens":4}}';
my $sse = "data: $chunk\\n\\ndata: $last\\n\\ndata: $usage\\n\\ndata: [DONE]\\n\\n";

my $t = nexus_nginx(<<"EOF", workers => 1, log_level => 'error');
    access_log off;
    nexus_postgres "%%PG%%" pool=2;
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
            if (\$http_accept = "text/event-stream") {
                return 200 '$sse';
            }
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
            # the upstream keepalive needs this here too: a
            # proxy_set_header in a location replaces the server's list
            proxy_set_header Connection "";
            proxy_pass http://canned/;
        }
        location /v1/ {
            nexus_api;
        }
        location /pol/v1/ {
            nexus_api;
            nexus_abac on;
        }
        location /v1/admin/ {
            nexus_admin;
        }
    }
EOF

my $tenant = make_tenant('bench');
psql("UPDATE tenants SET allow_all_models = true WHERE name = '$tenant'");
my $key = make_key($tenant, name => 'bench');
my $port = $t->port;

# the tenant with policies: 10 rules, the allow last, and guardrails
my $ptenant = make_tenant('benchpol');
psql("UPDATE tenants SET allow_all_models = true WHERE name = '$ptenant'");
my $pkey = make_key($ptenant, name => 'bench');
my $padmin = make_key($ptenant, name => 'admin', role => 'admin');
my @rules = map { { id => "deny-$_", effect => 'deny', priority => 100 - $_,
    resource_type => 'model', action => 'chat',
    condition => { all => [
        { eq => [{ var => 'resource.name' }, "model-$_"] },
        { in => [{ var => 'principal.role' }, ['reader', 'editor']] }] } } }
    1 .. 9;
push @rules, { id => 'chat', effect => 'allow', resource_type => 'model',
    action => 'chat' };
my $pr = http_req($port, 'POST', '/v1/admin/authz/policies', bearer => $padmin,
    json => 1, json_body => { name => 'bench', rules => \@rules });
die "policy: $pr->{status} $pr->{body}\n" unless $pr->{status} == 201;
my ($gc, undef, $gerr) = nexusctl('set-guardrails', '--tenant', $ptenant,
    '--pii-mode', 'redact', '--max-prompt-bytes', '65536',
    '--max-tokens', '4096');
die "set-guardrails: $gerr" if $gc;

# a prompt of a few hundred bytes, so that the PII scan has text to read
my $prompt = 'Summarise the attached meeting notes in three bullet points. '
    . 'Attendees discussed the quarterly roadmap, the hiring plan for the '
    . 'platform team, and the migration of the billing service to the new '
    . 'cluster. Action items: draft the budget by Friday, review the '
    . 'on-call rota, and schedule a follow-up with the vendor next week.';
my $body = '{"model":"canned","max_tokens":256,"messages":[{"role":"user",'
    . '"content":"' . $prompt . '"}]}';
my $sbody = '{"model":"canned","stream":true,'
    . '"messages":[{"role":"user","content":"hi"}]}';

my $r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    body => $body);
die "nexus path answered $r->{status}: $r->{body}\n" unless $r->{status} == 200;
sleep 1;    # the policy reaches the worker's compiled set
$r = http_req($port, 'POST', '/pol/v1/chat/completions', bearer => $pkey,
    body => $body);
die "policy path answered $r->{status}: $r->{body}\n"
    unless $r->{status} == 200;

my $lua = "$ENV{NEXUS_TEST_TMP}/bench-post.lua";
open my $fh, '>', $lua or die "$lua: $!";
print $fh "wrk.method = 'POST'\nwrk.body = '$body'\n"
    . "wrk.headers['Content-Type'] = 'application/json'\n";
close $fh;

sub wrk {
    my ($path, $c, $k) = @_;
    my @cmd = ('wrk', '-t1', "-c$c", "-d${secs}s", '--latency', '-s', $lua,
        '-H', "Authorization: Bearer " . ($k // $key),
        "http://127.0.0.1:$port$path");
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my %lat;
    for my $p (qw(50 99)) {
        my ($v, $u) = $out =~ /^\s+$p(?:\.000)?%\s+([\d.]+)(us|ms|s)\b/m;
        $lat{$p} = defined $v
            ? $v * ($u eq 'us' ? 0.001 : $u eq 's' ? 1000 : 1) : undef;
    }
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    die "wrk: $path had $non2xx non-2xx responses\n" if $non2xx;
    die "wrk failed:\n$out" unless defined $rps;
    return { rps => $rps, p50 => $lat{50}, p99 => $lat{99} };
}

# time to the first "data:" of a stream over a kept-alive connection
sub ttft {
    my ($path, $n) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")
        or die "connect: $!";
    my @v;
    for (1 .. $n) {
        my $req = "POST $path HTTP/1.1\r\nHost: b\r\n"
            . "Authorization: Bearer $key\r\nAccept: text/event-stream\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($sbody) . "\r\n\r\n$sbody";
        my $t0 = time;
        print $s $req;
        my $buf = '';
        while ($buf !~ /data:/) {
            sysread($s, $buf, 65536, length $buf) or die "eof";
        }
        push @v, (time - $t0) * 1000;
        while ($buf !~ /\[DONE\]\n\n(?:\r\n)?(?:0\r\n\r\n)?\z/) {
            sysread($s, $buf, 65536, length $buf) or die "eof";
        }
    }
    @v = sort { $a <=> $b } @v;
    return $v[int(@v / 2)];
}

printf "bench: %ds per run; chat completions (non-stream) through a canned"
    . " upstream\n", $secs;

my %res;
for my $round (1 .. 3) {
    for my $case (['plain', '/plain/v1/chat/completions'],
                  ['nexus', '/v1/chat/completions'],
                  ['policy', '/pol/v1/chat/completions', $pkey])
    {
        my ($name, $path, $k) = @$case;
        for my $c (1, 64) {
            my $w = wrk($path, $c, $k);
            push @{ $res{$name}{$c}{$_} }, $w->{$_} for qw(rps p50 p99);
        }
    }
}

sub best { my @v = sort { $a <=> $b } @{ $_[0] }; return $_[1] ? $v[-1] : $v[0] }

printf "%-30s %12s %12s %10s %12s %10s\n", '', 'plain nginx', 'nexus',
    'ratio/added', 'policies on', 'ratio/added';
for my $c (1, 64) {
    my $p = best($res{plain}{$c}{rps}, 1);
    my $n = best($res{nexus}{$c}{rps}, 1);
    my $q = best($res{policy}{$c}{rps}, 1);
    printf "%-30s %12.0f %12.0f %10.2f %12.0f %10.2f\n", "requests/s, $c conn",
        $p, $n, $n / $p, $q, $q / $p;
    for my $l (qw(p50 p99)) {
        my $pv = best($res{plain}{$c}{$l});
        my $nv = best($res{nexus}{$c}{$l});
        my $qv = best($res{policy}{$c}{$l});
        printf "%-30s %12.3f %12.3f %+10.3f %12.3f %+10.3f\n",
            "$l latency, $c conn (ms)", $pv, $nv, $nv - $pv, $qv, $qv - $pv;
    }
}

my $pt = ttft('/plain/v1/chat/completions', 200);
my $nt = ttft('/v1/chat/completions', 200);
printf "%-30s %12.3f %12.3f %+10.3f\n", 'time to first token (ms, p50)',
    $pt, $nt, $nt - $pt;
print "bench: ratio is nexus/plain throughput; the last column of the",
    " latency rows is the time Nexus adds\n";
