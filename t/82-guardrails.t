#!/usr/bin/perl

# Request guardrails per tenant (tenants.guardrails, nexusctl
# set-guardrails): personal data blocked, redacted or logged, a prompt
# size cap and a max_tokens cap, on chat and embeddings, before any
# provider sees the body. Another tenant is unaffected, a change applies
# without a reload (NOTIFY), and no refusal echoes a value.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $t = nexus_nginx(nexus_conf(extra => <<'EOF'), log_level => 'info');
    upstream mock_up { server %%MOCK%%; keepalive 8; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model m mock model=mock-small;
    nexus_model e mock model=mock-embed;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
EOF

for (1 .. 100) {
    last if (http_req($t->port, 'GET', '/readyz')->{status} // 0) == 200;
    sleep 0.05;
}

nexus_plan(51);

my $acme = make_tenant('guard', models => '*');
my $other = make_tenant('free', models => '*');
my $key = make_key($acme);
my $okey = make_key($other);
my $acme_id = psql('SELECT id FROM tenants WHERE name = ' . sql_quote($acme));

my $card = '4111-1111 1111-1111';
my $ssn = '123-45-6789';
my $email = 'jane.doe@example.com';

sub chat {
    my ($k, $text, %extra) = @_;
    return http_req($t->port, 'POST', '/v1/chat/completions', bearer => $k,
        json => 1, json_body => { model => 'm', %extra,
            messages => [{ role => 'user', content => $text }] });
}

sub embed {
    my ($k, $text) = @_;
    return http_req($t->port, 'POST', '/v1/embeddings', bearer => $k,
        json => 1, json_body => { model => 'e', input => $text });
}

# the body of the last request the mock received on a path like $path
sub upstream {
    my ($path) = @_;
    my $r = mock_req('GET', '/__mock/requests', json => 1);
    my @q = grep { $_->{path} =~ m{\Q$path\E} } @{ $r->{json}{requests} };
    return @q ? $q[-1]{body} : '';
}

sub guard {
    my ($code, $out, $err) = nexusctl('set-guardrails', '--tenant', $acme,
        @_);
    die "set-guardrails: $err" if $code;
    return $out;
}

# until $check->() holds: a change reaches the key cache by NOTIFY, well
# before the 60 s nexus_key_cache_ttl
sub eventually {
    my ($check) = @_;
    my $deadline = time + 3;
    while (time < $deadline) {
        return 1 if $check->();
        sleep 0.05;
    }
    return 0;
}

sub details { return $_[0]{json}{error}{details} }

# --- the CLI and the column ---------------------------------------------------------
my ($code, $out, $err) = nexusctl('show-guardrails', '--tenant', $acme);
is($out, "guardrails of tenant $acme: none\n", 'none by default');

# a first request caches the key before any guardrail exists
is(chat($key, "card $card")->{status}, 200, 'no guardrail: passes');

like(guard('--pii-mode', 'block', '--pii-kinds', 'card,ssn'),
    qr/pii_mode=block pii_kinds=card,ssn max_prompt_bytes=none/,
    'set-guardrails prints the result');

($code) = nexusctl('set-guardrails', '--tenant', $acme, '--pii-mode',
    'maybe');
is($code, 2, 'an unknown mode is a usage error');
($code) = nexusctl('set-guardrails', '--tenant', $acme, '--pii-kinds',
    'card,passport');
is($code, 2, 'an unknown kind is a usage error');
ok(!eval { psql("UPDATE tenants SET guardrails = '{\"pii\":{\"mode\":\"x\"}}'"
    . " WHERE id = $acme_id"); 1 }, 'the column refuses an invalid document');

# --- block --------------------------------------------------------------------------
ok(eventually(sub { chat($key, "card $card")->{status} == 403 }),
    'block applies without a reload');
mock_reset();
my $r = chat($key, "my card is $card, thanks");
is($r->{status}, 403, 'a card with spaces and dashes is blocked');
is($r->{json}{error}{code}, 'POLICY_DENIED', 'POLICY_DENIED');
is_deeply(details($r), { policy => 'pii', kinds => ['card'],
    action => 'block' }, 'names the policy and the kind');
unlike($r->{body}, qr/4111/, 'the value is not echoed');
$r = chat($key, 'card 4111111111111111 and ssn 123 45 6789');
is_deeply(details($r)->{kinds}, ['card', 'ssn'], 'every kind found is named');
is(embed($key, "ssn $ssn")->{status}, 403, 'embeddings input is checked too');
is(upstream('/v1/'), '', 'no provider saw any of them');
is(chat($key, "mail $email, order 4111111111111112")->{status}, 200,
    'a kind not chosen and a number failing Luhn pass');
is(chat($okey, "card $card")->{status}, 200, 'another tenant is unaffected');

my $where = "tenant_id = $acme_id AND event_type = 'policy.pii_detected'";
ok(eventually(sub { psql("SELECT count(*) FROM audit_events WHERE $where")
    >= 4 }), 'each detection is audited');
like(psql("SELECT metadata FROM audit_events WHERE $where"
    . ' ORDER BY id LIMIT 1'),
    qr/"policy":"pii","kinds":\["card"\],"action":"block"/,
    'the audit event names the kinds and the action');
unlike(psql("SELECT string_agg(metadata::text, '') FROM audit_events"
    . " WHERE $where"), qr/4111|6789/, 'and never a value');

# --- redact -------------------------------------------------------------------------
guard('--pii-mode', 'redact', '--pii-kinds', 'card,ssn,email');
ok(eventually(sub { chat($key, "x $ssn")->{status} == 200 }),
    'redact applies without a reload');
mock_reset();
$r = chat($key, "card $card ssn $ssn mail $email");
is($r->{status}, 200, 'redacted and passed on');
my $seen = upstream('/v1/chat/completions');
unlike($seen, qr/4111|6789|jane/, 'the provider got no value');
like($seen, qr/\*\*\*\*-\*\*\*\* \*\*\*\*-\*\*\*\*/,
    'the card masked in place, separators kept');
like($seen, qr/\*\*\*-\*\*-\*\*\*\*/, 'the SSN masked in place');
like($seen, qr/\*+\.\*+\@\*+\.\*+/, 'the email masked in place');
ok(eval { json_decode($seen); 1 }, 'the provider body is valid JSON');
is(embed($key, "ssn $ssn")->{status}, 200, 'embeddings redacted');
$seen = upstream('/v1/embeddings');
like($seen, qr/\*\*\*-\*\*-\*\*\*\*/, 'embeddings input masked');
unlike($seen, qr/6789/, 'without the value');
chat($okey, "ssn $ssn");
like(upstream('/v1/chat/completions'), qr/123-45-6789/,
    'another tenant is not redacted');

# --- log ----------------------------------------------------------------------------
guard('--pii-mode', 'log');
ok(eventually(sub {
    chat($key, "ssn $ssn");
    upstream('/v1/chat/completions') =~ /123-45-6789/ }),
    'log applies without a reload, and passes the value on');
my $mark = $t->log_mark;
is(chat($key, "mail $email")->{status}, 200, 'log mode passes');
my $log = $t->error_log($mark);
like($log, qr/nexus guardrails: .*"email".*"action":"log"/,
    'the kind is logged');
unlike($log, qr/jane/, 'the value is not');
ok(eventually(sub { psql("SELECT count(*) FROM audit_events WHERE $where"
    . " AND metadata ->> 'action' = 'log'") >= 1 }),
    'policy.pii_detected audited with action log');

# --- max_prompt_bytes ---------------------------------------------------------------
guard('--pii-mode', 'off', '--max-prompt-bytes', '300');
is(psql("SELECT guardrails::text FROM tenants WHERE id = $acme_id"),
    '{"max_prompt_bytes": 300}', 'pii off removes the pii guardrail');
my $big = 'lorem ipsum ' x 40;
ok(eventually(sub { chat($key, $big)->{status} == 403 }),
    'the size cap applies without a reload');
$r = chat($key, $big);
is_deeply(details($r), { policy => 'max_prompt_size', limit => 300 },
    'a body over the cap: max_prompt_size');
unlike($r->{body}, qr/lorem/, 'no content echoed');
is(embed($key, $big)->{status}, 403, 'embeddings capped too');
is(chat($key, 'short')->{status}, 200, 'a body under the cap passes');
is(chat($okey, $big)->{status}, 200, 'another tenant is unaffected');

# --- max_tokens ---------------------------------------------------------------------
guard('--max-tokens', '50');
ok(eventually(sub { chat($key, 'hi', max_tokens => 100)->{status} == 403 }),
    'the token cap applies without a reload');
$r = chat($key, 'hi', max_tokens => 100);
is_deeply(details($r), { policy => 'max_tokens', limit => 50 },
    'asking for more than the cap: max_tokens');
mock_reset();
is(chat($key, 'hi', max_tokens => 20)->{status}, 200, 'under the cap passes');
is(json_decode(upstream('/v1/chat/completions'))->{max_tokens}, 20,
    'as asked');
is(chat($key, 'hi')->{status}, 200, 'no max_tokens passes');
is(json_decode(upstream('/v1/chat/completions'))->{max_tokens}, 50,
    'with the cap');
is(chat($okey, 'hi', max_tokens => 100)->{status}, 200,
    'another tenant is unaffected');

# --- clear --------------------------------------------------------------------------
($code, $out) = nexusctl('set-guardrails', '--tenant', $acme, '--clear');
is($out, "guardrails of tenant $acme: cleared\n", 'cleared');
ok(eventually(sub { chat($key, $big, max_tokens => 100)->{status} == 200 }),
    'nothing applies once cleared');
