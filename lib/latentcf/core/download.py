"""Data files fetched once and checked: resumable downloads, and a file's digest computed once.

:func:`download_file` writes into ``<name>.part`` beside the target, resumes a cut transfer with an HTTP
Range request from the bytes it already has (the 2.54 GB Galaxy10 file is rarely fetched in one piece),
retries what can heal (time-outs, dropped connections, server errors), tries the next mirror for what cannot,
checks the digest of the whole file and only then renames it into place. A file that fails its checksum is
deleted; a transfer that stopped short keeps its ``.part`` for the next call to resume.

:func:`known_digest` hashes a file once: it writes the digest into ``<name>.digest.json`` beside the file, keyed
by the file's size and modification time, and reads it from there while both are unchanged.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from latentcf.core.errors import LatentcfError
from latentcf.core.paths import file_digest

TIMEOUT_S = 60.0
"""Seconds a connection may stay silent before the attempt counts as failed."""
ATTEMPTS = 4
"""Attempts per URL that receive no new byte, before the next URL is tried (an attempt that adds bytes resets it)."""
RETRY_WAIT_S = 2.0
"""Wait before the second attempt; it doubles with every further attempt that receives nothing."""
BLOCK_BYTES = 1 << 20
DIGEST_SUFFIX = ".digest.json"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RETRIED_HTTP_STATUS = {408, 429, 500, 502, 503, 504}


class _Unreachable(Exception):
    """This URL will not give the file however often it is asked (unknown host, refused, HTTP 404, ...)."""


class _Interrupted(Exception):
    """This attempt stopped before the whole file arrived; another attempt may resume it."""


def partial_path(target: Path) -> Path:
    """Where :func:`download_file` collects the bytes of ``target`` until they are checked: ``<name>.part``."""
    return target.with_name(target.name + ".part")


def download_file(urls: Sequence[str], target: Path, digest: str, algorithm: str, *, fix: str) -> Path:
    """Download ``target`` from the first of ``urls`` that gives a file with the hex ``digest`` of ``algorithm``.

    Bytes go to :func:`partial_path` first. A transfer that stops short is resumed with ``Range: bytes=<have>-``
    (started again from zero where the server ignores the range): at once when it received bytes, else after a
    wait of :data:`RETRY_WAIT_S`, doubling; :data:`ATTEMPTS` attempts in a row that add nothing move on to the next
    URL, and so does an answer that cannot change (unknown host, refused connection, HTTP 404). A complete file with
    another digest is deleted (where it was resumed from an earlier call's ``.part``, it is downloaded once more
    from zero first) and the next URL is tried. Only a file with ``digest`` is renamed to ``target`` (its digest
    is remembered, see :func:`known_digest`). When no URL gives it, :class:`LatentcfError` says what each URL
    did, whether the ``.part`` was kept for the next call to resume, and ``fix`` (what to do without internet).
    """
    if not urls:
        raise LatentcfError(f"no URL to download {target.name} from. {fix}")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    failures = []
    for url in urls:
        failure = _fetch_verified(url, partial, digest, algorithm)
        if failure is None:
            partial.replace(target)
            _remember_digest(target, algorithm, digest)
            return target
        failures.append(f"{url}: {failure}")
    kept = partial.stat().st_size if partial.is_file() else 0
    resume = (f" The {kept:,} bytes received so far are kept in {partial}; the next call resumes from there."
              if kept else "")
    raise LatentcfError(f"could not download {target.name} ({'; '.join(failures)}).{resume} {fix}")


def known_digest(path: Path, algorithm: str) -> str:
    """The hex digest of the file ``path``, computed once for each size and modification time of the file.

    The digest is kept in ``<name>.digest.json`` beside the file with the size and the modification time (ns) it
    was computed for; while both are unchanged the file is not read again. A marker that cannot be written (a
    read-only folder) is skipped: the file is then hashed on every call.
    """
    path = Path(path)
    status = path.stat()
    try:
        marker = json.loads(_marker_path(path).read_text())
    except (OSError, ValueError):
        marker = {}
    if (marker.get("algorithm"), marker.get("size"), marker.get("mtime_ns")) == (
            algorithm, status.st_size, status.st_mtime_ns) and isinstance(marker.get("digest"), str):
        return marker["digest"]
    digest = file_digest(path, algorithm)
    _remember_digest(path, algorithm, digest, status)
    return digest


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + DIGEST_SUFFIX)


def _remember_digest(path: Path, algorithm: str, digest: str, status: os.stat_result | None = None) -> None:
    """Write the digest marker of :func:`known_digest` for the file as it is now (or as ``status`` saw it)."""
    status = status or path.stat()
    record = {"algorithm": algorithm, "digest": digest, "size": status.st_size, "mtime_ns": status.st_mtime_ns}
    with contextlib.suppress(OSError):  # a read-only folder: the file is hashed again next time
        _marker_path(path).write_text(json.dumps(record) + "\n")


def _fetch_verified(url: str, partial: Path, digest: str, algorithm: str) -> str | None:
    """Complete ``partial`` from ``url`` and check it: ``None`` when it has ``digest``, else why not."""
    failures_in_a_row = 0
    last_error = ""
    resumed = partial.is_file()  # bytes of an earlier call: if the whole fails its checksum, start once afresh
    while failures_in_a_row < ATTEMPTS:
        if failures_in_a_row:
            time.sleep(RETRY_WAIT_S * 2 ** (failures_in_a_row - 1))
        before = partial.stat().st_size if partial.is_file() else 0
        try:
            _transfer(url, partial)
        except _Unreachable as exc:
            return str(exc)
        except _Interrupted as exc:
            last_error = str(exc)
            grew = partial.is_file() and partial.stat().st_size > before
            failures_in_a_row = 0 if grew else failures_in_a_row + 1
            continue
        actual = file_digest(partial, algorithm)
        if actual == digest:
            return None
        partial.unlink()
        if not resumed:
            return f"the file received has {algorithm} {actual}, expected {digest}; it was deleted"
        resumed = False
    return f"{ATTEMPTS} attempts in a row received nothing new (last: {last_error})"


def _transfer(url: str, partial: Path) -> None:
    """Append the rest of the file at ``url`` to ``partial`` (from zero where the server ignores the range).

    Returns when the server's announced length is reached (or, without one, at the end of the stream); raises
    :class:`_Interrupted` when the attempt may be repeated and :class:`_Unreachable` when it may not.
    """
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # the range starts at or past the end: the .part holds the whole file
            return
        if exc.code in _RETRIED_HTTP_STATUS:
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from exc
        raise _Unreachable(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.gaierror, ConnectionRefusedError)):
            raise _Unreachable(str(exc.reason)) from exc
        raise _Interrupted(str(exc.reason)) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise _Interrupted(f"{type(exc).__name__}: {exc}") from exc
    with response:
        start, total = _start_and_total(response, partial, offset)
        mode = "ab" if start else "wb"
        received = start
        try:
            with open(partial, mode) as out, tqdm(total=total, initial=start, unit="B", unit_scale=True,
                                                  desc=partial.name.removesuffix(".part")) as bar:
                for block in iter(lambda: response.read(BLOCK_BYTES), b""):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise _Interrupted(f"the transfer stopped at byte {received:,} ({type(exc).__name__}: {exc})") from exc
    if total is not None and received != total:
        raise _Interrupted(f"the transfer stopped at byte {received:,} of {total:,}")


def _start_and_total(response: http.client.HTTPResponse, partial: Path, offset: int) -> tuple[int, int | None]:
    """Where the body of ``response`` starts in the file, and the file's whole size where the server says it.

    A range answered from another byte than ``offset`` deletes ``partial`` and raises :class:`_Interrupted`.
    """
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if match is None or int(match[1]) != offset:
            partial.unlink(missing_ok=True)  # the next attempt asks for the whole file
            raise _Interrupted(f"the server answered the range from byte {offset:,} with "
                               f"Content-Range {response.headers.get('Content-Range')!r}")
        return offset, None if match[3] == "*" else int(match[3])
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None
