"""rediss:// against a real TLS redis-server (R8): a trusted certificate works end to end; an untrusted CA,
a host-name mismatch and plaintext to the TLS port are refused with one-line errors.

Run: .venv/bin/python -m pytest tests/cb/clip/test_clip_tls.py -q
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from cb.clip.clipboard import RecordingBackend
from cb.clip.config import load_config
from cb.clip.errors import ClipError
from cb.clip.publish import Publisher
from tests.cb.clip.conftest import make_cfg
from tests.support.redis_server import PUB_PASS, PUB_USER, SUB_PASS, SUB_USER, RedisServer, make_tls_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls_files(tmp_path_factory.mktemp("other-ca")) / "ca.pem"


@pytest.fixture
def tls_server(tmp_path: Path, tls_files: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis-tls", tls_dir=tls_files).start()
    yield server
    server.stop()


def _url(server: RedisServer, user: str, password: str, host: str = "localhost", scheme: str = "rediss") -> str:
    return f"{scheme}://{user}:{password}@{host}:{server.port}/0"


def test_trusted_tls_carries_clips_end_to_end(tls_server: RedisServer, tls_files: Path, clip_key: bytes,
                                              tmp_path: Path, run_listener) -> None:
    ca = str(tls_files / "ca.pem")
    sub = make_cfg(_url(tls_server, SUB_USER, SUB_PASS), clip_key, ca_file=ca)
    backend = RecordingBackend()
    run_listener(sub, backend)
    pub = Publisher(make_cfg(_url(tls_server, PUB_USER, PUB_PASS), clip_key, ca_file=ca), seq_file=tmp_path / "s")
    assert pub.publish("over TLS").receivers == 1
    pub.close()
    assert backend.wait_for(1, 5) and backend.texts == ["over TLS"]


def test_untrusted_ca_is_refused(tls_server: RedisServer, other_ca: Path, clip_key: bytes, tmp_path: Path) -> None:
    cfg = make_cfg(_url(tls_server, PUB_USER, PUB_PASS), clip_key, ca_file=str(other_ca))
    with pytest.raises(ClipError, match="certificate verify failed") as info:
        Publisher(cfg, seq_file=tmp_path / "s").publish("x")
    assert "\n" not in str(info.value)


def test_host_name_mismatch_is_refused(tls_server: RedisServer, tls_files: Path, clip_key: bytes,
                                       tmp_path: Path) -> None:
    cfg = make_cfg(_url(tls_server, PUB_USER, PUB_PASS, host="127.0.0.1"), clip_key, ca_file=str(tls_files / "ca.pem"))
    with pytest.raises(ClipError, match=r"(?i)hostname|IP address mismatch"):
        Publisher(cfg, seq_file=tmp_path / "s").publish("x")


def test_plaintext_to_the_tls_port_fails_fast(tls_server: RedisServer, clip_key: bytes, tmp_path: Path) -> None:
    cfg = make_cfg(_url(tls_server, PUB_USER, PUB_PASS, scheme="redis"), clip_key)
    t0 = time.monotonic()
    with pytest.raises(ClipError, match="cannot reach Redis"):
        Publisher(replace(cfg, connect_timeout_s=1.0), seq_file=tmp_path / "s").publish("x")
    assert time.monotonic() - t0 < 5


def test_ca_file_setting_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ClipError, match="no such file"):
        load_config({"CB_REDIS_URL": "rediss://h:1", "CB_REDIS_CA": str(tmp_path / "missing.pem")})
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert load_config({"CB_REDIS_URL": "rediss://h:1", "CB_REDIS_CA": str(ca)}).ca_file == str(ca)
