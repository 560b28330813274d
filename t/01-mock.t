#!/usr/bin/perl

# The mock LLM upstream (t/mock/server.js), spoken to directly: every
# endpoint, the deterministic content and usage, and every fault mode.

use strict;
use warnings;

use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Nexus::Test;

my $MOCK = $ENV{NEXUS_TEST_MOCK_PORT};
my $TRUE = JSON::PP::true();
my $FALSE = JSON::PP::false();

sub chat {
    my ($model, %o) = @_;
    my $body = { model => $model, messages => $o{messages} || [
        { role => 'system', content => 'be brief' },
        { role => 'user', content => $o{text} // 'hello there how are you' },
    ] };
    $body->{stream} = $TRUE if $o{stream};
    $body->{stream_options} = { include_usage => $TRUE } if $o{usage};
    $body->{max_tokens} = $o{max_tokens} if defined $o{max_tokens};
    return mock_req('POST', '/v1/chat/completions', json_body => $body,
        json => !$o{stream}, headers => $o{headers} || [],
        timeout => $o{timeout} // 10);
}

sub frames {
    my ($r) = @_;
    return map { $_ eq '[DONE]' ? $_ : (eval { json_decode($_) } // "BAD:$_") }
        sse_data($r->{body});
}

mock_reset();

# the two default delays run in the background while the rest goes on
my $slow = http_start($MOCK, 'POST', '/v1/chat/completions',
    json_body => { model => 'fault-slow',
        messages => [ { role => 'user', content => 'slow' } ] });
my $gap = http_start($MOCK, 'POST', '/v1/chat/completions',
    json_body => { model => 'fault-gap', stream => $TRUE,
        messages => [ { role => 'user', content => 'a b c' } ] });

# --- OpenAI ---------------------------------------------------------------------
my $r = mock_req('GET', '/v1/models', json => 1);
is($r->{status}, 200, 'models');
my %models = map { $_->{id} => 1 } @{ $r->{json}{data} };
ok($models{'mock-small'} && $models{'mock-large'} && $models{'mock-embed'}
    && $models{'fault-cut'}, 'model list');
is($r->{json}{object}, 'list', 'OpenAI list shape');

$r = chat('mock-small');
is($r->{status}, 200, 'chat');
is($r->{json}{choices}[0]{message}{content},
    'mock reply to: hello there how are you', 'deterministic reply');
is_deeply($r->{json}{usage}, { prompt_tokens => 7, completion_tokens => 8,
    total_tokens => 15 }, 'usage counts words');
is($r->{json}{choices}[0]{finish_reason}, 'stop', 'finish_reason stop');
like($r->{headers}{'x-mock-request-id'}, qr/^\d+$/, 'x-mock-request-id');
my $id1 = $r->{headers}{'x-mock-request-id'};
$r = chat('mock-small', text => 'one two three four five six seven eight nine');
is($r->{json}{choices}[0]{message}{content},
    'mock reply to: one two three four five six seven eight',
    'first 8 words');
ok($r->{headers}{'x-mock-request-id'} > $id1, 'request id counts up');

$r = chat('mock-small', max_tokens => 2);
is($r->{json}{choices}[0]{message}{content}, 'mock reply', 'max_tokens cuts');
is($r->{json}{choices}[0]{finish_reason}, 'length', 'finish_reason length');

$r = chat('mock-large', stream => 1, text => 'stream me');
is($r->{status}, 200, 'stream status');
like($r->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE content type');
my @f = frames($r);
is($f[0]{choices}[0]{delta}{role}, 'assistant', 'role delta first');
my @content = map { ref $_ && @{ $_->{choices} } ? $_->{choices}[0]{delta}{content} // () : () }
    @f[1 .. $#f];
is(join('', @content), 'mock reply to: stream me', 'content deltas');
is(scalar(grep { $_ ne '' } @content), 5, 'one word per chunk');
is($f[-2]{choices}[0]{finish_reason}, 'stop', 'finish chunk');
is($f[-1], '[DONE]', '[DONE] last');
ok(!grep({ ref $_ && $_->{usage} } @f), 'no usage chunk unless asked');

$r = chat('mock-small', stream => 1, usage => 1, text => 'stream me');
@f = frames($r);
is_deeply($f[-2]{choices}, [], 'usage chunk has no choices');
is_deeply($f[-2]{usage}, { prompt_tokens => 4, completion_tokens => 5,
    total_tokens => 9 }, 'usage chunk');
is($f[-1], '[DONE]', '[DONE] after usage');

$r = mock_req('POST', '/v1/embeddings', json => 1,
    json_body => { model => 'mock-embed', input => [ 'alpha beta', 'gamma' ] });
is($r->{status}, 200, 'embeddings');
is(scalar @{ $r->{json}{data} }, 2, 'one vector per input');
is(scalar @{ $r->{json}{data}[0]{embedding} }, 8, 'dimension 8');
is_deeply($r->{json}{usage}, { prompt_tokens => 3, total_tokens => 3 },
    'embedding usage');
my $r2 = mock_req('POST', '/v1/embeddings', json => 1,
    json_body => { model => 'mock-embed', input => 'alpha beta' });
is_deeply($r2->{json}{data}[0]{embedding}, $r->{json}{data}[0]{embedding},
    'embeddings are deterministic');
isnt(json_encode($r->{json}{data}[1]{embedding}),
    json_encode($r->{json}{data}[0]{embedding}), 'inputs differ');

# --- Ollama ----------------------------------------------------------------------
$r = mock_req('POST', '/api/chat', json_body => { model => 'mock-small',
    messages => [ { role => 'user', content => 'hi ollama' } ] });
is($r->{status}, 200, 'ollama chat');
like($r->{headers}{'content-type'}, qr{application/x-ndjson}, 'NDJSON');
my @l = ndjson($r->{body});
is(join('', map { $_->{message}{content} } @l), 'mock reply to: hi ollama',
    'ollama chat content');
ok(!$l[0]{done} && $l[-1]{done}, 'final line done');
is($l[-1]{prompt_eval_count}, 2, 'prompt_eval_count');
is($l[-1]{eval_count}, 5, 'eval_count');

$r = mock_req('POST', '/api/chat', json => 1, json_body => {
    model => 'mock-small', stream => $FALSE,
    messages => [ { role => 'user', content => 'hi ollama' } ] });
is($r->{json}{message}{content}, 'mock reply to: hi ollama', 'chat stream false');
ok($r->{json}{done}, 'one JSON, done');

$r = mock_req('POST', '/api/generate', json_body => { model => 'mock-small',
    prompt => 'generate this please' });
@l = ndjson($r->{body});
is(join('', map { $_->{response} } @l),
    'mock reply to: generate this please', 'generate stream');
is($l[-1]{prompt_eval_count}, 3, 'generate prompt_eval_count');

$r = mock_req('POST', '/api/generate', json => 1, json_body => {
    model => 'mock-small', prompt => 'x', stream => $FALSE });
is($r->{json}{response}, 'mock reply to: x', 'generate stream false');

$r = mock_req('GET', '/api/tags', json => 1);
ok(grep({ $_->{name} eq 'mock-small:latest' } @{ $r->{json}{models} }),
    'ollama tags');

# --- Anthropic -------------------------------------------------------------------
$r = mock_req('POST', '/v1/messages', json => 1, json_body => {
    model => 'mock-small', max_tokens => 100, system => 'sys words',
    messages => [ { role => 'user', content => 'hi claude' } ] });
is($r->{json}{content}[0]{text}, 'mock reply to: hi claude', 'messages');
is_deeply($r->{json}{usage}, { input_tokens => 4, output_tokens => 5 },
    'messages usage');

$r = mock_req('POST', '/v1/messages', json_body => {
    model => 'mock-small', max_tokens => 100, stream => $TRUE,
    messages => [ { role => 'user', content => 'hi claude' } ] });
my @events = $r->{body} =~ /^event: (\S+)/mg;
is_deeply([ grep { $_ ne 'content_block_delta' } @events ],
    [ qw(message_start content_block_start content_block_stop message_delta
        message_stop) ], 'anthropic event sequence');
is(scalar(grep { $_ eq 'content_block_delta' } @events), 5, 'text deltas');
my ($md) = grep { $_->{type} eq 'message_delta' } map { json_decode($_) }
    sse_data($r->{body});
is($md->{usage}{output_tokens}, 5, 'message_delta usage');

# --- faults ----------------------------------------------------------------------
$r = chat('fault-500');
is($r->{status}, 500, 'fault-500');
ok($r->{json}{error}{message}, 'error body');

$r = chat('fault-429');
is($r->{status}, 429, 'fault-429');
is($r->{headers}{'retry-after'}, '1', 'Retry-After');

$r = mock_req('POST', '/v1/messages', json => 1, json_body => {
    model => 'fault-429', max_tokens => 5,
    messages => [ { role => 'user', content => 'x' } ] });
is($r->{json}{error}{type}, 'rate_limit_error', 'anthropic error shape');

$r = chat('fault-slow', headers => [ 'X-Mock-Delay-Ms' => 300 ]);
ok($r->{ttfb} >= 0.29, 'x-mock-delay-ms delays the first byte');
is($r->{status}, 200, 'slow answers');

$r = chat('fault-stall', stream => 1, timeout => 0.5);
ok($r->{timeout}, 'stall: client times out');
is(scalar(sse_data($r->{body})), 1, 'stall: exactly one frame');

$r = chat('fault-stall', timeout => 0.5);
ok($r->{timeout} && $r->{incomplete}, 'stall (non-stream): partial body');

$r = chat('fault-cut', stream => 1);
ok($r->{incomplete}, 'cut: stream ends without the last chunk');
is(scalar(sse_data($r->{body})), 2, 'cut: two frames');

$r = chat('fault-cut');
ok($r->{incomplete}, 'cut (non-stream): short body');

$r = mock_req('POST', '/api/chat', json_body => { model => 'fault-cut',
    messages => [ { role => 'user', content => 'a b c d' } ] });
ok($r->{incomplete}, 'cut: NDJSON');

$r = chat('fault-malformed', stream => 1);
@f = frames($r);
is(scalar(grep { !ref $_ && /^BAD:/ } @f), 1, 'malformed: one non-JSON data line');
is($f[-1], '[DONE]', 'malformed: stream otherwise complete');

$r = chat('fault-malformed');
ok($r->{json_error}, 'malformed (non-stream): body is not JSON');

$r = chat('fault-gap', stream => 1, headers => [ 'X-Mock-Gap-Ms' => 400 ]);
ok($r->{elapsed} >= 0.39, 'gap: x-mock-gap-ms');

$r = chat('mock/fault-500');
is($r->{status}, 500, 'fault after a provider prefix');

$r = chat('mock-small', headers => [ 'X-Mock-Status' => 503 ]);
is($r->{status}, 503, 'x-mock-status');
is($r->{headers}{'retry-after'}, '1', '503 has Retry-After');

$r = chat('missing-model');
is($r->{status}, 404, 'missing- model: 404');

# --- robustness ------------------------------------------------------------------
$r = mock_req('POST', '/v1/chat/completions', body => '{"model": bad',
    headers => [ 'Content-Type' => 'application/json' ], json => 1);
is($r->{status}, 400, 'malformed JSON: 400');
like($r->{json}{error}{message}, qr/JSON/, 'malformed JSON: error body');
is(mock_req('POST', '/v1/chat/completions', json_body => {})->{status}, 400,
    'no model: 400');
is(mock_req('POST', '/v1/chat/completions', body => "\0\xff\xfe")->{status},
    400, 'binary body: 400');
is(mock_req('GET', '/nope')->{status}, 404, 'unknown path: 404');
is(mock_req('GET', '/v1/chat/completions')->{status}, 405, 'wrong method: 405');

# keep-alive: two requests on one connection
my $conns = mock_stats()->{connections};
my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$MOCK") or die $!;
my $req = "GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n";
print $s $req . $req;
my $buf = '';
my $deadline = time + 5;
while (time < $deadline && (() = $buf =~ m{HTTP/1.1 200}g) < 2) {
    last unless sysread($s, $buf, 65536, length $buf);
}
close $s;
is(scalar(() = $buf =~ m{HTTP/1.1 200}g), 2, 'keep-alive: two responses');
is(mock_stats()->{connections} - $conns, 1 + 1, 'keep-alive: one connection'
    . ' (plus the stats one)');

# a client abort is counted
my $before = mock_stats()->{aborted};
my $h = http_start($MOCK, 'POST', '/v1/chat/completions', json_body => {
    model => 'fault-stall', stream => $TRUE,
    messages => [ { role => 'user', content => 'x' } ] });
http_read_until($h, qr/data: /, 5);
http_abort($h);
my $aborted = $before;
for (1 .. 50) {
    $aborted = mock_stats()->{aborted};
    last if $aborted > $before;
    sleep 0.05;
}
is($aborted, $before + 1, 'abort counted');

# --- control ---------------------------------------------------------------------
mock_req('POST', '/v1/chat/completions', bearer => 'sk-upstream',
    json_body => { model => 'mock-small',
        messages => [ { role => 'user', content => 'recorded' } ] });
$r = mock_req('GET', '/__mock/requests', json => 1);
my $last = $r->{json}{requests}[-1];
is($last->{headers}{authorization}, 'Bearer sk-upstream',
    'requests: headers recorded');
like($last->{body}, qr/recorded/, 'requests: body recorded');

my $st = mock_stats();
ok($st->{by_path}{'/v1/chat/completions'} > 10, 'stats by path');
ok($st->{by_fault}{cut} >= 2, 'stats by fault');
mock_reset();
$st = mock_stats();
is($st->{total}, 0, 'reset clears the counters');

# --- the background ones ---------------------------------------------------------
$r = http_finish($slow);
is($r->{status}, 200, 'fault-slow answers');
ok($r->{ttfb} >= 1.9, 'fault-slow: first byte after 2 s');
$r = http_finish($gap);
is(join('', map { $_->{choices}[0]{delta}{content} // '' }
    grep { ref $_ && @{ $_->{choices} } } frames($r)),
    'mock reply to: a b c', 'fault-gap: complete stream');
ok($r->{elapsed} >= 2.9, 'fault-gap: 3 s pause');

nexus_done_testing();
