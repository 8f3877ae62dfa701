"""``accelc report`` end to end: compile small models (cpu fp32 with accuracy, fpga pow2 int8 with
placement and sensitivity), write their pages with the real CLI, and load the pages in headless
Chromium over the DevTools protocol: the scripts run without errors, nothing is fetched, and
the charts and graphs are rendered with one bar per layer and one box per node.

Where no Chromium/Chrome binary is installed (ACCELC_CHROMIUM may point at one) the browser part
is skipped with that reason, after the checks that need no browser."""

import json

import numpy as np
import pytest
import torch

import accelc
from accelc.cli.main import main
from tests.browser import Browser, BrowserError, find_chromium
from tests.models import tiny_lenet, tiny_resnet
from tests.unit.test_report_page import assert_self_contained

CHROMIUM = find_chromium()
NO_CHROMIUM = ("no Chromium/Chrome binary found (on PATH or at $ACCELC_CHROMIUM; apt-get install chromium): "
               "the report's browser check is skipped")
MEASURE_RUNS = 3


def _compile_and_report(d):
    """Two artifacts and their pages, written by the real CLI (in-process: `accelc.cli.main.main`)."""
    g = np.random.default_rng(0)
    np.savez(d / "cpu.npz", inputs=g.standard_normal((16, 1, 28, 28)).astype(np.float32), labels=g.integers(0, 10, 16))
    np.savez(d / "fpga.npz", inputs=g.standard_normal((32, 1, 16, 16)).astype(np.float32), labels=g.integers(0, 10, 32))
    accelc.compile(tiny_lenet(), (torch.randn(1, 1, 28, 28),), target="cpu", pipeline="fuse", eval=d / "cpu.npz",
                   output=d / "cpu")
    accelc.compile(tiny_resnet(), (torch.randn(1, 1, 16, 16),), target="fpga", pipeline="fuse,quantize(scheme=pow2)",
                   calib=d / "fpga.npz", eval=d / "fpga.npz", output=d / "fpga")
    assert main(["report", str(d / "cpu"), "-o", str(d / "cpu.html"), "--measure", str(MEASURE_RUNS), "-q"]) == 0
    assert main(["report", str(d / "fpga"), "-q"]) == 0                       # default: DIR/report.html
    return {"cpu": (d / "cpu", d / "cpu.html"), "fpga": (d / "fpga", d / "fpga" / "report.html")}


def _report(art):
    return json.loads((art / "report.json").read_text())


SVG_SUMMARY = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('svg[id]')].map(s => {
  const r = s.getBoundingClientRect();
  return [s.id, {w: r.width, h: r.height, bars: s.querySelectorAll('rect.bar').length,
                 visibleBars: [...s.querySelectorAll('rect.bar')].filter(b => b.getBBox().width > 0).length,
                 nodes: s.querySelectorAll('g.node').length, fpga: s.querySelectorAll('g.node.on-fpga').length,
                 host: s.querySelectorAll('g.node.on-host').length, edges: s.querySelectorAll('path.edge').length}];
})))"""


def _load(browser, page):
    browser.open(page.as_uri())
    assert browser.eval("document.documentElement.dataset.ready") == "1", "the page's script did not finish"
    assert browser.errors() == []
    assert browser.requests() == [page.as_uri()], "the page fetched something besides itself"
    return json.loads(browser.eval(SVG_SUMMARY))


def _start_browser() -> Browser:
    try:
        return Browser(CHROMIUM)
    except BrowserError as e:  # an installed but unusable browser is the machine's problem, not the page's
        pytest.skip(f"{CHROMIUM} did not start headless: {e}")


def test_report_pages_end_to_end(tmp_path):
    """One test (not two sharing a fixture) so that parallel workers do not compile everything twice."""
    pages = _compile_and_report(tmp_path)
    for art, page in pages.values():
        assert_self_contained(page.read_text())
    art, page = pages["fpga"]
    assert main(["report", str(art), "-o", str(tmp_path / "again.html"), "-q"]) == 0
    assert (tmp_path / "again.html").read_bytes() == page.read_bytes()      # same artifact → same bytes
    accelc.load(art)                                  # the page next to the payload does not break the hashes

    if CHROMIUM is None:
        pytest.skip(NO_CHROMIUM)
    with _start_browser() as browser:
        # cpu: FLOPs per layer, measured kernels, both graphs
        art, page = pages["cpu"]
        rep = _report(art)
        svgs = _load(browser, page)
        final, original = rep["graphs"]["final"], rep["graphs"]["original"]
        assert svgs["chart-flops"]["bars"] == sum(1 for n in final if n["flops"]) > 0
        assert svgs["chart-flops"]["visibleBars"] == svgs["chart-flops"]["bars"]
        assert svgs["chart-pass-time"]["bars"] == len(rep["passes"]) == 1
        assert svgs["graph-final"]["nodes"] == len(final) and svgs["graph-original"]["nodes"] == len(original)
        assert svgs["graph-final"]["edges"] == sum(len(n["inputs"]) for n in final)
        assert svgs["chart-time"]["bars"] >= 3                         # kernels (+ the VM builtins row)
        assert "chart-utilisation" not in svgs and "chart-sensitivity" not in svgs
        for name, s in svgs.items():
            assert s["w"] > 50 and s["h"] > 30, f"{name} is not rendered: {s}"
        assert browser.eval("document.querySelectorAll('#passes tbody tr').length") == 1
        assert browser.eval("document.querySelector('#accuracy-table').textContent").count("%") == 3
        # the zoom buttons work (the script is alive, not just present)
        width = svgs["graph-final"]["w"]
        browser.eval("document.querySelector('.zoom[data-target=graph-final] button[data-zoom=in]').click()")
        assert browser.eval("document.getElementById('graph-final').getBoundingClientRect().width") > width * 1.2

        # fpga: placement colours, per-layer utilisation and cycles, sensitivity
        art, page = pages["fpga"]
        rep = _report(art)
        svgs = _load(browser, page)
        placement, layers = rep["fpga"]["placement"], rep["fpga"]["layers"]
        on_fpga = sum(1 for p in placement.values() if p["on"] == "fpga")
        assert svgs["graph-final"]["fpga"] == on_fpga > 0
        assert svgs["graph-final"]["host"] == len(placement) - on_fpga
        assert svgs["chart-utilisation"]["bars"] == len(layers) > 0
        assert svgs["chart-cycles"]["bars"] == 2 * len(layers)
        quantize = rep["passes"][-1]["details"]
        assert svgs["chart-sensitivity"]["bars"] == len(quantize["sensitivity"]) > 0
        assert svgs["chart-layer-sqnr"]["bars"] == len(quantize["layers"])
        assert svgs["chart-flops"]["bars"] == sum(1 for n in rep["graphs"]["final"] if n["flops"])
        assert browser.eval("document.querySelectorAll('#passes tbody tr.lossy').length") == 1
        assert browser.eval("document.querySelectorAll('#placement tbody tr').length") == len(placement)
        shot = browser.screenshot(tmp_path / "fpga.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
