#!/usr/bin/perl

# nexus_redis db= and password_file=: the connection selects its database
# and authenticates before anything else it sends; a wrong password makes
# Redis "down" for /readyz, and the secret never reaches a log.

use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;
use Nexus::Fixtures;

my $secret = 'redis-secret-' . int(rand(1e9));

my $tmp = "$ENV{NEXUS_TEST_TMP}/redis-options-$$";
mkdir $tmp;
for my $f (['good', "$secret\n"], ['bad', "wrong-password\n"]) {
    open my $fh, '>', "$tmp/$f->[0]" or die "$tmp/$f->[0]: $!";
    print $fh $f->[1];
    close $fh;
}

redis_cli('CONFIG', 'SET', 'requirepass', $secret);

my ($good, $bad);
eval {
    $good = nexus_nginx(nexus_conf(extra => "# db and auth\n")
        =~ s{nexus_redis (\S+) pool=2}{nexus_redis $1 pool=2 db=3 password_file=$tmp/good}r);
    $bad = nexus_nginx(nexus_conf()
        =~ s{nexus_redis (\S+) pool=2}{nexus_redis $1 pool=2 password_file=$tmp/bad}r);
    1;
} or do {
    redis_cli('-a', $secret, '--no-auth-warning', 'CONFIG', 'SET',
        'requirepass', '');
    die $@;
};

nexus_plan(6);

sub ready {
    my ($t) = @_;
    my $deadline = time + 5;
    my $r;
    do {
        $r = http_req($t->port, 'GET', '/readyz', json => 1);
        sleep 0.1 if $r->{status} != 200;
    } while ($r->{status} != 200 && time < $deadline);
    return $r;
}

my $r = ready($good);
is($r->{status}, 200, 'AUTH with the right password: ready');

$r = http_req($bad->port, 'GET', '/readyz', json => 1);
is($r->{status}, 503, 'wrong password: not ready');
is($r->{json}{error}{details}{checks}{redis}, 'down', 'redis reported down');

my $clients = redis_cli('-a', $secret, '--no-auth-warning', 'CLIENT', 'LIST');
like($clients, qr/\bdb=3\b/, 'a connection selected db 3');

redis_cli('-a', $secret, '--no-auth-warning', 'CONFIG', 'SET',
    'requirepass', '');

# a password Redis refuses (it now has none) still keeps the node out
$r = http_req($bad->port, 'GET', '/readyz', json => 1);
is($r->{status}, 503, 'a refused AUTH keeps Redis down, never half-open');

my $logs = $good->error_log . $bad->error_log;
unlike($logs, qr/\Q$secret\E|wrong-password/, 'no password in the logs');
$good->allow_errors(qr/nexus redis/);
$bad->allow_errors(qr/nexus redis/);
