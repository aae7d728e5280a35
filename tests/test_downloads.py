"""The data downloads, rehearsed on loopback: MNIST and Galaxy10 files served by a local HTTP server.

A thread serves fabricated MNIST IDX files and a small ``Galaxy10_DECals.h5`` (``latentcf.data.fabricate``) on
127.0.0.1, with HTTP Range requests, and can cut any response short. The real download code of
``latentcf.data.mnist`` and ``latentcf.data.galaxy10`` is pointed at it through their URL constants.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from latentcf.core import download
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import file_digest
from latentcf.data import galaxy10, mnist
from latentcf.data.fabricate import fabricate_galaxy10, fabricate_mnist

SERVER_LIFETIME_S = 60.0
"""The server stops by itself after this long, whatever the test does."""
GALAXY10_PATH = f"/galaxy10/{galaxy10.FILENAME}"


@dataclass
class Served:
    """What the loopback server serves, how it misbehaves, and what it was asked."""

    files: dict[str, bytes]
    cut_to: dict[str, list[int]] = field(default_factory=dict)
    """Per path, the bytes each of the next responses sends before the connection drops (one entry per response)."""
    honour_range: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every request, in order."""
    bytes_sent: int = 0


def handler_for(served: Served) -> type[BaseHTTPRequestHandler]:
    """An HTTP/1.0 handler (one response per connection) serving ``served`` with ``Range: bytes=<start>-``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.connection.settimeout(5)
            range_header = self.headers.get("Range")
            served.requests.append((self.path, range_header))
            body = served.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header is not None and served.honour_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", range_header)[1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            payload = body[start:]
            cuts = served.cut_to.get(self.path)
            if cuts:
                payload = payload[:cuts.pop(0)]
            self.wfile.write(payload)
            served.bytes_sent += len(payload)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    """A loopback HTTP server in a thread: its base URL and its :class:`Served`; stopped after the test."""
    served = Served(files={})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    deadline = threading.Timer(SERVER_LIFETIME_S, httpd.shutdown)
    thread.start()
    deadline.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        deadline.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch):
    monkeypatch.setattr(download, "RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(download, "TIMEOUT_S", 5.0)


@pytest.fixture(scope="module")
def galaxy10_bytes(tmp_path_factory) -> bytes:
    """A fabricated ``Galaxy10_DECals.h5`` of 10 rendered 256 x 256 galaxies (about 2 MB)."""
    folder = fabricate_galaxy10(tmp_path_factory.mktemp("galaxy10"), per_class=1)
    return (folder / galaxy10.FILENAME).read_bytes()


@pytest.fixture
def galaxy10_served(server, galaxy10_bytes, monkeypatch) -> tuple[Served, bytes, Path]:
    """Galaxy10 served at :data:`galaxy10.URL`, its SHA256 the official one; (served, bytes, where to download)."""
    base, served = server
    served.files[GALAXY10_PATH] = galaxy10_bytes
    monkeypatch.setattr(galaxy10, "URL", base + GALAXY10_PATH)
    monkeypatch.setattr(galaxy10, "SHA256", sha256_of(galaxy10_bytes))
    return served, galaxy10_bytes, galaxy10.galaxy10_path()


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_mnist_is_fetched_from_the_first_mirror_that_has_it_and_read_by_the_real_loader(server, monkeypatch,
                                                                                        tmp_path):
    base, served = server
    fabricated = fabricate_mnist(tmp_path / "fabricated", per_class=3)
    served.files = {f"/mnist/{name}": (fabricated / name).read_bytes() for name in mnist.OFFICIAL_MD5}
    monkeypatch.setattr(mnist, "OFFICIAL_MD5", {name: file_digest(fabricated / name, "md5")
                                                for name in mnist.OFFICIAL_MD5})
    monkeypatch.setattr(mnist, "MIRRORS", (f"{base}/gone/", f"{base}/mnist/"))
    monkeypatch.setattr(mnist, "SHIPPED_DIR", tmp_path / "nothing shipped")
    train = mnist.load_mnist("train", source="full")
    expected = mnist.read_idx(fabricated / "train-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(train.images.numpy(), expected)
    assert served.requests[:2] == [("/gone/train-images-idx3-ubyte.gz", None),
                                   ("/mnist/train-images-idx3-ubyte.gz", None)]
    assert {name for name in files_in(mnist.mnist_dir()) if name.endswith(".gz")} == {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"}


def test_galaxy10_is_downloaded_and_opened(galaxy10_served):
    served, data, path = galaxy10_served
    assert galaxy10.download_galaxy10() == path and path.read_bytes() == data
    with_file = galaxy10.Galaxy10File(path, sha256=galaxy10.SHA256)
    assert len(with_file) == 10 and with_file.read_images(np.array([3])).shape == (1, 3, 256, 256)
    with_file.close()
    assert served.requests == [(GALAXY10_PATH, None)]


def test_a_wrong_checksum_is_refused_with_one_message_and_leaves_no_file(galaxy10_served, monkeypatch):
    served, data, path = galaxy10_served
    monkeypatch.setattr(galaxy10, "SHA256", "0" * 64)
    message = (rf"could not download {galaxy10.FILENAME} \(http://127\.0\.0\.1:\d+{GALAXY10_PATH}: the file received "
               rf"has sha256 {sha256_of(data)}, expected 0{{64}}; it was deleted\)\. Without internet, put")
    with pytest.raises(LatentcfError, match=message):
        galaxy10.download_galaxy10()
    assert files_in(path.parent) == []


def test_a_wrong_mnist_file_on_every_mirror_is_refused_and_leaves_no_file(server, monkeypatch, tmp_path):
    base, served = server
    served.files = {f"/{mirror}/t10k-labels-idx1-ubyte.gz": b"not mnist" for mirror in ("a", "b")}
    monkeypatch.setattr(mnist, "MIRRORS", (f"{base}/a/", f"{base}/b/"))
    monkeypatch.setattr(mnist, "SHIPPED_DIR", tmp_path / "nothing shipped")
    monkeypatch.setattr(mnist, "OFFICIAL_MD5", {"t10k-labels-idx1-ubyte.gz": mnist.OFFICIAL_MD5[
        "t10k-labels-idx1-ubyte.gz"]})
    with pytest.raises(LatentcfError, match=r"could not download t10k-labels-idx1-ubyte\.gz \(.*/a/.*expected "
                                            r"ec29112d.*; .*/b/.*expected ec29112d.*copy the official file"):
        mnist.download_mnist(("test",), tmp_path / "mnist")
    assert files_in(tmp_path / "mnist") == []


def test_a_transfer_cut_halfway_is_resumed_from_where_it_stopped(galaxy10_served):
    served, data, path = galaxy10_served
    half = len(data) // 2
    served.cut_to[GALAXY10_PATH] = [half]
    assert galaxy10.download_galaxy10().read_bytes() == data
    assert served.requests == [(GALAXY10_PATH, None), (GALAXY10_PATH, f"bytes={half}-")]
    assert served.bytes_sent == len(data)


def test_a_server_that_ignores_the_range_is_read_again_from_the_start(galaxy10_served):
    served, data, path = galaxy10_served
    served.honour_range = False
    served.cut_to[GALAXY10_PATH] = [len(data) // 2]
    assert galaxy10.download_galaxy10().read_bytes() == data
    assert [header for _, header in served.requests] == [None, f"bytes={len(data) // 2}-"]
    assert served.bytes_sent == len(data) // 2 + len(data)


def test_a_transfer_that_keeps_failing_is_never_kept_as_complete_and_resumes_next_time(galaxy10_served):
    served, data, path = galaxy10_served
    third = len(data) // 3
    served.cut_to[GALAXY10_PATH] = [third] + [0] * download.ATTEMPTS
    with pytest.raises(LatentcfError, match=rf"{download.ATTEMPTS} attempts in a row received nothing new .*"
                                            rf"The {third:,} bytes received so far are kept in .*\.part"):
        galaxy10.download_galaxy10()
    assert not path.exists() and download.partial_path(path).stat().st_size == third
    assert galaxy10.download_galaxy10().read_bytes() == data
    assert served.requests[-1] == (GALAXY10_PATH, f"bytes={third}-")
    assert files_in(path.parent) == [galaxy10.FILENAME, galaxy10.FILENAME + download.DIGEST_SUFFIX]


def test_a_stale_part_that_spoils_the_checksum_is_downloaded_once_more_from_zero(galaxy10_served):
    served, data, path = galaxy10_served
    path.parent.mkdir(parents=True)
    download.partial_path(path).write_bytes(b"x" * 1000)
    assert galaxy10.download_galaxy10().read_bytes() == data
    assert served.requests == [(GALAXY10_PATH, "bytes=1000-"), (GALAXY10_PATH, None)]


def test_galaxy10_is_hashed_once_not_on_every_open(galaxy10_served, monkeypatch):
    served, data, path = galaxy10_served
    hashed = []
    real_digest = download.file_digest
    monkeypatch.setattr(download, "file_digest", lambda file, algorithm: hashed.append(file) or real_digest(
        file, algorithm))
    galaxy10.download_galaxy10()
    assert len(hashed) == 1  # the downloaded .part, once
    for _ in range(3):
        galaxy10.Galaxy10File(path, sha256=galaxy10.SHA256).close()
    assert galaxy10.download_galaxy10() == path and len(hashed) == 1 and len(served.requests) == 1
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    galaxy10.Galaxy10File(path, sha256=galaxy10.SHA256).close()
    galaxy10.Galaxy10File(path, sha256=galaxy10.SHA256).close()
    assert len(hashed) == 2  # a new modification time: hashed again, once
    with open(path, "r+b") as handle:  # same size, new content and time: the marker no longer vouches for it
        handle.seek(len(data) // 2)
        handle.write(bytes([data[len(data) // 2] ^ 0xFF]))
    with pytest.raises(LatentcfError, match="damaged or incomplete"):
        galaxy10.Galaxy10File(path, sha256=galaxy10.SHA256)
    assert len(hashed) == 3
