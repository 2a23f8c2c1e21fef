"""Safe model.tar.gz unpacking: every escape route is refused before anything is written."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from deploybench.sagemaker.archive import ArchiveError, safe_extract


def make_archive(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def test_good_archive_unpacks(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "m.tar.gz",
        [
            file_member("model.pt", b"weights"),
            file_member("code/inference.py", b"pass"),
            link_member("code/alias.py", "inference.py"),
        ],
    )
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "model.pt").read_bytes() == b"weights"
    assert (out / "code" / "alias.py").read_text() == "pass"


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("../escape.txt"), "outside the model folder"),
        (file_member("code/../../escape.txt"), "outside the model folder"),
        (file_member("/etc/escape.txt"), "outside the model folder"),
        (link_member("evil", "/etc/passwd"), "leaves the model folder"),
        (link_member("code/evil", "../../outside"), "leaves the model folder"),
        (link_member("hard", "../outside", tarfile.LNKTYPE), "leaves the model folder"),
        (link_member("dev", "", tarfile.CHRTYPE), "special file"),
    ],
)
def test_unsafe_members_are_refused(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    archive = make_archive(tmp_path / "evil.tar.gz", [file_member("ok.txt"), member])
    with pytest.raises(ArchiveError, match=message):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written, not even the safe member
    assert not (tmp_path / "escape.txt").exists()


def test_size_and_member_limits(tmp_path: Path) -> None:
    archive = make_archive(
        tmp_path / "big.tar.gz", [file_member("a", b"x" * 600), file_member("b", b"x" * 600)]
    )
    with pytest.raises(ArchiveError, match="more than 1000 bytes"):
        safe_extract(archive, tmp_path / "out", max_bytes=1000)
    with pytest.raises(ArchiveError, match="more than 1 members"):
        safe_extract(archive, tmp_path / "out", max_members=1)


def test_members_are_read_one_by_one_and_reading_stops_at_the_limit(tmp_path: Path) -> None:
    """A truncated tail: reading every member first (getmembers) would fail there, not at the limit."""
    archive = make_archive(
        tmp_path / "many.tar.gz", [file_member(f"m{i}", bytes([i]) * 4096) for i in range(200)]
    )
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="more than 10 members"):
        safe_extract(archive, tmp_path / "out", max_members=10)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "chain",
    [
        [link_member("a", "."), link_member("a/b", "..")],  # each lexically inside, together outside
        [link_member("a", "."), link_member("b", "a/..")],
        [link_member("d", "code"), link_member("d/up", "../..")],
        [link_member("up", ".."), file_member("up/escape.txt")],
        [link_member("loop1", "loop2"), link_member("loop2", "loop1"), file_member("loop1/x")],
    ],
)
def test_link_chains_that_escape_are_refused(
    tmp_path: Path, chain: list[tuple[tarfile.TarInfo, bytes | None]]
) -> None:
    archive = make_archive(tmp_path / "chain.tar.gz", [file_member("code/ok.txt"), *chain])
    with pytest.raises(ArchiveError, match=r"leaves the model folder|outside the model folder"):
        safe_extract(archive, tmp_path / "model" / "out")
    assert not (tmp_path / "model" / "out").exists()


def test_python_without_tarfile_filters_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python before 3.11.4 (simulated: this interpreter has the filters) must not unpack at all."""
    archive = make_archive(tmp_path / "m.tar.gz", [file_member("model.pt")])
    monkeypatch.delattr(tarfile, "data_filter")
    with pytest.raises(ArchiveError, match=r"3\.11\.4"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupt_archive_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ArchiveError, match="cannot unpack"):
        safe_extract(broken, tmp_path / "out")
