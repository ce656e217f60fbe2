"""Where a VideoServer may connect: allow_hosts entries, the link-local and metadata addresses refused
by default, host names resolved and each address checked."""

from __future__ import annotations

import ipaddress

import pytest

from megflow_mp.video.hosts import HostPolicy, host_of, resolve

ADDRS = {  # a fake DNS: name -> its addresses
    "cam1.cams.example.com": ["10.1.2.3"],
    "deep.site.cams.example.com": ["10.9.9.9"],
    "cams.example.com": ["10.0.0.1"],
    "evil.example.org": ["169.254.169.254"],
    "mapped.example.org": ["::ffff:169.254.169.254"],
    "mixed.example.org": ["10.0.0.5", "192.0.2.7"],
    "inside.example.org": ["10.0.0.5", "10.200.0.1"],
    "v6.example.org": ["fd00::5"],
    "zeroconf.local": ["169.254.10.20"],
    "metadata.google.internal": ["169.254.169.254"],
}


def fake_resolve(host, timeout):
    addrs = ADDRS.get(host)
    return None if addrs is None else [ipaddress.ip_address(a) for a in addrs]


def policy(*entries) -> HostPolicy:
    return HostPolicy(list(entries), resolver=fake_resolve)


@pytest.mark.parametrize("host", ["169.254.169.254", "169.254.0.1", "fe80::1", "fe80::1%eth0", "fd00:ec2::254",
                                  "::ffff:169.254.169.254", "evil.example.org", "mapped.example.org",
                                  "metadata.google.internal", "metadata", "METADATA.google.internal.",
                                  "zeroconf.local"])
def test_link_local_and_metadata_are_refused_by_default(host):
    reason = policy().refusal(host)
    assert reason and "allow_hosts" in reason and ("metadata" in reason or "link-local" in reason)
    assert host.lower().rstrip(".") in reason


def test_a_name_that_resolves_to_metadata_names_the_address():
    assert policy().refusal("evil.example.org") == (
        "host evil.example.org resolves to 169.254.169.254, which is a link-local or cloud metadata address "
        "(allow_hosts may list it: the address, a network inside 169.254.0.0/16 or fe80::/10, or the exact name)")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "cam1.cams.example.com", "192.0.2.10", "::1",
                                  "fd00::12", "does-not-resolve.invalid"])
def test_without_allow_hosts_every_other_host_is_accepted(host):
    assert policy().refusal(host) is None  # a name that does not resolve: the reader reports and reconnects


@pytest.mark.parametrize("entries,host", [
    (["169.254.169.254"], "169.254.169.254"),
    (["169.254.0.0/16"], "169.254.10.20"),
    (["fe80::/10"], "fe80::1"),
    (["[fe80::]/64"], "fe80::1"),
    (["zeroconf.local"], "zeroconf.local"),  # the exact name opens what it resolves to
    (["metadata.google.internal"], "metadata.google.internal"),
])
def test_explicitly_listed_link_local_and_metadata_are_accepted(entries, host):
    assert policy(*entries).refusal(host) is None


@pytest.mark.parametrize("entries,host", [
    (["0.0.0.0/0"], "169.254.169.254"),  # a catch-all network does not open metadata addresses
    (["::/0"], "fe80::1"),
    (["128.0.0.0/1"], "169.254.169.254"),
    (["*.google.internal"], "metadata.google.internal"),  # nor does a wildcard
    (["*.local"], "zeroconf.local"),
    (["169.254.1.0/24"], "169.254.169.254"),  # another part of the range
])
def test_broad_entries_do_not_open_link_local_or_metadata(entries, host):
    assert "link-local or cloud metadata" in policy(*entries).refusal(host) or "metadata service" in \
        policy(*entries).refusal(host)


ALLOW = ["10.0.0.0/8", "*.cams.example.com", "camera-7.example.net", "[fd00::]/8", "192.0.2.10"]


@pytest.mark.parametrize("host", ["10.1.2.3", "10.255.255.255", "cam1.cams.example.com", "deep.site.cams.example.com",
                                  "CAM1.Cams.Example.COM.", "camera-7.example.net", "fd00::5", "fd12:3456::1",
                                  "192.0.2.10", "inside.example.org", "v6.example.org", "::ffff:10.0.0.1",
                                  "cams.example.com"])
def test_allow_hosts_accepts(host):
    # cams.example.com is not matched by the wildcard, but resolves inside 10.0.0.0/8
    assert policy(*ALLOW).refusal(host) is None


@pytest.mark.parametrize("host", ["11.0.0.1", "192.0.2.11", "127.0.0.1", "fe00::1", "camera-8.example.net",
                                  "mixed.example.org", "notcams.example.com", "localhost", "::1"])
def test_allow_hosts_refuses(host):
    assert policy(*ALLOW).refusal(host) in (f"host {host} is not in the server's allow_hosts",
                                            f"host {host} could not be resolved to check it against the server's "
                                            "allow_hosts")


def test_a_name_that_does_not_resolve_is_refused_when_only_addresses_could_allow_it():
    assert policy(*ALLOW).refusal("nowhere.example.org") == (
        "host nowhere.example.org could not be resolved to check it against the server's allow_hosts")
    assert policy(*ALLOW).refusal("gone.cams.example.com") is None  # its name is allowed: the reader reports it


def test_refusal_of_a_url_names_the_host_never_the_secrets():
    reason = policy(*ALLOW).refusal_of("rtsp://admin:S3cretPassw0rd@192.0.2.99:554/s?token=S3cretT0ken")
    assert reason == "host 192.0.2.99 is not in the server's allow_hosts"
    assert policy().refusal_of("rtsp://admin:pw@[fe80::1]:554/s").startswith("host fe80::1 is a link-local")
    assert policy().refusal_of("rtsp://admin:pw@[::1/s") == "the URL names no host"
    assert policy().refusal_of("rtsp:///s") == "the URL names no host"


@pytest.mark.parametrize("url,host", [("rtsp://a:b@Cam.Example.com.:554/x", "cam.example.com"),
                                      ("rtsp://[FD00::1]:554/x", "fd00::1"), ("http://h", "h"),
                                      ("rtsp://[::1/x", None), ("rtsp:///x", None)])
def test_host_of(url, host):
    assert host_of(url) == host


@pytest.mark.parametrize("entry", ["", "  ", "*", "*.", "a b", "10.0.0.0/33", "http://cam", "cam/x", "10.0.0",
                                   "[fd00::]/200", 7, None, "*.*.example.com"])
def test_bad_entries_are_refused_naming_them(entry):
    with pytest.raises(ValueError, match="allow_hosts"):
        HostPolicy([entry])


def test_one_string_is_one_entry_and_describe_lists_them():
    p = HostPolicy("10.0.0.0/8")
    assert p.given and p.describe() == "10.0.0.0/8"
    assert HostPolicy(None).given is False and HostPolicy([]).given is False


def test_resolve_is_real_and_bounded():
    assert ipaddress.ip_address("127.0.0.1") in resolve("localhost")
    assert resolve("2852039166") == [ipaddress.ip_address("169.254.169.254")]  # glibc reads a number as an address
    assert resolve("no-such-host.invalid") is None
    # a number that names a metadata address is resolved and refused like the address itself
    assert "169.254.169.254" in HostPolicy([]).refusal("2852039166")
    assert "169.254.169.254" in HostPolicy([]).refusal("0xa9.0xfe.0xa9.0xfe")


def test_video_server_checks_live_urls_against_its_allow_hosts(tmp_path):
    from megflow_mp.nodes.video_server import VideoServer

    server = VideoServer("server", {"allow_hosts": ["127.0.0.0/8", "*.cams.example.com"],
                                    "allow_dirs": [str(tmp_path)]})
    assert server.check_url("rtsp://admin:S3cret@127.0.0.1:8554/test") is None
    assert server.check_url("rtsp://admin:S3cret@localhost:8554/test") is None  # resolves inside 127.0.0.0/8
    assert server.check_url("rtsp://admin:S3cret@192.0.2.1/s") == "host 192.0.2.1 is not in the server's allow_hosts"
    assert "link-local" in server.check_url("http://169.254.169.254/latest/meta-data/")
    assert "file" in server.check_url(str(tmp_path / "missing.mp4"))  # files: allow_dirs, as before
    assert "S3cret" not in server.check_url("rtsp:/admin:S3cret@cam/s")  # not a URL, nor a file it may open
    with pytest.raises(ValueError, match="VideoServer 'server': allow_hosts: 'http://cam'"):
        VideoServer("server", {"allow_hosts": ["http://cam"]})
    assert VideoServer("server", {}).check_url("rtsp://[fe80::1]:554/s").startswith("host fe80::1 is a link-local")
