"""Fetching weights from a local HTTP server on 127.0.0.1: download, resume after a cut, sha256 pinning in the
lock file, tampered files refused, published hashes checked, and the CLI's fetch / list / --download paths.

The server is a threaded ``http.server`` with Range support, bounded (it stops itself after 60 s) and shut down by
its fixture; the weights cache (TORCH_HOME) and the lock file live in the test's temp folder. No network.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from copybench.detectors import (
    DetectorSpec,
    WeightsMissingError,
    create_detector,
    read_state_dict,
    register_detector,
    unregister_detector,
)
from copybench.detectors.fetch import (
    WeightsHashError,
    download,
    fetch_spec,
    list_weights,
    lock_path,
    read_lock,
)

NAME = "fetchtest_linear"


class Pooled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(192, 64)

    def forward(self, x):
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1))


def payload(seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    buf = io.BytesIO()
    torch.save(Pooled().state_dict(), buf)
    return buf.getvalue()


class Server:
    """Serves ``files`` (path -> bytes); ``cut`` (path -> n) ends the next response after n bytes."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.headers: dict[str, dict[str, str]] = {}  # path -> extra response headers (GET and HEAD)
        self.ranges: list[str | None] = []
        self.honour_range = True
        handler = self._handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.timer = threading.Timer(60, self.httpd.shutdown)  # bounded even if a test hangs

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                data = server.files.get(self.path.split("?")[0])
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self._extra_headers()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()

            def _extra_headers(self):
                for key, value in server.headers.get(self.path.split("?")[0], {}).items():
                    self.send_header(key, value)

            def do_GET(self):
                data = server.files.get(self.path.split("?")[0])  # API queries (?recursive=...) ignored
                if data is None:
                    self.send_error(404)
                    return
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng and server.honour_range else 0
                if start >= len(data) and rng:
                    self.send_error(416)
                    return
                self.send_response(206 if start else 200)
                self._extra_headers()
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.cut.pop(self.path.split("?")[0], None)
                self.wfile.write(body if cut is None else body[:cut])
                if cut is not None:
                    self.close_connection = True

        return Handler


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COPYBENCH_WEIGHTS_LOCK", str(tmp_path / "weights.lock.json"))
    monkeypatch.delenv("COPYBENCH_WEIGHTS_DIR", raising=False)
    srv = Server()
    srv.thread.start()
    srv.timer.start()
    yield srv
    srv.timer.cancel()
    srv.httpd.shutdown()
    srv.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_download_pins_sha256_in_the_lock(server, tmp_path, capsys):
    data = payload()
    server.files["/w/model.pth"] = data
    url = server.url("/w/model.pth")
    digest, note = download(url, tmp_path / "model.pth", progress=True)
    err = capsys.readouterr().err
    assert "model.pth" in err and "━" in err and "kB" in err, err  # the rich transfer bar, on stderr
    assert (tmp_path / "model.pth").read_bytes() == data
    assert digest == sha(data) and "pinned" in note
    assert read_lock()[url]["sha256"] == sha(data) and read_lock()[url]["size"] == len(data)
    assert json.loads(lock_path().read_text())["schema_version"] == 1


def test_resume_after_a_cut_connection(server, tmp_path):
    data = payload()
    server.files["/w/model.pth"] = data
    server.cut["/w/model.pth"] = len(data) // 3
    url, dest = server.url("/w/model.pth"), tmp_path / "model.pth"
    with pytest.raises(OSError, match="resume"):
        download(url, dest, progress=False)
    part = dest.with_name("model.pth.part")
    assert part.stat().st_size == len(data) // 3 and not dest.exists()
    digest, _ = download(url, dest, progress=False)
    assert server.ranges == [None, f"bytes={len(data) // 3}-"]  # the second request asked only for the rest
    assert dest.read_bytes() == data and digest == sha(data) and not part.exists()


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    data = payload()
    server.files["/w/model.pth"] = data
    server.cut["/w/model.pth"] = 1000
    server.honour_range = False
    url, dest = server.url("/w/model.pth"), tmp_path / "model.pth"
    with pytest.raises(OSError):
        download(url, dest, progress=False)
    download(url, dest, progress=False)
    assert dest.read_bytes() == data  # not 1000 stale bytes + the whole file


def test_changed_file_on_the_server_is_refused_after_pinning(server, tmp_path):
    server.files["/w/model.pth"] = payload(0)
    url, dest = server.url("/w/model.pth"), tmp_path / "model.pth"
    download(url, dest, progress=False)
    server.files["/w/model.pth"] = payload(1)  # the publisher's file was swapped
    with pytest.raises(WeightsHashError, match="pinned"):
        download(url, tmp_path / "again.pth", progress=False)
    assert not (tmp_path / "again.pth").exists() and not (tmp_path / "again.pth.part").exists()
    assert read_lock()[url]["sha256"] == sha(payload(0))  # the pin is not moved by a bad download


def test_published_sha256_and_name_prefix_are_checked(server, tmp_path):
    data = payload()
    server.files["/w/model.pth"] = data
    with pytest.raises(WeightsHashError, match="published"):
        download(server.url("/w/model.pth"), tmp_path / "a.pth", published="0" * 64, progress=False)
    assert not (tmp_path / "a.pth").exists()
    good = f"/w/model-{sha(data)[:8]}.pth"  # torchvision / timm convention: sha256 prefix in the name
    bad = "/w/model-deadbeef.pth"
    server.files[good] = server.files[bad] = data
    _, note = download(server.url(good), tmp_path / "b.pth", progress=False)
    assert "prefix matches" in note and read_lock()[server.url(good)]["sha256"] == sha(data)
    with pytest.raises(WeightsHashError, match="published prefix"):
        download(server.url(bad), tmp_path / "c.pth", progress=False)


@pytest.fixture
def detector(server):
    server.files["/w/fetchtest.pth"] = payload()
    spec = DetectorSpec(
        name=NAME, dims=64, input_size=32, weights=server.url("/w/fetchtest.pth"), license="MIT", paper="test"
    )

    @register_detector(spec)
    def factory(path):
        model = Pooled()
        if path is not None:
            model.load_state_dict(read_state_dict(path))
        return model

    yield spec
    unregister_detector(NAME)


def test_offline_by_default_with_the_command_that_fetches(detector, server):
    with pytest.raises(WeightsMissingError, match=f"copybench weights fetch {NAME}"):
        create_detector(NAME)
    assert server.ranges == []  # nothing was requested


def test_download_then_tampered_local_file_is_refused(detector, server):
    det = create_detector(NAME, download=True)
    assert det.weights.status == "real" and det.weights.sha256 == sha(payload())
    path, digest, note = fetch_spec(detector, progress=False)
    assert note.startswith("present") and digest == sha(payload())
    with open(path, "r+b") as f:  # flip one byte of the cached file
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsHashError, match="refusing"):
        create_detector(NAME)
    with pytest.raises(WeightsHashError):
        fetch_spec(detector, progress=False)


def test_cli_run_offline_hint_then_download(detector, server, tiny_dataset, tmp_path, capsys):
    from copybench.cli import main

    common = ["--quiet", "run", "--dataset", str(tiny_dataset), "--detectors", NAME, "--n-boot", "10"]
    common += ["--results", str(tmp_path / "results"), "--no-cache"]
    assert main(common) == 2  # offline by default: the run fails for this detector and says what to do
    assert f"copybench weights fetch {NAME}" in capsys.readouterr().err
    assert server.ranges == []
    assert main([*common, "--download"]) == 0
    result = json.loads(next((tmp_path / "results").rglob(f"{NAME}*.json")).read_text())
    assert result["detector"]["weights"]["status"] == "real"
    assert result["detector"]["weights"]["sha256"] == sha(payload())
    meta = result["detector"]["meta"]  # the metadata travels with the metrics
    assert (meta["params"], meta["license"], meta["weights_hash"]) == (192 * 64 + 64, "MIT", sha(payload()))


def test_cli_weights_fetch_and_list(detector, server, capsys):
    from copybench.cli import main

    assert main(["--quiet", "weights", "fetch", NAME]) == 0
    assert "fetched" in capsys.readouterr().err
    assert main(["--quiet", "weights", "fetch", NAME]) == 0  # second time: present and verified, no request
    assert "present" in capsys.readouterr().err and len(server.ranges) == 1
    (row,) = list_weights(NAME)
    assert (row.status, row.size, row.sha256) == ("present", len(payload()), sha(payload()))
    assert row.check.startswith("pinned") and row.license == "MIT" and row.source == detector.weights
    assert main(["weights", "list", NAME]) == 0
    assert sha(payload())[:16] in capsys.readouterr().out
    assert main(["--quiet", "weights", "fetch", "no_such_detector"]) == 2


# ------------------------------------------------------------------------------------------------ hub downloads
HUB_REPO = "copybench-test/served-clip"
COMMIT = "5eed" * 10


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def serve_hub_repo(server, files: dict[str, bytes], lfs: tuple[str, ...], commit: str = COMMIT) -> None:
    """``HUB_REPO`` served as the Hugging Face hub serves it to huggingface_hub: revision info, the file tree, and
    files under /resolve/ with their commit and ETag (sha256 for LFS files, git blob sha1 otherwise)."""
    info = {"id": HUB_REPO, "sha": commit, "createdAt": "2023-04-17T09:30:00.000Z"}
    info["siblings"] = [{"rfilename": f} for f in files]
    tree = []
    for name, data in files.items():
        entry = {"type": "file", "path": name, "size": len(data), "oid": git_blob_sha1(data)}
        if name in lfs:
            entry["lfs"] = {"oid": sha(data), "size": len(data), "pointerSize": 134}
        tree.append(entry)
    for rev in ("main", commit):
        server.files[f"/api/models/{HUB_REPO}/revision/{rev}"] = json.dumps(info).encode()
        server.files[f"/api/models/{HUB_REPO}/tree/{rev}"] = json.dumps(tree).encode()
        for name, data in files.items():
            path = f"/{HUB_REPO}/resolve/{rev}/{name}"
            server.files[path] = data
            etag = sha(data) if name in lfs else git_blob_sha1(data)
            server.headers[path] = {"X-Repo-Commit": commit, "ETag": f'"{etag}"'}


@pytest.fixture
def hub(server, tmp_path, monkeypatch):
    """The loopback server as the Hugging Face hub (huggingface_hub's endpoint), an empty private cache, and a
    tiny open_clip model's repository (config + safetensors weights) served from it."""
    import huggingface_hub.constants as hf_constants
    from safetensors.torch import save

    endpoint = server.url("").rstrip("/")
    monkeypatch.setattr(hf_constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(
        hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    import open_clip

    config = {"model_cfg": TINY_CLIP, "preprocess_cfg": {"resize_mode": "squash", "interpolation": "bicubic"}}
    local = tmp_path / "tiny-clip-config"  # the model built once from its config, for real weights to serve
    local.mkdir()
    (local / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{local}", load_weights=False)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    files = {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": weights}
    serve_hub_repo(server, files, lfs=("open_clip_model.safetensors",))
    return files


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


def test_hub_download_shows_a_bar_resumes_and_pins(hub, server, capsys, monkeypatch):
    import huggingface_hub.constants as hf_constants

    from copybench.detectors.fetch import fetch_weights

    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 1024)  # a 16 kB file arrives in several chunks

    name, weights = f"hf-hub:{HUB_REPO}", hub["open_clip_model.safetensors"]
    server.cut[f"/{HUB_REPO}/resolve/{COMMIT}/open_clip_model.safetensors"] = len(weights) // 3
    (outcome,) = fetch_weights([name], progress=True)
    assert outcome.status == "fetched", outcome.message
    assert outcome.sha256 == sha(weights) and f"revision {COMMIT}" in outcome.message
    resumed = [int(r[6:-1]) for r in server.ranges if r]  # the cut download resumed, never restarted
    assert len(resumed) == 1 and 0 < resumed[0] <= len(weights) // 3, server.ranges
    err = capsys.readouterr().err
    assert "━" in err and "B/" in err, err  # the rich bar on stderr, with bytes done / total
    pinned = read_lock()[f"{name}/open_clip_model.safetensors"]
    assert (pinned["sha256"], pinned["revision"], pinned["size"]) == (sha(weights), COMMIT, len(weights))
    assert fetch_weights([name], progress=False)[0].status == "present"


def test_hub_download_changed_upstream_is_refused_by_the_pin(hub, server, tmp_path):
    import shutil

    from copybench.detectors.fetch import fetch_weights

    name = f"hf-hub:{HUB_REPO}"
    assert fetch_weights([name], progress=False)[0].status == "fetched"
    shutil.rmtree(tmp_path / "hf")  # a fresh cache, and the publisher pushed other weights under main
    changed = {**hub, "open_clip_model.safetensors": hub["open_clip_model.safetensors"][:-8] + bytes(8)}
    serve_hub_repo(server, changed, lfs=("open_clip_model.safetensors",), commit="bad0" * 10)
    (outcome,) = fetch_weights([name], progress=False)
    assert outcome.status == "failed" and f"from revision {COMMIT}" in outcome.message, outcome.message


def test_hub_fetch_takes_the_loaders_weights_only_and_reports_failures_per_name(hub, server, tmp_path):
    from copybench.detectors.fetch import fetch_weights

    timm_copy = (
        bytes(range(256)) * 64
    )  # the timm-format twin a CLIP repository also holds: not what open_clip reads
    serve_hub_repo(server, {**hub, "model.safetensors": timm_copy}, lfs=("open_clip_model.safetensors",))
    absent, name = "hf-hub:copybench-test/absent", f"hf-hub:{HUB_REPO}"
    first, second = fetch_weights([absent, name], progress=False)
    assert first.status == "failed" and "copybench-test/absent" in first.message, first.message
    assert second.status == "fetched", second.message  # one failure never stops the others
    snap = next((tmp_path / "hf").glob("models--*served-clip/snapshots/*"))
    assert sorted(p.name for p in snap.iterdir()) == ["open_clip_config.json", "open_clip_model.safetensors"]
    # offline, the partial snapshot (huggingface_hub's tree cache lists the file left out) is found and loads
    server.files.clear()
    assert create_detector(name).weights.status == "real"


def test_quiet_hub_download_draws_nothing(hub, capsys):
    from copybench.detectors.fetch import fetch_weights

    assert fetch_weights([f"hf-hub:{HUB_REPO}"], progress=False)[0].status == "fetched"
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("kind", ["url", "hub"])
@pytest.mark.parametrize("command", ["run", "scan"])
def test_quiet_download_on_run_and_scan_draws_no_bar(
    command, kind, server, tiny_dataset, tmp_path, request, capsys
):
    """``-q`` silences the download bars of ``--download`` as it does those of ``weights fetch -q``."""
    from copybench.cli import main

    request.getfixturevalue("detector" if kind == "url" else "hub")
    name = NAME if kind == "url" else f"hf-hub:{HUB_REPO}"
    if command == "run":
        args = ["run", "--dataset", str(tiny_dataset), "--detectors", name, "--n-boot", "10"]
        args += ["--results", str(tmp_path / "results")]
    else:
        args = [
            "scan",
            "--generated",
            str(tiny_dataset / "queries"),
            "--train",
            str(tiny_dataset / "references"),
        ]
        args += ["--detector", name, "--threshold", "0.5", "--out", str(tmp_path / "scan")]
    assert main(["--quiet", *args, "--no-cache", "--download"]) == 0
    assert server.ranges  # the weights were downloaded, in silence
    err = capsys.readouterr().err
    assert "━" not in err and "B/" not in err, err
