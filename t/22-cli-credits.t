#!/usr/bin/perl

# nexusctl grant-credits: a grant through the gateway's admin API, with the
# endpoint's caps (per grant, per admin key and day), ledger and audit
# event; an Idempotency-Key made and printed, or given, so that a retry
# never grants twice, even when the gateway released the key after a
# failure; the key read from --key-file or NEXUS_ADMIN_KEY only; clear
# errors and exit codes for a bad key file, a refused grant, a gateway
# that cannot be reached or cannot reach its database.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use IO::Socket::INET;
use Nexus::Test;
use Nexus::Fixtures;

my $conf = nexus_conf(extra => <<'EOF');
    nexus_credit_grant_max 5;
    nexus_credit_grant_daily 8;
    nexus_credit_flush 200ms;
    nexus_audit_key_file %%AUDIT_KEY%%;
    nexus_audit_flush 200ms;
EOF
my $n1 = nexus_nginx($conf);

nexus_plan(46);

my $URL = 'http://127.0.0.1:' . $n1->port;

my $ops = make_tenant('gc-ops', platform => 1);
my $admin = make_key($ops, name => 'ops', role => 'admin');
my $admin2 = make_key($ops, name => 'ops two', role => 'admin');
my $t = make_tenant('gc-a');
my $tadmin = make_key($t, name => 'admin', role => 'admin');

sub key_file {
    my ($name, $content) = @_;
    my $path = $n1->dir . "/$name";
    open my $f, '>', $path or die "$path: $!";
    print $f $content;
    close $f;
    return $path;
}

my $kf = key_file('admin.key', "$admin\n");
my $kf2 = key_file('admin2.key', $admin2);

sub grant {
    my (%o) = @_;
    my @a = ('grant-credits', '--tenant', $o{tenant} // $t,
        '--amount', $o{amount} // '1', '--reason',
        $o{reason} // 'a test grant of credits');
    push @a, '--url', $o{url} // $URL unless $o{no_url};
    push @a, '--key-file', $o{key_file} // $kf unless $o{no_key};
    push @a, '--idempotency-key', $o{idem} if defined $o{idem};
    return nexusctl({ env => $o{env} // {} }, @a);
}

sub tenant_id {
    return psql("SELECT id FROM tenants WHERE name = '$_[0]'");
}

sub balance {
    my %h = split /\n/, redis_cli('HGETALL', 'nx:cr:' . tenant_id($_[0]));
    return $h{bal};
}

# the grants in a tenant's ledger, once the stream is drained
sub grants {
    my ($tenant) = @_;
    my $deadline = time + 5;
    while (time < $deadline && redis_cli('XLEN', 'nx:cr:ledger') ne '0') {
        sleep 0.05;
    }
    sleep 0.3;
    return psql("SELECT count(*) FROM credit_transactions WHERE tenant_id = "
        . tenant_id($tenant) . " AND transaction_type = 'admin_credit'");
}

# --- a grant --------------------------------------------------------------------------

my ($c, $out, $err) = grant(amount => '1.50');
is($c, 0, 'grant-credits grants');
my $said = qr/^granted \$1\.50 to tenant \Q$t\E: balance \$0\.00 -> \$1\.50,/;
like($out, qr/$said transaction \d+-\d+\n/, 'and says what it did');
like($out, qr/^granted today by this key: \$1\.50 of \$8\.00$/m,
    'with what the key granted today');
my ($idem) = $err =~ /idempotency key (\S+) \(to retry/;
ok(defined $idem && $idem =~ /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-/,
    'an idempotency key made and printed first');
is(balance($t), 1500000, 'the balance, in Redis');
is(grants($t), 1, 'one grant in the ledger');
is(psql("SELECT created_by || ' ' || description FROM credit_transactions"
    . " WHERE tenant_id = " . tenant_id($t)),
    'key:' . key_prefix($admin) . ' a test grant of credits',
    'made by the admin key, for the reason given');
is(psql("SELECT credits FROM tenant_costs WHERE tenant_id = "
    . tenant_id($t)), 't', 'the tenant runs on credits');
is(audited('admin.credits.granted', $t), 1,
    'admin.credits.granted in the tenant\'s chain, as for the endpoint');

# --- retries never grant twice --------------------------------------------------------

($c, $out, $err) = grant(amount => '1.50', idem => $idem);
is($c, 0, 'a retry with the same key succeeds');
like($out, qr/\(a retry: granted once, earlier\)/, 'says it is a retry');
is(balance($t), 1500000, 'and granted nothing more');
unlike($err, qr/idempotency key/, 'a given key is not printed again');

($c, undef, $err) = grant(amount => '2', idem => $idem);
is($c, 1, 'the same key for another grant: exit 1');
like($err, qr/IDEMPOTENCY_KEY_CONFLICT/, 'IDEMPOTENCY_KEY_CONFLICT');

# the gateway forgets the key's answer (a 5xx is not kept): the grant is
# still remembered with the key, in the same script that made it
my $oid = tenant_id($ops);
my @records = grep { !/:grant$/ } split /\n/,
    redis_cli('KEYS', "nx:idem:$oid:*");
redis_cli('DEL', @records) if @records;
($c, $out) = grant(amount => '1.50', idem => $idem);
is($c, 0, 'a retry the gateway\'s record lets through again');
like($out, qr/\(a retry: granted once, earlier\)/, 'is answered as a retry');
is(balance($t), 1500000, 'and still grants nothing');
is(grants($t), 1, 'one grant in the ledger, still');

# --- the endpoint's caps --------------------------------------------------------------

($c, undef, $err) = grant(amount => '6');
is($c, 1, 'above nexus_credit_grant_max: exit 1');
like($err, qr/GRANT_LIMIT_EXCEEDED: this grant exceeds the limit of a single/,
    'GRANT_LIMIT_EXCEEDED, per grant');
($c) = grant(amount => '5');
is($c, 0, 'the cap itself is allowed');
($c, undef, $err) = grant(amount => '2');
is($c, 1, 'past the admin key\'s daily cap: exit 1');
like($err, qr/GRANT_LIMIT_EXCEEDED: .*daily/, 'GRANT_LIMIT_EXCEEDED, daily');
($c) = grant(amount => '2', key_file => $kf2);
is($c, 0, 'another admin key has its own');
is(balance($t), 8500000, 'what was granted, no more');

($c, undef, $err) = grant(key_file => key_file('t.key', $tadmin));
is($c, 1, 'a tenant admin\'s key: exit 1');
like($err, qr/FORBIDDEN/, 'FORBIDDEN: a tenant cannot grant itself credits');
($c, undef, $err) = grant(tenant => 'gc-nosuch');
like($err, qr/TENANT_NOT_FOUND/, 'an unknown tenant: TENANT_NOT_FOUND');

# --- the key: a file or the environment, never argv -----------------------------------

($c, $out) = grant(no_url => 1, no_key => 1, env => { NEXUS_URL => $URL,
    NEXUS_ADMIN_KEY => $admin2 }, amount => '0.25');
is($c, 0, 'NEXUS_URL and NEXUS_ADMIN_KEY');
($c, undef, $err) = grant(no_key => 1);
is($c, 2, 'no key: exit 2');
like($err, qr/an admin key is required: --key-file FILE or NEXUS_ADMIN_KEY/,
    'says where the key comes from');
($c, undef, $err) = nexusctl('grant-credits', '--tenant', $t, '--amount', '1',
    '--reason', 'a test grant of credits', '--url', $URL, '--key', $admin);
is($c, 2, 'there is no option for the key itself');
unlike($err, qr/\Q$admin\E/, 'and the key is not echoed');
($c, undef, $err) = grant(key_file => $n1->dir . '/none.key');
is($c, 2, 'a key file that does not exist: exit 2');
like($err, qr/cannot open the key file/, 'cannot open the key file');
my $junk = 'nx_0123456789ab_not-a-secret-at-all';
($c, undef, $err) = grant(key_file => key_file('junk.key', $junk));
is($c, 2, 'a key file without a key: exit 2');
ok($err =~ /the key file does not hold an API key/ && $err !~ /not-a-secret/,
    'says so, without echoing it');
($c, undef, $err) = grant(key_file => key_file('other.key',
    'nx_0123456789ab_' . ('0' x 64)));
ok($c == 1 && $err =~ /AUTH_INVALID/, 'a key the gateway does not know');
($c, undef, $err) = grant(url => 'http://ops:secret@127.0.0.1:1');
is($c, 2, 'credentials in the URL are refused');
($c, undef, $err) = grant(amount => '0');
is($c, 2, 'an amount of 0: exit 2');

# --- a gateway out of reach -----------------------------------------------------------

my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0');
my $closed = $s->sockport;
close $s;
($c, undef, $err) = grant(url => "http://127.0.0.1:$closed",
    idem => 'gc-unreachable-1');
is($c, 3, 'no gateway: exit 3');
$said = qr/no answer from the gateway.*\n.*retry with/;
like($err, qr/$said --idempotency-key gc-unreachable-1/,
    'says so, and how to retry safely');

pg_stop();
($c, undef, $err) = grant(amount => '0.5', idem => 'gc-pg-1');
pg_start();
is($c, 3, 'the gateway\'s database down: exit 3');
like($err, qr/DEPENDENCY_UNAVAILABLE.*\n.*retry with --idempotency-key gc-pg-1/,
    'DEPENDENCY_UNAVAILABLE, and how to retry');
my $ok;
for (1 .. 100) {
    ($c) = grant(amount => '0.5', idem => 'gc-pg-1', key_file => $kf2);
    $ok = 1, last if $c == 0;
    sleep 0.1;
}
ok($ok, 'the retry grants, once');
