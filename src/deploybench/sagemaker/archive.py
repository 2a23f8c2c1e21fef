"""Safe unpacking of a SageMaker model.tar.gz: every member is checked before anything is written.

Refused: absolute paths, `..` components, paths or links that leave the folder once the archive's
own symlinks are followed (`a -> .` then `a/b -> ..`), devices and fifos, too many members, too many
bytes. Members are read one at a time and reading stops at the first limit passed, so an archive of
a million entries costs what its first MAX_ARCHIVE_MEMBERS cost. Python's tarfile `data` filter
(3.11.4+, required) runs as a second guard while extracting.
"""

from __future__ import annotations

import platform
import posixpath
import tarfile
from collections.abc import Iterable
from pathlib import Path

MAX_ARCHIVE_BYTES = 16 * 1024**3
MAX_ARCHIVE_MEMBERS = 100_000
MAX_LINK_HOPS = 40  # as the kernel's limit on symlinks followed in one lookup
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class ArchiveError(ValueError):
    """The archive is unreadable or holds a member we refuse to write; the message names it."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def has_handler(source: str) -> bool:
    """A SageMaker archive or model folder (its own inference.py), as models/sagemaker.py decides."""
    path = Path(source)
    return is_archive(path) or (path.is_dir() and (path / "code").is_dir())


def require_tar_filters() -> None:
    """tarfile's extraction filters arrived in Python 3.11.4; without them we do not unpack at all."""
    if not hasattr(tarfile, "data_filter"):
        raise ArchiveError(
            f"Python {platform.python_version()} has no tarfile extraction filters (Python 3.11.4 or "
            "newer has them): upgrade Python, or unpack the archive yourself and serve the folder"
        )


class _Tree:
    """The archive's symlinks seen so far, to resolve later member paths through them, lexically."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def resolve(self, path: str, hops: int = 0) -> str | None:
        """`path` with the archive's symlinks followed; None when it leaves the root (or loops)."""
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    return None
                parts.pop()
                continue
            parts.append(part)
            target = self.links.get("/".join(parts))
            if target is None:
                continue
            if hops >= MAX_LINK_HOPS or target.startswith("/"):
                return None
            resolved = self.resolve(posixpath.join(*parts[:-1], target) if parts[:-1] else target, hops + 1)
            if resolved is None:
                return None
            parts = resolved.split("/") if resolved else []
        return "/".join(parts)

    def check(self, member: tarfile.TarInfo) -> None:
        name = member.name
        if not name or name.startswith("/") or "\\" in name:
            raise ArchiveError(f"member {name!r} would be written outside the model folder")
        parent = self.resolve(posixpath.dirname(name))
        if parent is None or posixpath.basename(name) == ".." or self.resolve(name) is None:
            raise ArchiveError(f"member {name!r} would be written outside the model folder")
        if member.issym():
            self._check_symlink(member, parent)
        elif member.islnk():
            if self.resolve(member.linkname) is None or member.linkname.startswith("/"):
                raise ArchiveError(f"hard link {name!r} -> {member.linkname!r} leaves the model folder")
        elif not (member.isfile() or member.isdir()):
            raise ArchiveError(f"member {name!r} is a device, fifo or other special file")

    def _check_symlink(self, member: tarfile.TarInfo, parent: str) -> None:
        target = member.linkname
        if posixpath.isabs(target) or self.resolve(posixpath.join(parent, target)) is None:
            raise ArchiveError(f"symlink {member.name!r} -> {target!r} leaves the model folder")
        here = posixpath.join(parent, posixpath.basename(member.name)) if parent else member.name
        self.links[posixpath.normpath(here)] = target


def check_members(
    members: Iterable[tarfile.TarInfo],
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> list[tarfile.TarInfo]:
    """The members, checked one by one; ArchiveError at the first unsafe one or limit passed."""
    tree = _Tree()
    checked: list[tarfile.TarInfo] = []
    total = 0
    for member in members:
        if len(checked) >= max_members:
            raise ArchiveError(f"archive holds more than {max_members} members (limit)")
        tree.check(member)
        total += max(member.size, 0)
        if total > max_bytes:
            raise ArchiveError(f"archive unpacks to more than {max_bytes} bytes (limit)")
        checked.append(member)
    return checked


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> Path:
    """Unpack `archive` into `dest` (created) after checking every member; returns `dest`."""
    require_tar_filters()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = check_members(tar, max_bytes=max_bytes, max_members=max_members)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive.name}: cannot unpack: {exc}") from exc
    return dest
