#!/usr/bin/perl

# Signatures, from the receiver's side of the contract
# (docs/notifications.md): the reference receiver accepts a correctly
# signed delivery and refuses a tampered body, a wrong secret, a stale
# timestamp, a missing or malformed signature, each with its reason; a
# worker signing with a secret the receiver does not share is refused,
# retried, and ends in the DLQ; rotating the secret through the admin
# API makes the replay go through.

use strict;
use warnings;

use Test::More;
use Nexus::Test;
use Nexus::Fixtures;
use Nexus::Notify;

my $t = notify_nginx();
nexus_plan(21);

my $secret = 'whsec-65-shared';
my $rcv = receiver_start(secret => $secret, max_skew => 300);

# --- crafted deliveries ------------------------------------------------------------
my $id = '11111111-2222-4333-8444-555555555555';
my $body = '{"event_type":"x.y","severity":"info"}';

sub send_signed {
    my (%o) = @_;
    my $ts = $o{ts} // time;
    my $b = $o{body} // $body;
    my $sig = $o{sig} // ('sha256=' . hmac_sha256_hex("$id.$ts." . ($o{signed_body}
        // $b), $o{secret} // $secret));
    return http_req($rcv->{port}, 'POST', '/in', body => $b, json => 1,
        headers => ['Content-Type' => 'application/json',
            'X-Notification-Id' => $id, 'X-Notification-Attempt' => 1,
            'X-Notification-Event-Type' => 'x.y',
            ($o{no_sig} ? () : ('X-Notification-Timestamp' => $ts,
                'X-Notification-Signature' => $sig))]);
}

my $r = send_signed();
is($r->{status}, 200, 'a correctly signed delivery is accepted');
$r = send_signed(body => '{"event_type":"x.y","severity":"high"}',
    signed_body => $body);
is($r->{status}, 401, 'a tampered body is refused');
is($r->{json}{error}, 'bad_signature', 'bad_signature');
$r = send_signed(secret => 'not-the-secret');
is($r->{status}, 401, 'a wrong secret is refused');
is($r->{json}{error}, 'bad_signature', 'bad_signature');
$r = send_signed(ts => time - 3600);
is($r->{status}, 401, 'a stale timestamp is refused, even correctly signed');
is($r->{json}{error}, 'stale_timestamp', 'stale_timestamp');
$r = send_signed(ts => time + 3600);
is($r->{json}{error}, 'stale_timestamp', 'and one from the future');
$r = send_signed(no_sig => 1);
is($r->{json}{error}, 'missing_signature', 'an unsigned delivery is refused');
$r = send_signed(sig => 'sha256=' . ('0' x 63));
is($r->{json}{error}, 'bad_signature_format', 'a malformed signature');
$r = send_signed(sig => 'sha1=' . ('0' x 64));
is($r->{json}{error}, 'bad_signature_format', 'another scheme');
is(receiver_stats($rcv)->{accepted}, 1, 'only the good one was accepted');

# --- a worker with another secret -------------------------------------------------------
receiver_reset($rcv);
my $tn = make_tenant('sig');
my $key = make_key($tn, role => 'admin');
my $d = admin($t, $key, 'POST', '/v1/admin/notifications/destinations', {
    url => "$rcv->{url}/in", secret => 'whsec-65-WRONG' })->{json}{data};
my $w = worker_start(env => { NEXUS_NOTIFY_MAX_ATTEMPTS => 2 });
my $eid = admin($t, $key, 'POST', '/v1/admin/notifications/events',
    { event_type => 'sig.test' })->{json}{data}{event_id};
my $j;
ok(wait_for(sub { $j = job_rows("event_id = '$eid'")->[0];
    $j && $j->{status} eq 'dlq' }, 10), 'a wrong secret: refused until the DLQ');
is($j->{last_error}, 'HTTP 401', 'the receiver\'s 401 recorded');
my $att = admin($t, $key, 'GET',
    "/v1/admin/notifications/jobs/$j->{id}/attempts")->{json}{data}{attempts};
like($att->[0]{response_body}, qr/bad_signature/, 'with its answer');
is(receiver_stats($rcv)->{rejected}, 2, 'both attempts refused');
is(receiver_stats($rcv)->{reasons}{bad_signature}, 2, 'as bad_signature');

# rotate the secret, replay the dead letter: it goes through
is(admin($t, $key, 'PATCH', "/v1/admin/notifications/destinations/$d->{id}",
    { secret => $secret })->{status}, 200, 'the secret is rotated');
my $dlq_id = psql("SELECT id FROM notify_dlq WHERE job_id = '$j->{id}'");
my $nj = admin($t, $key, 'POST',
    "/v1/admin/notifications/dlq/$dlq_id/replay")->{json}{data};
ok(wait_for(sub { (job_rows("id = '$nj->{id}'")->[0]{status} // '')
    eq 'delivered' }, 10), 'the replay, signed with the new secret, is accepted');
my ($got) = @{ receiver_received($rcv) };
is($got->{id}, $nj->{id}, 'under the new job id');
is(worker_stop($w), 0, 'stopped');
