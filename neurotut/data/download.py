"""Fetching registry files into the data cache with pooch.

Each file is downloaded to a temporary name, its checksum verified, then renamed into place (pooch
does this), with retries. A cached file whose checksum does not match (a partial or corrupted
download) is fetched again; with a complete cache nothing touches the network. A download whose
checksum does not match raises :class:`ChecksumError` naming the file and both hashes. A server
that cannot be reached (no internet, a host name that does not resolve, a refused connection, an
HTTP error) raises :class:`DownloadError` in one sentence; :func:`fetch` adds how to fill the
cache from a local copy instead. Host names are resolved before the first download, so a machine
without DNS fails at once instead of after the retries.

A *mirror* (``base_url``) replaces the upstream URLs by ``<base_url>/<file name>``: a workshop can
serve the data from a local machine. :func:`fill_cache` copies verified files from a local folder
(a USB stick, ``../shared/data/...``) into the cache without any network.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path

import pooch
from tqdm.auto import tqdm

from neurotut import config
from neurotut.data.registry import Dataset, RemoteFile, get_dataset
from neurotut.io import atomic_path


class ChecksumError(ValueError):
    """A downloaded or copied file does not have the registered checksum."""


class DownloadError(OSError):
    """A file could not be downloaded: the server is unreachable or answered with an error."""


def _host(url: str) -> str:
    """The host name of a URL (with its port when one is given)."""
    return urllib.parse.urlsplit(url).netloc.rpartition("@")[2] or url


def _check_resolves(urls: Iterable[str]) -> None:
    """Raise :class:`DownloadError` for the first URL whose host name does not resolve here
    (URLs that go through a proxy are left to the proxy)."""
    from requests.utils import get_environ_proxies

    hosts = {urllib.parse.urlsplit(u).hostname or u: u for u in urls}
    for host, url in hosts.items():
        if get_environ_proxies(url):
            continue
        try:
            socket.getaddrinfo(host, None)
        except (socket.gaierror, UnicodeError):
            raise DownloadError(
                f"cannot reach {host}: the host name does not resolve (no internet connection, "
                "or a wrong mirror address)"
            ) from None


def _download_error(url: str, exc: Exception) -> DownloadError:
    """One sentence for a requests exception raised while downloading ``url``."""
    import requests

    host = _host(url)
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return DownloadError(f"{host} answered HTTP {exc.response.status_code} for {url}")
    if isinstance(exc, requests.exceptions.Timeout):
        return DownloadError(f"cannot reach {host}: the connection timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc)
        reason = ("the host name does not resolve (no internet connection?)"
                  if "resolve" in text or "Name or service" in text
                  else "the connection was refused" if "refused" in text.lower()
                  else "the connection failed (no internet connection?)")
        return DownloadError(f"cannot reach {host}: {reason}")
    return DownloadError(f"downloading {url} failed ({type(exc).__name__})")


def file_hash(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_matches(path: str | os.PathLike, known_hash: str) -> bool:
    """True when the file exists and its digest equals ``known_hash`` (``"alg:hex"``)."""
    algorithm, _, expected = known_hash.partition(":")
    return Path(path).is_file() and file_hash(path, algorithm) == expected.lower()


def dataset_dir(name: str) -> Path:
    """The cache folder of a dataset, ``<data dir>/<name>``."""
    return config.data_dir() / name


def _url(remote: RemoteFile, base_url: str | None) -> str:
    return remote.url if base_url is None else f"{base_url.rstrip('/')}/{remote.name}"


def _checksum_error(remote: RemoteFile, url: str, exc: ValueError) -> ChecksumError:
    match = re.search(r"expected (\S+?) but got (\S+?)\.", str(exc))
    expected = remote.known_hash
    actual = f"{remote.known_hash.partition(':')[0]}:{match.group(2)}" if match else "unknown"
    return ChecksumError(
        f"checksum mismatch for {remote.name} downloaded from {url}: expected {expected}, got "
        f"{actual}. The download was discarded; the server may have served a different or "
        "truncated file. Try again later, or use another mirror."
    )


def fetch_files(
    files: Sequence[RemoteFile],
    dest: str | os.PathLike,
    base_url: str | None = None,
    retries: int = 3,
    progress: bool = True,
    desc: str = "fetching",
) -> list[Path]:
    """Make every file of ``files`` present and verified under ``dest``; return their paths.

    Files already in ``dest`` with the right checksum are not downloaded again.
    """
    import requests

    dest = Path(dest)
    todo = [f for f in files if not hash_matches(dest / f.name, f.known_hash)]
    if todo:
        _check_resolves(_url(f, base_url) for f in todo)
        fetcher = pooch.create(
            path=dest,
            base_url="",
            registry={f.name: f.known_hash for f in todo},
            urls={f.name: _url(f, base_url) for f in todo},
            retry_if_failed=retries,
        )
        logger = pooch.get_logger()
        level = logger.level
        logger.setLevel(logging.WARNING)  # our progress bar says what happens
        try:
            with tqdm(todo, desc=desc, unit="file", disable=not progress) as bar:
                for remote in bar:
                    try:
                        fetcher.fetch(remote.name)
                    except ValueError as exc:
                        if "hash" in str(exc).lower():
                            raise _checksum_error(remote, _url(remote, base_url), exc) from None
                        raise
                    except requests.exceptions.RequestException as exc:
                        raise _download_error(_url(remote, base_url), exc) from None
        finally:
            logger.setLevel(level)
    return [dest / f.name for f in files]


def fetch(
    name: str,
    files: Iterable[str] | None = None,
    base_url: str | None = None,
    progress: bool = True,
    retries: int = 3,
) -> list[Path]:
    """Fetch a registered dataset (or some of its files) into the cache; return local paths.

    Args:
        name: a registry name, e.g. ``"snemi3d-crop"``.
        files: names of files within the dataset (default: all).
        base_url: a mirror serving the files under their dataset names (default: upstream URLs).
        retries: further attempts per file after a failed download (1 s, 2 s, ... apart).

    Raises:
        DownloadError: the server cannot be reached; the message says how to fill the cache from
            a local copy of the files (``neurotut data fill-cache NAME FOLDER``).
    """
    dataset = get_dataset(name)
    wanted = dataset.files if files is None else tuple(dataset.file(f) for f in files)
    try:
        return fetch_files(wanted, dataset_dir(name), base_url, retries=retries,
                           progress=progress, desc=name)
    except DownloadError as exc:
        raise DownloadError(
            f"{exc}. Without internet, copy the files from a local copy into the cache: "
            f"neurotut data fill-cache {name} FOLDER"
        ) from None


def is_cached(name: str) -> bool:
    """True when every file of the dataset is in the cache with the right checksum."""
    dataset = get_dataset(name)
    return all(hash_matches(dataset_dir(name) / f.name, f.known_hash) for f in dataset.files)


def fill_cache(name: str, source: str | os.PathLike, progress: bool = True) -> int:
    """Copy a dataset's files from a local folder into the cache, verifying each checksum.

    ``source`` holds the files under their dataset names (e.g. ``images/0000.png``). Files
    already cached and valid are skipped. Returns the number of files copied. Raises
    FileNotFoundError if a file is missing from ``source`` and :class:`ChecksumError` if one has
    the wrong checksum (the cache then keeps only verified files).
    """
    dataset: Dataset = get_dataset(name)
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder")
    dest = dataset_dir(name)
    copied = 0
    for remote in tqdm(dataset.files, desc=f"fill {name}", unit="file", disable=not progress):
        target = dest / remote.name
        if hash_matches(target, remote.known_hash):
            continue
        origin = source / remote.name
        if not origin.is_file():
            raise FileNotFoundError(f"{origin} is missing: {source} does not hold dataset {name!r}")
        if not hash_matches(origin, remote.known_hash):
            algorithm = remote.known_hash.partition(":")[0]
            raise ChecksumError(
                f"checksum mismatch for {origin}: expected {remote.known_hash}, got "
                f"{algorithm}:{file_hash(origin, algorithm)}; not copied"
            )
        with atomic_path(target, overwrite=True) as tmp:
            shutil.copyfile(origin, tmp)
        copied += 1
    return copied
