#!/usr/bin/perl

# Directive validation at "nginx -t": every bad value of nexus_postgres,
# nexus_redis, nexus_zone, nexus_key_pepper_file, nexus_health,
# nexus_tenant, nexus_route_class and nexus_auth is refused with a message
# in nginx's own style, naming the offending value; a full valid config
# passes.

use strict;
use warnings;

use Test::More;
use File::Temp ();
use Nexus::Test;

# conf(%part): a full config; each part (pg, redis, zone, pepper, http,
# locations) replaces its default line, '' drops it
sub conf {
    my (%p) = @_;
    my %d = (
        pg => 'nexus_postgres "%%PG%%" pool=2 query_timeout=5s;',
        redis => 'nexus_redis %%REDIS%% pool=2 timeout=100ms;',
        zone => 'nexus_zone nexus 4m;',
        pepper => 'nexus_key_pepper_file %%PEPPER%%;',
        http => '',
        locations => '',
    );
    my %c = (%d, %p);
    return <<"EOF";
    $c{pg}
    $c{redis}
    $c{zone}
    $c{pepper}
    $c{http}

    server {
        listen 127.0.0.1:%%PORT%%;

        location /v1/        { nexus_api; }
        location /v1/admin/  { nexus_admin; }
        location /v1/ops/    { nexus_ops; }
        location = /healthz  { nexus_health live; }
        location = /readyz   { nexus_health ready; }
        $c{locations}
    }
EOF
}

# refused($what, $conf_parts, qr/message/): two tests, a non-zero exit code
# and the message as an [emerg] naming nginx.conf and a line
sub refused {
    my ($what, $parts, $re) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($code, $out) = nexus_nginx_t(conf(%$parts));
    isnt($code, 0, "$what: nginx -t fails");
    like($out, qr/\[emerg\] [^\n]*$re[^\n]*\n? in \S+nginx\.conf:\d+/,
        "$what: message") or diag($out);
    return $out;
}

nexus_plan(2 + 2 * 46 + 1);     # valid config, 46 refused, one more

# --- a valid config -------------------------------------------------------------
my ($code, $out) = nexus_nginx_t(conf(
    http => "nexus_key_cache_ttl 30s;\n    nexus_key_negative_ttl 2s;\n"
        . "    nexus_key_last_used_flush 5s;\n    nexus_auth off;\n"
        . "    nexus_route_class read;",
    pg => 'nexus_postgres "%%PG%% connect_timeout=2" pool=4 queue=100'
        . ' connect_timeout=2s query_timeout=3s;',
    redis => 'nexus_redis %%REDIS%% pool=2 timeout=100ms connect_timeout=1s db=1;',
    locations => <<'EOF'));
        error_page 413 = @nexus_413;
        location @nexus_413  { nexus_error 413 PAYLOAD_TOO_LARGE "too large"; }
        location /acme/v1/ { nexus_api; nexus_tenant acme;
                             nexus_route_class run; }
        location /run/     { nexus_api; nexus_auth on; }
        location /static/  { return 200 "ok\n"; }
EOF
is($code, 0, 'full valid config: nginx -t exits 0') or diag($out);
like($out, qr/test is successful/, 'full valid config: test is successful');

# --- nexus_postgres -------------------------------------------------------------
refused('pg pool=0', { pg => 'nexus_postgres "%%PG%%" pool=0;' },
    qr/invalid parameter "pool=0"/);
refused('pg pool=x', { pg => 'nexus_postgres "%%PG%%" pool=x;' },
    qr/invalid parameter "pool=x"/);
refused('pg pool=257', { pg => 'nexus_postgres "%%PG%%" pool=257;' },
    qr/invalid parameter "pool=257"/);
refused('pg query_timeout=abc', { pg => 'nexus_postgres "%%PG%%" query_timeout=abc;' },
    qr/invalid parameter "query_timeout=abc"/);
refused('pg query_timeout=0', { pg => 'nexus_postgres "%%PG%%" query_timeout=0;' },
    qr/invalid parameter "query_timeout=0"/);
refused('pg connect_timeout=x', { pg => 'nexus_postgres "%%PG%%" connect_timeout=x;' },
    qr/invalid parameter "connect_timeout=x"/);
refused('pg queue=-1', { pg => 'nexus_postgres "%%PG%%" queue=-1;' },
    qr/invalid parameter "queue=-1"/);
refused('pg queue=0', { pg => 'nexus_postgres "%%PG%%" queue=0;' },
    qr/invalid parameter "queue=0"/);
refused('pg bogus=1', { pg => 'nexus_postgres "%%PG%%" bogus=1;' },
    qr/invalid parameter "bogus=1"/);
$out = refused('pg bad conninfo', { pg => 'nexus_postgres "host=127.0.0.1 port";' },
    qr/invalid PostgreSQL connection string: .*"port"/);
like($out, qr/connection info string in \S+nginx\.conf:\d+/,
    'pg bad conninfo: message on one line, like every nginx message');
refused('pg unknown conninfo keyword', { pg => 'nexus_postgres "hostaddr=127.0.0.1 nokey=1";' },
    qr/invalid PostgreSQL connection string: .*nokey/);
refused('pg duplicate', { pg => "nexus_postgres \"%%PG%%\";\n    nexus_postgres \"%%PG%%\";" },
    qr/"nexus_postgres" directive is duplicate/);
refused('pg host list', { pg => 'nexus_postgres "host=127.0.0.1,127.0.0.2 dbname=x";' },
    qr/PostgreSQL host lists are not supported/);
refused('pg unresolvable host', { pg => 'nexus_postgres "host=nonexistent.invalid dbname=x";' },
    qr/cannot resolve PostgreSQL host "nonexistent\.invalid"/);

# --- nexus_redis ----------------------------------------------------------------
refused('redis pool=0', { redis => 'nexus_redis %%REDIS%% pool=0;' },
    qr/invalid parameter "pool=0"/);
refused('redis timeout=x', { redis => 'nexus_redis %%REDIS%% timeout=x;' },
    qr/invalid parameter "timeout=x"/);
refused('redis db=-1', { redis => 'nexus_redis %%REDIS%% db=-1;' },
    qr/invalid parameter "db=-1"/);
refused('redis db=65536', { redis => 'nexus_redis %%REDIS%% db=65536;' },
    qr/invalid parameter "db=65536"/);
refused('redis unknown parameter', { redis => 'nexus_redis %%REDIS%% bogus=1;' },
    qr/invalid parameter "bogus=1"/);
refused('redis password_file missing', { redis => 'nexus_redis %%REDIS%% password_file=/nonexistent/redis.pw;' },
    qr{open\(\) "/nonexistent/redis\.pw" failed});
refused('redis invalid address', { redis => 'nexus_redis 127.0.0.1:notaport;' },
    qr/invalid Redis address "127\.0\.0\.1:notaport"/);
refused('redis duplicate', { redis => "nexus_redis %%REDIS%%;\n    nexus_redis %%REDIS%%;" },
    qr/"nexus_redis" directive is duplicate/);

# --- nexus_zone -----------------------------------------------------------------
refused('zone too small', { zone => 'nexus_zone nexus 1k;' },
    qr/invalid zone size "1k"/);
refused('zone size not a size', { zone => 'nexus_zone nexus lots;' },
    qr/invalid zone size "lots"/);
refused('zone duplicate', { zone => "nexus_zone nexus 4m;\n    nexus_zone other 4m;" },
    qr/"nexus_zone" directive is duplicate/);

# --- nexus_key_pepper_file ------------------------------------------------------
my $tmp = File::Temp::tempdir('pepper.XXXXXX', DIR => $ENV{NEXUS_TEST_TMP} // '/tmp',
    CLEANUP => 1);
open my $fh, '>', "$tmp/short" or die "$tmp/short: $!";
print $fh "0123456789abcdef\n";
close $fh;

refused('pepper file missing', { pepper => "nexus_key_pepper_file $tmp/nope;" },
    qr/cannot load key pepper: pepper file "\Q$tmp\E\/nope": open/);
refused('pepper too short', { pepper => "nexus_key_pepper_file $tmp/short;" },
    qr/cannot load key pepper: pepper file "\Q$tmp\E\/short": pepper is 8 bytes/);
refused('pepper a directory', { pepper => "nexus_key_pepper_file $tmp;" },
    qr/cannot load key pepper: pepper file "\Q$tmp\E" is a directory/);
refused('API location without a pepper', { pepper => '' },
    qr/"nexus_key_pepper_file" is not set/);
refused('API location without nexus_postgres', { pg => '' },
    qr/"nexus_postgres" is not set/);

# --- location directives --------------------------------------------------------
refused('nexus_health bogus', { locations => 'location = /h { nexus_health bogus; }' },
    qr/invalid parameter "bogus"/);
refused('nexus_tenant "Bad Name!"', { locations => 'location /t/ { nexus_api; nexus_tenant "Bad Name!"; }' },
    qr/invalid tenant name "Bad Name!"/);
refused('nexus_rate_limits key=0', { locations => 'location /l/ { nexus_api; nexus_rate_limits key=0; }' },
    qr/invalid parameter "key=0"/);
refused('nexus_rate_limits bogus', { locations => 'location /l/ { nexus_api; nexus_rate_limits ip=5:10; }' },
    qr/invalid parameter "ip=5:10"/);
refused('nexus_fail_mode bogus', { locations => 'location /l/ { nexus_api; nexus_fail_mode maybe; }' },
    qr/invalid value "maybe"/);
refused('nexus_concurrency without nexus_redis',
    { redis => '', locations => 'location /l/ { nexus_api; nexus_concurrency key=2; }' },
    qr/"nexus_concurrency" requires "nexus_redis"/);
refused('nexus_concurrency key=0', { locations => 'location /l/ { nexus_api; nexus_concurrency key=0; }' },
    qr/invalid parameter "key=0"/);
refused('nexus_bulkhead bogus class', { http => 'nexus_bulkhead fast 3;' },
    qr/invalid route class "fast"/);
refused('nexus_rate_limits key twice', { locations => 'location /l/ { nexus_api; nexus_rate_limits key=1 key=2; }' },
    qr/invalid parameter "key=2"/);
refused('nexus_route_class bogus', { locations => 'location /r/ { nexus_api; nexus_route_class bogus; }' },
    qr/invalid value "bogus"/);
refused('nexus_api with nexus_auth off', { locations => 'location /x/ { nexus_api; nexus_auth off; }' },
    qr/"nexus_auth off" cannot be used with a nexus API handler/);
refused('nexus_api twice', { locations => 'location /y/ { nexus_api; nexus_admin; }' },
    qr/"nexus_admin" directive is duplicate/);
refused('nexus_error status 200', { locations => 'location @e { nexus_error 200 OK; }' },
    qr/invalid status "200"/);
refused('nexus_error status x', { locations => 'location @e { nexus_error x BAD; }' },
    qr/invalid status "x"/);
refused('nexus_error bad code', { locations => 'location @e { nexus_error 413 too-large; }' },
    qr/invalid error code "too-large", it must be of \[A-Z0-9_\]/);
refused('nexus_key_last_used_flush 0', { http => 'nexus_key_last_used_flush 0;' },
    qr/"nexus_key_last_used_flush" must be positive/);
