#!/usr/bin/perl

# The PII guard: request bodies are scanned before the upstream sees them.
# block answers 403 POLICY_DENIED naming the kinds, never the values;
# redact masks the values in place (same length, valid JSON) and the
# upstream receives the masked body; log passes and logs only the kinds.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $proxy = 'proxy_set_header Authorization ""; proxy_pass http://%%MOCK%%/;';
my $t = nexus_nginx(nexus_conf(locations => <<"EOF"), log_level => 'info');
        location /block/  { nexus_auth on; nexus_pii_guard block; $proxy }
        location /redact/ { nexus_auth on; nexus_pii_guard redact;
                            nexus_rate_limit on; $proxy }
        location /log/    { nexus_auth on; nexus_pii_guard log email; $proxy }
EOF

nexus_plan(16);

my $key = make_key(make_tenant('pii'));

my $card = '4111 1111 1111 1111';
my $ssn = '123-45-6789';
my $email = 'jane.doe@example.com';

sub chat {
    my ($path, $text) = @_;
    return http_req($t->port, 'POST', "$path/v1/chat/completions",
        bearer => $key, json => 1,
        json_body => { model => 'mock-small',
                       messages => [{ role => 'user', content => $text }] });
}

sub last_upstream_body {
    my $r = mock_req('GET', '/__mock/requests', json => 1);
    my @q = grep { $_->{path} =~ m{/v1/chat/completions} }
        @{ $r->{json}{requests} };
    return @q ? $q[-1]{body} : '';
}

# --- block --------------------------------------------------------------------------
mock_reset();
my $r = chat('/block', "my card is $card, thanks");
is($r->{status}, 403, 'a card number is blocked');
is($r->{json}{error}{code}, 'POLICY_DENIED', 'POLICY_DENIED');
is_deeply($r->{json}{error}{details}, { policy => 'pii_guard', kinds => ['card'] },
    'names the policy and the kind');
unlike($r->{body}, qr/4111/, 'the value is not echoed');
is(mock_stats()->{paths}{'/v1/chat/completions'} // 0, 0,
    'the upstream never saw it');
is(chat('/block', 'nothing personal here, order 12345')->{status}, 200,
    'a clean body passes');

# --- redact -------------------------------------------------------------------------
$r = chat('/redact', "ssn $ssn mail $email");
is($r->{status}, 200, 'redacted and passed on');
my $seen = last_upstream_body();
unlike($seen, qr/123-45-6789|jane\.doe/, 'the upstream got no value');
like($seen, qr/\*\*\*-\*\*-\*\*\*\*/, 'the SSN masked in place');
like($seen, qr/\*+\.\*+\@\*+\.\*+/, 'the email masked in place');
ok(eval { json_decode($seen); 1 }, 'the masked body is still valid JSON');
is(scalar @{ $r->{headers_all}{'x-ratelimit-limit'} }, 1,
    'limit headers added once although the phase ran again');

# --- log ----------------------------------------------------------------------------
my $mark = $t->log_mark;
is(chat('/log', "write to $email")->{status}, 200, 'log mode passes');
my $log = $t->error_log($mark);
like($log, qr/nexus pii guard: .*"email"/, 'the kind is logged');
unlike($log, qr/jane/, 'the value is not');

# --- too large to check -------------------------------------------------------------
$r = http_req($t->port, 'POST', '/block/v1/chat/completions', bearer => $key,
    body => '{"x":"' . ('a' x (1100 * 1024)) . '"}',
    headers => ['Content-Type' => 'application/json']);
ok($r->{status} == 413, "a body over 1 MiB is refused, not passed unchecked ($r->{status})");
