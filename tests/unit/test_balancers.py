"""The balancer adapters (what a stack and an operation need of nginx and HAProxy), and the packages the
haproxy image is built from: pure parts, literal inputs."""

import pytest

from labs.errors import ImageError
from labs.infra import debs
from labs.infra.balancers import HAPROXY, NAMES, NGINX, adapter
from labs.infra.images import Image, ImageSet, haproxy_tag
from labs.scenario import Balancer

IMAGES = ImageSet(app=Image("app", "a"), redis=Image("redis", "r"), nginx=Image("nginx:1.27", "official nginx"))


def test_each_balancer_checks_its_config_before_it_serves_it_in_the_foreground():
    assert NGINX.command() == ["sh", "-c", "nginx -t -q -e stderr -c /etc/wslab/nginx.conf && exec nginx -e stderr "
                                           "-g 'daemon off;' -c /etc/wslab/nginx.conf"]
    assert HAPROXY.command() == ["sh", "-c", "haproxy -c -f /etc/wslab/haproxy.cfg && exec haproxy -W -db -f "
                                             "/etc/wslab/haproxy.cfg"]


def test_what_a_reload_needs_the_config_path_and_the_signal():
    assert (NGINX.config_path, NGINX.reload_signal) == ("/etc/wslab/nginx.conf", "SIGHUP")
    assert (HAPROXY.config_path, HAPROXY.reload_signal) == ("/etc/wslab/haproxy.cfg", "SIGUSR2")
    assert adapter(Balancer.HAPROXY) is HAPROXY and adapter(Balancer.NGINX) is NGINX
    assert NAMES == {"nginx", "haproxy"}


def test_a_rejected_config_is_one_line_in_the_balancers_own_words():
    log = ("Configuration file is valid\n"
           "[NOTICE]   (7) : haproxy version is 2.6.12-1+deb12u4\n"
           "[ALERT]    (7) : config : parsing [/etc/wslab/haproxy.cfg:12] : unknown keyword 'bogus' in 'global' section\n"
           "[ALERT]    (7) : config : Fatal errors found in configuration.\n")
    assert HAPROXY.rejected(log) == ("haproxy rejected the rendered config (haproxy -c): config : parsing "
                                     "[/etc/wslab/haproxy.cfg:12] : unknown keyword 'bogus' in 'global' section")
    nginx_log = 'nginx: [emerg] unknown directive "bogus_directive" in /etc/wslab/nginx.conf:1\n'
    assert NGINX.rejected(nginx_log) == ('nginx rejected the rendered config (nginx -t): unknown '
                                         'directive "bogus_directive" in /etc/wslab/nginx.conf:1')
    assert HAPROXY.rejected("[NOTICE]   (7) : New worker (9) forked\n") is None
    assert NGINX.rejected(log) is None


def test_versions_are_read_from_what_each_prints():
    assert HAPROXY.version("HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\n") == "2.6.12-1+deb12u4"
    assert NGINX.version("nginx version: nginx/1.22.1\n") == "nginx/1.22.1"


def test_the_haproxy_image_is_required_only_by_haproxy_and_its_absence_says_why():
    assert NGINX.image(IMAGES).tag == "nginx:1.27"
    with pytest.raises(ImageError, match=r"the haproxy image is missing \(apt-get not found\); run `make images`"):
        HAPROXY.image(ImageSet(**{**IMAGES.__dict__, "haproxy_error": "apt-get not found"}))
    built = Image("wslab/haproxy:abc", "built locally")
    assert HAPROXY.image(ImageSet(**{**IMAGES.__dict__, "haproxy": built})) is built


SIMULATION = """\
NOTE: This is only a simulation!
Reading package lists...
Inst liblua5.3-0 (5.3.6-2 Debian:12.15/oldstable [amd64])
Inst libopentracing1 (1.6.0-4 Debian:12.15/oldstable [amd64])
Inst libopentracing-c-wrapper0 (1.1.3-3+b1 Debian:12.15/oldstable [amd64])
Inst haproxy (2.6.12-1+deb12u4 Debian-Security:12/oldstable-security [amd64])
Conf liblua5.3-0 (5.3.6-2 Debian:12.15/oldstable [amd64])
"""


def test_what_apt_would_install_is_read_as_exact_pins():
    assert debs.parse_simulation(SIMULATION) == [
        debs.Pin("haproxy", "2.6.12-1+deb12u4"), debs.Pin("liblua5.3-0", "5.3.6-2"),
        debs.Pin("libopentracing-c-wrapper0", "1.1.3-3+b1"), debs.Pin("libopentracing1", "1.6.0-4")]
    assert str(debs.Pin("haproxy", "2.6.12-1+deb12u4")) == "haproxy=2.6.12-1+deb12u4"


@pytest.mark.parametrize("line", ["Inst -o (1.0 x)", "Inst haproxy (1.0;rm x)", "Inst Evil (1.0 x)"])
def test_a_package_apt_names_that_could_become_an_option_is_refused(line):
    with pytest.raises(ImageError, match="will not pass on"):
        debs.parse_simulation(line + "\n")


def test_the_haproxy_tag_follows_its_base_and_the_exact_packages():
    pins = debs.parse_simulation(SIMULATION)
    tag = haproxy_tag("wslab/base:1", pins)
    assert tag.startswith("wslab/haproxy:") and tag == haproxy_tag("wslab/base:1", list(pins))
    assert haproxy_tag("wslab/base:2", pins) != tag
    newer = [debs.Pin("haproxy", "2.6.12-1+deb12u5"), *pins[1:]]
    assert haproxy_tag("wslab/base:1", newer) != tag


def test_haproxy_takes_a_reload_only_once_its_master_catches_the_signal():
    """Before its first load is over HAProxy's master ignores SIGUSR2 (SigIgn), then re-executes itself and
    installs its handler (SigCgt): a signal sent in between is lost, so the stack waits for the handler."""
    starting = "SigBlk:\t0000000000000000\nSigIgn:\t0000000084001804\nSigCgt:\t0000000100714203\n"
    serving = "SigBlk:\t0000000000000000\nSigIgn:\t0000000084001004\nSigCgt:\t0000000100716a03\n"
    assert not HAPROXY.catches_reload(starting) and HAPROXY.catches_reload(serving)
    assert HAPROXY.await_reloadable and not NGINX.await_reloadable
    assert NGINX.catches_reload("SigCgt:\t0000000000000001\n") and not NGINX.catches_reload("no status")
