"""Detectors defined in a notebook (``__main__``): a changed model never reuses cached descriptors, re-running
a registration cell is fine, a different detector under a taken name is refused; one way to register."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

# Each cell runs in __main__'s namespace, as a notebook kernel runs cells.
NOTEBOOK = textwrap.dedent(
    """
    import __main__, json, sys
    import numpy as np
    from PIL import Image

    def cell(source):
        exec(source, __main__.__dict__)

    cell("import torch\\nfrom copybench.detectors import DetectorSpec, register_detector, create_detector")
    MODEL = "class Pool(torch.nn.Module):\\n    def forward(self, x):\\n        return x.{op}(dim=2).flatten(1)\\n"
    REGISTER = (
        "@register_detector(DetectorSpec(name='nb_pool', dims=48, input_size=16, mean=(0,0,0), std=(1,1,1)))\\n"
        "def nb_pool(path):\\n    return Pool()\\n"
    )
    folder = sys.argv[1]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        paths.append(f"{folder}/{i}.png")
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(paths[-1])

    def extract():
        from copybench.extract import Extractor

        det = create_detector("nb_pool")
        ext = Extractor(det, cache_dir=f"{folder}/cache", progress=False, num_workers=0)
        return det.code, np.asarray(ext.run(paths).vectors).round(6).tolist()

    out = {}
    cell(MODEL.format(op="mean")); cell(REGISTER)
    out["first"] = extract()
    cell(REGISTER)  # the same cell run again: no error, same code, the cached descriptors are right to reuse
    out["rerun"] = extract()
    cell(MODEL.format(op="amax"))  # the model changed in another cell; the registration cell is not rerun
    out["changed"] = extract()
    cell(REGISTER)  # rerunning the registration after editing the model is not a conflict
    try:
        cell(REGISTER.replace("return Pool()", "return torch.nn.Flatten()"))
        out["conflict"] = None
    except ValueError as exc:
        out["conflict"] = str(exc)
    print(json.dumps(out))
    """
)


def test_notebook_factory_is_keyed_by_its_code(tmp_path):
    import json

    done = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    (code1, vec1), (code2, vec2), (code3, vec3) = out["first"], out["rerun"], out["changed"]
    assert code1 and code1 == code2 and vec1 == vec2
    assert code3 != code1  # the model changed: another cache key ...
    assert vec3 != vec1  # ... so the descriptors are the new model's, never the stale cached ones
    assert out["conflict"] and "'nb_pool' is already registered" in out["conflict"]


def test_one_way_to_register_built_in_detectors():
    """Every built-in registration is the decorator on a def: no lambdas, no call-style registration."""
    root = Path(__file__).resolve().parents[2] / "detectors"
    offenders = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Call):
                inner = node.func.func
                if getattr(inner, "id", None) == "register_detector":  # register_detector(spec)(factory)
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
