"""Safe unpacking of a SageMaker model.tar.gz: every member is checked before anything is written.

Refused: absolute paths, `..` components, links whose target leaves the folder, devices and
fifos, too many members, too many bytes. Python's tarfile `data` filter runs as a second guard.
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path

MAX_ARCHIVE_BYTES = 16 * 1024**3
MAX_ARCHIVE_MEMBERS = 100_000
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class ArchiveError(ValueError):
    """The archive is unreadable or holds a member we refuse to write; the message names it."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _inside(name: str) -> bool:
    """A relative POSIX path that stays inside the extraction folder."""
    if not name or name.startswith("/") or "\\" in name:
        return False
    normal = posixpath.normpath(name)
    return normal != ".." and not normal.startswith("../") and not posixpath.isabs(normal)


def _check_member(member: tarfile.TarInfo) -> None:
    if not _inside(member.name):
        raise ArchiveError(f"member {member.name!r} would be written outside the model folder")
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        if posixpath.isabs(member.linkname) or not _inside(target):
            raise ArchiveError(f"symlink {member.name!r} -> {member.linkname!r} leaves the model folder")
    elif member.islnk():
        if not _inside(member.linkname):
            raise ArchiveError(f"hard link {member.name!r} -> {member.linkname!r} leaves the model folder")
    elif not (member.isfile() or member.isdir()):
        raise ArchiveError(f"member {member.name!r} is a device, fifo or other special file")


def check_members(
    members: list[tarfile.TarInfo],
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> None:
    """Raise ArchiveError on the first member that is unsafe or when the totals exceed the limits."""
    if len(members) > max_members:
        raise ArchiveError(f"archive holds {len(members)} members, over the limit of {max_members}")
    total = 0
    for member in members:
        _check_member(member)
        total += max(member.size, 0)
        if total > max_bytes:
            raise ArchiveError(f"archive unpacks to more than {max_bytes} bytes (limit)")


def safe_extract(
    archive: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_ARCHIVE_BYTES,
    max_members: int = MAX_ARCHIVE_MEMBERS,
) -> Path:
    """Unpack `archive` into `dest` (created) after checking every member; returns `dest`."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            check_members(members, max_bytes=max_bytes, max_members=max_members)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except ArchiveError:
        raise
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive}: cannot unpack: {exc}") from exc
    return dest
