"""A copybench detector plugin: what copybench lists (names, specs) without importing torch. The entry point
names this module; the model lives in ``model.py``, imported only when the detector is built."""

from copybench.detectors import DetectorSpec, declare_detector

declare_detector(
    DetectorSpec(name="edge_hist_128", dims=128, input_size=128, mean=(0, 0, 0), std=(1, 1, 1)),
    factory="copybench_plugin_example.model:edge_hist_128",
    params=0,
)
