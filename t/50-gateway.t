#!/usr/bin/perl

# The OpenAI-compatible gateway against the mock: chat (stream and not),
# embeddings, models, Ollama and Anthropic translation, the Ollama-native
# endpoints, failover and its headers, broken upstreams and clients,
# validation, and the 403 that does not tell a hidden model from a
# missing one.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $TRUE = JSON::PP::true();

my $keyfile = "$ENV{NEXUS_TEST_TMP}/gateway-mock.key";
open my $kf, '>', $keyfile or die "$keyfile: $!";
print $kf "sk-mock-secret\n";
close $kf;

my $t = nexus_nginx(nexus_conf(
    extra => <<"EOF",
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_discovery interval=500ms;
    nexus_provider mock type=openai upstream=mock_up key_file=$keyfile;
    nexus_provider llama type=ollama upstream=mock_up discovery=off;
    nexus_provider claude type=anthropic upstream=mock_up discovery=off;
    nexus_provider dead type=openai upstream=127.0.0.1:1 fallback=mock
                   discovery=off;
    nexus_provider p500 type=openai upstream=mock_up fallback=mock
                   discovery=off;
    nexus_provider pcut type=openai upstream=mock_up fallback=mock
                   discovery=off;
    nexus_provider azure type=openai upstream=mock_up key_file=$keyfile
                   azure_api_version=2024-06-01;
    nexus_model ollama-small llama model=mock-small;
    nexus_model azure-gpt azure model=gpt4-deploy;
    nexus_model claude-small claude model=mock-small;
    nexus_model via-dead dead model=mock-small;
    nexus_model flaky p500 model=fault-500;
    nexus_model cut-once pcut model=fault-cut;
    client_body_buffer_size 1k;
    client_max_body_size 64k;
EOF
    locations => 'location /api/ { nexus_api; }',
));

my $tenant = make_tenant('gw');
psql("UPDATE tenants SET allow_all_models = true WHERE name = '$tenant'");
my $key = make_key($tenant);

my $narrow = make_tenant('gwnarrow');
psql("UPDATE tenants SET allowed_models = '{mock-small}'"
    . " WHERE name = '$narrow'");
my $nkey = make_key($narrow);

my $port = $t->port;

sub chat {
    my ($model, %o) = @_;
    my $body = { model => $model, messages => $o{messages} || [
        { role => 'system', content => 'be brief' },
        { role => 'user', content => $o{text} // 'hello there how are you' },
    ] };
    $body->{stream} = $TRUE if $o{stream};
    $body->{stream_options} = { include_usage => $TRUE } if $o{usage};
    $body->{max_tokens} = $o{max_tokens} if defined $o{max_tokens};
    return http_req($port, 'POST', $o{path} // '/v1/chat/completions',
        bearer => $o{key} // $key, json_body => $body,
        json => !$o{stream}, timeout => $o{timeout} // 15);
}

sub frames {
    my ($r) = @_;
    return map { $_ eq '[DONE]' ? $_ : (eval { json_decode($_) } // "BAD:$_") }
        sse_data($r->{body});
}

# --- discovery and /v1/models --------------------------------------------------
my $models;
for (1 .. 50) {
    $models = http_req($port, 'GET', '/v1/models', bearer => $key, json => 1);
    last if ($models->{status} // 0) == 200
        && grep { $_->{id} eq 'mock-large' } @{ $models->{json}{data} || [] };
    sleep 0.1;
}
is($models->{status}, 200, 'models');
is($models->{json}{object}, 'list', 'OpenAI list shape');
my %ids = map { $_->{id} => 1 } @{ $models->{json}{data} };
ok($ids{'mock-large'} && $ids{'mock-small'}, 'discovered models listed');
ok($ids{'ollama-small'} && $ids{'claude-small'}, 'aliases listed');

my $nm = http_req($port, 'GET', '/v1/models', bearer => $nkey, json => 1);
is_deeply([ map { $_->{id} } @{ $nm->{json}{data} } ], ['mock-small'],
    'an allowlisted tenant sees its effective set only');

# --- chat, not streamed --------------------------------------------------------
mock_reset();
my $r = chat('mock-small');
is($r->{status}, 200, 'chat');
is($r->{json}{choices}[0]{message}{content},
    'mock reply to: hello there how are you', 'reply passed through');
is_deeply($r->{json}{usage}, { prompt_tokens => 7, completion_tokens => 8,
    total_tokens => 15 }, 'usage');
is($r->{headers}{'x-nexus-provider'}, 'mock', 'x-nexus-provider');
is($r->{headers}{'x-nexus-attempt'}, 1, 'x-nexus-attempt');
like($r->{headers}{'x-nexus-latency-ms'}, qr/^\d+$/, 'x-nexus-latency-ms');
like($r->{headers}{'content-type'}, qr{^application/json}, 'json');
ok(defined $r->{headers}{'content-length'}, 'with its length');
ok($r->{headers}{'x-request-id'}, 'request id');

my $seen = mock_req('GET', '/__mock/requests', json => 1)->{json}{requests};
my $last = $seen->[-1];
is($last->{headers}{authorization}, 'Bearer sk-mock-secret',
    'the provider key is sent upstream');
isnt($last->{headers}{authorization}, "Bearer $key",
    'the client key is not');

# --- chat, streamed ------------------------------------------------------------
$r = chat('mock-small', stream => 1);
is($r->{status}, 200, 'stream');
like($r->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE');
my @f = frames($r);
is($f[-1], '[DONE]', 'ends with [DONE]');
is($f[0]{choices}[0]{delta}{role}, 'assistant', 'role first');
is(join('', map { ref $_ ? ($_->{choices}[0]{delta}{content} // '') : '' }
        @f), 'mock reply to: hello there how are you', 'content in order');
ok(!(grep { ref $_ && $_->{usage} && !@{ $_->{choices} } } @f),
    'no usage chunk when the client did not ask');
like($r->{body}, qr/\Adata: \{.*\}\n\n/s, 'data: {json} framing');
$seen = mock_req('GET', '/__mock/requests', json => 1)->{json}{requests};
is(json_decode($seen->[-1]{body})->{stream_options}{include_usage}, 1,
    'usage asked upstream');

$r = chat('mock-small', stream => 1, usage => 1);
@f = frames($r);
my ($u) = grep { ref $_ && $_->{usage} && !@{ $_->{choices} } } @f;
is($u->{usage}{total_tokens}, 15, 'usage chunk when asked');

# --- embeddings ----------------------------------------------------------------
$r = http_req($port, 'POST', '/v1/embeddings', bearer => $key,
    json_body => { model => 'mock-embed', input => ['one two', 'three'] },
    json => 1);
is($r->{status}, 200, 'embeddings');
is(scalar @{ $r->{json}{data} }, 2, 'two vectors');

# --- Ollama translation --------------------------------------------------------
$r = chat('ollama-small');
is($r->{status}, 200, 'ollama chat');
is($r->{json}{object}, 'chat.completion', 'translated to OpenAI');
is($r->{json}{choices}[0]{message}{content},
    'mock reply to: hello there how are you', 'ollama content');
is($r->{json}{usage}{total_tokens}, 15, 'ollama usage');
is($r->{headers}{'x-nexus-provider'}, 'llama', 'served by ollama');

$r = chat('ollama-small', stream => 1, usage => 1);
@f = frames($r);
is($f[-1], '[DONE]', 'ollama stream ends with [DONE]');
is(join('', map { ref $_ && @{ $_->{choices} || [] }
        ? ($_->{choices}[0]{delta}{content} // '') : '' } @f),
    'mock reply to: hello there how are you', 'ollama NDJSON into SSE');
($u) = grep { ref $_ && $_->{usage} && !@{ $_->{choices} } } @f;
is($u->{usage}{total_tokens}, 15, 'ollama stream usage');

# --- Anthropic translation -----------------------------------------------------
$r = chat('claude-small');
is($r->{status}, 200, 'anthropic chat');
is($r->{json}{choices}[0]{message}{content},
    'mock reply to: hello there how are you', 'anthropic content');
is($r->{json}{usage}{prompt_tokens}, 7, 'anthropic usage');

$r = chat('claude-small', stream => 1, usage => 1);
@f = frames($r);
is($f[-1], '[DONE]', 'anthropic stream ends with [DONE]');
is(join('', map { ref $_ && @{ $_->{choices} || [] }
        ? ($_->{choices}[0]{delta}{content} // '') : '' } @f),
    'mock reply to: hello there how are you', 'anthropic events into SSE');
($u) = grep { ref $_ && $_->{usage} && !@{ $_->{choices} } } @f;
is($u->{usage}{completion_tokens}, 8, 'anthropic stream usage');

# --- Ollama-native endpoints ---------------------------------------------------
$r = http_req($port, 'POST', '/api/chat', bearer => $key,
    json_body => { model => 'ollama-small',
        messages => [ { role => 'user', content => 'hi' } ] });
is($r->{status}, 200, '/api/chat');
my @l = ndjson($r->{body});
ok(@l > 2 && $l[-1]{done}, 'NDJSON passed through');
like($r->{headers}{'content-type'}, qr{ndjson}, 'NDJSON type');

$r = http_req($port, 'POST', '/api/generate', bearer => $key,
    json_body => { model => 'ollama-small', prompt => 'hi', stream => \0 },
    json => 1);
is($r->{status}, 200, '/api/generate');
ok($r->{json}{done}, 'one object when not streamed');

$r = http_req($port, 'GET', '/api/tags', bearer => $key, json => 1);
is($r->{status}, 200, '/api/tags');
ok((grep { $_->{name} eq 'mock-small' } @{ $r->{json}{models} }),
    'tags list');

for my $p ('/api/pull', '/api/delete', '/api/push') {
    $r = http_req($port, 'POST', $p, bearer => $key,
        json_body => { model => 'mock-small' }, json => 1);
    is($r->{status}, 403, "$p refused");
}

# a request the provider type cannot take is the client's to change
$r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { model => 'ollama-small',
        messages => [ { role => 'user', content => 'hi' } ],
        tools => [ { type => 'function',
            function => { name => 'f', parameters => {} } } ] },
    json => 1);
is($r->{status}, 400, 'tools to an Ollama-only model: 400');
is($r->{json}{error}{type}, 'invalid_request_error', 'said why');

# --- Azure-style deployments -----------------------------------------------------
mock_reset();
$r = chat('azure-gpt');
$seen = mock_req('GET', '/__mock/requests', json => 1)->{json}{requests};
($last) = grep { $_->{path} =~ m{^/openai/} } @$seen;
is($last->{path},
    '/openai/deployments/gpt4-deploy/chat/completions?api-version=2024-06-01',
    'Azure deployment path');
is($last->{headers}{'api-key'}, 'sk-mock-secret', 'Azure api-key header');
ok(!defined $last->{headers}{authorization}, 'and no bearer');
is($r->{status}, 404, 'the provider\'s answer passed on');
ok($r->{json}{error}{message}, 'in OpenAI shape');

# --- failover ------------------------------------------------------------------
$r = chat('via-dead');
is($r->{status}, 200, 'connect error fails over');
is($r->{headers}{'x-nexus-provider'}, 'mock', 'to the fallback');
is($r->{headers}{'x-nexus-attempt'}, 2, 'second attempt');

mock_reset();
$r = chat('flaky');
is($r->{status}, 200, '500 fails over');
is($r->{headers}{'x-nexus-provider'}, 'mock', 'to the healthy provider');
is($r->{headers}{'x-nexus-attempt'}, 2, 'on the second attempt');
is(mock_stats()->{by_fault}{500}, 1, 'the 500 was tried once');

# no retry once the first byte is out
mock_reset();
$r = chat('cut-once', stream => 1);
is($r->{status}, 200, 'cut stream started');
@f = frames($r);
my ($err) = grep { ref $_ && $_->{error} } @f;
ok($err, 'a cut stream ends in an error event');
is($err->{error}{code}, 'upstream_truncated', 'truncated');
is(mock_stats()->{by_path}{'/v1/chat/completions'}, 1,
    'no retry after the first byte');

# --- broken upstreams ----------------------------------------------------------
$r = chat('fault-malformed', stream => 1);
@f = frames($r);
($err) = grep { ref $_ && $_->{error} } @f;
ok($err, 'a malformed line ends in an error event');

$r = chat('fault-cut');
is($r->{status}, 502, 'a cut body is a 502');
is($r->{json}{error}{type}, 'upstream_error', 'in OpenAI shape');

$r = chat('fault-malformed');
is($r->{status}, 502, 'a non-JSON body is a 502');

# a provider error after the last attempt: its status, OpenAI's shape
$r = chat('fault-429');
is($r->{status}, 429, 'the provider 429 after the last attempt');
ok($r->{json}{error}{message}, 'error shape');

# --- timing: events are not held back -----------------------------------------
my $t0 = time;
my $h = http_start($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { model => 'fault-gap', stream => $TRUE,
        messages => [ { role => 'user', content => 'a b c' } ] },
    timeout => 15);
my $got = http_read_until($h, qr/"content"/, 10);
my $first = time - $t0;
$r = http_finish($h);
my $total = time - $t0;
like($got, qr/"content"/, 'first event before the gap');
ok($first < 2.5, 'first token before the mock\'s 3 s gap');
ok($total >= 2.5, 'the rest after it');

# --- a client that leaves closes the upstream ----------------------------------
mock_reset();
$h = http_start($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { model => 'fault-stall', stream => $TRUE,
        messages => [ { role => 'user', content => 'stall' } ] });
http_read_until($h, qr/data:/, 10);
http_abort($h);
my $st;
for (1 .. 20) {
    $st = mock_stats();
    last if $st->{open} == 0;
    sleep 0.1;
}
is($st->{open}, 0, 'upstream closed within 2 s of the client leaving');
is($st->{aborted}, 1, 'the mock saw the abort');

# --- validation ----------------------------------------------------------------
$r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    body => '{"model": "mock-small", "messages": [', json => 1,
    headers => [ 'Content-Type' => 'application/json' ]);
is($r->{status}, 400, 'invalid JSON');
ok(exists $r->{json}{error}{param} && exists $r->{json}{error}{code}
    && $r->{json}{error}{type}, 'OpenAI error shape');

$r = chat('mock-small', messages => []);
is($r->{status}, 400, 'empty messages');
is($r->{json}{error}{param}, 'messages', 'param named');

$r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { messages => [ { role => 'user', content => 'x' } ] },
    json => 1);
is($r->{status}, 400, 'missing model');
is($r->{json}{error}{param}, 'model', 'model named');

$r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { model => 'mock-small', messages => 'hello' }, json => 1);
is($r->{status}, 400, 'messages of the wrong type');

$r = http_req($port, 'POST', '/v1/chat/completions', bearer => $key,
    json_body => { model => 'mock-small',
        messages => [ { role => 'user', content => 'x' x 70000 } ] },
    json => 1);
is($r->{status}, 413, 'a body over the limit');
ok($r->{json}{error}{message}, 'in JSON');

# a body nginx keeps in a temp file (over client_body_buffer_size 1k)
$r = chat('mock-small', text => join(' ', ('word') x 2000));
is($r->{status}, 200, 'a body from a temp file');
is($r->{json}{usage}{prompt_tokens}, 2002, 'read whole');

# --- no enumeration ------------------------------------------------------------
my $hidden = chat('mock-large', key => $nkey);
my $missing = chat('missing-model-xyz', key => $nkey);
my $bogus = chat('no-such-model', key => $key);
is($hidden->{status}, 403, 'a model outside the set: 403');
is($missing->{status}, 403, 'a model that does not exist: 403');
is($hidden->{body}, $missing->{body}, 'byte-identical bodies');
is($bogus->{body}, $hidden->{body}, 'for every tenant');
is(chat('mock-small', key => $nkey)->{status}, 200,
    'the allowlisted model works');

# --- scopes ----------------------------------------------------------------------
my $ekey = make_key($tenant, scopes => 'embeddings');
$r = chat('mock-small', key => $ekey);
is($r->{status}, 403, 'chat needs the chat scope');

nexus_done_testing();
