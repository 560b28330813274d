#!/usr/bin/perl

# nexusctl audit verify over chains written by two nginx nodes of two
# workers each, and by nexusctl (the tenant and key it makes for each
# chain are its first two rows): everything verifies, then one tenant's chain per kind of
# tampering is changed with psql (edited, deleted, reordered, truncated,
# restamped, and a cut that only the unsigned chain head still shows), and
# each is detected and named by its row; --tenant, --since, a wrong key,
# no key; the signed checkpoints; the triggers that refuse changes made
# through the schema.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $audit = 'nexus_audit_key_file %%AUDIT_KEY%%; nexus_audit_flush 100ms;'
    . ' nexus_audit_checkpoint 1s;';
my $n1 = nexus_nginx(nexus_conf(extra => $audit), workers => 2);
my $n2 = nexus_nginx(nexus_conf(extra => $audit), workers => 2);

nexus_plan(42);

sub tid {
    return psql('SELECT id FROM tenants WHERE name = ' . sql_quote($_[0]));
}

sub verify {
    my (@args) = @_;
    my %opt = ref $args[0] eq 'HASH' ? %{ shift @args } : ();
    return nexusctl(\%opt, 'audit', 'verify', @args);
}

sub wait_for {
    my ($sql, $want) = @_;
    my $deadline = time + 15;
    my $v;
    while (time < $deadline) {
        $v = psql($sql);
        return $v if $v eq $want;
        sleep 0.2;
    }
    return $v;
}

# tamper($sql): as the database's superuser, around the schema's triggers
sub tamper {
    psql("SET session_replication_role = replica; $_[0]");
}

my @kinds = qw(edited deleted reordered truncated restamped headcut intact);
my (%name, %id);

for my $k (@kinds) {
    $name{$k} = make_tenant("v-$k");
    $id{$k} = tid($name{$k});
    my $key = make_key($name{$k}, name => $k);
    # both nodes, alternately: one chain, many writers
    for my $i (1 .. 6) {
        http_req(($i % 2 ? $n1 : $n2)->port, 'GET', '/v1/admin/tenants',
            bearer => $key);
    }
}

my $ids = join(',', values %id);
is(wait_for("SELECT count(*) FROM audit_events WHERE tenant_id IN ($ids)"
    . " AND event_type = 'rbac.forbidden'", 42), 42,
    'six events for each of seven tenants');
cmp_ok(psql("SELECT count(DISTINCT split_part(event_id, '-', 1))"
    . " FROM audit_events WHERE tenant_id IN ($ids)"), '>=', 2,
    'written by more than one worker');
is(wait_for("SELECT count(*) FROM audit_chains c WHERE tenant_id IN ($ids)"
    . " AND EXISTS (SELECT 1 FROM audit_checkpoints k"
    . " WHERE k.tenant_id = c.tenant_id AND k.seq = c.seq)", 7), 7,
    'every head signed in a checkpoint');

# the rows of each chain: nexusctl's two, the gateway's six, and a key's
# first authentication on each node
my %n = map { $_ => psql("SELECT count(*) FROM audit_events"
    . " WHERE tenant_id = $id{$_}") } @kinds;
is(scalar(grep { $n{$_} >= 8 } @kinds), 7, 'and the others before them');
is(psql("SELECT count(*) FROM audit_checkpoints WHERE tenant_id IN ($ids)"
    . " AND count <> seq"), 0, 'a checkpoint counts its rows');
like($n1->error_log . $n2->error_log,
    qr/nexus audit: checkpoint of chain \d+ at row \d+, head [0-9a-f]{64}, signed at \d+, mac [0-9a-f]{64}/,
    'checkpoints are copied into the error log');

my ($code, $out, $err) = verify();
is($code, 0, 'audit verify: exit 0') or diag($out, $err);
for my $k (@kinds) {
    like($out, qr/^tenant \Q$name{$k}\E \(id $id{$k}\): ok: rows 1 to $n{$k}, signed through row $n{$k}$/m,
        "$k: ok before tampering");
}
like($out, qr/^\d+ chains? verified: \d+ ok, 0 with problems$/m, 'summary');

# the schema refuses changes; the chain is for whoever goes around it
ok(!eval { psql("UPDATE audit_events SET outcome = 'success'"
    . " WHERE tenant_id = $id{edited}"); 1 }
    && $@ =~ /append-only/, 'UPDATE refused');
ok(!eval { psql("DELETE FROM audit_events WHERE tenant_id = $id{edited}"); 1 }
    && $@ =~ /append-only/, 'DELETE refused');
ok(!eval { psql('TRUNCATE audit_events'); 1 } && $@ =~ /append-only/,
    'TRUNCATE refused');

# nothing signs or writes behind our back from here on
$_->stop for $n1, $n2;

my %row3 = map { $_ => psql("SELECT id FROM audit_events WHERE tenant_id ="
    . " $id{$_} AND seq = 3") } @kinds;

tamper("UPDATE audit_events SET metadata = '{\"code\":\"nothing to see\"}'"
    . " WHERE tenant_id = $id{edited} AND seq = 3");
tamper("DELETE FROM audit_events WHERE tenant_id = $id{deleted} AND seq = 3");
tamper("UPDATE audit_events SET seq = 1000003 WHERE tenant_id = $id{reordered}"
    . " AND seq = 3; UPDATE audit_events SET seq = 3 WHERE tenant_id ="
    . " $id{reordered} AND seq = 4; UPDATE audit_events SET seq = 4"
    . " WHERE tenant_id = $id{reordered} AND seq = 1000003");
tamper("DELETE FROM audit_events WHERE tenant_id = $id{truncated}"
    . " AND seq > 4");
tamper("UPDATE audit_events SET created_at = created_at - interval '1 hour'"
    . " WHERE tenant_id = $id{restamped} AND seq = 3");
tamper("DELETE FROM audit_events WHERE tenant_id = $id{headcut} AND seq > 4;"
    . " DELETE FROM audit_checkpoints WHERE tenant_id = $id{headcut}"
    . " AND seq > 4");

($code, $out, $err) = verify();
is($code, 1, 'tampered: exit 1') or diag($err);
my %line = map { $_ => ($out =~ /^tenant \Q$name{$_}\E \(id \d+\): (.*)$/m)[0]
    // '' } @kinds;

is($line{edited}, "edited at row 3 (event id $row3{edited}): row 3 was"
    . " edited: stored hash does not match its content; 1 problem in all",
    'an edited row, named');
is($line{deleted}, 'deleted at row 3: row 3 is missing: it was deleted;'
    . ' 1 problem in all', 'a deleted row, named');
like($line{reordered}, qr/^reordered at row 3 \(event id \d+\): rows 3 and 4 were swapped; /,
    'two rows swapped, named');
is($line{truncated}, 'truncated at row 5: the log ends at row 4 but the'
    . " checkpoint covers rows through $n{truncated}: "
    . ($n{truncated} - 4) . ' rows were truncated; 1 problem in all',
    'a truncated tail, named');
like($line{restamped}, qr/^restamped at row 3 \(event id $row3{restamped}\): row 3 was restamped: its time is \d{10} us before row 2's/,
    'a restamped row, named');
like($line{headcut}, qr/^truncated at row 5: the log ends at row 4 but the chain head is row $n{headcut}/,
    'a cut after the latest checkpoint: the chain head tells');
like($line{intact}, qr/^ok: rows 1 to $n{intact}/,
    'the intact chain still verifies');
like($out, qr/^\d+ chains verified: \d+ ok, 6 with problems$/m,
    'summary: six with problems');

# --- one tenant, --since ------------------------------------------------------------
($code, $out) = verify('--tenant', $name{intact});
is($code, 0, '--tenant: exit 0 for an intact chain');
is($out, "tenant $name{intact} (id $id{intact}): ok: rows 1 to $n{intact},"
    . " signed through row $n{intact}\n1 chain verified: 1 ok, 0 with"
    . " problems\n", '--tenant: that chain only');
($code, $out) = verify('--tenant', $name{edited});
is($code, 1, '--tenant: exit 1 for a tampered one');

sleep 1.1;
($code, $out) = verify('--tenant', $name{edited}, '--since', '1s');
is($code, 0, '--since after the checkpoint: the rows before are not read');
like($out, qr/ok: no rows, from the checkpoint at row $n{edited}, signed through row $n{edited}/,
    '--since: from the last checkpoint before it');
($code, $out) = verify('--tenant', $name{edited}, '--since',
    '2001-01-01T00:00:00Z');
is($code, 1, '--since before every checkpoint: from genesis');
($code, $out, $err) = verify('--since', 'last tuesday');
is($code, 2, 'an invalid --since: exit 2');
like($err, qr/invalid --since "last tuesday"/, 'says so');

# --- keys ------------------------------------------------------------------------------
my $other = "$ENV{NEXUS_TEST_TMP}/other-audit.key";
open(my $fh, '>', $other) or die "$other: $!";
print $fh 'ab' x 32, "\n";
close $fh;
($code, $out) = verify({ env => { NEXUS_AUDIT_KEY_FILE => $other } },
    '--tenant', $name{intact});
is($code, 1, 'another key: exit 1');
like($out, qr/bad_checkpoint at row $n{intact} \(event id \d+\): the checkpoint at row $n{intact} has an invalid signature/,
    'another key: the checkpoint does not verify');
($code, $out, $err) = verify({ env => { NEXUS_AUDIT_KEY_FILE => '' } });
is($code, 2, 'no key: exit 2');
like($err, qr/NEXUS_AUDIT_KEY_FILE is not set/, 'says so');
($code, $out, $err) = verify({ env => { NEXUS_AUDIT_KEY_FILE => '/nonexistent' } });
is($code, 2, 'an unreadable key: exit 2');

# --- a forged checkpoint ------------------------------------------------------------
my $m = $n{intact} - 1;
tamper("UPDATE audit_checkpoints SET seq = $m, count = $m WHERE tenant_id ="
    . " $id{intact} AND seq = $n{intact}");
($code, $out) = verify('--tenant', $name{intact});
like($out, qr/bad_checkpoint at row $m \(event id \d+\): the checkpoint at row $m has an invalid signature/,
    'a changed checkpoint is refused');
is($code, 1, 'and fails the verification');
