"""The HTML page: one file, styles and script inline (``assets/report.css``/``report.js``),
charts and graphs as inline SVG; nothing is fetched. The same inputs give the same bytes."""

from __future__ import annotations

from importlib import resources

from accelc.report import sections
from accelc.report.markup import Raw, el


def _asset(name: str) -> str:
    return resources.files("accelc.report").joinpath("assets", name).read_text(encoding="utf-8")


def render_page(name: str, manifest: dict, report: dict, measured: dict | None = None) -> str:
    """The report page for an artifact called ``name`` (its directory name)."""
    found = [sections.overview(name, manifest, report), sections.pipeline(report),
             sections.accuracy_latency(report, measured), sections.layers(report, measured),
             sections.fpga(report), sections.quantization(report), sections.graphs(report)]
    found = [s for s in found if s is not None]
    nav = el("nav", [el("a", title, href=f"#{anchor}") for anchor, title, _ in found])
    body = [el("section", el("h2", title), content, id=anchor) for anchor, title, content in found]
    target = manifest.get("target", "?")
    head = el("head", el("meta", charset="utf-8"),
              el("meta", name="viewport", content="width=device-width, initial-scale=1"),
              # no network: forbid every fetch except inline styles/scripts and data: images
              el("meta", http_equiv="Content-Security-Policy",
                 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"),
              el("meta", name="generator", content="accelc report"),
              el("title", f"accelc report — {name} ({target})"),
              el("style", Raw(_asset("report.css"))))
    header = el("header", el("h1", "accelc report — ", el("span", name, class_="mono")),
                el("div", f"target {target} · pipeline {manifest.get('pipeline') or 'none'} · "
                          f"source {manifest.get('source', '?')}", class_="sub"))
    page = el("html", head, el("body", header, nav, el("main", body), el("script", Raw(_asset("report.js")))),
              lang="en")
    return "<!DOCTYPE html>\n" + page + "\n"
