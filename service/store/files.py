"""Small files in the state and config folders, read and written without following planted links.

The state folder (``/var/lib/bedside``) belongs to the service user, and root runs some commands in
it (``sudo bedside set-password``). A symbolic link the service user planted there must never make
root write, truncate, chmod or chown a file elsewhere, so writes go through a descriptor: a new file
with a random name created ``O_EXCL | O_NOFOLLOW`` in the folder, its owner and mode set on that
descriptor, then renamed over the target; a target that is a link (or not a regular file) is
refused. Reads of configuration, password and credential files take only regular files and at most
``MAX_SMALL_FILE_BYTES``: a FIFO is not waited on and a link to ``/dev/zero`` is not read for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from service.errors import StoreError

logger = logging.getLogger(__name__)

#: The largest configuration, password or credential file read (a real one is a few KiB).
MAX_SMALL_FILE_BYTES = 1024 * 1024


class UnsafeFileError(StoreError):
    """A file we were asked to read or write is a link, not a regular file, or too large."""


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: str | Path, *, max_bytes: int = MAX_SMALL_FILE_BYTES) -> bytes:
    """The bytes of ``path`` if it is a regular file of at most ``max_bytes`` (links to one are
    followed: an administrator may link ``/etc/bedside/bedside.toml``).

    Opened non-blocking, so a FIFO is refused at once instead of waiting for a writer.
    FileNotFoundError / PermissionError as ``open`` raises them; UnsafeFileError for a directory,
    FIFO, device or socket, or a file larger than ``max_bytes``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"{path} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > max_bytes:
            raise UnsafeFileError(f"{path} is {st.st_size} bytes, more than the {max_bytes} read")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:  # the file may grow while it is read
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise UnsafeFileError(f"{path} is more than the {max_bytes} bytes read")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_not_a_link(path: str | Path, what: str = "file") -> None:
    """UnsafeFileError if ``path`` exists and is a symbolic link or not a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(
            f"{what} {path} is {_kind(st.st_mode)}: refusing to use it (remove it if you did not "
            "put it there; Bedside never follows links in its state folder)"
        )


def write_private_file(
    path: str | Path, data: bytes, *, mode: int = 0o600, give_to_folder_owner: bool = False
) -> None:
    """Replace ``path`` with ``data`` (mode ``mode`` whatever the umask), atomically and without
    following links: UnsafeFileError if ``path`` is a link or not a regular file.

    ``give_to_folder_owner``: when run as root, the new file is chowned (on its descriptor) to the
    owner of its folder unless that is root: ``sudo bedside set-password`` writes a file the
    service user must read. OSError for anything else (missing folder, no permission)."""
    p = Path(path)
    folder = os.open(p.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            st = os.stat(p.name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(
                    f"{p} is {_kind(st.st_mode)}: refusing to write through it (remove it if you did "
                    "not put it there)"
                )
        tmp = f".{p.name}.{secrets.token_hex(8)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode & 0o600, dir_fd=folder)
        try:
            if give_to_folder_owner and os.geteuid() == 0:
                owner = os.fstat(folder)
                if owner.st_uid != 0:
                    os.fchown(fd, owner.st_uid, owner.st_gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise
        os.close(fd)
        os.rename(tmp, p.name, src_dir_fd=folder, dst_dir_fd=folder)
        with contextlib.suppress(OSError):
            os.fsync(folder)
    finally:
        os.close(folder)
