#!/usr/bin/perl

# nexusctl set-models and show-models, and create-tenant --allow-all-models:
# a tenant's allow-all flag and model list, and a key's own list or its
# inheritance, land in the columns of migration 0005, and show-models
# prints the effective set as the gateway computes it
# (nexus_models_text); bad arguments are refused before the database is
# touched (exit 2), unknown tenants and keys are exit 1. Needs no nginx.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;

my $acme = make_tenant('acme');
my $other = make_tenant('other');
my $key = make_key($acme, name => 'narrowed');
my $prefix = key_prefix($key);
my $other_key = make_key($acme, name => 'bystander');

# the tenant's columns: "t|{a,b}" as psql prints them
sub tenant_models {
    my ($name) = @_;
    return psql('SELECT allow_all_models, allowed_models FROM tenants'
        . ' WHERE name = ' . sql_quote($name));
}

# the key's column, "NULL" when it inherits
sub key_models {
    my ($p) = @_;
    return psql("SELECT coalesce(allowed_models::text, 'NULL')"
        . ' FROM api_keys WHERE prefix = ' . sql_quote($p));
}

# what the gateway's key lookup carries for the key
sub key_effective {
    my ($p) = @_;
    return psql('SELECT nexus_models_text(k.allowed_models,'
        . ' t.allow_all_models, t.allowed_models)'
        . ' FROM api_keys k JOIN tenants t ON t.id = k.tenant_id'
        . ' WHERE k.prefix = ' . sql_quote($p));
}

# ok_run($what, @args): nexusctl must succeed; returns its stdout
sub ok_run {
    my ($what, @args) = @_;
    my ($code, $out, $err) = nexusctl(@args);
    is($code, 0, "$what: exit 0") or diag($err);
    is($err, '', "$what: nothing on stderr");
    return $out;
}

# --- create-tenant --allow-all-models -----------------------------------------
is(tenant_models($acme), 'f|{}', 'a new tenant may use no model');

my $open = unique_name('open');
my $out = ok_run('create with --allow-all-models', 'create-tenant',
    '--name', $open, '--allow-all-models');
like($out, qr/^tenant \d+ \Q$open\E\n\z/, 'create: the usual output');
is(tenant_models($open), 't|{}', 'create: allow_all_models is on');

$out = ok_run('show the open tenant', 'show-models', '--tenant', $open);
is($out, "models of tenant $open: allow_all=yes models=(none) effective=*\n",
    'show: every discovered model');

my $plat = unique_name('plat');
ok_run('create platform with --allow-all-models', 'create-tenant',
    "--name=$plat", '--allow-all-models', '--platform');
is(psql('SELECT platform, allow_all_models FROM tenants WHERE name = '
        . sql_quote($plat)), 't|t', 'create: both flags at once');

# --- tenant: set, merge, allow all, clear -------------------------------------
$out = ok_run('show, nothing set', 'show-models', '--tenant', $acme);
is($out, "models of tenant $acme: allow_all=no models=(none)"
    . " effective=(none)\n", 'show: no model');

$out = ok_run('set models', 'set-models', '--tenant', $acme, '--models',
    'gpt-4o,llama3:8b,gpt-4o,mistral,llama3:8b');
is($out, "models of tenant $acme: allow_all=no models=gpt-4o,llama3:8b,mistral"
    . " effective=gpt-4o,llama3:8b,mistral\n",
    'set: duplicates dropped, order kept');
is(tenant_models($acme), 'f|{gpt-4o,llama3:8b,mistral}', 'set: column');

$out = ok_run('allow all', 'set-models', '--tenant', $acme, '--allow-all');
is($out, "models of tenant $acme: allow_all=yes"
    . " models=gpt-4o,llama3:8b,mistral effective=*\n",
    'allow all: the list is kept, the effective set is everything');
is(tenant_models($acme), 't|{gpt-4o,llama3:8b,mistral}', 'allow all: column');

$out = ok_run('show', 'show-models', '--tenant', $acme);
is($out, "models of tenant $acme: allow_all=yes"
    . " models=gpt-4o,llama3:8b,mistral effective=*\n",
    'show: what set-models printed');

$out = ok_run('no allow all', 'set-models', "--tenant=$acme",
    '--no-allow-all');
is($out, "models of tenant $acme: allow_all=no models=gpt-4o,llama3:8b,mistral"
    . " effective=gpt-4o,llama3:8b,mistral\n", 'no allow all: the list again');

$out = ok_run('models and allow all at once', 'set-models', '--tenant', $acme,
    '--models', 'a', '--allow-all');
is($out, "models of tenant $acme: allow_all=yes models=a effective=*\n",
    'models and allow all at once');

$out = ok_run('clear the list', 'set-models', '--tenant', $acme,
    '--models', '', '--no-allow-all');
is($out, "models of tenant $acme: allow_all=no models=(none)"
    . " effective=(none)\n", 'empty --models clears the list');
is(tenant_models($acme), 'f|{}', 'clear: column');

# every character the rule allows, and the longest name
my $long = 'm' x 128;
$out = ok_run('every allowed character', 'set-models', '--tenant', $acme,
    '--models', "Org/Model-1.5_x:v2\@eu+b,$long");
is($out, "models of tenant $acme: allow_all=no"
    . " models=Org/Model-1.5_x:v2\@eu+b,$long"
    . " effective=Org/Model-1.5_x:v2\@eu+b,$long\n",
    'every allowed character, a 128-character name');

# names are case-sensitive, as the column compares them
ok_run('case-sensitive names', 'set-models', '--tenant', $acme, '--models',
    'GPT-4o,gpt-4o,GPT-4o');
is(tenant_models($acme), 'f|{GPT-4o,gpt-4o}', 'case-sensitive duplicates');

# the limits: 64 different names, 2000 characters joined
my @many = map { sprintf 'model-%02d', $_ } 1 .. 64;
ok_run('64 names', 'set-models', '--tenant', $acme, '--models',
    join(',', @many, @many[0 .. 9]));
is(psql('SELECT cardinality(allowed_models) FROM tenants WHERE name = '
        . sql_quote($acme)), 64, '64 names, repeats not counted');

# 15 names of 125 characters and one of 110, with 15 commas: 2000
my @big = map { sprintf('n%02d', $_) . 'x' x 122 } 1 .. 15;
ok_run('2000 characters', 'set-models', '--tenant', $acme, '--models',
    join(',', @big, 'y' x 110));
is(psql("SELECT length(array_to_string(allowed_models, ','))"
        . ' FROM tenants WHERE name = ' . sql_quote($acme)), 2000,
    'a list of 2000 characters is accepted');

ok_run('tenant list', 'set-models', '--tenant', $acme, '--models',
    'gpt-4o,llama3,mistral');
is(tenant_models($other), 'f|{}', 'another tenant is untouched');

# --- key: inherit, narrow, empty ----------------------------------------------
$out = ok_run('show key, inherits', 'show-models', '--prefix', $prefix);
is($out, "models of key $prefix (tenant $acme): models=(inherits)"
    . " effective=gpt-4o,llama3,mistral\n", 'show key: inherits');
is(key_models($prefix), 'NULL', 'a new key inherits');

$out = ok_run('narrow key', 'set-models', '--prefix', $prefix, '--models',
    'mistral,claude,gpt-4o,mistral');
is($out, "models of key $prefix (tenant $acme): models=mistral,claude,gpt-4o"
    . " effective=gpt-4o,mistral\n",
    'narrow: the effective set is the intersection');
is(key_models($prefix), '{mistral,claude,gpt-4o}', 'narrow: column');
is(key_effective($prefix), 'gpt-4o,mistral',
    'the gateway\'s view agrees');
is(key_models(key_prefix($other_key)), 'NULL',
    'another key of the tenant is untouched');
is(tenant_models($acme), 'f|{gpt-4o,llama3,mistral}',
    'the key\'s tenant is untouched');

$out = ok_run('show key', 'show-models', '--prefix', "nx_$prefix");
is($out, "models of key $prefix (tenant $acme): models=mistral,claude,gpt-4o"
    . " effective=gpt-4o,mistral\n", 'show key by nx_<prefix>');

# the tenant allowing all: the key's own list is the effective set
ok_run('tenant allows all', 'set-models', '--tenant', $acme, '--allow-all');
$out = ok_run('show key, tenant allows all', 'show-models', '--prefix',
    $prefix);
is($out, "models of key $prefix (tenant $acme): models=mistral,claude,gpt-4o"
    . " effective=mistral,claude,gpt-4o\n",
    'tenant allows all: the key\'s own list');
$out = ok_run('show inheriting key, tenant allows all', 'show-models',
    '--prefix', key_prefix($other_key));
is($out, 'models of key ' . key_prefix($other_key) . " (tenant $acme):"
    . " models=(inherits) effective=*\n",
    'tenant allows all: an inheriting key gets everything');
ok_run('tenant list again', 'set-models', '--tenant', $acme,
    '--no-allow-all');

$out = ok_run('empty key list', 'set-models', '--prefix',
    'NX_' . uc($prefix), '--models', '');
is($out, "models of key $prefix (tenant $acme): models=(none)"
    . " effective=(none)\n", 'an empty key list: no model at all');
is(key_models($prefix), '{}', 'empty key list: column is {}, not NULL');

$out = ok_run('inherit', 'set-models', '--prefix', $key, '--inherit');
is($out, "models of key $prefix (tenant $acme): models=(inherits)"
    . " effective=gpt-4o,llama3,mistral\n", 'inherit, by the whole key');
is(key_models($prefix), 'NULL', 'inherit: column is NULL');
is(key_effective($prefix), 'gpt-4o,llama3,mistral',
    'inherit: the gateway\'s view agrees');

# a key's list outside its tenant's: nothing effective
ok_run('disjoint key list', 'set-models', '--prefix', $prefix, '--models',
    'claude');
$out = ok_run('show disjoint', 'show-models', '--prefix', $prefix);
is($out, "models of key $prefix (tenant $acme): models=claude"
    . " effective=(none)\n", 'disjoint lists: no model');

# a revoked key keeps its row: its models can still be set
my $revoked = make_key($acme, name => 'revoked');
nexusctl('revoke-key', '--prefix', key_prefix($revoked));
ok_run('set revoked key', 'set-models', '--prefix', key_prefix($revoked),
    '--models', 'gpt-4o');

# --- validation: exit 2, before the database is touched -----------------------
# an unreachable database would be exit 3: exit 2 shows it was never tried
my %nodb = (env => { NEXUS_DATABASE_URL => 'postgresql://127.0.0.1:1/nexus' });

my $rule = qr/: 1 to 128 of A-Z a-z 0-9 \. _ : \/ \@ \+ -$/m;

my @bad = (
    [ 'both tenant and prefix',
      qr/set-models: exactly one of --tenant and --prefix is required/,
      '--tenant', $acme, '--prefix', $prefix, '--models', 'a' ],
    [ 'neither tenant nor prefix', qr/exactly one of --tenant and --prefix/,
      '--models', 'a' ],
    [ 'invalid tenant name', qr/invalid tenant name "Bad Name"/,
      '--tenant', 'Bad Name', '--models', 'a' ],
    [ 'invalid prefix', qr/invalid key prefix: expected 12 hex characters/,
      '--prefix', 'nx_zz', '--models', 'a' ],
    [ 'tenant: nothing to set',
      qr/--models, --allow-all or --no-allow-all is required with --tenant/,
      '--tenant', $acme ],
    [ 'tenant: inherit', qr/set-models: --inherit needs --prefix/,
      '--tenant', $acme, '--inherit' ],
    [ 'tenant: inherit with models', qr/set-models: --inherit needs --prefix/,
      '--tenant', $acme, '--models', 'a', '--inherit' ],
    [ 'tenant: allow all and no allow all',
      qr/set-models: --allow-all cannot be combined with --no-allow-all/,
      '--tenant', $acme, '--allow-all', '--no-allow-all' ],
    [ 'key: nothing to set',
      qr/set-models: --models or --inherit is required with --prefix/,
      '--prefix', $prefix ],
    [ 'key: models and inherit',
      qr/set-models: --models cannot be combined with --inherit/,
      '--prefix', $prefix, '--models', 'a', '--inherit' ],
    [ 'key: allow all', qr/set-models: --allow-all needs --tenant/,
      '--prefix', $prefix, '--allow-all' ],
    [ 'key: no allow all', qr/set-models: --no-allow-all needs --tenant/,
      '--prefix', $prefix, '--models', 'a', '--no-allow-all' ],
    (map { [ "model name \"$_->[0]\"",
             qr/invalid model name "\Q$_->[1]\E"$rule/,
             '--tenant', $acme, '--models', $_->[0] ] }
         [ 'gpt 4', 'gpt 4' ], [ 'a,,b', '' ], [ 'a,', '' ], [ ',a', '' ],
         [ ',', '' ], [ ' a', ' a' ], [ 'a,b ', 'b ' ], [ '*', '*' ],
         [ 'a;b', 'a;b' ], [ 'a"b', 'a\\"b' ], [ "a'b", "a'b" ],
         [ 'a\\b', 'a\\\\b' ], [ "caf\xc3\xa9", 'caf\\xc3\\xa9' ],
         [ "a\tb", 'a\\x09b' ], [ 'a(b)', 'a(b)' ], [ 'a#b', 'a#b' ],
         [ "ok,x y", 'x y' ]),
    [ 'a name of 129 characters',
      qr/invalid model name "m{64}\.\.\."$rule/,
      '--tenant', $acme, '--models', 'm' x 129 ],
    [ 'a bad name for a key', qr/invalid model name "a b"$rule/,
      '--prefix', $prefix, '--models', 'a b' ],
    [ '65 names', qr/^nexusctl: too many models: at most 64 different names$/m,
      '--tenant', $acme, '--models',
      join(',', map { "m$_" } 1 .. 65) ],
    [ '65 names for a key', qr/too many models: at most 64 different names/,
      '--prefix', $prefix, '--models', join(',', map { "m$_" } 1 .. 65) ],
    [ '2001 characters',
      qr/models list too long: at most 2000 characters, commas included$/m,
      '--tenant', $acme, '--models', join(',', @big, 'y' x 111) ],
    [ 'unknown option', qr/set-models: invalid option "--names"/,
      '--tenant', $acme, '--names', 'a' ],
    [ 'value given to a flag', qr/set-models: invalid option "--inherit=yes"/,
      '--prefix', $prefix, '--inherit=yes' ],
    [ 'missing value', qr/set-models: option "--models" needs a value/,
      '--tenant', $acme, '--models' ],
    [ 'stray operand', qr/set-models: unexpected argument "gpt-4o"/,
      '--tenant', $acme, 'gpt-4o' ],
);

for my $b (@bad) {
    my ($what, $re, @args) = @$b;
    my ($code, $o, $err) = nexusctl(\%nodb, 'set-models', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
    is($o, '', "$what: nothing on stdout");
}

# a prefix that is not one is not echoed: it may be a pasted secret
my ($code, $o, $err) = nexusctl(\%nodb, 'set-models', '--prefix',
    'nx_0123456789ab_secret', '--inherit');
is($code, 2, 'malformed key: exit 2');
unlike($err, qr/secret/, 'malformed key: not echoed');

for my $b (
    [ 'show: both', qr/show-models: exactly one of --tenant and --prefix/,
      '--tenant', $acme, '--prefix', $prefix ],
    [ 'show: neither', qr/show-models: exactly one of --tenant and --prefix/ ],
    [ 'show: --models is not an option',
      qr/show-models: invalid option "--models"/,
      '--tenant', $acme, '--models', 'a' ],
    [ 'show: invalid tenant name', qr/invalid tenant name "A"/,
      '--tenant', 'A' ],
    [ 'show: invalid prefix', qr/invalid key prefix/, '--prefix', 'xyz' ],
    [ 'show: stray operand', qr/show-models: unexpected argument "x"/,
      '--tenant', $acme, 'x' ],
) {
    my ($what, $re, @args) = @$b;
    ($code, $o, $err) = nexusctl(\%nodb, 'show-models', @args);
    is($code, 2, "$what: exit 2");
    like($err, $re, "$what: message");
}

($code, $o, $err) = nexusctl(\%nodb, 'create-tenant', '--name', 'x',
    '--allow-all-models=yes');
is($code, 2, 'create-tenant: a value given to --allow-all-models: exit 2');
like($err, qr/create-tenant: invalid option "--allow-all-models=yes"/,
    'create-tenant: a value given to --allow-all-models: message');

is(tenant_models($acme), 'f|{gpt-4o,llama3,mistral}',
    'refused commands changed nothing');
is(key_models($prefix), '{claude}', 'refused commands changed no key');

# the same valid commands do try the database
($code, $o, $err) = nexusctl(\%nodb, 'set-models', '--tenant', $acme,
    '--models', 'a');
is($code, 3, 'valid arguments, unreachable database: exit 3');
($code, $o, $err) = nexusctl(\%nodb, 'show-models', '--prefix', $prefix);
is($code, 3, 'show, unreachable database: exit 3');

# --- unknown tenant or key: exit 1 --------------------------------------------
my $ghost = unique_name('ghost');
for my $args (
    [ '--models', 'a' ],
    [ '--allow-all' ],
    [ '--models', '', '--no-allow-all' ],
) {
    ($code, $o, $err) = nexusctl('set-models', '--tenant', $ghost, @$args);
    is($code, 1, "unknown tenant, @$args: exit 1");
    is($err, "nexusctl: tenant \"$ghost\" not found\n",
        "unknown tenant, @$args: message");
    is($o, '', "unknown tenant, @$args: nothing on stdout");
}

for my $args ([ '--models', 'a' ], [ '--inherit' ]) {
    ($code, $o, $err) = nexusctl('set-models', '--prefix', '000000000000',
        @$args);
    is($code, 1, "unknown key, @$args: exit 1");
    is($err, "nexusctl: key 000000000000 not found\n",
        "unknown key, @$args: message");
    is($o, '', "unknown key, @$args: nothing on stdout");
}

($code, $o, $err) = nexusctl('show-models', '--tenant', $ghost);
is($code, 1, 'show unknown tenant: exit 1');
is($err, "nexusctl: tenant \"$ghost\" not found\n",
    'show unknown tenant: message');
($code, $o, $err) = nexusctl('show-models', '--prefix', 'nx_000000000000');
is($code, 1, 'show unknown key: exit 1');
is($err, "nexusctl: key 000000000000 not found\n",
    'show unknown key: message');

# --- the CHECK constraint agrees with what nexusctl refuses -------------------
for my $b (
    [ 'a blank', "ARRAY['gpt 4']" ],
    [ 'an empty name', "ARRAY['']" ],
    [ '65 names', 'ARRAY(SELECT \'m\' || g FROM generate_series(1, 65) g)' ],
) {
    my ($what, $arr) = @$b;
    ok(!eval {
        psql("UPDATE tenants SET allowed_models = $arr WHERE name = "
            . sql_quote($acme));
        1;
    }, "the column refuses $what");
    like($@, qr/tenants_allowed_models_valid/, "$what: by the constraint");
}
ok(!eval {
    psql("UPDATE api_keys SET allowed_models = ARRAY['a b'] WHERE prefix = "
        . sql_quote($prefix));
    1;
}, 'the key column refuses a blank');
like($@, qr/api_keys_allowed_models_valid/, 'a key name: by the constraint');
is(tenant_models($acme), 'f|{gpt-4o,llama3,mistral}', 'and keeps the list');

# --- the fixture --------------------------------------------------------------
my $fix_all = make_tenant('fix-all', models => '*');
is(tenant_models($fix_all), 't|{}', 'make_tenant models => "*"');
my $fix_list = make_tenant('fix-list', models => 'a,b,a');
is(tenant_models($fix_list), 'f|{a,b}', 'make_tenant models => "a,b"');
my $fix_plat = make_tenant('fix-plat', platform => 1, models => 'c');
is(psql('SELECT platform, allow_all_models, allowed_models FROM tenants'
        . ' WHERE name = ' . sql_quote($fix_plat)), 't|f|{c}',
    'make_tenant platform and models together');

# --- help ---------------------------------------------------------------------
($code, $o) = nexusctl('help');
like($o, qr/^  set-models .*\n  show-models /m, 'help lists both verbs');
($code, $o) = nexusctl('help', 'set-models');
is($code, 0, 'help set-models: exit 0');
like($o, qr/^usage: nexusctl set-models --tenant NAME \[--models M1,M2\]/,
    'help set-models: usage');
my $key_form = '       nexusctl set-models --prefix PREFIX'
    . ' (--models M1,M2 | --inherit)';
like($o, qr/^\Q$key_form\E$/m, 'help set-models: the key form');
($code, $o) = nexusctl('show-models', '--help');
is($code, 0, 'show-models --help: exit 0');
is($o, "usage: nexusctl show-models (--tenant NAME | --prefix PREFIX)\n",
    'show-models --help: usage');
($code, $o) = nexusctl('help', 'create-tenant');
like($o, qr/\[--allow-all-models\]/, 'help create-tenant: the new flag');

done_testing();
