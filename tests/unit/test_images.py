"""Pure parts of labs.images: picking the debootstrap mirror from apt sources, and image tags."""

from pathlib import Path

import pytest

from labs.infra.images import Mirror, app_tag, base_tag, pick_mirror, read_apt_sources

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""

ONE_LINE = """\
# comment
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] https://third.example.org/apt cloud-sdk-bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb http://ftp.example.org/debian bookworm main contrib non-free-firmware  # trailing comment
"""


def test_deb822_picks_the_codename_suite() -> None:
    assert pick_mirror([("debian.sources", DEB822)], "bookworm") == Mirror("http://deb.debian.org/debian", ("main",))


def test_one_line_skips_src_options_security_and_other_suites() -> None:
    assert pick_mirror([("sources.list", ONE_LINE)], "bookworm") == Mirror(
        "http://ftp.example.org/debian", ("main", "contrib", "non-free-firmware")
    )


def test_first_file_in_order_wins() -> None:
    files = [("sources.list", ONE_LINE), ("debian.sources", DEB822)]
    assert pick_mirror(files, "bookworm").uri == "http://ftp.example.org/debian"
    assert pick_mirror(list(reversed(files)), "bookworm").uri == "http://deb.debian.org/debian"


def test_deb822_disabled_continuation_and_missing_main() -> None:
    text = """\
Enabled: no
Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main

Types: deb deb-src
URIs: http://contrib-only.example.org/debian
Suites: bookworm
Components: contrib

Types: deb
URIs:
 http://a.example.org/debian
 http://b.example.org/debian
Suites: bookworm
Components: main
"""
    assert pick_mirror([("x.sources", text)], "bookworm") == Mirror("http://a.example.org/debian", ("main",))


def test_no_match_gives_none() -> None:
    assert pick_mirror([("debian.sources", DEB822)], "trixie") is None
    assert pick_mirror([], "bookworm") is None


def test_read_apt_sources_order_and_suffixes(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(ONE_LINE)
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "b.sources").write_text(DEB822)
    (parts / "a.list").write_text("")
    (parts / "c.list.disabled").write_text("deb http://nope.example.org/debian bookworm main\n")
    assert [name for name, _ in read_apt_sources(tmp_path)] == ["sources.list", "a.list", "b.sources"]


def test_base_tag_is_stable_per_suite() -> None:
    assert base_tag("bookworm") == base_tag("bookworm")
    assert base_tag("bookworm") != base_tag("trixie")
    assert base_tag("bookworm").startswith("wslab/base:")


@pytest.fixture
def app_tree(tmp_path: Path) -> tuple[Path, Path]:
    app_dir = tmp_path / "images" / "app"
    app_dir.mkdir(parents=True)
    (app_dir / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\n")
    (app_dir / "requirements.txt").write_text("websockets==17.4\n")
    package = tmp_path / "labs" / "app"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "server.py").write_text("print('hi')\n")
    return app_dir, package


def test_app_tag_is_stable_and_ignores_bytecode(app_tree: tuple[Path, Path]) -> None:
    app_dir, package = app_tree
    first = app_tag("wslab/base:x", app_dir=app_dir, package_dir=package)
    assert first == app_tag("wslab/base:x", app_dir=app_dir, package_dir=package)
    assert first.startswith("wslab/app:") and len(first.split(":")[1]) == 10
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "server.cpython-311.pyc").write_bytes(b"\0")
    assert app_tag("wslab/base:x", app_dir=app_dir, package_dir=package) == first


@pytest.mark.parametrize("change", ["app file", "new file", "rename", "requirements", "dockerfile", "base"])
def test_app_tag_changes_with_every_input(app_tree: tuple[Path, Path], change: str) -> None:
    app_dir, package = app_tree
    base = "wslab/base:x"
    before = app_tag(base, app_dir=app_dir, package_dir=package)
    if change == "app file":
        (package / "sub" / "server.py").write_text("print('ho')\n")
    elif change == "new file":
        (package / "extra.py").write_text("")
    elif change == "rename":
        (package / "sub" / "server.py").rename(package / "sub" / "server2.py")
    elif change == "requirements":
        (app_dir / "requirements.txt").write_text("websockets==17.5\n")
    elif change == "dockerfile":
        (app_dir / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nENV X=1\n")
    else:
        base = "wslab/base:y"
    assert app_tag(base, app_dir=app_dir, package_dir=package) != before


def test_app_tag_works_without_a_package_dir(app_tree: tuple[Path, Path]) -> None:
    app_dir, package = app_tree
    assert app_tag("wslab/base:x", app_dir=app_dir, package_dir=package / "missing").startswith("wslab/app:")
