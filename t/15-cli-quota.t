#!/usr/bin/perl

# nexusctl set-quota and show-quota: a tenant's request quota is merged,
# shown, trimmed and cleared, and lands in the quota column as the module
# reads it; bad arguments are refused before the database is touched
# (exit 2), an unknown tenant is exit 1. Needs no nginx.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $acme = make_tenant('acme');
my $other = make_tenant('other');

sub tenant_quota {
    my ($name) = @_;
    return json_decode(psql('SELECT quota FROM tenants WHERE name = '
        . sql_quote($name)));
}

# the quota column as stored, in jsonb's text form
sub quota_text {
    my ($name) = @_;
    return psql('SELECT quota::text FROM tenants WHERE name = '
        . sql_quote($name));
}

# ok_run($what, @args): nexusctl must succeed; returns its stdout
sub ok_run {
    my ($what, @args) = @_;
    my ($code, $out, $err) = nexusctl(@args);
    is($code, 0, "$what: exit 0") or diag($err);
    is($err, '', "$what: nothing on stderr");
    return $out;
}

# --- set, merge, show, remove a cap, clear ------------------------------------
my $out = ok_run('show, nothing set', 'show-quota', '--tenant', $acme);
is($out, "quota of tenant $acme: none\n", 'show: none');
is_deeply(tenant_quota($acme), {}, 'a new tenant has the empty quota');

$out = ok_run('set daily', 'set-quota', '--tenant', $acme, '--daily', '1000');
is($out, "quota of tenant $acme: daily=1000 monthly=none soft_ratio=0.8"
    . " mode=enforce\n", 'set: prints the quota, defaults shown');
is_deeply(tenant_quota($acme), { daily => 1000 }, 'set: column holds daily');

$out = ok_run('merge monthly and mode', 'set-quota', "--tenant=$acme",
    '--monthly=20000', '--mode=observe');
is($out, "quota of tenant $acme: daily=1000 monthly=20000 soft_ratio=0.8"
    . " mode=observe\n", 'merge: the earlier daily is kept');
is_deeply(tenant_quota($acme),
    { daily => 1000, monthly => 20000, mode => 'observe' },
    'merge: column holds all three');

$out = ok_run('merge soft ratio', 'set-quota', '--tenant', $acme,
    '--soft-ratio', '0.75', '--daily', '999999999999', '--mode', 'enforce');
is($out, "quota of tenant $acme: daily=999999999999 monthly=20000"
    . " soft_ratio=0.75 mode=enforce\n",
    'merge: replaced fields, maximum cap accepted');
is(quota_text($acme), '{"mode": "enforce", "daily": 999999999999,'
    . ' "monthly": 20000, "soft_ratio": 0.75}',
    'soft ratio is stored as a JSON number, caps as integers');

$out = ok_run('show', 'show-quota', '--tenant', $acme);
is($out, "quota of tenant $acme: daily=999999999999 monthly=20000"
    . " soft_ratio=0.75 mode=enforce\n", 'show: what set-quota printed');

# what the module reads: daily, monthly, soft permille, observe
is(psql('SELECT nexus_quota_text(quota) FROM tenants WHERE name = '
        . sql_quote($acme)),
    '999999999999,20000,750,0', 'the module\'s view of the quota');

is_deeply(tenant_quota($other), {}, 'another tenant is untouched');

# soft ratios: written as a canonical JSON number, whatever the spelling
for my $r (
    [ '1', 1, '1' ], [ '1.0', 1, '1' ], [ '1.000', 1, '1' ],
    [ '0.8', 0.8, '0.8' ], [ '0.80', 0.8, '0.8' ], [ '00.5', 0.5, '0.5' ],
    [ '0.001', 0.001, '0.001' ], [ '0.1230000', 0.123, '0.123' ],
) {
    my ($arg, $num, $shown) = @$r;
    $out = ok_run("soft ratio $arg", 'set-quota', '--tenant', $other,
        '--soft-ratio', $arg);
    is($out, "quota of tenant $other: daily=none monthly=none"
        . " soft_ratio=$shown mode=enforce\n", "soft ratio $arg: printed");
    is(psql("SELECT quota -> 'soft_ratio' FROM tenants WHERE name = "
            . sql_quote($other)), $shown, "soft ratio $arg: stored as $shown");
    cmp_ok(tenant_quota($other)->{soft_ratio}, '==', $num,
        "soft ratio $arg: a number");
}

$out = ok_run('no-daily', 'set-quota', '--tenant', $acme, '--no-daily');
is($out, "quota of tenant $acme: daily=none monthly=20000 soft_ratio=0.75"
    . " mode=enforce\n", 'no-daily: the daily cap is gone');
is_deeply(tenant_quota($acme),
    { monthly => 20000, soft_ratio => 0.75, mode => 'enforce' },
    'no-daily: only daily was removed');

ok_run('no-daily again', 'set-quota', '--tenant', $acme, '--no-daily');
is_deeply(tenant_quota($acme),
    { monthly => 20000, soft_ratio => 0.75, mode => 'enforce' },
    'no-daily without a daily cap: nothing changes');

$out = ok_run('no-monthly with daily', 'set-quota', '--tenant', $acme,
    '--no-monthly', '--daily', '5');
is($out, "quota of tenant $acme: daily=5 monthly=none soft_ratio=0.75"
    . " mode=enforce\n", 'no-monthly and daily at once');
is_deeply(tenant_quota($acme),
    { daily => 5, soft_ratio => 0.75, mode => 'enforce' },
    'no-monthly: monthly removed, daily set');

ok_run('set monthly', 'set-quota', '--tenant', $acme, '--monthly', '7');
$out = ok_run('no-daily and no-monthly', 'set-quota', '--tenant', $acme,
    '--no-daily', '--no-monthly');
is($out, "quota of tenant $acme: daily=none monthly=none soft_ratio=0.75"
    . " mode=enforce\n", 'both caps removed, the rest kept');
is_deeply(tenant_quota($acme), { soft_ratio => 0.75, mode => 'enforce' },
    'both caps removed: column');

$out = ok_run('clear', 'set-quota', '--tenant', $acme, '--clear');
is($out, "quota of tenant $acme: cleared\n", 'clear: cleared');
is_deeply(tenant_quota($acme), {}, 'clear: column is {}');

$out = ok_run('clear again', 'set-quota', '--tenant', $acme, '--clear');
is($out, "quota of tenant $acme: none\n",
    'clear when nothing is set: none, exit 0');

$out = ok_run('show after clear', 'show-quota', '--tenant', $acme);
is($out, "quota of tenant $acme: none\n", 'show after clear: none');

ok_run('set after clear', 'set-quota', '--tenant', $acme, '--monthly', '1');
is_deeply(tenant_quota($acme), { monthly => 1 }, 'set after clear');
is(psql('SELECT nexus_quota_text(quota) FROM tenants WHERE name = '
        . sql_quote($acme)),
    '0,1,800,0', 'the module\'s view: no daily, default soft ratio');

# a suspended tenant's quota can still be set
psql('UPDATE tenants SET status = \'suspended\' WHERE name = '
    . sql_quote($other));
ok_run('set on a suspended tenant', 'set-quota', '--tenant', $other,
    '--daily', '3');

# --- validation: exit 2, before the database is touched -----------------------
# an unreachable database would be exit 3: exit 2 shows it was never tried
my %nodb = (env => { NEXUS_DATABASE_URL => 'postgresql://127.0.0.1:1/nexus' });

my $range = 'an integer from 1 to 999999999999';
my $ratio = qr/a number above 0 and at most 1, with up to 3 decimals/;

my @bad = (
    [ 'missing tenant', qr/set-quota: --tenant is required/,
      '--daily', '5' ],
    [ 'invalid tenant name', qr/invalid tenant name "Bad Name"/,
      '--tenant', 'Bad Name', '--daily', '5' ],
    [ 'nothing to set', qr/set-quota: one of --daily, --monthly,/,
      '--tenant', $acme ],
    [ 'daily 0', qr/invalid daily quota "0": \Q$range\E/,
      '--tenant', $acme, '--daily', '0' ],
    [ 'daily too large', qr/invalid daily quota "1000000000000"/,
      '--tenant', $acme, '--daily', '1000000000000' ],
    [ 'daily huge', qr/invalid daily quota "9{30}"/,
      '--tenant', $acme, '--daily', '9' x 30 ],
    [ 'daily negative', qr/invalid daily quota "-1"/,
      '--tenant', $acme, '--daily', '-1' ],
    [ 'daily with sign', qr/invalid daily quota "\+5"/,
      '--tenant', $acme, '--daily', '+5' ],
    [ 'daily not a number', qr/invalid daily quota "5k"/,
      '--tenant', $acme, '--daily', '5k' ],
    [ 'daily empty', qr/invalid daily quota ""/,
      '--tenant', $acme, '--daily', '' ],
    [ 'daily fraction', qr/invalid daily quota "1.5"/,
      '--tenant', $acme, '--daily', '1.5' ],
    [ 'daily exponent', qr/invalid daily quota "1e3"/,
      '--tenant', $acme, '--daily', '1e3' ],
    [ 'daily with spaces', qr/invalid daily quota " 5"/,
      '--tenant', $acme, '--daily', ' 5' ],
    [ 'monthly 0', qr/invalid monthly quota "0": \Q$range\E/,
      '--tenant', $acme, '--monthly', '0' ],
    [ 'monthly too large', qr/invalid monthly quota "1000000000000"/,
      '--tenant', $acme, '--monthly', '1000000000000' ],
    [ 'monthly not a number', qr/invalid monthly quota "x"/,
      '--tenant', $acme, '--monthly', 'x' ],
    (map { [ "soft ratio \"$_\"", qr/invalid soft ratio "\Q$_\E": $ratio/,
             '--tenant', $acme, '--soft-ratio', $_ ] }
         '0', '0.0', '0.000', '0.0004', '1.001', '1.5', '2', '10', '-0.5',
         '+0.5', '.8', '0.', '1.', '0.8.1', '0,8', '8e-1', ' 0.8', '0.8 ',
         'abc', '', '0.1234', '0x1', 'NaN', 'Infinity'),
    [ 'mode unknown', qr/invalid mode "strict": enforce or observe/,
      '--tenant', $acme, '--mode', 'strict' ],
    [ 'mode in capitals', qr/invalid mode "ENFORCE"/,
      '--tenant', $acme, '--mode', 'ENFORCE' ],
    [ 'mode empty', qr/invalid mode ""/,
      '--tenant', $acme, '--mode', '' ],
    [ 'clear with daily',
      qr/set-quota: --clear cannot be combined with --daily/,
      '--tenant', $acme, '--clear', '--daily', '5' ],
    [ 'clear with monthly', qr/--clear cannot be combined with --monthly/,
      '--tenant', $acme, '--monthly', '5', '--clear' ],
    [ 'clear with soft ratio',
      qr/--clear cannot be combined with --soft-ratio/,
      '--tenant', $acme, '--clear', '--soft-ratio', '0.5' ],
    [ 'clear with mode', qr/--clear cannot be combined with --mode/,
      '--tenant', $acme, '--clear', '--mode', 'observe' ],
    [ 'clear with no-daily', qr/--clear cannot be combined with --no-daily/,
      '--tenant', $acme, '--clear', '--no-daily' ],
    [ 'clear with no-monthly',
      qr/--clear cannot be combined with --no-monthly/,
      '--tenant', $acme, '--clear', '--no-monthly' ],
    [ 'clear with a bad daily', qr/--clear cannot be combined with --daily/,
      '--tenant', $acme, '--clear', '--daily', 'x' ],
    [ 'daily and no-daily',
      qr/set-quota: --daily cannot be combined with --no-daily/,
      '--tenant', $acme, '--daily', '5', '--no-daily' ],
    [ 'monthly and no-monthly',
      qr/set-quota: --monthly cannot be combined with --no-monthly/,
      '--tenant', $acme, '--no-monthly', '--monthly', '5' ],
    [ 'unknown option', qr/set-quota: invalid option "--weekly"/,
      '--tenant', $acme, '--weekly', '5' ],
    [ 'value given to a flag', qr/set-quota: invalid option "--clear=yes"/,
      '--tenant', $acme, '--clear=yes' ],
    [ 'missing value', qr/set-quota: option "--daily" needs a value/,
      '--tenant', $acme, '--daily' ],
    [ 'stray operand', qr/set-quota: unexpected argument "1000"/,
      '--tenant', $acme, '--daily', '5', '1000' ],
);

for my $b (@bad) {
    my ($what, $re, @args) = @$b;
    my ($code, $o, $err) = nexusctl(\%nodb, 'set-quota', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
    is($o, '', "$what: nothing on stdout");
}

my ($code, $o, $err);

for my $b (
    [ 'show: no tenant', qr/show-quota: --tenant is required/ ],
    [ 'show: invalid tenant name', qr/invalid tenant name "A"/,
      '--tenant', 'A' ],
    [ 'show: --daily is not an option',
      qr/show-quota: invalid option "--daily"/,
      '--tenant', $acme, '--daily', '5' ],
    [ 'show: stray operand', qr/show-quota: unexpected argument "x"/,
      '--tenant', $acme, 'x' ],
) {
    my ($what, $re, @args) = @$b;
    ($code, $o, $err) = nexusctl(\%nodb, 'show-quota', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
}

is_deeply(tenant_quota($acme), { monthly => 1 },
    'refused commands changed nothing');

# the same valid commands do try the database
($code, $o, $err) = nexusctl(\%nodb, 'set-quota', '--tenant', $acme,
    '--daily', '5');
is($code, 3, 'valid arguments, unreachable database: exit 3');
($code, $o, $err) = nexusctl(\%nodb, 'show-quota', '--tenant', $acme);
is($code, 3, 'show, unreachable database: exit 3');

# --- unknown tenant: exit 1 ---------------------------------------------------
my $ghost = unique_name('ghost');
for my $args (
    [ '--daily', '5' ],
    [ '--no-monthly' ],
    [ '--clear' ],
) {
    ($code, $o, $err) = nexusctl('set-quota', '--tenant', $ghost, @$args);
    is($code, 1, "unknown tenant, @$args: exit 1");
    is($err, "nexusctl: tenant \"$ghost\" not found\n",
        "unknown tenant, @$args: message");
    is($o, '', "unknown tenant, @$args: nothing on stdout");
}

($code, $o, $err) = nexusctl('show-quota', '--tenant', $ghost);
is($code, 1, 'show unknown tenant: exit 1');
is($err, "nexusctl: tenant \"$ghost\" not found\n",
    'show unknown tenant: message');

# --- the CHECK constraint agrees with what nexusctl refuses -------------------
ok(!eval {
    psql('UPDATE tenants SET quota = \'{"soft_ratio": 0}\' WHERE name = '
        . sql_quote($acme));
    1;
}, 'the column refuses a soft ratio of 0');
is_deeply(tenant_quota($acme), { monthly => 1 }, 'and keeps the quota');

# --- help ---------------------------------------------------------------------
($code, $o) = nexusctl('help');
like($o, qr/^  set-quota .*\n  show-quota /m, 'help lists both verbs');
($code, $o) = nexusctl('help', 'set-quota');
is($code, 0, 'help set-quota: exit 0');
like($o, qr/^usage: nexusctl set-quota --tenant NAME \[--daily N\]/,
    'help set-quota: usage');
like($o, qr/^       nexusctl set-quota --tenant NAME --clear$/m,
    'help set-quota: the --clear form');
($code, $o) = nexusctl('show-quota', '--help');
is($code, 0, 'show-quota --help: exit 0');
is($o, "usage: nexusctl show-quota --tenant NAME\n",
    'show-quota --help: usage');

done_testing();
