#!/usr/bin/perl

# Usage events read back: GET /v1/admin/usage/{tenant} and nexusctl
# show-usage over rows put into usage_events with psql (the current UTC day
# and month, in total and by model, authorized like the quota endpoint,
# the same document from both); the daily partitions and the function that
# creates them ahead, also from the gateway's worker; and the validation of
# the nexus_usage_* directives. The events the gateway writes itself are
# tested in 53-usage-gateway.t.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(extra => 'nexus_usage_flush 200ms;'),
    workers => 2);
my $port = $t->port;

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} : '';
}

sub tid {
    return psql('SELECT id FROM tenants WHERE name = ' . sql_quote($_[0]));
}

sub usage {
    my ($key, $path) = @_;
    return http_req($port, 'GET', $path, bearer => $key, json => 1);
}

my $acme = make_tenant('acme');
my $other = make_tenant('other');
my $ops = make_tenant('ops', platform => 1);
my $padmin = make_key($ops, role => 'admin');
my $aadmin = make_key($acme, role => 'admin');
my $areader = make_key($acme);
my $oadmin = make_key($other, role => 'admin');
my $empty = make_tenant('empty');

# --- rows: today, earlier this month (unless today is the 1st), last month --
my $acme_id = tid($acme);
my $other_id = tid($other);
my $first_of_month = psql("SELECT date_trunc('day', now() AT TIME ZONE 'UTC')"
    . " = date_trunc('month', now() AT TIME ZONE 'UTC')") eq 't';

# insert_rows($tenant_id, [model, prompt, completion, estimated, when], ...)
my $seq = 0;
sub insert_rows {
    my ($tid, @rows) = @_;
    my @v;
    for my $r (@rows) {
        my ($model, $p, $c, $est, $when) = @$r;
        $seq++;
        push @v, sprintf("('%s', %s, 7, 'abcdef012345', 'chat', %s, 'served',"
            . " 'mock', 1, 200, 'ok', %d, %d, %d, %s, false, 10, $when)",
            unique_name("req$seq"), $tid,
            defined $model ? sql_quote($model) : 'NULL',
            $p, $c, $p + $c, $est ? 'true' : 'false');
    }
    psql('INSERT INTO usage_events (request_id, tenant_id, key_id, key_prefix,'
        . ' endpoint, model_requested, model_served, provider, attempts,'
        . ' status, outcome, prompt_tokens, completion_tokens, total_tokens,'
        . ' estimated, stream, latency_ms, created_at) VALUES '
        . join(', ', @v));
}

my $now = 'now()';
my $last_month = "date_trunc('month', now() AT TIME ZONE 'UTC')"
    . " AT TIME ZONE 'UTC' - interval '1 second'";
my $this_month = "date_trunc('day', now() AT TIME ZONE 'UTC')"
    . " AT TIME ZONE 'UTC' - interval '1 second'";

insert_rows($acme_id,
    [ 'gpt-4o', 10, 5, 0, $now ],
    [ 'gpt-4o', 20, 10, 1, $now ],
    [ 'llama3', 3, 4, 0, $now ],
    [ undef, 0, 0, 0, $now ],
    [ "m\xc3\xa9\"x", 1, 1, 0, $now ],            # UTF-8 bytes
    [ 'gpt-4o', 1000, 1000, 0, $last_month ]);
insert_rows($acme_id, [ 'gpt-4o', 100, 50, 1, $this_month ])
    unless $first_of_month;
insert_rows($other_id, [ 'gpt-4o', 7777, 1, 0, $now ]);

# --- the admin endpoint ---------------------------------------------------------
my $r = usage($padmin, "/v1/admin/usage/$acme");
is($r->{status}, 200, 'platform admin reads a tenant\'s usage');
my $d = $r->{json}{data};
is($d->{tenant}, $acme, 'tenant');
is($d->{period}, 'day', 'the day by default');
like($d->{start}, qr/^\d{4}-\d{2}-\d{2}T00:00:00Z$/, 'start: UTC midnight');
is_deeply([ map { $d->{$_} } qw(requests prompt_tokens completion_tokens
    total_tokens estimated) ], [ 5, 34, 20, 54, 1 ],
    'today: requests, prompt, completion, total, estimated');
is_deeply([ map { $_->{model} } @{ $d->{models} } ],
    [ 'gpt-4o', 'llama3', "m\x{e9}\"x", undef ],
    'by model, in order, the unnamed last; names survive escaping');
is_deeply($d->{models}[0], { model => 'gpt-4o', requests => 2,
    prompt_tokens => 30, completion_tokens => 15, total_tokens => 45,
    estimated => 1 }, 'one model\'s figures');
like($r->{json}{meta}{request_id} // '', qr/\S/, 'the envelope');

$r = usage($padmin, "/v1/admin/usage/$acme?period=month");
$d = $r->{json}{data};
is($d->{period}, 'month', 'period=month');
like($d->{start}, qr/^\d{4}-\d{2}-01T00:00:00Z$/, 'start: the 1st');
is($d->{requests}, $first_of_month ? 5 : 6, 'the month: last month left out');
is($d->{prompt_tokens}, $first_of_month ? 34 : 134, 'the month: tokens');

$r = usage($aadmin, "/v1/admin/usage/$acme?period=day");
is($r->{status}, 200, 'a tenant admin reads its own usage');
$r = usage($aadmin, "/v1/admin/usage/$other");
is(code($r), 'TENANT_NOT_FOUND', 'but not another tenant\'s');
is($r->{status}, 404, 'another tenant: 404');
is(code(usage($areader, "/v1/admin/usage/$acme")), 'FORBIDDEN',
    'a reader key is refused');
is(usage($oadmin, "/v1/admin/usage/$other")->{json}{data}{prompt_tokens},
    7777, 'each tenant its own rows');

$r = usage($padmin, "/v1/admin/usage/$acme?period=week");
is($r->{status}, 400, 'a bad period: 400');
is(code($r), 'VALIDATION_ERROR', 'a bad period: VALIDATION_ERROR');
is($r->{json}{error}{details}{param}, 'period', 'details name the parameter');
like($r->{json}{meta}{request_id} // '', qr/\S/, 'with the request id');
is(code(usage($padmin, "/v1/admin/usage/$acme?period=")), 'VALIDATION_ERROR',
    'an empty period');
is(code(usage($padmin, "/v1/admin/usage/$acme?period=Day")),
    'VALIDATION_ERROR', 'periods are lowercase');

$r = usage($padmin, '/v1/admin/usage/no-such-tenant');
is(code($r), 'TENANT_NOT_FOUND', 'an unknown tenant');
is(code(usage($padmin, '/v1/admin/usage/Bad!Name')), 'NOT_FOUND',
    'not a tenant name');
is(code(usage($padmin, '/v1/admin/usage/')), 'NOT_FOUND', 'no tenant');
$r = http_req($port, 'POST', "/v1/admin/usage/$acme", bearer => $padmin,
    json => 1);
is(code($r), 'METHOD_NOT_ALLOWED', 'POST: 405');
is($r->{headers}{allow}, 'GET, HEAD', 'Allow');
$r = http_req($port, 'HEAD', "/v1/admin/usage/$acme", bearer => $padmin);
is($r->{status}, 200, 'HEAD');
is($r->{body} // '', '', 'HEAD: no body');
is(code(http_req($port, 'GET', "/v1/admin/usage/$acme", json => 1)),
    'AUTH_MISSING', 'no key');

$r = usage($padmin, "/v1/admin/usage/$empty?period=month");
is_deeply([ @{ $r->{json}{data} }{qw(requests total_tokens estimated)},
    $r->{json}{data}{models} ], [ 0, 0, 0, [] ], 'no usage: zeros');

# --- nexusctl show-usage --------------------------------------------------------
my ($code, $out, $err) = nexusctl('show-usage', '--tenant', $acme);
is($code, 0, 'show-usage: exit 0') or diag($err);
my ($day) = $out =~ /^usage of tenant \Q$acme\E, day (\d{4}-\d{2}-\d{2}) /;
ok($day, 'show-usage: the UTC day') or diag($out);
my $row = "%-12s  %-8s  %-13s  %-17s  %-12s  %s\n";
is($out, "usage of tenant $acme, day $day (UTC): requests=5 prompt_tokens=34"
    . " completion_tokens=20 total_tokens=54 estimated=1\n"
    . sprintf($row, qw(model requests prompt_tokens completion_tokens
        total_tokens estimated))
    . sprintf($row, qw(gpt-4o 2 30 15 45 1))
    . sprintf($row, qw(llama3 1 3 4 7 0))
    . sprintf($row, 'm\xc3\xa9\"x', 1, 1, 1, 2, 0)
    . sprintf($row, qw(- 1 0 0 0 0)),
    'show-usage: totals and the table, client strings escaped');

($code, $out) = nexusctl('show-usage', '--tenant', $acme, '--period',
    'month', '--json');
is($code, 0, 'show-usage --json: exit 0');
is_deeply(json_decode($out),
    usage($padmin, "/v1/admin/usage/$acme?period=month")->{json}{data},
    'show-usage --json: the admin endpoint\'s document');

($code, $out) = nexusctl('show-usage', '--tenant', $empty);
like($out, qr/^usage of tenant \Q$empty\E, day \S+ \(UTC\): requests=0 .*\n\z/,
    'show-usage: no usage, no table');

($code, $out, $err) = nexusctl('show-usage', '--tenant', 'no-such-tenant');
is($code, 1, 'show-usage: unknown tenant, exit 1');
like($err, qr/tenant "no-such-tenant" not found/, 'show-usage: says so');
($code, $out, $err) = nexusctl('show-usage', '--tenant', $acme, '--period',
    'week');
is($code, 2, 'show-usage: bad period, exit 2');
like($err, qr/invalid period "week": day or month/, 'show-usage: says so');
($code) = nexusctl('show-usage');
is($code, 2, 'show-usage: --tenant required');

# --- partitions -----------------------------------------------------------------
is(psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_events'"
    . "::regclass AND inhrelid::regclass::text = 'usage_events_p'"
    . " || to_char(now() AT TIME ZONE 'UTC' + interval '7 days', 'YYYYMMDD')"),
    1, 'migrate created the days ahead');
is(psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'usage_events'"
    . "::regclass AND inhrelid::regclass::text = 'usage_events_default'"),
    1, 'the default partition');

is(psql("SELECT nexus_usage_partitions(2, date '2031-03-10')"), 3,
    'three days created');
is(psql("SELECT nexus_usage_partitions(2, date '2031-03-10')"), 0,
    'and only once');
is(psql("SELECT pg_get_expr(relpartbound, oid) FROM pg_class"
    . " WHERE relname = 'usage_events_p20310311'"),
    "FOR VALUES FROM ('2031-03-11 00:00:00+00') TO ('2031-03-12 00:00:00+00')",
    'a day in UTC');

# rows of a day without a partition go to the default one, and move
psql("INSERT INTO usage_events (request_id, status, created_at) VALUES"
    . " ('early1', 200, '2031-04-01 00:00:00Z'),"
    . " ('early2', 200, '2031-04-01 23:59:59.999Z'),"
    . " ('early3', 200, '2031-04-02 00:00:00Z')");
is(psql("SELECT string_agg(tableoid::regclass::text, ',' ORDER BY request_id)"
    . " FROM usage_events WHERE request_id LIKE 'early%'"),
    'usage_events_default,usage_events_default,usage_events_default',
    'no partition yet: the default partition');
is(psql("SELECT nexus_usage_partitions(1, date '2031-04-01')"), 2,
    'the partitions created later');
is(psql("SELECT string_agg(tableoid::regclass::text, ',' ORDER BY request_id)"
    . " FROM usage_events WHERE request_id LIKE 'early%'"),
    'usage_events_p20310401,usage_events_p20310401,usage_events_p20310402',
    'the rows moved into their days');
is(psql("SELECT count(*) FROM usage_events_default"
    . " WHERE request_id LIKE 'early%'"), 0, 'none left behind');
is(psql("SELECT count(*) FROM pg_indexes"
    . " WHERE tablename = 'usage_events_p20310401'"), 2,
    'a moved-into partition has the indexes');

psql("INSERT INTO usage_events (request_id, status, created_at) VALUES"
    . " ('early1', 200, '2031-04-01 00:00:00Z') ON CONFLICT DO NOTHING");
is(psql("SELECT count(*) FROM usage_events WHERE request_id = 'early1'"), 1,
    'the same event twice is one row');

ok(!eval { psql('SELECT nexus_usage_partitions(400)'); 1 }
    && $@ =~ /days_ahead must be/, 'too many days refused');

# the gateway's worker 0 keeps the days ahead: a dropped one comes back
my $ahead = psql("SELECT 'usage_events_p' || to_char(now() AT TIME ZONE"
    . " 'UTC' + interval '7 days', 'YYYYMMDD')");
psql("DROP TABLE $ahead");
$t->reload;
my $deadline = time + 10;
my $back = 0;
while (time < $deadline) {
    last if ($back = psql("SELECT to_regclass('$ahead') IS NOT NULL") eq 't');
    sleep 0.2;
}
ok($back, 'the gateway created the missing day ahead');

# --- directives -----------------------------------------------------------------
sub conf_t {
    my ($extra) = @_;
    return nexus_nginx_t(nexus_conf(extra => $extra));
}

($code, $out) = conf_t("nexus_usage_flush 2s;\n nexus_usage_batch 100;\n"
    . " nexus_usage_queue 200;");
is($code, 0, 'valid nexus_usage_* directives') or diag($out);
($code, $out) = conf_t('nexus_usage_flush 0;');
like($out, qr/\[emerg\] "nexus_usage_flush" must be positive/,
    'nexus_usage_flush 0');
($code, $out) = conf_t('nexus_usage_batch 0;');
like($out, qr/\[emerg\] "nexus_usage_batch" must be from 1 to 10000/,
    'nexus_usage_batch 0');
($code, $out) = conf_t('nexus_usage_batch 10001;');
like($out, qr/\[emerg\] "nexus_usage_batch" must be from 1 to 10000/,
    'nexus_usage_batch too large');
($code, $out) = conf_t("nexus_usage_batch 100;\n nexus_usage_queue 199;");
like($out, qr/\[emerg\] "nexus_usage_queue" must be from twice "nexus_usage_batch" \(200\)/,
    'a queue smaller than two batches');
($code, $out) = conf_t('nexus_usage_batch x;');
like($out, qr/\[emerg\] "nexus_usage_batch" directive invalid number/,
    'not a number');
($code, $out) = conf_t("nexus_usage_flush 1s;\n nexus_usage_flush 2s;");
like($out, qr/\[emerg\] "nexus_usage_flush" directive is duplicate/,
    'duplicate');

nexus_done_testing();
