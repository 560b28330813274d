#!/usr/bin/perl

# Budgets and prices over the admin API: a tenant's cost budget
# (/v1/admin/costs/budget), a key's token budget
# (/v1/admin/api-keys/{id}/budget) and the pricing catalog
# (/v1/admin/costs/pricing/catalog).  What they accept and refuse (400
# VALIDATION_ERROR with the field), who may call what (a tenant admin its
# own tenant only, another tenant's answered exactly as one that does not
# exist; the catalog and unpriced models are a platform admin's; readers
# and editors get 403), idempotent replays, audit events, nexusctl
# showing what the API wrote, PostgreSQL down (503), and every change
# reaching both nodes' gateway calls without a reload.  The mock counts
# words: "one ... ten" is 10 prompt tokens and its reply 11; at $1/$2 per
# 1K tokens that is $0.032.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use POSIX qw(strftime);
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(
    extra => <<'EOF',
    upstream mock_up { server %%MOCK%%; keepalive 16; }
    nexus_provider mock type=openai upstream=mock_up discovery=off;
    nexus_model ba-m mock model=mock-small;
    nexus_model ba-cheap mock model=mock-small;
    nexus_token_ceiling 100;
    nexus_usage_flush 100ms;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
EOF
);
my $n1 = nexus_nginx($conf, workers => 2);
my $n2 = nexus_nginx($conf);

nexus_plan(131);

# --- helpers ------------------------------------------------------------------------

sub code {
    my ($r) = @_;
    return ($r->{json} && ref $r->{json} eq 'HASH' && $r->{json}{error})
        ? $r->{json}{error}{code} // '' : '';
}

sub field {
    my ($r) = @_;
    return code($r) ? $r->{json}{error}{details}{field} // '' : '';
}

sub req {
    my ($method, $path, $k, $body, %o) = @_;
    return http_req(($o{node} // $n1)->port, $method, $path, json => 1,
        defined $k ? (bearer => $k) : (),
        defined $body ? (ref $body ? (json_body => $body)
                                   : (body => $body)) : (),
        $o{headers} ? (headers => $o{headers}) : ());
}

sub data { return $_[0]{json} ? $_[0]{json}{data} : undef }

sub ctl {
    my ($code, $out, $err) = nexusctl(@_);
    die "nexusctl @_: $err" if $code;
    return $out;
}

sub chat {
    my ($node, $key, %o) = @_;
    return http_req($node->port, 'POST', '/v1/chat/completions',
        bearer => $key, json => 1, timeout => 15,
        json_body => { model => $o{model} // 'ba-m',
            max_tokens => $o{max_tokens} // 20,
            messages => [ { role => 'user', content => 'one two three four'
                . ' five six seven eight nine ten' } ] });
}

# until $cond holds on every worker of both nodes (a few calls each)
sub on_both_nodes {
    my ($cond) = @_;
    my $deadline = time + 5;
    for my $node ($n1, $n2) {
        my $ok = 0;
        while (time < $deadline) {
            $ok = 1;
            for (1 .. 4) {
                $ok = 0, last unless $cond->($node);
            }
            last if $ok;
            sleep 0.05;
        }
        return 0 unless $ok;
    }
    return 1;
}

# two error answers are the same but for their request ids
sub same_error {
    my ($a, $b) = @_;
    return $a->{status} == $b->{status}
        && json_encode($a->{json}{error}) eq json_encode($b->{json}{error});
}

my $ops = make_tenant('ba-ops', platform => 1);
my $padmin = make_key($ops, name => 'ops', role => 'admin');
my $ta = make_tenant('ba-a', models => '*');
my $admin_a = make_key($ta, name => 'admin', role => 'admin');
my $reader_a = make_key($ta, name => 'reader', role => 'reader');
my $editor_a = make_key($ta, name => 'editor', role => 'editor');
my $key_a = make_key($ta, name => 'calls');
my $tb = make_tenant('ba-b', models => '*');
my $admin_b = make_key($tb, name => 'admin', role => 'admin');
my $key_b = make_key($tb, name => 'calls');

my $CAT = '/v1/admin/costs/pricing/catalog';
my $COST = '/v1/admin/costs/budget';

# --- the pricing catalog --------------------------------------------------------------

my $r = req('POST', $CAT, $padmin, { prices => {
    'ba-m' => { input => '1', output => 2 },
    'ba-cheap' => { input => 0.1, output => '0.2' } } });
is($r->{status}, 201, 'a platform admin adds prices');
is(data($r)->{added}, 2, 'two versions added');
is_deeply([ map { [ @$_{qw(model input_usd_per_1k output_usd_per_1k added)} ] }
    @{ data($r)->{prices} } ],
    [ [ 'ba-cheap', 0.1, 0.2, JSON::PP::true ],
      [ 'ba-m', 1, 2, JSON::PP::true ] ], 'the list written, by model');
like(data($r)->{effective_from}, qr/^\d{4}-\d\d-\d\dT/, 'effective now');

$r = req('POST', $CAT, $admin_a, { prices => { x => { input => 1,
    output => 1 } } });
is($r->{status}, 403, 'a tenant admin cannot change the catalog');
is($r->{json}{error}{details}{required}, 'platform_admin', 'platform_admin');

$r = req('GET', $CAT, $admin_a);
is($r->{status}, 200, 'but any admin reads it');
my ($m) = grep { $_->{model} eq 'ba-m' } @{ data($r) };
is_deeply([ @$m{qw(input_usd_per_1k output_usd_per_1k status created_by)} ],
    [ 1, 2, 'current', 'key:' . key_prefix($padmin) ],
    'current, with who wrote it');

my $past = '2020-01-01T00:00:00Z';
$r = req('POST', $CAT, $padmin, { effective_from => $past,
    prices => { 'ba-m' => { input => 5, output => 5 } } });
is(code($r), 'VALIDATION_ERROR', 'a version in the past is refused');
is(field($r), 'effective_from', 'names effective_from');
$r = req('POST', $CAT, $padmin, { effective_from => $past, allow_past =>
    JSON::PP::true, prices => { 'ba-m' => { input => 5, output => 5 } } });
is($r->{status}, 201, 'unless allow_past');
$r = req('POST', $CAT, $padmin, { effective_from => $past, allow_past =>
    JSON::PP::true, prices => { 'ba-m' => { input => '5.0', output => 5 } } });
is($r->{status}, 200, 'the same version again: kept, 200');
is(data($r)->{added}, 0, 'nothing added');
$r = req('POST', $CAT, $padmin, { effective_from => $past, allow_past =>
    JSON::PP::true, prices => { 'ba-m' => { input => 6, output => 5 } } });
is($r->{status}, 409, 'that version with other prices: 409');
is(code($r), 'PRICE_VERSION_EXISTS', 'PRICE_VERSION_EXISTS');
is($r->{json}{error}{details}{model}, 'ba-m', 'names the model');

$r = req('GET', "$CAT?model=ba-m&all=true", $admin_a);
is_deeply([ map { $_->{status} } @{ data($r) } ], [ qw(past current) ],
    '?all=true: past versions too, oldest first');
$r = req('GET', "$CAT?model=ba-m", $admin_a);
is(scalar(@{ data($r) }), 1, 'without: the current one');
is(code(req('GET', "$CAT?model=a,b", $admin_a)), 'VALIDATION_ERROR',
    'an invalid model filter');

my $later = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time + 86400));
$r = req('POST', $CAT, $padmin, { effective_from => $later,
    prices => { 'ba-later' => { input => 1, output => 1 } } });
is($r->{status}, 201, 'a version ahead of its day');
$r = req('GET', "$CAT?model=ba-later", $admin_a);
is(data($r)->[0]{status}, 'scheduled', 'is scheduled');
my ($c, $out) = nexusctl('show-prices', '--model', 'ba-later');
like($out, qr/ba-later\s+1\s+1\s+\Q$later\E\s+scheduled/,
    'nexusctl show-prices lists what the API wrote');

for my $bad (
    [ { prices => { 'ba-m' => { input => -1, output => 1 } } }, 'ba-m',
      'a negative price' ],
    [ { prices => { 'ba-m' => { input => '0.0000000001', output => 1 } } },
      'ba-m', 'more than 9 decimals' ],
    [ { prices => { 'ba-m' => { input => 11, output => 1 } } }, 'ba-m',
      'more than $10 per 1K' ],
    [ { prices => { 'a b' => { input => 1, output => 1 } } }, 'a b',
      'a model with a space' ],
    [ { prices => { 'ba-m' => { input => 1 } } }, 'ba-m',
      'no output price' ])
{
    $r = req('POST', $CAT, $padmin, $bad->[0]);
    ok(code($r) eq 'VALIDATION_ERROR' && field($r) eq 'prices'
        && $r->{json}{error}{details}{model} eq $bad->[1], $bad->[2]);
}
is(field(req('POST', $CAT, $padmin, { prices => {} })), 'prices',
    'no price at all');
is(field(req('POST', $CAT, $padmin, { effective_from => 'soon',
    prices => { 'ba-m' => { input => 1, output => 1 } } })),
    'effective_from', 'a time that is not one');
is(code(req('POST', $CAT, $padmin, '{"prices":')), 'INVALID_JSON',
    'not JSON');
is(req('DELETE', $CAT, $padmin)->{status}, 405, 'no DELETE');

# --- a tenant's cost budget -----------------------------------------------------------

$r = req('GET', $COST, $admin_a);
is($r->{status}, 200, 'a tenant admin reads its cost budget');
is_deeply(data($r), { tenant => $ta, monthly_budget_usd => undef,
    warn_ratio => 0.8, hard_cap_mode => 'block', degrade_model => undef,
    degrade_model_priced => undef, allow_unpriced => JSON::PP::false,
    credits => JSON::PP::false, updated_at => undef },
    'none yet: the defaults');

$r = req('PATCH', $COST, $admin_a, { monthly_budget_usd => 1,
    warn_ratio => '0.75' });
is($r->{status}, 200, 'and sets it');
is_deeply([ @{ data($r) }{qw(monthly_budget_usd warn_ratio hard_cap_mode)} ],
    [ 1, 0.75, 'block' ], 'the budget after the change');
ok(on_both_nodes(sub {
    (chat($_[0], $key_a)->{headers}{'x-cost-month-budget-usd'} // '')
        eq '1.00' }), 'both nodes enforce it, without a reload');
$r = chat($n2, $key_a);
ok($r->{headers}{'x-cost-month-spend-usd'} > 0
    && $r->{headers}{'x-cost-month-spend-usd'} * 1000 % 32 == 0,
    'at the price the API wrote: $0.032 a call');

($c, $out) = nexusctl('show-cost-budget', '--tenant', $ta);
like($out, qr/monthly_usd=1 warn_ratio=0.75 mode=block/,
    'nexusctl show-cost-budget shows what the API wrote');

$r = req('PUT', $COST, $admin_a, { hard_cap_mode => 'degrade' });
is(field($r), 'degrade_model', 'degrade needs a degrade model');
$r = req('PUT', $COST, $admin_a, { hard_cap_mode => 'degrade',
    degrade_model => 'ba-cheap', enforce_hard_cap => JSON::PP::true });
is($r->{status}, 200, 'PUT sets the mode with one');
is_deeply([ @{ data($r) }{qw(hard_cap_mode degrade_model
    degrade_model_priced monthly_budget_usd)} ],
    [ 'degrade', 'ba-cheap', JSON::PP::true, 1 ],
    'a priced degrade model; the budget kept');
$r = req('PATCH', $COST, $admin_a, { degrade_model => 'ba-none' });
is(data($r)->{degrade_model_priced}, JSON::PP::false,
    'a degrade model without a price is said to be one');
req('PATCH', $COST, $admin_a, { degrade_model => 'ba-cheap' });

for my $bad (
    [ { monthly_budget_usd => 0 }, 'monthly_budget_usd', 'a budget of 0' ],
    [ { monthly_budget_usd => -1 }, 'monthly_budget_usd', 'negative' ],
    [ { monthly_budget_usd => '1.0000001' }, 'monthly_budget_usd',
      '7 decimals' ],
    [ { monthly_budget_usd => 1000000001 }, 'monthly_budget_usd',
      'over $1e9' ],
    [ { warn_ratio => 0 }, 'warn_ratio', 'a warn ratio of 0' ],
    [ { warn_ratio => 1.5 }, 'warn_ratio', 'above 1' ],
    [ { hard_cap_mode => 'warn' }, 'hard_cap_mode', 'an unknown mode' ],
    [ { degrade_model => 'a,b' }, 'degrade_model', 'a bad model' ],
    [ { allow_unpriced => 'yes' }, 'allow_unpriced', 'not a boolean' ],
    [ { enforce_hard_cap => JSON::PP::false }, 'enforce_hard_cap',
      'enforce_hard_cap false' ],
    [ { warn_ratio => 0.5, credits => JSON::PP::true }, 'credits',
      'a member that cannot be written' ])
{
    $r = req('PATCH', $COST, $admin_a, $bad->[0]);
    ok($r->{status} == 400 && code($r) eq 'VALIDATION_ERROR'
        && field($r) eq $bad->[1], "$bad->[2]: 400 on $bad->[1]");
}
is(code(req('PATCH', $COST, $admin_a, {})), 'VALIDATION_ERROR',
    'nothing to set');
is(code(req('PATCH', $COST, $admin_a)), 'VALIDATION_ERROR', 'no body');
is(psql("SELECT monthly_budget_musd || ' ' || warn_ratio FROM tenant_costs"
    . " WHERE tenant_id = (SELECT id FROM tenants WHERE name = '$ta')"),
    '1000000 0.750', 'none of them wrote anything');

$r = req('PATCH', $COST, $admin_a, { allow_unpriced => JSON::PP::true });
is($r->{status}, 403, 'a tenant admin cannot allow unpriced models');
is($r->{json}{error}{details}{field}, 'allow_unpriced', 'says which field');
$r = req('PATCH', "$COST?tenant=$ta", $padmin,
    { allow_unpriced => JSON::PP::true });
is(data($r)->{allow_unpriced}, JSON::PP::true, 'a platform admin can');
$r = req('PATCH', $COST, $admin_a, { allow_unpriced => JSON::PP::false });
is(data($r)->{allow_unpriced}, JSON::PP::false,
    'and a tenant admin can refuse them again');

# idempotent writes
my @idem = (headers => [ 'Idempotency-Key' => 'ba-cost-1' ]);
my $r1 = req('PATCH', $COST, $admin_a, { monthly_budget_usd => 2 }, @idem);
is($r1->{status}, 200, 'a write with an Idempotency-Key');
req('PATCH', $COST, $admin_a, { monthly_budget_usd => 3 });
my $r2 = req('PATCH', $COST, $admin_a, { monthly_budget_usd => 2 }, @idem);
is($r2->{headers}{'idempotent-replayed'}, 'true', 'its retry is replayed');
is($r2->{body}, $r1->{body}, 'with the first answer');
is(data(req('GET', $COST, $admin_a))->{monthly_budget_usd}, 3,
    'and not run again');
is(code(req('PATCH', $COST, $admin_a, { monthly_budget_usd => 4 }, @idem)),
    'IDEMPOTENCY_KEY_CONFLICT', 'the key with another body: 409');

# --- scope: another tenant does not exist for a tenant admin --------------------------

req('PATCH', "$COST?tenant=$tb", $padmin, { monthly_budget_usd => 7 });
$r1 = req('GET', "$COST?tenant=$tb", $admin_a);
$r2 = req('GET', "$COST?tenant=ba-nosuch", $admin_a);
is($r1->{status}, 404, 'a tenant admin reading another tenant: 404');
is(code($r1), 'TENANT_NOT_FOUND', 'TENANT_NOT_FOUND');
ok(same_error($r1, $r2), 'the same answer as for a tenant that does not'
    . ' exist');
$r1 = req('PATCH', "$COST?tenant=$tb", $admin_a, { monthly_budget_usd => 1 });
$r2 = req('PATCH', "$COST?tenant=ba-nosuch", $admin_a,
    { monthly_budget_usd => 1 });
ok($r1->{status} == 404 && same_error($r1, $r2),
    'writing another tenant: the same 404');
$r1 = req('DELETE', "$COST?tenant=$tb", $admin_a);
$r2 = req('DELETE', "$COST?tenant=ba-nosuch", $admin_a);
ok($r1->{status} == 404 && same_error($r1, $r2), 'deleting: the same 404');
is(data(req('GET', "$COST?tenant=$tb", $padmin))->{monthly_budget_usd}, 7,
    'the other tenant\'s budget is untouched');
is(data(req('GET', "$COST?tenant=$tb", $admin_b))->{monthly_budget_usd}, 7,
    'as its own admin sees it');
is(req('GET', "$COST?tenant=ba-nosuch", $padmin)->{status}, 404,
    'an unknown tenant, for a platform admin');
is(code(req('GET', "$COST?tenant=Bad!", $padmin)), 'VALIDATION_ERROR',
    'an invalid tenant name');

for my $k ([ $reader_a, 'a reader' ], [ $editor_a, 'an editor' ]) {
    $r = req('GET', $COST, $k->[0]);
    ok($r->{status} == 403 && code($r) eq 'FORBIDDEN', "$k->[1]: 403");
}
is(req('PATCH', $COST, $editor_a, { monthly_budget_usd => 9 })->{status},
    403, 'an editor cannot write either');
is(req('POST', $COST, $admin_a, {})->{status}, 405, 'no POST');

# --- removing a cost budget -----------------------------------------------------------

$r = req('DELETE', $COST, $admin_a);
is($r->{status}, 200, 'DELETE removes the monthly budget');
is_deeply([ @{ data($r) }{qw(monthly_budget_usd hard_cap_mode
    degrade_model)} ], [ undef, 'degrade', 'ba-cheap' ],
    'and keeps the other settings, as --no-budget');
ok(on_both_nodes(sub {
    my $r = chat($_[0], $key_a);
    $r->{status} == 200 && !defined $r->{headers}{'x-cost-status'} }),
    'both nodes stop counting its cost');

# --- a key's token budget -------------------------------------------------------------

my $ida = key_id($key_a);
my $KB = "/v1/admin/api-keys/$ida/budget";

$r = req('GET', $KB, $admin_a);
is($r->{status}, 200, 'a tenant admin reads a key\'s token budget');
is_deeply(data($r), { key_id => $ida + 0, tenant => $ta,
    prefix => key_prefix($key_a), daily => undef, monthly => undef,
    total => undef }, 'none yet');

$r = req('PUT', $KB, $admin_a, { daily => 100000, total => 500 });
is($r->{status}, 200, 'PUT sets it');
is_deeply([ @{ data($r) }{qw(daily monthly total)} ], [ 100000, undef, 500 ],
    'daily and total');
ok(on_both_nodes(sub {
    (chat($_[0], $key_a)->{headers}{'x-budget-period'} // '') eq 'total' }),
    'both nodes enforce it, without a reload');

$r = req('PATCH', $KB, $admin_a, { monthly => 3000, total => undef });
is_deeply([ @{ data($r) }{qw(daily monthly total)} ], [ 100000, 3000, undef ],
    'PATCH merges; null removes a period');
$r = req('PUT', $KB, $admin_a, { total => 60 });
is_deeply([ @{ data($r) }{qw(daily monthly total)} ], [ undef, undef, 60 ],
    'PUT replaces the whole budget');
ok(on_both_nodes(sub {
    my $r = chat($_[0], $key_a, max_tokens => 100);
    $r->{status} == 429 && code($r) eq 'BUDGET_EXCEEDED' }),
    'a call whose worst case does not fit: 429 on both nodes');
($c, $out) = nexusctl('show-budget', '--prefix', key_prefix($key_a));
like($out, qr/daily=none monthly=none total=60/,
    'nexusctl show-budget shows what the API wrote');

for my $bad (
    [ { daily => 0 }, 'daily', 'a period of 0' ],
    [ { monthly => 1000000000000 }, 'monthly', 'too many tokens' ],
    [ { total => 1.5 }, 'total', 'not an integer' ],
    [ { total => '5' }, 'total', 'a string' ],
    [ { weekly => 5 }, 'weekly', 'an unknown period' ])
{
    $r = req('PATCH', $KB, $admin_a, $bad->[0]);
    ok($r->{status} == 400 && field($r) eq $bad->[1],
        "$bad->[2]: 400 on $bad->[1]");
}
is(code(req('PATCH', $KB, $admin_a, {})), 'VALIDATION_ERROR',
    'PATCH needs a period');

$r = req('DELETE', $KB, $admin_a);
is_deeply([ @{ data($r) }{qw(daily monthly total)} ], [ undef, undef, undef ],
    'DELETE removes it');
is(psql("SELECT token_budget FROM api_keys WHERE id = $ida"), '{}',
    'stored as no budget at all');
ok(on_both_nodes(sub {
    my $r = chat($_[0], $key_a, max_tokens => 100);
    $r->{status} == 200 && !defined $r->{headers}{'x-budget-period'} }),
    'both nodes stop counting it');

# scope
my $idb = key_id($key_b);
req('PUT', "/v1/admin/api-keys/$idb/budget", $padmin, { daily => 77 });
$r1 = req('GET', "/v1/admin/api-keys/$idb/budget", $admin_a);
$r2 = req('GET', '/v1/admin/api-keys/999999999999/budget', $admin_a);
is($r1->{status}, 404, 'another tenant\'s key: 404');
is(code($r1), 'KEY_NOT_FOUND', 'KEY_NOT_FOUND');
ok(same_error($r1, $r2), 'the same answer as for a key that does not exist');
$r1 = req('PUT', "/v1/admin/api-keys/$idb/budget", $admin_a, { daily => 1 });
$r2 = req('PUT', '/v1/admin/api-keys/999999999999/budget', $admin_a,
    { daily => 1 });
ok($r1->{status} == 404 && same_error($r1, $r2), 'written: the same 404');
$r1 = req('DELETE', "/v1/admin/api-keys/$idb/budget", $admin_a);
ok($r1->{status} == 404 && same_error($r1, req('DELETE',
    '/v1/admin/api-keys/999999999999/budget', $admin_a)),
    'deleted: the same 404');
is(data(req('GET', "/v1/admin/api-keys/$idb/budget", $admin_b))->{daily},
    77, 'the other tenant\'s key is untouched');
is(req('GET', "/v1/admin/api-keys/$ida/budget", $reader_a)->{status}, 403,
    'a reader: 403');
is(req('PUT', "/v1/admin/api-keys/$ida/budget", $editor_a,
    { daily => 5 })->{status}, 403, 'an editor: 403');
is(code(req('GET', '/v1/admin/api-keys/x1/budget', $admin_a)), 'NOT_FOUND',
    'an id that is not one');
is(req('POST', $KB, $admin_a, {})->{status}, 405, 'no POST');

@idem = (headers => [ 'Idempotency-Key' => 'ba-key-1' ]);
$r1 = req('PUT', $KB, $admin_a, { daily => 10 }, @idem);
req('PUT', $KB, $admin_a, { daily => 20 });
$r2 = req('PUT', $KB, $admin_a, { daily => 10 }, @idem);
ok($r2->{headers}{'idempotent-replayed'} && $r2->{body} eq $r1->{body},
    'a retried PUT is replayed');
is(data(req('GET', $KB, $admin_a))->{daily}, 20, 'not run again');

# --- prices take effect ---------------------------------------------------------------

req('PATCH', $COST, $admin_a, { monthly_budget_usd => 100 });
req('DELETE', $KB, $admin_a);
$r = req('POST', $CAT, $padmin, { prices => { 'ba-m' => { input => 2,
    output => 4 } } });
is($r->{status}, 201, 'a new price of a model');
ok(on_both_nodes(sub {
    my $r = chat($_[0], $key_a);
    my $a = $r->{headers}{'x-cost-month-spend-usd'};
    my $b = chat($_[0], $key_a)->{headers}{'x-cost-month-spend-usd'};
    defined $a && defined $b && sprintf('%.3f', $b - $a) eq '0.064' }),
    'both nodes charge it from its time on: $0.064 a call');

# --- PostgreSQL down ------------------------------------------------------------------

pg_stop();
$r = req('GET', $COST, $admin_a);
is($r->{status}, 503, 'PostgreSQL down: 503');
is(code($r), 'DEPENDENCY_UNAVAILABLE', 'DEPENDENCY_UNAVAILABLE');
is(code(req('PUT', $KB, $admin_a, { daily => 5 })),
    'DEPENDENCY_UNAVAILABLE', 'a write too');
is(code(req('POST', $CAT, $padmin, { prices => { 'ba-m' => { input => 1,
    output => 1 } } })), 'DEPENDENCY_UNAVAILABLE', 'a price too');
pg_start();
$r = undef;
for (1 .. 100) {
    $r = req('GET', $COST, $admin_a);
    last if $r->{status} == 200;
    sleep 0.1;
}
is($r->{status}, 200, 'and back');

# --- the audit log --------------------------------------------------------------------

ok(audited('admin.cost_budget.updated', $ta, 'success') >= 5,
    'cost budget changes, in the tenant\'s chain');
ok(audited('admin.cost_budget.deleted', $ta, 'success') >= 1,
    'its removal');
ok(audited('admin.token_budget.updated', $ta, 'success') >= 4,
    'token budget changes');
ok(audited('admin.token_budget.deleted', $ta, 'success') >= 1,
    'their removal');
ok(audited('admin.pricing.updated', $ops, 'success') >= 5,
    'price changes, in the platform admin\'s chain');
ok(audited('admin.cost_budget.updated', $ta, 'failure') >= 10,
    'refused writes too');
ok(audited('rbac.forbidden', $ta, 'failure') >= 3,
    'and a tenant admin\'s forbidden attempts');
is(psql("SELECT metadata::jsonb -> 'result' ->> 'monthly_budget_usd'"
    . " FROM audit_events WHERE event_type = 'admin.cost_budget.updated'"
    . " AND outcome = 'success' AND tenant_id = (SELECT id FROM tenants"
    . " WHERE name = '$ta') ORDER BY id LIMIT 1"), '1',
    'with the budget written');
is(psql("SELECT count(*) FROM audit_events WHERE event_type ="
    . " 'admin.cost_budget.updated' AND tenant_id = (SELECT id FROM tenants"
    . " WHERE name = '$tb') AND outcome = 'success'"), 1,
    'the other tenant\'s chain has only its platform admin\'s write');

# --- nexusctl: the same rules ---------------------------------------------------------

($c, undef, my $err) = nexusctl('set-price', '--model', 'ba-x', '--input', '1',
    '--output', '1', '--effective-from', $past);
is($c, 2, 'set-price refuses the past');
like($err, qr/in the past.*--allow-past/, 'and says how to write it anyway');
($c, $out) = nexusctl('set-price', '--model', 'ba-x', '--input', '1',
    '--output', '1', '--effective-from', $past, '--allow-past');
is($c, 0, 'with --allow-past');
($c, undef, $err) = nexusctl('set-price', '--model', 'ba-x', '--input', '1',
    '--output', '1', '--effective-from', '2020-01-01 00:00');
is($c, 2, 'a time without a zone is refused');
