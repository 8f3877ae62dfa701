"""The HTML report from report.json data, without compiling: escaping, bar charts, which
sections appear, determinism, no external references, and the ``accelc report`` command."""

import copy
import re
from html.parser import HTMLParser

import pytest

from accelc.compiler.artifact import read_manifest, write_json
from accelc.report import render_report, write_report
from accelc.report.charts import Chart, Row, bar_chart, nice_ticks
from accelc.report.markup import Raw, el
from accelc.report.page import render_page
from tests.unit.test_report_layout import GRAPH

MANIFEST = {"format": "accelc-artifact", "format_version": 1, "target": "cpu", "target_options": {},
            "pipeline": "fuse,quantize", "source": "model.py:make", "files": {"lib.so": "0" * 64},
            "inputs": [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}],
            "outputs": [{"name": "output", "shape": [1, 4, 8, 8], "dtype": "float32"}], "tools": {"accelc": "0.1.0"}}
PASSES = [
    {"name": "fuse", "exact": True, "options": {}, "seconds": 0.01, "flops_before": 1512, "flops_after": 1512,
     "params_before": 112, "params_after": 112, "max_abs_err": 0.0, "sqnr_db": None, "top1_agreement": 1.0,
     "details": {"activations_fused": 1}},
    {"name": "quantize", "exact": False, "options": {"scheme": "fixed", "skip": []}, "seconds": 1.5,
     "flops_before": 1512, "flops_after": 1400, "params_before": 112, "params_after": 0, "max_abs_err": 0.02,
     "sqnr_db": 41.5, "top1_agreement": 0.99,
     "details": {"scheme": "fixed", "observer": "minmax", "float_nodes": {"output": "<no int8 kernel>"},
                 "layers": [{"layer": "conv", "kind": "conv", "input_scale": 0.1, "output_scale": 0.2,
                             "output_zero_point": 0, "weight_scale_min": 0.01, "weight_scale_max": 0.02,
                             "shift_min": 3, "shift_max": 5, "output_sqnr_db": 38.0}],
                 "sensitivity": [{"layer": "conv", "kind": "conv", "sqnr_db": 45.0, "top1": 0.98},
                                 {"layer": "add", "kind": "add", "sqnr_db": None}]}},
]
REPORT = {"target": "cpu", "pipeline": "fuse,quantize", "passes": PASSES,
          "graph": {"original": {"flops": 1512, "params": 112}, "final": {"flops": 1400, "params": 0}},
          "graphs": {"original": GRAPH, "final": GRAPH},
          "artifact_check": {"samples": 4, "vs_final_graph": {"max_abs_err": 0.0, "sqnr_db": None,
                                                              "top1_agreement": 1.0},
                             "vs_original": {"max_abs_err": 0.02, "sqnr_db": 41.5, "top1_agreement": 1.0}},
          "accuracy": {"dataset": "digits:test", "samples": 359, "original": 0.99, "final_graph": 0.98,
                       "artifact": 0.98}}
FPGA = {"config": {"clock_mhz": 100, "target": "pynq"}, "config_name": "1x16",
        "placement": {"conv": {"on": "fpga", "why": "int8 GEMM layer"}, "relu": {"on": "host", "why": "none"},
                      "add": {"on": "fpga", "why": "residual add"}},
        "layers": [{"name": "conv", "kind": "conv", "input_shape": [1, 3, 8, 8], "output_shape": [1, 4, 8, 8],
                    "tiling": {"tile_h": 2}, "model": {"cycles": 900}, "sim": {"cycles": 1000, "gemm_utilization": 0.5,
                                                                               "inp_bytes": 10, "wgt_bytes": 20,
                                                                               "out_bytes": 30}}],
        "segments": [{"name": "seg0", "dir": "fpga/seg0", "inputs": ["x"], "outputs": ["add"]}]}
FPGA_RUN = {"segments": {"seg0": {"total_cycles": 1000, "busy_cycles": {"load": 1, "compute": 2, "store": 3},
                                  "gemm_utilization": 0.5, "insn_counter": 7}},
            "total_cycles": 1000, "clock_mhz": 100, "accelerator_latency_ms": 0.01, "gemm_utilization": 0.5}


class Collect(HTMLParser):
    """Every tag with its attributes, and whether the nesting is balanced."""

    VOID = {"meta", "br", "hr", "img", "input", "link", "col"}

    def __init__(self):
        super().__init__()
        self.tags, self.stack, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def parse(page: str) -> Collect:
    c = Collect()
    c.feed(page)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    return c


def assert_self_contained(page: str) -> None:
    """Nothing outside the page is referenced (and ids are unique, so #fragments are unambiguous)."""
    tags = parse(page).tags
    ids = [a["id"] for _, a in tags if "id" in a]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    for tag, attrs in tags:
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = attrs.get(key)
            assert value is None or value.startswith("#"), f"<{tag} {key}={value!r}> points outside the page"
        assert tag not in ("link", "iframe", "object", "embed", "img"), tag
    assert not re.search(r"url\((?!#)", page), "CSS/SVG url() must only reference fragments of the page"
    assert "@import" not in page


def count(page: str, svg_id: str, pattern: str) -> int:
    m = re.search(rf'<svg id="{svg_id}".*?</svg>', page, re.S)
    assert m, f"no <svg id={svg_id}>"
    return len(re.findall(pattern, m.group(0)))


def test_markup_escapes_text_and_attributes():
    assert el("td", "a<b & 'c'", title='"x"', class_="num") == \
        '<td title="&quot;x&quot;" class="num">a&lt;b &amp; &#x27;c&#x27;</td>'
    assert el("p", Raw("<b>ok</b>"), None, ["x", 1]) == "<p><b>ok</b>x1</p>"
    assert el("details", "s", open=False) == "<details>s</details>"
    assert el("details", "s", open=True, data_id="7") == '<details open data-id="7">s</details>'
    assert el("meta", charset="utf-8") == '<meta charset="utf-8">'


def test_nice_ticks():
    assert nice_ticks(0) == [0.0]
    assert nice_ticks(100) == [0, 25, 50, 75, 100]
    assert nice_ticks(3.61e6) == [0, 1e6, 2e6, 3e6]
    assert nice_ticks(1.0) == [0, 0.25, 0.5, 0.75, 1.0]


def test_bar_chart_one_bar_per_row_and_series_scaled_to_the_maximum():
    rows = [Row("a<1>", [10.0, 5.0]), Row("b", [40.0, 0.0], node="b"), Row("c" * 60, [20.0, float("nan")])]
    svg = bar_chart(Chart("c1", "title & more", rows, series=["model", "sim"]))
    assert svg.startswith('<svg id="c1" class="chart bar-chart"')
    assert 'data-rows="3"' in svg and 'data-series="2"' in svg
    bars = re.findall(r'<rect x="\d+" y="[\d.]+" width="([\d.]+)" height="\d+" class="bar (s\d)[^"]*" '
                      r'data-value="([^"]+)"', svg)
    assert len(bars) == 6
    widths = {float(v): float(w) for w, _, v in bars}
    assert widths[40.0] == 440 and widths[10.0] == 110 and widths[0.0] == 0
    assert [s for _, s, _ in bars] == ["s0", "s1"] * 3
    assert "a&lt;1&gt;" in svg and "title &amp; more" in svg and 'data-node="b"' in svg
    assert f'class="label">{"c" * 37}…</text>' in svg and f"<title>{'c' * 60}</title>" in svg   # full in the tooltip


def test_page_sections_and_charts_for_a_quantized_cpu_artifact():
    page = render_page("art<1>", MANIFEST, REPORT)
    assert_self_contained(page)
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    for anchor in ("overview", "pipeline", "accuracy", "layers", "quantization", "graphs"):
        assert f'<section id="{anchor}">' in page
    assert '<section id="fpga">' not in page and "chart-utilisation" not in page
    assert "art&lt;1&gt;" in page and "art<1>" not in page
    # pipeline table: one row per pass, lossy marked
    assert page.count('<tr class="exact">') == 1 and page.count('<tr class="lossy">') == 1
    assert count(page, "chart-flops", r'<rect [^>]*class="bar') == sum(1 for n in GRAPH if n["flops"])
    assert count(page, "chart-sensitivity", r'<rect [^>]*class="bar') == 2
    assert count(page, "chart-layer-sqnr", r'<rect [^>]*class="bar') == 1
    assert count(page, "graph-original", r'<g class="node ') == len(GRAPH)
    assert count(page, "graph-final", r'<g class="node ') == len(GRAPH)
    assert 'id="time-missing"' in page and "&lt;no int8 kernel&gt;" in page
    assert "98.00%" in page and "41.50 dB" in page and "identical" in page


def test_page_for_an_fpga_artifact_colours_placement_and_charts_utilisation():
    report = copy.deepcopy(REPORT)
    report.update(target="fpga", fpga=FPGA, fpga_run=FPGA_RUN)
    page = render_page("a", dict(MANIFEST, target="fpga"), report)
    assert_self_contained(page)
    assert '<section id="fpga">' in page
    assert count(page, "chart-utilisation", r'<rect [^>]*class="bar') == 1
    assert count(page, "chart-cycles", r'<rect [^>]*class="bar') == 2       # model + simulator
    assert count(page, "graph-final", r'<g class="node on-fpga"') == 2
    assert count(page, "graph-final", r'<g class="node on-host"') == 1
    assert count(page, "graph-original", r'<g class="node on-') == 0
    assert count(page, "chart-flops", r'class="bar s0 on-fpga"') == 2
    assert "0.0100" in page and "1,000 cycles" in page                    # simulated latency row


def test_page_without_optional_parts():
    report = {"target": "cpu", "passes": [], "graph": {}, "graphs": {}}
    page = render_page("empty", dict(MANIFEST, pipeline="none"), report)
    assert_self_contained(page)
    assert "No passes ran" in page and "without" in page and "Not recorded" in page
    assert '<section id="quantization">' not in page
    assert count(page, "chart-flops", r'<rect [^>]*class="bar') == 0


def test_measured_kernels_are_charted():
    measured = {"runs": 3, "input": "seeded", "device": "cpu:0",
                "end_to_end_ms": {"median_ms": 1.5, "p10_ms": 1.4, "p90_ms": 1.7, "runs": 3},
                "instrumented_total_ms": 2.0,
                "kernels": [{"name": "conv2d", "kind": "kernel", "calls": 1, "median_s": 1e-3,
                             "output_shape": [1, 4, 8, 8]},
                            {"name": "vm.builtin.alloc_tensor", "kind": "vm builtin", "calls": 5, "median_s": 1e-5},
                            {"name": "vm.builtin.reshape", "kind": "vm builtin", "calls": 2, "median_s": 1e-6},
                            {"name": "accelc_fpga.seg0", "kind": "fpga segment (simulator, host wall time)",
                             "calls": 1, "median_s": 5e-3, "output_shape": [1, 4, 8, 8]}]}
    page = render_page("m", MANIFEST, REPORT, measured)
    assert count(page, "chart-time", r'<rect [^>]*class="bar') == 3        # 2 kernels + the builtins row
    assert "VM builtins (7 calls)" in page and "conv2d → 1×4×8×8" in page and 'id="time-missing"' not in page
    assert "1.5000" in page


@pytest.fixture
def fake_artifact(tmp_path):
    """An artifact directory with a valid manifest and report.json but no payload (no compile)."""
    def make(report):
        art = tmp_path / "art"
        art.mkdir()
        write_json(art / "manifest.json", dict(MANIFEST, files={}))
        write_json(art / "report.json", report)
        return art
    return make


def test_same_artifact_same_bytes(fake_artifact):
    art = fake_artifact(REPORT)
    assert render_report(art) == render_report(art)


def test_write_report_paths(fake_artifact, tmp_path):
    art = fake_artifact(REPORT)
    assert write_report(art) == art / "report.html"        # default: next to report.json
    read_manifest(art)                                     # report.html is not a payload file: still verifies
    out = write_report(art, tmp_path / "sub" / "r.html")
    assert out.read_bytes() == (art / "report.html").read_bytes()
    (tmp_path / "dir").mkdir()
    assert write_report(art, tmp_path / "dir") == tmp_path / "dir" / "report.html"
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_report_cli_errors_are_one_line(cli, fake_artifact, tmp_path):
    bad = cli("report", tmp_path / "nope", check=1)
    assert "is not a directory" in bad.stderr and "Traceback" not in bad.stderr
    usage = cli("report", fake_artifact(REPORT), "--measure", "-2", check=2)
    assert "--measure -2" in usage.stderr and usage.stderr.count("\n") <= 2
