#!/usr/bin/perl

# bench/auth.pl: the cost of Nexus authentication, side by side with plain
# nginx, in one run. One nginx worker serves a canned upstream on one port
# and, on another, the same proxy_pass twice: once plain, once behind
# nexus_auth (key cache hit, the steady state). wrk drives each in turn;
# the ratios are what matter, not the absolute numbers.
#
# Run with `make bench` (t/run starts PostgreSQL, Redis and the mock).
# BENCH_SECONDS (default 5) and BENCH_CONNECTIONS (default 32) tune it.

use strict;
use warnings;

use Nexus::Test;
use Nexus::Fixtures;

my $secs = $ENV{BENCH_SECONDS} // 5;
my $conns = $ENV{BENCH_CONNECTIONS} // 32;

my $t = nexus_nginx(<<'EOF', workers => 1, log_level => 'error');
    access_log off;
    nexus_postgres "%%PG%%" pool=2;
    nexus_redis %%REDIS%% pool=1;
    nexus_zone nexus 4m;
    nexus_key_pepper_file %%PEPPER%%;

    upstream canned {
        server 127.0.0.1:%%PORT2%%;
        keepalive 64;
    }

    server {
        listen 127.0.0.1:%%PORT2%%;
        location / {
            default_type application/json;
            return 200 '{"id":"chatcmpl-1","object":"chat.completion"}';
        }
    }

    server {
        listen 127.0.0.1:%%PORT%%;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /plain/ { proxy_pass http://canned/; }
        location /nexus/ {
            nexus_auth on;
            # proxy_set_header at this level replaces the server's list
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_pass http://canned/;
        }
    }
EOF

my $tenant = make_tenant('bench');
my $key = make_key($tenant, name => 'bench');
my $port = $t->port;

# warm the key cache
my $r = http_req($port, 'GET', '/nexus/x', bearer => $key);
die "nexus path answered $r->{status}\n" unless $r->{status} == 200;

sub wrk {
    my ($path, $c, $auth) = @_;
    my @cmd = ('wrk', '-t1', "-c$c", "-d${secs}s", '--latency');
    push @cmd, '-H', "Authorization: Bearer $key" if $auth;
    push @cmd, "http://127.0.0.1:$port$path";
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

printf "bench: %ds per run, throughput with %d connections, latency with 1\n",
    $secs, $conns;

sub xacts {
    return psql('SELECT xact_commit FROM pg_stat_database'
        . ' WHERE datname = current_database()');
}

my %res;
my $x0 = xacts();
for my $round (1, 2) {
    for my $case (['plain', '/plain/x', 0], ['nexus', '/nexus/x', 1]) {
        my ($name, $path, $auth) = @$case;
        my $tp = wrk($path, $conns, $auth);
        my $lt = wrk($path, 1, $auth);
        push @{ $res{$name}{rps} }, $tp->{rps};
        push @{ $res{$name}{p99} }, $lt->{p99};
        push @{ $res{$name}{p50} }, $lt->{p50};
    }
}

my $queries = xacts() - $x0;

sub best { my @v = sort { $a <=> $b } @{ $_[0] }; return $_[1] ? $v[-1] : $v[0] }

my $prps = best($res{plain}{rps}, 1);
my $nrps = best($res{nexus}{rps}, 1);
my $pp99 = best($res{plain}{p99});
my $np99 = best($res{nexus}{p99});
my $pp50 = best($res{plain}{p50});
my $np50 = best($res{nexus}{p50});

printf "%-28s %12s %12s %10s\n", '', 'plain nginx', 'nexus auth', 'ratio';
printf "%-28s %12.0f %12.0f %10.2f\n", 'requests/s', $prps, $nrps,
    $nrps / $prps;
printf "%-28s %12.3f %12.3f %+10.3f\n", 'p50 latency, 1 conn (ms)', $pp50,
    $np50, $np50 - $pp50;
printf "%-28s %12.3f %12.3f %+10.3f\n", 'p99 latency, 1 conn (ms)', $pp99,
    $np99, $np99 - $pp99;
printf "bench: %d PostgreSQL transactions during the runs (the key is"
    . " served from the shared cache)\n", $queries;
print "bench: ratio is nexus/plain throughput; the last column of the",
    " latency rows is the added time\n";
