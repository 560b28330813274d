#!/usr/bin/perl

# The harness itself: a plain nginx (no module) started by nexus_nginx(), the
# raw HTTP client (duplicates, NUL and non-ASCII bytes, chunked bodies,
# concurrent requests, aborts), reload, PostgreSQL and Redis helpers,
# including stopping and starting the shared services.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;

my $t = nexus_nginx(<<'EOF', module => 0, workers => 2);
    server {
        listen 127.0.0.1:%%PORT%%;
        server_name localhost;

        location / {
            return 200 "ok\n";
        }
        location = /dup {
            add_header X-Dup one;
            add_header X-Dup two;
            return 200 "dup\n";
        }
        location = /echo {
            return 200 "foo=$http_x_foo\n";
        }
        location /v1/ {
            proxy_pass http://%%MOCK%%;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
    server {
        listen 127.0.0.1:%%PORT2%%;
        location / { return 204; }
    }
EOF

nexus_plan(43);

my $port = $t->port;

# --- basic requests -----------------------------------------------------------
my $r = http_req($port, 'GET', '/');
is($r->{status}, 200, 'GET / status');
is($r->{body}, "ok\n", 'GET / body');
ok($r->{elapsed} > 0 && $r->{elapsed} < 5, 'elapsed measured');
is(http_req($t->port2, 'GET', '/')->{status}, 204, 'second port');

$r = http_req($port, 'GET', '/', raw => "GET / HTTP/1.0\r\n\r\n");
is($r->{status}, 200, 'raw request');

$r = http_req($port, 'GET', '/', raw => "BOGUS\r\n\r\n");
is($r->{status}, 400, 'raw garbage is 400');

$r = http_req($port, 'HEAD', '/');
is($r->{body}, '', 'HEAD has no body');

# --- headers --------------------------------------------------------------------
$r = http_req($port, 'GET', '/dup');
is_deeply($r->{headers_all}{'x-dup'}, ['one', 'two'], 'duplicate response headers');

$r = http_req($port, 'GET', '/echo', headers => [ 'X-Foo' => 'first' ]);
is($r->{body}, "foo=first\n", 'request header seen');

$r = http_req($port, 'GET', '/echo',
    headers => [ 'X-Foo' => 'a', 'X-Foo' => 'b' ]);
is($r->{status}, 200, 'duplicate request headers accepted');

$r = http_req($port, 'GET', '/echo', headers => [ 'X-Foo' => "a\0b" ]);
is($r->{status}, 400, 'NUL in a header value: 400 (not 500)');

$r = http_req($port, 'GET', '/echo', headers => [ 'X-Foo' => "caf\xc3\xa9\xff" ]);
is($r->{status}, 200, 'non-ASCII header value');
is($r->{body}, "foo=caf\xc3\xa9\xff\n", 'non-ASCII bytes arrive intact');

# --- through the mock: chunked responses, bodies, concurrency --------------------
mock_reset();
$r = http_req($port, 'POST', '/v1/chat/completions', json => 1,
    json_body => { model => 'mock-small',
        messages => [ { role => 'user', content => 'hi there' } ] });
is($r->{status}, 200, 'proxied to the mock');
is($r->{json}{choices}[0]{message}{content}, 'mock reply to: hi there',
    'mock reply via nginx');

$r = http_req($port, 'POST', '/v1/chat/completions',
    json_body => { model => 'mock-small', stream => JSON::PP::true(),
        messages => [ { role => 'user', content => 'one two three' } ] });
like($r->{headers}{'transfer-encoding'} // '', qr/chunked/, 'stream is chunked');
my @data = sse_data($r->{body});
is($data[-1], '[DONE]', 'de-chunked stream ends with [DONE]');
ok(!$r->{incomplete}, 'stream complete');

$r = http_req($port, 'POST', '/v1/chat/completions',
    headers => [ 'Content-Type' => 'application/json' ],
    body_chunks => [ '{"model":"mock-small",', '"messages":[{"role":"user",',
        '"content":"chunked body"}]}' ], json => 1);
is($r->{json}{choices}[0]{message}{content}, 'mock reply to: chunked body',
    'chunked request body');

$r = http_req($port, 'POST', '/v1/chat/completions', slow_write => 0.0005,
    json_body => { model => 'mock-small',
        messages => [ { role => 'user', content => 'slow' } ] }, json => 1);
is($r->{json}{choices}[0]{message}{content}, 'mock reply to: slow',
    'one byte per write');

my $stats = mock_stats();
is($stats->{by_path}{'/v1/chat/completions'}, 4, 'mock stats count requests');

# a slow request does not block another one
my $h = http_start($port, 'POST', '/v1/chat/completions',
    headers => [ 'X-Mock-Delay-Ms' => 1500 ],
    json_body => { model => 'mock-small',
        messages => [ { role => 'user', content => 'wait' } ] });
my $t0 = time;
$r = http_req($port, 'GET', '/');
ok(time - $t0 < 1, 'served while another request waits');
$r = http_finish($h);
is($r->{status}, 200, 'slow request finished');
ok($r->{elapsed} >= 1.4, 'slow request took its time');

# a client that leaves mid-stream
mock_reset();
$h = http_start($port, 'POST', '/v1/chat/completions',
    json_body => { model => 'fault-stall', stream => JSON::PP::true(),
        messages => [ { role => 'user', content => 'stall' } ] });
like(http_read_until($h, qr/data: /, 5), qr/data: /, 'first frame of a stall');
http_abort($h);
my $aborted = 0;
for (1 .. 50) {
    $aborted = mock_stats()->{aborted};
    last if $aborted;
    sleep 0.05;
}
is($aborted, 1, 'client abort reaches the upstream');

# client timeout
$r = http_req($port, 'POST', '/v1/chat/completions', timeout => 0.5,
    json_body => { model => 'fault-stall', stream => JSON::PP::true(),
        messages => [ { role => 'user', content => 'stall' } ] });
ok($r->{timeout}, 'timeout reported');
ok($r->{incomplete}, 'partial response is incomplete');

# --- reload -----------------------------------------------------------------------
my @before = $t->worker_pids;
is(scalar @before, 2, 'two workers');
ok($t->reload, 'reload');
my @after = $t->worker_pids;
my %old = map { $_ => 1 } @before;
is(scalar(grep { !$old{$_} } @after), 2, 'a new generation of workers');
is(http_req($port, 'GET', '/')->{status}, 200, 'serves after reload');

ok($t->reconfigure(<<'EOF'), 'reconfigure');
    server {
        listen 127.0.0.1:%%PORT%%;
        location / { return 200 "changed\n"; }
    }
EOF
is(http_req($port, 'GET', '/')->{body}, "changed\n", 'new config in effect');
like($t->error_log, qr/reconfiguring/, 'error log readable');

# --- PostgreSQL -------------------------------------------------------------------
is(psql('SELECT 1 + 1'), '2', 'psql');
is(psql("SELECT count(*) FROM pg_tables WHERE tablename = 'tenants'"), '1',
    'migrations applied');
my $name = unique_name('Harness Tenant!');
like($name, qr/^[a-z0-9][a-z0-9_-]{0,62}$/, 'unique_name shape');
isnt(unique_name('harness'), unique_name('harness'), 'unique_name differs');

my $pid = psql_bg('BEGIN; LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE;'
    . ' SELECT pg_sleep(0.5); COMMIT;');
is(wait_pid($pid, 10), 0, 'psql_bg');

pg_stop();
pg_start();
is(psql('SELECT 42'), '42', 'PostgreSQL restarted');

# --- Redis ------------------------------------------------------------------------
is(redis_cli('ping'), 'PONG', 'redis_cli');
redis_cli('set', 'harness', 'v');
redis_stop();
redis_start();
is(redis_cli('get', 'harness'), '', 'Redis restarted (empty, no save)');

# the "no alerts" test is added by nexus_plan
