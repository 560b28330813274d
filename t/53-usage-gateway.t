#!/usr/bin/perl

# The usage events the gateway writes, against the mock (tokens are words):
# exactly one row per request, with the right fields, streamed and not,
# for a stream the mock cuts and for a refused model; none holds a secret.
# Nothing is lost when nginx reloads with streams in flight, nor when it
# quits with events still in memory; a PostgreSQL outage only delays them.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $TRUE = JSON::PP::true();

my $keyfile = "$ENV{NEXUS_TEST_TMP}/usage-mock.key";
open my $kf, '>', $keyfile or die "$keyfile: $!";
print $kf "sk-usage-secret\n";
close $kf;

sub gateway_conf {
    my ($flush) = @_;
    return nexus_conf(extra => <<"EOF");
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_discovery interval=500ms;
    nexus_provider mock type=openai upstream=mock_up key_file=$keyfile;
    nexus_model cut mock model=fault-cut;
    nexus_model gap mock model=fault-gap;
    nexus_model slow mock model=fault-slow;
    nexus_usage_flush $flush;
EOF
}

my $t = nexus_nginx(gateway_conf('300ms'), workers => 2);
my $port = $t->port;

my $tenant = make_tenant('usagegw');
psql("UPDATE tenants SET allow_all_models = true WHERE name = '$tenant'");
my $key = make_key($tenant);
my $prefix = key_prefix($key);
my $tid = psql("SELECT id FROM tenants WHERE name = '$tenant'");
my $kid = psql("SELECT id FROM api_keys WHERE prefix = '$prefix'");

sub chat {
    my ($model, %o) = @_;
    my $body = { model => $model, messages => [
        { role => 'system', content => 'be brief' },
        { role => 'user', content => 'hello there how are you' },
    ] };
    $body->{stream} = $TRUE if $o{stream};
    my @args = ($o{port} // $port, 'POST', '/v1/chat/completions',
        bearer => $key, json_body => $body, timeout => 15);
    return $o{start} ? http_start(@args) : http_req(@args);
}

# row($request_id): the event of one request, once written
sub row {
    my ($id, $secs) = @_;
    my $deadline = time + ($secs // 5);
    while (time < $deadline) {
        my $j = psql('SELECT row_to_json(e) FROM usage_events e'
            . ' WHERE request_id = ' . sql_quote($id));
        return json_decode($j) if $j ne '';
        sleep 0.1;
    }
    return undef;
}

sub count_ids {
    my (@ids) = @_;
    return psql('SELECT count(*) FROM usage_events WHERE request_id IN ('
        . join(',', map { sql_quote($_) } @ids) . ')');
}

# wait_count(\@ids, $n, $secs): polls until $n rows exist; returns the count
sub wait_count {
    my ($ids, $n, $secs) = @_;
    my $deadline = time + $secs;
    my $c;
    do {
        $c = count_ids(@$ids);
        return $c if $c >= $n;
        sleep 0.1;
    } while (time < $deadline);
    return $c;
}

# discovery first: until then every model is refused
for (1 .. 50) {
    last if chat('mock-small')->{status} == 200;
    sleep 0.1;
}

# --- one request, one row, the right fields --------------------------------------
my $r = chat('mock-small');
is($r->{status}, 200, 'chat');
my $id = $r->{headers}{'x-request-id'};
my $e = row($id);
ok($e, 'the chat left a usage event') or BAIL_OUT('no usage event');
is_deeply({ map { $_ => $e->{$_} } qw(tenant_id key_id key_prefix endpoint
        model_requested model_served provider attempts status outcome
        error_code prompt_tokens completion_tokens total_tokens estimated
        stream) },
    { tenant_id => $tid, key_id => $kid, key_prefix => $prefix,
      endpoint => 'chat', model_requested => 'mock-small',
      model_served => 'mock-small', provider => 'mock', attempts => 1,
      status => 200, outcome => 'ok', error_code => undef,
      prompt_tokens => 7, completion_tokens => 8, total_tokens => 15,
      estimated => JSON::PP::false, stream => JSON::PP::false },
    'non-stream: every field');
ok($e->{latency_ms} >= 0 && $e->{latency_ms} < 5000, 'latency');
ok($e->{bytes_in} > 100, 'bytes in: the request');
ok($e->{bytes_out} > 100, 'bytes out: the response');
is(psql("SELECT abs(extract(epoch FROM now() - created_at)) < 10"
    . ' FROM usage_events WHERE request_id = ' . sql_quote($id)), 't',
    'created_at: now');
sleep 0.5;
is(count_ids($id), 1, 'exactly one row');

$r = chat('mock-small', stream => 1);
is($r->{status}, 200, 'stream');
$e = row($r->{headers}{'x-request-id'});
is_deeply([ @$e{qw(stream prompt_tokens completion_tokens total_tokens
    estimated outcome status)} ],
    [ JSON::PP::true, 7, 8, 15, JSON::PP::false, 'ok', 200 ],
    'stream: usage from the provider, not estimated');
# a first token within the millisecond reads as none (0 in the event)
ok(!defined $e->{ttft_ms} || $e->{ttft_ms} <= $e->{latency_ms},
    'stream: time to first token, if any, within the latency');

# the mock sends its first byte after 2 s
$r = chat('slow', stream => 1);
$e = row($r->{headers}{'x-request-id'});
ok(defined $e->{ttft_ms} && $e->{ttft_ms} >= 1900
    && $e->{ttft_ms} <= $e->{latency_ms}, 'stream: time to first token')
    or diag(json_encode($e));

$r = chat('cut', stream => 1);
$e = row($r->{headers}{'x-request-id'});
is($e->{outcome}, 'upstream_truncated', 'a cut stream: upstream_truncated');
is($e->{model_served}, 'fault-cut', 'the served model');
ok($e->{estimated}, 'a cut stream: usage estimated');
ok($e->{prompt_tokens} > 0 && $e->{total_tokens} >= $e->{prompt_tokens},
    'a cut stream: the prompt estimated');

$r = chat('no-such-model');
is($r->{status}, 403, 'an unknown model: 403');
$e = row($r->{headers}{'x-request-id'});
is_deeply([ @$e{qw(status outcome model_requested provider total_tokens)} ],
    [ 403, 'error', 'no-such-model', undef, 0 ],
    'a refused request is metered too');
ok(defined $e->{error_code}, 'with its error code');

# --- many requests, as many rows; no secret anywhere ------------------------------
my @ids;
for my $i (1 .. 30) {
    my $x = chat('mock-small', stream => $i % 2);
    push @ids, $x->{headers}{'x-request-id'};
}
is(wait_count(\@ids, 30, 5), 30, 'thirty requests, thirty rows');
sleep 0.5;
is(count_ids(@ids), 30, 'and no more');

my ($secret) = $key =~ /^nx_[0-9a-f]{12}_(.+)$/;
is(psql('SELECT count(*) FROM usage_events e WHERE row_to_json(e)::text'
    . ' LIKE ' . sql_quote("%$secret%") . ' OR row_to_json(e)::text LIKE'
    . " '%sk-usage-secret%'"), 0, 'no key material in any row');

my ($code, $out) = nexusctl('show-usage', '--tenant', $tenant, '--json');
my $sum = json_decode($out);
my $all = psql("SELECT count(*) FROM usage_events WHERE tenant_id = $tid");
is($sum->{requests}, $all, 'show-usage counts them');

# --- reload with streams in flight --------------------------------------------------
# fault-gap pauses 3 s in the middle of each stream: these are still running
# in the old workers when the reload comes
my @h = map { chat('gap', stream => 1, start => 1) } 1 .. 20;
sleep 0.5;
my @old = $t->worker_pids;
ok($t->reload, 'reloaded with streams in flight');
my @more = map { chat('mock-small', start => 1) } 1 .. 10;
my @done = map { http_finish($_, timeout => 15) } @h, @more;
is(scalar(grep { ($_->{status} // 0) == 200 } @done), 30,
    'every request answered');
@ids = map { $_->{headers}{'x-request-id'} } @done;
is(wait_count(\@ids, 30, 10), 30, 'every request metered across the reload');
my $deadline = time + 10;
my @left;
do {
    my %now = map { $_ => 1 } $t->worker_pids(all => 1);
    @left = grep { $now{$_} } @old;
    sleep 0.1 if @left;
} while (@left && time < $deadline);
is(scalar @left, 0, 'the old workers exited');
is(psql('SELECT count(*) FROM usage_events WHERE request_id IN ('
        . join(',', map { sql_quote($_) } @ids[0 .. 19])
        . ") AND completion_tokens > 0 AND outcome = 'ok'"), 20,
    'the streams finished in the old workers, with their usage');

# --- a PostgreSQL outage delays the events, loses none --------------------------------
@ids = ();
chat('mock-small');                 # the key and models cached
pg_stop();
for (1 .. 10) {
    my $x = chat('mock-small');
    push @ids, $x->{headers}{'x-request-id'} if $x->{status} == 200;
}
ok(scalar @ids, 'the gateway serves while PostgreSQL is down')
    or diag('no request served');
sleep 1;
pg_start();
is(wait_count(\@ids, scalar @ids, 10), scalar @ids,
    'the events are written when PostgreSQL is back');
like($t->error_log, qr/nexus usage: (PostgreSQL is unavailable|writing \d+ events failed)/,
    'the wait is logged');
$t->allow_errors(qr/postgres|PostgreSQL|DEPENDENCY|discovery/i);

# --- a batch whose answer is lost is written again, once -------------------------------
# The table locked past the query timeout: the COPY in flight is given up
# (its connection closed: PostgreSQL may or may not have run it), and the
# batch goes again through INSERT ... ON CONFLICT DO NOTHING.
{
    my $conf = gateway_conf('200ms');
    $conf =~ s/query_timeout=5s/query_timeout=500ms/;
    my $l = nexus_nginx($conf, workers => 1);
    for (1 .. 50) {
        last if chat('mock-small', port => $l->port)->{status} == 200;
        sleep 0.1;
    }
    my $hold = psql_bg('BEGIN; LOCK TABLE usage_events IN ACCESS EXCLUSIVE'
        . ' MODE; SELECT pg_sleep(1.5); COMMIT;');
    sleep 0.3;
    my @lost = map { chat('mock-small', port => $l->port)->{headers}
        {'x-request-id'} } 1 .. 6;
    is(wait_pid($hold, 10), 0, 'the lock is gone');
    my @more = map { chat('mock-small', port => $l->port)->{headers}
        {'x-request-id'} } 1 .. 3;
    is(wait_count([@lost, @more], 9, 10), 9,
        'events of a batch given up are written once it is sent again');
    is(psql('SELECT count(*) FROM usage_events WHERE request_id IN ('
        . join(',', map { sql_quote($_) } @lost, @more) . ')'), 9,
        'once each');
    like($l->error_log, qr/nexus usage: writing \d+ events failed/,
        'the failed batch is logged');
    $l->allow_errors(qr/postgres|PostgreSQL|usage|timed out/i);
    $l->stop;
}

# --- quit with events in memory ---------------------------------------------------------
my $q = nexus_nginx(gateway_conf('30s'), workers => 2);
for (1 .. 50) {
    last if chat('mock-small', port => $q->port)->{status} == 200;
    sleep 0.1;
}
@ids = map { chat('mock-small', port => $q->port)->{headers}{'x-request-id'} }
    1 .. 12;
sleep 0.3;
ok(count_ids(@ids) < 12, 'a long flush interval: events wait in memory');
my $t0 = time;
$q->stop;
ok(time - $t0 < 5, 'nginx -s quit does not wait for the interval');
is(count_ids(@ids), 12, 'nginx -s quit wrote them all');

nexus_done_testing();
