#!/usr/bin/perl

# The gateway's directives at "nginx -t": nexus_provider, nexus_model,
# nexus_max_attempts and nexus_discovery refuse bad values, unknown
# providers and fallback chains that loop, in nginx's own style.

use strict;
use warnings;

use Test::More;
use Nexus::Test;

sub conf {
    my ($http) = @_;
    return <<"EOF";
    nexus_postgres "%%PG%%" pool=1;
    nexus_zone nexus 4m;
    nexus_key_pepper_file %%PEPPER%%;
    upstream up { server %%MOCK%%; keepalive 4; }
    $http
    server {
        listen 127.0.0.1:%%PORT%%;
        location /v1/ { nexus_api; }
    }
EOF
}

my @bad = (
    ['nexus_provider a upstream=up;', qr/provider "a" has no "type="/],
    ['nexus_provider a type=openai;', qr/provider "a" has no "upstream="/],
    ['nexus_provider a type=gemini upstream=up;',
        qr/invalid parameter "type=gemini"/],
    ['nexus_provider a type=openai upstream=up weight=0;',
        qr/invalid parameter "weight=0"/],
    ['nexus_provider a type=openai upstream=up read_timeout=x;',
        qr/invalid parameter "read_timeout=x"/],
    ['nexus_provider a type=openai upstream=up color=red;',
        qr/invalid parameter "color=red"/],
    ['nexus_provider a/b type=openai upstream=up;',
        qr/invalid provider name "a\/b"/],
    ["nexus_provider a type=openai upstream=up;\n"
        . "    nexus_provider a type=ollama upstream=up;",
        qr/duplicate provider "a"/],
    ['nexus_provider a type=openai upstream=up fallback=a;',
        qr/the fallbacks of provider "a" form a cycle/],
    ["nexus_provider a type=openai upstream=up fallback=b;\n"
        . "    nexus_provider b type=openai upstream=up fallback=c;\n"
        . "    nexus_provider c type=openai upstream=up fallback=a;",
        qr/the fallbacks of provider "a" form a cycle/],
    ['nexus_provider a type=openai upstream=up fallback=zz;',
        qr/provider "a" falls back to unknown provider "zz"/],
    ['nexus_provider a type=openai upstream=up key_file=/nonexistent/k;',
        qr/open\(\) "\/nonexistent\/k" failed/],
    ['nexus_provider a type=ollama upstream=up azure_api_version=2024-06-01;',
        qr/"azure_api_version=" needs "type=openai"/],
    ['nexus_provider a type=openai upstream=up azure_api_version=a/b;',
        qr/invalid parameter "azure_api_version=a\/b"/],
    ['nexus_model m nope;', qr/unknown provider "nope"/],
    ["nexus_provider a type=openai upstream=up;\n"
        . "    nexus_model m a weight=x;", qr/invalid parameter "weight=x"/],
    ["nexus_provider a type=openai upstream=up;\n"
        . "    nexus_model m a;\n    nexus_model m a;",
        qr/model "m" is already served by provider "a"/],
    ['nexus_max_attempts 0;', qr/"nexus_max_attempts" must be from 1 to 10/],
    ['nexus_max_attempts 11;', qr/"nexus_max_attempts" must be from 1 to 10/],
    ['nexus_discovery interval=10ms;', qr/invalid parameter "interval=10ms"/],
    ['nexus_discovery every=1s;', qr/invalid parameter "every=1s"/],
);

for my $case (@bad) {
    my ($http, $re) = @$case;
    my ($code, $out) = nexus_nginx_t(conf($http));
    isnt($code, 0, "refused: $http");
    like($out, $re, 'with the reason');
}

my ($code, $out) = nexus_nginx_t(conf(<<'EOF'));
    nexus_provider a type=openai upstream=up weight=3 fallback=b
                   connect_timeout=1s send_timeout=2s read_timeout=10m;
    nexus_provider b type=ollama upstream=%%MOCK%% discovery=off;
    nexus_provider c type=anthropic upstream=up host=api.example.com;
    nexus_model fast a model=mock-small weight=2;
    nexus_model fast b model=llama3.1:8b;
    nexus_max_attempts 2;
    nexus_discovery interval=5s ttl=1m;
EOF
is($code, 0, 'a full gateway configuration passes') or diag($out);

done_testing();
