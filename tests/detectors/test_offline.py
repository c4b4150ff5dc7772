"""Offline, a fetch says so at once: no name resolution means no retries, no raw `[Errno -2]`, and the message
says where to put the file instead; `-q` silences the hub library's own log lines (#27.10)."""

from __future__ import annotations

import logging
import socket

import pytest

from copybench.cli import main
from copybench.detectors import get_spec
from copybench.detectors.weightfiles import official_path


@pytest.fixture
def no_dns(tmp_path, monkeypatch) -> list:
    """Every host name fails to resolve, as on a machine without network; the calls are counted."""
    calls = []

    def fail(host, *args, **kwargs):
        calls.append(host)
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COPYBENCH_WEIGHTS_LOCK", str(tmp_path / "weights.lock.json"))
    return calls


def test_an_official_file_offline_says_unreachable_and_where_to_put_it(no_dns, capsys):
    assert main(["weights", "fetch", "sscd_disc_mixup"]) == 3
    err = capsys.readouterr().err
    assert "network is unreachable" in err and "dl.fbaipublicfiles.com" in err
    assert "Errno" not in err
    dest = official_path(get_spec("sscd_disc_mixup").weights)
    assert str(dest) in err.replace("\n", "") and "COPYBENCH_WEIGHTS_DIR" in err


def test_a_hub_model_offline_fails_at_once_without_retries(no_dns, capsys, caplog):
    pytest.importorskip("timm")
    with caplog.at_level(logging.DEBUG):
        assert main(["weights", "fetch", "timm:resnet18", "-q"]) == 3
    err = capsys.readouterr().err
    assert "network is unreachable" in err and "huggingface.co" in err
    assert "Retry" not in err and "Errno" not in err
    assert len(no_dns) <= 2  # our one look-up (and nothing retried five times)
    assert not [r for r in caplog.records if r.name.startswith("huggingface_hub")]


def test_quiet_silences_the_hub_librarys_log_lines(tmp_path, monkeypatch, capsys):
    pytest.importorskip("timm")
    from copybench.detectors import hub_core

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hub_core, "network_check", lambda repo="": None)
    heard = []

    class Ear(logging.Handler):
        def emit(self, record):
            heard.append(record.getMessage())

    def noisy(*args, **kwargs):
        logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
        raise OSError("the server went away")

    monkeypatch.setattr(hub_core, "_download_patterns", noisy)
    ear = Ear()
    logging.getLogger("huggingface_hub.utils._http").addHandler(ear)
    try:
        assert main(["weights", "fetch", "timm:resnet18", "-q"]) == 3
        assert "the server went away" in capsys.readouterr().err and heard == []
        assert main(["weights", "fetch", "timm:resnet18"]) == 3  # without -q the library may speak
        assert heard == ["Retrying in 1s [Retry 1/5]."]
    finally:
        logging.getLogger("huggingface_hub.utils._http").removeHandler(ear)
