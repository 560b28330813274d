#!/usr/bin/perl

# nexusctl set-limits and show-limits: rate limit overrides of a tenant and
# of a key (by prefix in its three spellings) are set, shown and cleared, and
# land in the rate_limits columns as the module reads them; bad arguments
# are refused before the database is touched (exit 2), unknown tenants and
# keys are exit 1. Needs no nginx.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $acme = make_tenant('acme');
my $other = make_tenant('other');
my $key = make_key($acme, name => 'limited');
my $prefix = key_prefix($key);
my $other_key = make_key($acme, name => 'bystander');

sub tenant_limits {
    my ($name) = @_;
    return json_decode(psql('SELECT rate_limits FROM tenants WHERE name = '
        . sql_quote($name)));
}

sub key_limits {
    my ($p) = @_;
    return json_decode(psql('SELECT rate_limits FROM api_keys WHERE prefix = '
        . sql_quote($p)));
}

# ok_run($what, @args): nexusctl must succeed; returns its stdout
sub ok_run {
    my ($what, @args) = @_;
    my ($code, $out, $err) = nexusctl(@args);
    is($code, 0, "$what: exit 0") or diag($err);
    is($err, '', "$what: nothing on stderr");
    return $out;
}

# --- tenant: set, show, replace, clear ----------------------------------------
my $out = ok_run('show, nothing set', 'show-limits', '--tenant', $acme);
is($out, "limits of tenant $acme: no overrides\n", 'show: no overrides');

$out = ok_run('set read', 'set-limits', '--tenant', $acme, '--class', 'read',
    '--rps', '5', '--burst', '20');
is($out, "limits of tenant $acme, class read: rps=5 burst=20\n",
    'set: prints what was set');
is_deeply(tenant_limits($acme), { read => { rps => 5, burst => 20 } },
    'set: column holds rps and burst');

$out = ok_run('set run without burst', 'set-limits', "--tenant=$acme",
    '--class=run', '--rps=1');
is($out, "limits of tenant $acme, class run: rps=1 burst=1\n",
    'set without burst: burst is the rps');
is_deeply(tenant_limits($acme),
    { read => { rps => 5, burst => 20 }, run => { rps => 1 } },
    'set without burst: no burst stored, other class kept');

$out = ok_run('show two classes', 'show-limits', '--tenant', $acme);
is($out, "limits of tenant $acme, class run: rps=1 burst=1\n"
    . "limits of tenant $acme, class read: rps=5 burst=20\n",
    'show: one line per class, in class order');

# a class is replaced as a whole: the old burst goes
ok_run('replace read', 'set-limits', '--tenant', $acme, '--class', 'read',
    '--rps', '999999');
is_deeply(tenant_limits($acme)->{read}, { rps => 999999 },
    'replace: the class object is replaced, maximum rps accepted');
ok_run('maximum burst', 'set-limits', '--tenant', $acme, '--class', 'ops',
    '--rps', '1', '--burst', '9999999');
is_deeply(tenant_limits($acme)->{ops}, { rps => 1, burst => 9999999 },
    'maximum burst accepted');

# what the module reads: key rps/burst then tenant rps/burst, by class
is(psql("SELECT nexus_rate_limits_text('{}', rate_limits) FROM tenants"
        . ' WHERE name = ' . sql_quote($acme)),
    '0,0,1,1,0,0,0,0,0,0,999999,999999,0,0,1,9999999',
    'the module\'s view of the tenant overrides');

is_deeply(tenant_limits($other), {}, 'another tenant is untouched');

$out = ok_run('clear read', 'set-limits', '--tenant', $acme, '--class',
    'read', '--clear');
is($out, "limits of tenant $acme, class read: cleared\n", 'clear: cleared');
is_deeply(tenant_limits($acme),
    { run => { rps => 1 }, ops => { rps => 1, burst => 9999999 } },
    'clear: only that class is gone');

$out = ok_run('clear read again', 'set-limits', '--tenant', $acme,
    '--class', 'read', '--clear');
is($out, "limits of tenant $acme, class read: no override\n",
    'clear of an absent class: no override, exit 0');

$out = ok_run('clear all', 'set-limits', '--tenant', $acme, '--clear');
is($out, "limits of tenant $acme: cleared\n", 'clear all: cleared');
is_deeply(tenant_limits($acme), {}, 'clear all: column is {}');

$out = ok_run('clear all again', 'set-limits', '--tenant', $acme, '--clear');
is($out, "limits of tenant $acme: no overrides\n",
    'clear all when nothing is set: no overrides');

# --- key: by prefix, nx_<prefix> and the whole key ----------------------------
$out = ok_run('set key', 'set-limits', '--prefix', $prefix, '--class',
    'mutation', '--rps', '2', '--burst', '3');
is($out, "limits of key $prefix, class mutation: rps=2 burst=3\n",
    'set key: prints what was set');
is_deeply(key_limits($prefix), { mutation => { rps => 2, burst => 3 } },
    'set key: column holds it');

$out = ok_run('set key by nx_prefix', 'set-limits', '--prefix',
    'NX_' . uc($prefix), '--class', 'read', '--rps', '40');
is($out, "limits of key $prefix, class read: rps=40 burst=40\n",
    'nx_<prefix>, any case, is accepted');

ok_run('set key by whole key', 'set-limits', '--prefix', $key, '--class',
    'run', '--rps', '4', '--burst', '2');
is_deeply(key_limits($prefix), {
    mutation => { rps => 2, burst => 3 }, read => { rps => 40 },
    run => { rps => 4, burst => 2 } }, 'key column holds all three');
is_deeply(key_limits(key_prefix($other_key)), {},
    'another key of the tenant is untouched');
is_deeply(tenant_limits($acme), {}, 'the key\'s tenant is untouched');

is(psql("SELECT nexus_rate_limits_text(k.rate_limits, t.rate_limits)"
        . ' FROM api_keys k JOIN tenants t ON t.id = k.tenant_id'
        . ' WHERE k.prefix = ' . sql_quote($prefix)),
    '4,2,0,0,2,3,0,0,40,40,0,0,0,0,0,0',
    'the module\'s view of the key overrides');

$out = ok_run('show key', 'show-limits', '--prefix', "nx_$prefix");
is($out, "limits of key $prefix, class run: rps=4 burst=2\n"
    . "limits of key $prefix, class mutation: rps=2 burst=3\n"
    . "limits of key $prefix, class read: rps=40 burst=40\n",
    'show key');

$out = ok_run('clear key class', 'set-limits', '--prefix', $prefix,
    '--class', 'run', '--clear');
is($out, "limits of key $prefix, class run: cleared\n", 'clear key class');
is_deeply([sort keys %{ key_limits($prefix) }], ['mutation', 'read'],
    'clear key class: the others stay');

$out = ok_run('clear key', 'set-limits', '--prefix', $prefix, '--clear');
is($out, "limits of key $prefix: cleared\n", 'clear key: cleared');
is_deeply(key_limits($prefix), {}, 'clear key: column is {}');
$out = ok_run('show key, nothing set', 'show-limits', '--prefix', $prefix);
is($out, "limits of key $prefix: no overrides\n", 'show key: no overrides');

# a revoked key keeps its row: its limits can still be set
my $revoked = make_key($acme, name => 'revoked');
nexusctl('revoke-key', '--prefix', key_prefix($revoked));
ok_run('set revoked key', 'set-limits', '--prefix', key_prefix($revoked),
    '--class', 'ops', '--rps', '1');

# --- validation: exit 2, before the database is touched -----------------------
# an unreachable database would be exit 3: exit 2 shows it was never tried
my %nodb = (env => { NEXUS_DATABASE_URL => 'postgresql://127.0.0.1:1/nexus' });

my @bad = (
    [ 'bad class', qr/invalid class "write": run, mutation, read or ops/,
      '--tenant', $acme, '--class', 'write', '--rps', '1' ],
    [ 'class in capitals', qr/invalid class "READ"/,
      '--tenant', $acme, '--class', 'READ', '--rps', '1' ],
    [ 'bad class with --clear', qr/invalid class/,
      '--tenant', $acme, '--class', 'nope', '--clear' ],
    [ 'rps 0', qr/invalid rps "0": an integer from 1 to 999999/,
      '--tenant', $acme, '--class', 'read', '--rps', '0' ],
    [ 'rps too large', qr/invalid rps "1000000"/,
      '--tenant', $acme, '--class', 'read', '--rps', '1000000' ],
    [ 'rps huge', qr/invalid rps "99999999999999999999999"/,
      '--tenant', $acme, '--class', 'read', '--rps', '9' x 23 ],
    [ 'rps negative', qr/invalid rps "-1"/,
      '--tenant', $acme, '--class', 'read', '--rps', '-1' ],
    [ 'rps not a number', qr/invalid rps "5x"/,
      '--tenant', $acme, '--class', 'read', '--rps', '5x' ],
    [ 'rps empty', qr/invalid rps ""/,
      '--tenant', $acme, '--class', 'read', '--rps', '' ],
    [ 'rps fraction', qr/invalid rps "1.5"/,
      '--tenant', $acme, '--class', 'read', '--rps', '1.5' ],
    [ 'rps with spaces', qr/invalid rps " 5"/,
      '--tenant', $acme, '--class', 'read', '--rps', ' 5' ],
    [ 'burst 0', qr/invalid burst "0": an integer from 1 to 9999999/,
      '--tenant', $acme, '--class', 'read', '--rps', '1', '--burst', '0' ],
    [ 'burst too large', qr/invalid burst "10000000"/,
      '--tenant', $acme, '--class', 'read', '--rps', '1',
      '--burst', '10000000' ],
    [ 'burst without rps', qr/set-limits: --burst needs --rps/,
      '--tenant', $acme, '--class', 'read', '--burst', '5' ],
    [ 'neither rps nor clear', qr/set-limits: --rps or --clear is required/,
      '--tenant', $acme, '--class', 'read' ],
    [ 'rps without class', qr/set-limits: --class is required with --rps/,
      '--tenant', $acme, '--rps', '5' ],
    [ 'clear with rps',
      qr/set-limits: --clear cannot be combined with --rps or --burst/,
      '--tenant', $acme, '--class', 'read', '--rps', '5', '--clear' ],
    [ 'clear with burst', qr/--clear cannot be combined/,
      '--tenant', $acme, '--burst', '5', '--clear' ],
    [ 'both tenant and prefix',
      qr/set-limits: exactly one of --tenant and --prefix is required/,
      '--tenant', $acme, '--prefix', $prefix, '--class', 'read',
      '--rps', '5' ],
    [ 'neither tenant nor prefix', qr/exactly one of --tenant and --prefix/,
      '--class', 'read', '--rps', '5' ],
    [ 'invalid tenant name', qr/invalid tenant name "Bad Name"/,
      '--tenant', 'Bad Name', '--class', 'read', '--rps', '5' ],
    [ 'invalid prefix', qr/invalid key prefix: expected 12 hex characters/,
      '--prefix', 'nx_zz', '--class', 'read', '--rps', '5' ],
    [ 'unknown option', qr/set-limits: invalid option "--rate"/,
      '--tenant', $acme, '--rate', '5' ],
    [ 'missing value', qr/set-limits: option "--rps" needs a value/,
      '--tenant', $acme, '--class', 'read', '--rps' ],
    [ 'stray operand', qr/set-limits: unexpected argument "read"/,
      '--tenant', $acme, 'read' ],
);

for my $b (@bad) {
    my ($what, $re, @args) = @$b;
    my ($code, $o, $err) = nexusctl(\%nodb, 'set-limits', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
    is($o, '', "$what: nothing on stdout");
}

# a prefix that is not one is not echoed: it may be a pasted secret
my ($code, $o, $err) = nexusctl(\%nodb, 'set-limits', '--prefix',
    'nx_0123456789ab_secret', '--class', 'read', '--rps', '5');
is($code, 2, 'malformed key: exit 2');
unlike($err, qr/secret/, 'malformed key: not echoed');

for my $b (
    [ 'show: both', qr/show-limits: exactly one of --tenant and --prefix/,
      '--tenant', $acme, '--prefix', $prefix ],
    [ 'show: neither', qr/show-limits: exactly one of --tenant and --prefix/ ],
    [ 'show: --class is not an option',
      qr/show-limits: invalid option "--class"/,
      '--tenant', $acme, '--class', 'read' ],
    [ 'show: invalid prefix', qr/invalid key prefix/, '--prefix', 'xyz' ],
) {
    my ($what, $re, @args) = @$b;
    ($code, $o, $err) = nexusctl(\%nodb, 'show-limits', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
}

is_deeply(tenant_limits($acme), {}, 'refused commands changed nothing');

# the same valid command does try the database
($code, $o, $err) = nexusctl(\%nodb, 'set-limits', '--tenant', $acme,
    '--class', 'read', '--rps', '5');
is($code, 3, 'valid arguments, unreachable database: exit 3');

# --- unknown tenant or key: exit 1 --------------------------------------------
my $ghost = unique_name('ghost');
for my $args (
    [ '--class', 'read', '--rps', '5' ],
    [ '--class', 'read', '--clear' ],
    [ '--clear' ],
) {
    ($code, $o, $err) = nexusctl('set-limits', '--tenant', $ghost, @$args);
    is($code, 1, "unknown tenant, @$args: exit 1");
    is($err, "nexusctl: tenant \"$ghost\" not found\n",
        "unknown tenant, @$args: message");

    ($code, $o, $err) = nexusctl('set-limits', '--prefix', '000000000000',
        @$args);
    is($code, 1, "unknown key, @$args: exit 1");
    is($err, "nexusctl: key 000000000000 not found\n",
        "unknown key, @$args: message");
}

($code, $o, $err) = nexusctl('show-limits', '--tenant', $ghost);
is($code, 1, 'show unknown tenant: exit 1');
like($err, qr/tenant "\Q$ghost\E" not found/, 'show unknown tenant: message');
($code, $o, $err) = nexusctl('show-limits', '--prefix', 'nx_000000000000');
is($code, 1, 'show unknown key: exit 1');
like($err, qr/key 000000000000 not found/, 'show unknown key: message');

# --- help ---------------------------------------------------------------------
($code, $o) = nexusctl('help');
like($o, qr/^  set-limits .*\n  show-limits /m, 'help lists both verbs');
($code, $o) = nexusctl('help', 'set-limits');
is($code, 0, 'help set-limits: exit 0');
like($o, qr/^usage: nexusctl set-limits \(--tenant NAME \| --prefix PREFIX\)/,
    'help set-limits: usage');
($code, $o) = nexusctl('show-limits', '--help');
is($code, 0, 'show-limits --help: exit 0');
like($o, qr/^usage: nexusctl show-limits /, 'show-limits --help: usage');

done_testing();
