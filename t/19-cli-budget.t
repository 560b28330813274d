#!/usr/bin/perl

# nexusctl set-budget, show-budget and set-tpm: a key's token budget is
# merged, shown, trimmed and cleared, and lands in the token_budget column
# as the module reads it; tokens per minute are set and cleared for a key
# or a tenant; bad arguments are refused before the database is touched
# (exit 2), an unknown key or tenant is exit 1; the database refuses what
# the tool would. Needs no nginx.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $acme = make_tenant('acme');
my $key = make_key($acme);
my $p = key_prefix($key);

sub budget {
    return json_decode(psql("SELECT token_budget FROM api_keys"
        . " WHERE prefix = '$p'"));
}

sub ok_run {
    my ($what, @args) = @_;
    my ($code, $out, $err) = nexusctl(@args);
    is($code, 0, "$what: exit 0") or diag($err);
    return $out;
}

sub bad_run {
    my ($what, $exit, $re, @args) = @_;
    my ($code, $out, $err) = nexusctl(@args);
    is($code, $exit, "$what: exit $exit");
    like($err, $re, "$what: says why");
}

# --- set, merge, remove a period, clear ------------------------------------------
my $out = ok_run('show, nothing set', 'show-budget', '--prefix', $p);
is($out, "budget of key $p: none\ntpm of key $p: none\n", 'show: none');

$out = ok_run('set', 'set-budget', '--prefix', $p, '--daily', '1000',
    '--total', '999999999999');
is($out, "budget of key $p: daily=1000 monthly=none total=999999999999\n",
    'set: prints the budget');
is_deeply(budget(), { daily => 1000, total => 999999999999 },
    'set: the column');

$out = ok_run('merge', 'set-budget', "--prefix=nx_$p", '--monthly=20000');
is($out, "budget of key $p: daily=1000 monthly=20000 total=999999999999\n",
    'merge: the other periods are kept (a prefix given as nx_...)');

$out = ok_run('remove', 'set-budget', '--prefix', $key, '--no-total',
    '--daily', '5');
is($out, "budget of key $p: daily=5 monthly=20000 total=none\n",
    'remove one period, change another (the whole key as --prefix)');
is_deeply(budget(), { daily => 5, monthly => 20000 }, 'remove: the column');

is(psql("SELECT nexus_budget_text(token_budget, tpm, NULL) FROM api_keys"
    . " WHERE prefix = '$p'"), '5,20000,0,0,0', 'as the module reads it');

$out = ok_run('clear', 'set-budget', '--prefix', $p, '--clear');
is($out, "budget of key $p: cleared\n", 'clear');
$out = ok_run('clear again', 'set-budget', '--prefix', $p, '--clear');
is($out, "budget of key $p: none\n", 'clear again: none');
is_deeply(budget(), {}, 'clear: the empty budget');

# --- tokens per minute ---------------------------------------------------------------
$out = ok_run('set-tpm key', 'set-tpm', '--prefix', $p, '--tpm', '5000');
is($out, "tpm of key $p: 5000\n", 'set-tpm on a key');
$out = ok_run('show tpm', 'show-budget', '--prefix', $p);
like($out, qr/^tpm of key $p: 5000$/m, 'show-budget shows it');
$out = ok_run('set-tpm tenant', 'set-tpm', '--tenant', $acme, '--tpm', '70');
is($out, "tpm of tenant $acme: 70\n", 'set-tpm on a tenant');
is(psql("SELECT nexus_budget_text(k.token_budget, k.tpm, t.tpm)"
    . " FROM api_keys k JOIN tenants t ON t.id = k.tenant_id"
    . " WHERE k.prefix = '$p'"), '0,0,0,5000,70', 'both as the module reads them');
$out = ok_run('clear tpm', 'set-tpm', '--prefix', $p, '--clear');
is($out, "tpm of key $p: none\n", 'set-tpm --clear');

# --- refused -----------------------------------------------------------------------
bad_run('no prefix', 2, qr/--prefix is required/, 'set-budget', '--daily', '1');
bad_run('nothing to set', 2, qr/one of --daily/, 'set-budget', '--prefix', $p);
bad_run('zero', 2, qr/invalid daily budget "0"/, 'set-budget', '--prefix', $p,
    '--daily', '0');
bad_run('too big', 2, qr/invalid total budget/, 'set-budget', '--prefix', $p,
    '--total', '1000000000000');
bad_run('not a number', 2, qr/invalid monthly budget/, 'set-budget',
    '--prefix', $p, '--monthly', '1e6');
bad_run('clear and set', 2, qr/--clear cannot be combined with --daily/,
    'set-budget', '--prefix', $p, '--clear', '--daily', '1');
bad_run('set and remove', 2, qr/--total cannot be combined with --no-total/,
    'set-budget', '--prefix', $p, '--total', '1', '--no-total');
bad_run('bad prefix', 2, qr/prefix/, 'set-budget', '--prefix', 'zz',
    '--daily', '1');
bad_run('unknown key', 1, qr/not found/, 'set-budget', '--prefix',
    '0123456789ab', '--daily', '1');
bad_run('unknown key, show', 1, qr/not found/, 'show-budget', '--prefix',
    '0123456789ab');
bad_run('tpm: both targets', 2, qr/exactly one of --tenant and --prefix/,
    'set-tpm', '--prefix', $p, '--tenant', $acme, '--tpm', '1');
bad_run('tpm: no value', 2, qr/exactly one of --tpm and --clear/, 'set-tpm',
    '--prefix', $p);
bad_run('tpm: zero', 2, qr/invalid tokens per minute/, 'set-tpm', '--prefix',
    $p, '--tpm', '0');
bad_run('tpm: unknown tenant', 1, qr/not found/, 'set-tpm', '--tenant',
    'no-such-tenant-x', '--tpm', '1');

for my $bad ('{"daily": 0}', '{"weekly": 5}', '{"daily": "5"}',
    '{"total": 1.5}', '[]')
{
    eval { psql("UPDATE api_keys SET token_budget = '$bad'"
        . " WHERE prefix = '$p'") };
    ok($@, "the database refuses $bad");
}
eval { psql("UPDATE tenants SET tpm = 0 WHERE name = '$acme'") };
ok($@, 'the database refuses a tpm of 0');

done_testing();
