package Nexus::Fixtures;

# Shared fixtures for the module's integration tests: the usual nexus
# http{} configuration, and tenants and keys made with nexusctl.

use strict;
use warnings;

use Exporter 'import';
use Test::More;
use Time::HiRes qw(time sleep);
use Nexus::Test;

our @EXPORT = qw(nexus_conf make_tenant make_key key_prefix outcome
    audited key_id usage_tokens);

# nexus_conf(%opt): the http{} body used by most tests.
#   redis_timeout => '100ms', pg => 'pool=2 ...', extra => "http-level text",
#   locations => "extra location blocks", listen => "reuseport"
sub nexus_conf {
    my (%opt) = @_;
    my $rt = $opt{redis_timeout} // '100ms';
    my $pg = $opt{pg} // 'pool=2 query_timeout=5s';
    my $extra = $opt{extra} // '';
    my $locs = $opt{locations} // '';
    my $listen = $opt{listen} // '';
    return <<"EOF";
    log_format nexus '\$nexus_request_id \$nexus_tenant \$nexus_key_prefix '
                     '\$nexus_key_role \$status';
    access_log %%DIR%%/nexus.log nexus;

    nexus_postgres "%%PG%%" $pg;
    nexus_redis %%REDIS%% pool=2 timeout=$rt;
    nexus_zone nexus 4m;
    nexus_key_pepper_file %%PEPPER%%;
    $extra

    server {
        listen 127.0.0.1:%%PORT%% $listen;

        location /v1/        { nexus_api; }
        location /v1/admin/  { nexus_admin; }
        location /v1/ops/    { nexus_ops; }
        location = /healthz  { nexus_health live; }
        location = /readyz   { nexus_health ready; }

        # errors nginx raises itself, answered in the Nexus envelope
        error_page 400 = \@nexus_400;
        error_page 413 = \@nexus_413;
        error_page 494 = \@nexus_494;
        location \@nexus_400 { nexus_error 400 BAD_REQUEST; }
        location \@nexus_413 { nexus_error 413 PAYLOAD_TOO_LARGE; }
        location \@nexus_494 { nexus_error 400 HEADER_TOO_LARGE
                                  "the request headers are too large"; }
        $locs
    }
EOF
}

# make_tenant($base, platform => 1, models => '*' or 'a,b'): creates a
# uniquely named tenant with nexusctl; returns its name. Without models
# the tenant may use no model (migration 0005's default); models => '*'
# creates it with --allow-all-models, any other value is given to
# set-models --models after creation.
sub make_tenant {
    my ($base, %opt) = @_;
    my $name = unique_name($base);
    my $all = defined $opt{models} && $opt{models} eq '*';
    my ($code, $out, $err) = nexusctl('create-tenant', '--name', $name,
        $opt{platform} ? ('--platform') : (),
        $all ? ('--allow-all-models') : ());
    die "create-tenant $name: $err" if $code;
    if (defined $opt{models} && !$all) {
        ($code, $out, $err) = nexusctl('set-models', '--tenant', $name,
            '--models', $opt{models});
        die "set-models $name: $err" if $code;
    }
    return $name;
}

# make_key($tenant, role => 'admin', expires_in => '1h', scopes => 'a,b'):
# creates a key with nexusctl; returns the full key.
sub make_key {
    my ($tenant, %opt) = @_;
    my @args = ('create-key', '--tenant', $tenant,
        '--name', $opt{name} // 'test key');
    push @args, '--role', $opt{role} if $opt{role};
    push @args, '--expires-in', $opt{expires_in} if $opt{expires_in};
    push @args, '--scopes', $opt{scopes} if defined $opt{scopes};
    my ($code, $out, $err) = nexusctl(@args);
    die "create-key: $err" if $code;
    my @lines = split /\n/, $out;
    return $lines[-1];
}

# key_prefix($key): the 12-hex prefix of a key.
sub key_prefix {
    my ($key) = @_;
    return $key =~ /^nx_([0-9a-f]{12})_/ ? $1 : undef;
}

# outcome($r): an answer in one line, for tables of expected answers: the
# status, then for an error its code and what its details name
# ("403 FORBIDDEN required_role=admin", "403 SCOPE_MISSING scope=chat"),
# for nexus_acl_test_hook's check its decision ("200 allow:document_acl").
sub outcome {
    my ($r) = @_;
    my $s = $r->{status} // 'none';
    my $j = $r->{json};
    return $s unless ref $j eq 'HASH';
    if (ref $j->{error} eq 'HASH') {
        my $e = $j->{error};
        $s .= " $e->{code}" if defined $e->{code};
        if (ref $e->{details} eq 'HASH') {
            for my $k (qw(required_role required permission scope)) {
                $s .= " $k=$e->{details}{$k}" if defined $e->{details}{$k};
            }
        }
    } elsif (ref $j->{data} eq 'HASH' && defined $j->{data}{decision}) {
        $s .= " $j->{data}{decision}:$j->{data}{step}";
    }
    return $s;
}

# audited($type, $tenant, $outcome): the count of audit events of a type in
# a tenant's chain (and of an outcome, if given), once it stops growing:
# the gateway writes them in batches.
sub audited {
    my ($type, $tenant, $outcome) = @_;
    my $sql = 'SELECT count(*) FROM audit_events WHERE event_type = '
        . sql_quote($type) . ' AND tenant_id = (SELECT id FROM tenants'
        . ' WHERE name = ' . sql_quote($tenant) . ')'
        . ($outcome ? ' AND outcome = ' . sql_quote($outcome) : '');
    my ($n, $last) = (psql($sql), -1);
    my $deadline = time + 3;
    while (($n == 0 || $n != $last) && time < $deadline) {
        sleep 0.3;
        ($last, $n) = ($n, psql($sql));
    }
    return $n;
}

# key_id($key): the id of a key in api_keys
sub key_id {
    my ($key) = @_;
    return psql("SELECT id FROM api_keys WHERE prefix = '"
        . key_prefix($key) . "'");
}

# usage_tokens($key, $n): the total tokens of a key's usage events, once
# $n of them are written (within 5 s; the gateway writes them in batches)
sub usage_tokens {
    my ($key, $n) = @_;
    my $kid = key_id($key);
    my $deadline = time + 5;
    my ($count, $sum);
    do {
        ($count, $sum) = split /\|/, psql('SELECT count(*),'
            . ' coalesce(sum(total_tokens), 0) FROM usage_events'
            . " WHERE key_id = $kid");
        sleep 0.05 if $count < $n;
    } while ($count < $n && time < $deadline);
    return $sum;
}

1;
