"""--untrusted-input reaches only public addresses, IPv6 forms that carry an IPv4
address included: the network would deliver those to the IPv4 host they name."""

from __future__ import annotations

import ipaddress

import pytest

from vidcurate.transforms.downloads import is_public, public_address
from vidcurate.transforms.fetch_config import FetchError

PUBLIC = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34",
    "2606:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped: the IPv4 address itself
    "::ffff:0:8.8.8.8",  # SIIT IPv4-translated (RFC 7915): translated to 8.8.8.8
    "64:ff9b::808:808",  # NAT64 well-known prefix (RFC 6052): how DNS64 networks
                         # reach IPv4-only hosts, so a public IPv4 inside passes
    "2002:808:808::1",  # 6to4 (RFC 3056) of 8.8.8.8: relayed to that public host
]

# Refused by the code before these forms were decoded (kept: they must stay refused).
ALREADY_REFUSED = [
    "127.0.0.1", "10.1.2.3", "100.64.0.1", "169.254.169.254", "192.0.2.1", "0.0.0.0",
    "224.0.0.1", "::1", "::", "fd00::1", "fe80::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "100::1",  # discard-only
]

# Each of these passed as public before (issue #28, item 5).
HOSTILE = [
    # IPv4-compatible (deprecated, RFC 4291 2.5.5.1): ::a.b.c.d
    "::127.0.0.1", "::10.0.0.1", "::169.254.169.254", "::8.8.8.8",
    # NAT64 well-known prefix with a non-public IPv4 inside
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:1",
    "64:ff9b::6440:1",  # 100.64.0.1, shared address space
    # NAT64 local-use prefix (RFC 8215): the network chooses the format
    "64:ff9b:1::a00:1", "64:ff9b:1:7f00:1::", "64:ff9b:1::808:808",
    # 6to4 with a non-public IPv4 inside
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",
    # SIIT IPv4-translated ::ffff:0:a.b.c.d with a non-public IPv4 inside
    "::ffff:0:127.0.0.1", "::ffff:0:10.0.0.1", "::ffff:0:169.254.169.254",
    # site-local (deprecated, RFC 3879)
    "fec0::1", "feff::1",
    # 6bone (returned, RFC 3701) and the IPv6 documentation prefix of RFC 9637
    "3ffe::1", "3fff::1",
    # outside global unicast 2000::/3: not assigned, reserved or special-purpose
    "4000::1", "5f00::1", "e000::1",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    assert is_public(ipaddress.ip_address(address))
    assert public_address(address) == str(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALREADY_REFUSED + HOSTILE)
def test_internal_and_deprecated_addresses_are_refused(address):
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(FetchError) as e:
        public_address(address)
    assert e.value.error_type == "refused_address"
    assert str(ipaddress.ip_address(address)) in str(e.value)


def test_literal_hosts_in_brackets_are_judged_too():
    with pytest.raises(FetchError, match="refused|not a public"):
        public_address("[64:ff9b::7f00:1]")
