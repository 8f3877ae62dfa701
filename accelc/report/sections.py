"""The report's sections, each built from ``manifest.json``/``report.json`` (and measurements
when asked for). A section function returns ``(anchor, title, markup)``, or ``None`` when the
artifact has nothing for it (no fpga placement, no quantize pass, …)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from accelc.report import fmt
from accelc.report.charts import Chart, Row, bar_chart
from accelc.report.graph_svg import graph_svg
from accelc.report.markup import Raw, el
from accelc.report.tables import Num, kv_table, table

Section = tuple[str, str, Raw]
GRAPH_OPEN_MAX = 400     # graphs with more nodes start collapsed


def _note(*text) -> Raw:
    return el("p", *text, class_="note")


TALL_CHART_ROWS = 40     # longer charts scroll inside their own box


def _chart_box(chart: Chart) -> Raw:
    return el("div", bar_chart(chart), class_="chart-box tall" if len(chart.rows) > TALL_CHART_ROWS else "chart-box")


def _legend(items: Sequence[tuple[str, str]]) -> Raw:
    return el("div", [el("span", el("span", class_=f"sw {cls}"), label) for cls, label in items], class_="legend-row")


def _options(opts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" if not isinstance(v, str) else f"{k}={v}" for k, v in opts.items()) or "—"


def _db(x: float | None) -> str:
    return "identical" if x is None else f"{x:.2f} dB"


# --------------------------------------------------------------------------- overview
def overview(name: str, manifest: dict, report: dict) -> Section:
    g = report.get("graph", {})
    orig, final = g.get("original", {}), g.get("final", {})
    acc = report.get("accuracy") or {}
    cards = [("FLOPs", fmt.si(final.get("flops")), f"original {fmt.si(orig.get('flops'))}"),
             ("parameter bytes", fmt.si(final.get("param_bytes"), "B"),
              f"original {fmt.si(orig.get('param_bytes'), 'B')}"),
             ("passes", str(len(report.get("passes", []))),
              report.get("pipeline") or manifest.get("pipeline") or "none")]
    if "artifact" in acc or "original" in acc:
        cards.append(("top-1 accuracy (artifact)", fmt.pct(acc.get("artifact", acc.get("final_graph")), 2),
                      f"original {fmt.pct(acc.get('original'), 2)} on {acc.get('samples', '?')} samples"))
    run = report.get("fpga_run")
    if run:
        cards.append(("accelerator latency (simulated)", f"{run['accelerator_latency_ms']:.3f} ms",
                      f"{run['total_cycles']:,} cycles at {run.get('clock_mhz', '?')} MHz"))
    card_html = el("div", [el("div", el("div", k, class_="k"), el("div", v, class_="v"), el("div", d, class_="d"),
                              class_="card") for k, v, d in cards], class_="cards")
    io = lambda specs: "; ".join(f"{s['name']}: {fmt.shape(s['shape'])} {s['dtype']}" for s in specs)  # noqa: E731
    meta = kv_table([
        ("artifact", name), ("target", manifest.get("target", "?")),
        ("target options", _options(manifest.get("target_options") or {})),
        ("pipeline", el("code", manifest.get("pipeline") or "none")), ("source", manifest.get("source", "?")),
        ("inputs", io(manifest.get("inputs", []))), ("outputs", io(manifest.get("outputs", []))),
        ("payload files", ", ".join(sorted(manifest.get("files", {}))) or "—"),
        ("tools", ", ".join(f"{k} {v}" for k, v in sorted((manifest.get("tools") or {}).items()))),
    ], id="meta")
    totals = table(["", Num("original"), Num("final"), Num("change")],
                   [[k, Num(fmt.num(orig.get(k))), Num(fmt.num(final.get(k))),
                     Num(fmt.change(orig.get(k), final.get(k)))]
                    for k in ("flops", "macs", "params", "param_bytes", "activation_bytes") if k in orig or k in final],
                   id="graph-totals")
    return "overview", "Overview", Raw(card_html + meta + el("h3", "Graph totals") + totals)


# --------------------------------------------------------------------------- pipeline
def pipeline(report: dict) -> Section:
    passes = report.get("passes", [])
    if not passes:
        return "pipeline", "Pipeline", _note("No passes ran (pipeline ", el("code", "none"), ").")
    rows, classes = [], []
    for i, p in enumerate(passes, 1):
        exact = bool(p.get("exact"))
        details = p.get("details")
        rows.append([
            Num(i), el("b", p.get("name", "?")),
            el("span", "exact" if exact else "lossy", class_=f"badge {'exact' if exact else 'lossy'}"),
            el("code", _options(p.get("options") or {})), Num(fmt.ms(p.get("seconds"))),
            Num(fmt.change(p.get("flops_before"), p.get("flops_after"))),
            Num(fmt.change(p.get("params_before"), p.get("params_after"))),
            Num(fmt.num(p.get("max_abs_err"))), Num(_db(p.get("sqnr_db"))), Num(fmt.pct(p.get("top1_agreement"), 2)),
            el("details", el("summary", "details"), el("pre", json.dumps(details, indent=1, sort_keys=True)))
            if details else "—"])
        classes.append("exact" if exact else "lossy")
    tbl = table([Num("#"), "pass", "kind", "options", Num("time"), Num("FLOPs"), Num("params"), Num("max |Δ|"),
                 Num("SQNR"), Num("top-1 agr."), "details"], rows, id="passes", row_classes=classes)
    chart = Chart("chart-pass-time", "Wall time per pass", [
        Row(f"{i}. {p.get('name')}", [float(p.get("seconds") or 0.0)], classes="" if p.get("exact") else "s1")
        for i, p in enumerate(passes, 1)], fmt=lambda v: fmt.ms(v) if v else "0")
    return "pipeline", "Pipeline", Raw(
        _note("Each pass ran on the graph the previous one produced and was verified on sample inputs: FLOPs and "
              "params before → after, and the change of the model outputs it caused (max |Δ|, SQNR — ",
              el("i", "identical"), " when the outputs did not change — and top-1 agreement with the graph before "
              "it). ", el("span", "exact", class_="badge exact"), " passes must preserve outputs to float tolerance; ",
              el("span", "lossy", class_="badge lossy"), " passes trade accuracy for cost.")
        + tbl + el("h3", "Time per pass (compile, wall clock)") + _chart_box(chart))


# --------------------------------------------------------------------------- accuracy & latency
def accuracy_latency(report: dict, measured: dict | None) -> Section:
    parts: list[Raw] = [el("h3", "Accuracy")]
    acc = report.get("accuracy")
    if acc:
        cols = [k for k in ("original", "final_graph", "artifact") if k in acc]
        parts.append(table(["data set", Num("samples")] + [Num(c.replace("_", " ")) for c in cols],
                           [[acc.get("dataset", "?"), Num(fmt.num(acc.get("samples")))]
                            + [Num(fmt.pct(acc[c], 2)) for c in cols]], id="accuracy-table"))
    else:
        parts.append(_note("No accuracy: the artifact was compiled without ", el("code", "--eval"), " data."))
    check = report.get("artifact_check") or {}
    if "skipped" in check:
        parts.append(_note("Artifact check skipped: ", check["skipped"]))
    elif check:
        rows = [[label, Num(fmt.num(m.get("max_abs_err"))), Num(_db(m.get("sqnr_db"))),
                 Num(fmt.pct(m.get("top1_agreement"), 2))]
                for label, m in (("artifact vs final graph", check.get("vs_final_graph") or {}),
                                 ("artifact vs original model", check.get("vs_original") or {}))]
        parts.append(el("h3", f"Artifact check ({check.get('samples', '?')} sample inputs)"))
        parts.append(table(["comparison", Num("max |Δ|"), Num("SQNR"), Num("top-1 agreement")], rows,
                           id="artifact-check"))
    parts.append(el("h3", "Latency"))
    rows = []
    run = report.get("fpga_run")
    if run:
        rows.append(["accelerator (fpga segments), simulated", Num(f"{run['accelerator_latency_ms']:.4f}"), "—", "—",
                     f"cycle count of the last sample run × clock ({run['total_cycles']:,} cycles at "
                     f"{run.get('clock_mhz', '?')} MHz); host parts not included"])
    if measured:
        e2e = measured["end_to_end_ms"]
        rows.append([f"artifact end to end, measured on {measured.get('device', 'cpu')}",
                     Num(f"{e2e['median_ms']:.4f}"), Num(f"{e2e['p10_ms']:.4f}"), Num(f"{e2e['p90_ms']:.4f}"),
                     f"wall clock of runner.run over {e2e['runs']} runs after warm-up; {measured['input']}"])
        if "instrumented_total_ms" in measured:
            rows.append(["sum of per-kernel times (instrumented)", Num(f"{measured['instrumented_total_ms']:.4f}"),
                         "—", "—", "median over runs of the per-call times below; includes the hook's overhead"])
    if rows:
        parts.append(table(["what", Num("median ms"), Num("p10 ms"), Num("p90 ms"), "how"], rows, id="latency"))
    if not measured:
        parts.append(_note("Run ", el("code", "accelc report DIR --measure N"), " to time the artifact on this machine "
                           "(end to end and per kernel)."))
    return "accuracy", "Accuracy & latency", Raw("".join(parts))


# --------------------------------------------------------------------------- per layer
def _placement(report: dict) -> dict | None:
    return (report.get("fpga") or {}).get("placement")


def layers(report: dict, measured: dict | None) -> Section:
    nodes = (report.get("graphs") or {}).get("final") or []
    placement = _placement(report)
    parts: list[Raw] = []
    compute = [n for n in nodes if n.get("flops")]
    rows = []
    for n in compute:
        where = (placement or {}).get(n["name"], {}).get("on")
        tip = f"{n['name']}: {n.get('op')} → {fmt.shape(n.get('shape'))}\nFLOPs: {n['flops']:,}"
        if n.get("params"):
            tip += f"\nparams: {n['params']:,}"
        if where:
            tip += f"\non {where}"
        rows.append(Row(f"{n['name']} · {n.get('op')}", [float(n["flops"])], tooltip=tip,
                        classes=f"on-{where}" if where else "", node=n["name"]))
    parts.append(el("h3", f"FLOPs per layer (final graph, {len(compute)} layers with arithmetic)"))
    if placement:
        parts.append(_legend([("on-host", "host (TVM CPU)"), ("on-fpga", "fpga accelerator")]))
    parts.append(_chart_box(Chart("chart-flops", "FLOPs per layer", rows, fmt=fmt.si, graph="graph-final")))
    fpga_layers = (report.get("fpga") or {}).get("layers") or []
    if fpga_layers:
        parts.append(el("h3", "Accelerator cycles per layer (fpga simulator)"))
        parts.append(_note("Cycles each accelerator layer takes: the lowering's cost model (used to choose the "
                           "tiling) and the bit-exact simulator's count for the compiled program; at "
                           f"{(report.get('fpga') or {}).get('config', {}).get('clock_mhz', '?')} MHz."))
        parts.append(_chart_box(Chart("chart-cycles", "Accelerator cycles per layer", [
            Row(f"{r['name']} · {r.get('kind')}", [float(r.get("model", {}).get("cycles", 0)),
                                                    float(r.get("sim", {}).get("cycles", 0))],
                tooltip=f"{r['name']} ({r.get('kind')}): model {r.get('model', {}).get('cycles', 0):,} cycles, "
                        f"simulated {r.get('sim', {}).get('cycles', 0):,} cycles", node=r["name"])
            for r in fpga_layers], series=["cost model", "simulator"], fmt=fmt.si, graph="graph-final")))
    parts.append(el("h3", "Measured time per kernel"))
    kernels = (measured or {}).get("kernels")
    if kernels:
        own = [k for k in kernels if k["kind"] != "vm builtin"]
        builtin = [k for k in kernels if k["kind"] == "vm builtin"]
        krows = [Row(k["name"] + (f" → {fmt.shape(k['output_shape'])}" if k.get("output_shape") else ""),
                     [k["median_s"]], tooltip=f"{k['name']} ({k['kind']}): {k['calls']} call(s) per run, "
                     f"median {fmt.ms(k['median_s'])} per run", classes="s1" if k["kind"].startswith("fpga") else "")
                 for k in own]
        if builtin:
            total = sum(k["median_s"] for k in builtin)
            calls = sum(k["calls"] for k in builtin)
            krows.append(Row(f"VM builtins ({calls} calls)", [total], classes="builtin", tooltip="\n".join(
                f"{k['name']}: {k['calls']} call(s), {fmt.ms(k['median_s'])}" for k in builtin)))
        parts.append(_note(f"Median over {measured['runs']} runs of the time spent in each compiled kernel per run, "
                           "in call order, measured around each Relax VM call (a kernel is TVM's, often several "
                           "fused graph nodes; TVM keeps no node → kernel map, so kernels are not assigned to "
                           "layers). Allocation and other VM builtins are summed in the last row."))
        parts.append(_chart_box(Chart("chart-time", "Measured time per kernel", krows, fmt=fmt.ms)))
    else:
        parts.append(el("p", "Not measured: run ", el("code", "accelc report DIR --measure N"),
                        " to time each kernel of the artifact on this machine.", class_="note", id="time-missing"))
    return "layers", "Per layer", Raw("".join(parts))


# --------------------------------------------------------------------------- fpga
def fpga(report: dict) -> Section | None:
    info = report.get("fpga")
    if not info:
        return None
    parts: list[Raw] = []
    cfg = info.get("config") or {}
    parts.append(kv_table([("config", info.get("config_name", "?"))]
                          + [(k, fmt.num(v) if not isinstance(v, str) else v) for k, v in sorted(cfg.items())],
                          id="fpga-config"))
    rows = info.get("layers") or []
    if rows:
        parts.append(el("h3", "GEMM-core utilisation per accelerator layer (simulator)"))
        parts.append(_note("Share of the layer's cycles in which the GEMM core did useful work (simulated GEMM ops "
                           "÷ cycles); the rest is waiting for loads/stores or padding to the 16×16 block."))
        parts.append(_chart_box(Chart("chart-utilisation", "GEMM utilisation per layer", [
            Row(f"{r['name']} · {r.get('kind')}", [float(r.get("sim", {}).get("gemm_utilization", 0.0))],
                tooltip=f"{r['name']}: {fmt.pct(r.get('sim', {}).get('gemm_utilization'))} of "
                        f"{r.get('sim', {}).get('cycles', 0):,} cycles", node=r["name"], classes="on-fpga")
            for r in rows], fmt=lambda v: fmt.pct(v, 0), max_value=1.0, graph="graph-final")))
        parts.append(table(
            ["layer", "kind", "input → output", "tiling", Num("model cycles"), Num("sim cycles"), Num("GEMM util."),
             Num("DRAM bytes (inp/wgt/out)")],
            [[r["name"], r.get("kind", ""), f"{fmt.shape(r.get('input_shape'))} → {fmt.shape(r.get('output_shape'))}",
              el("code", _options(r.get("tiling") or {})), Num(fmt.num(r.get("model", {}).get("cycles"))),
              Num(fmt.num(r.get("sim", {}).get("cycles"))), Num(fmt.pct(r.get("sim", {}).get("gemm_utilization"))),
              Num(" / ".join(fmt.si(r.get("sim", {}).get(k), "B") for k in ("inp_bytes", "wgt_bytes", "out_bytes")))]
             for r in rows], id="fpga-layers"))
    run = report.get("fpga_run") or {}
    segs = info.get("segments") or []
    if segs:
        stats = run.get("segments") or {}
        parts.append(el("h3", "Segments"))
        parts.append(table(["segment", "inputs", "outputs", Num("cycles"), Num("busy load/compute/store"),
                            Num("GEMM util."), Num("instructions")],
                           [[s["name"], ", ".join(s.get("inputs", [])), ", ".join(s.get("outputs", [])),
                             Num(fmt.num(stats.get(s["name"], {}).get("total_cycles"))),
                             Num(" / ".join(fmt.num(stats.get(s["name"], {}).get("busy_cycles", {}).get(k))
                                            for k in ("load", "compute", "store"))),
                             Num(fmt.pct(stats.get(s["name"], {}).get("gemm_utilization"))),
                             Num(fmt.num(stats.get(s["name"], {}).get("insn_counter")))] for s in segs],
                           id="fpga-segments"))
    placement = info.get("placement") or {}
    if placement:
        order = [n["name"] for n in (report.get("graphs") or {}).get("final", []) if n["name"] in placement]
        order += sorted(set(placement) - set(order))
        n_fpga = sum(1 for v in placement.values() if v.get("on") == "fpga")
        parts.append(el("h3", f"Placement ({n_fpga} of {len(placement)} nodes on the accelerator)"))
        parts.append(table(["node", "on", "why"],
                           [[n, el("span", placement[n].get("on", "?"), class_=f"badge on-{placement[n].get('on')}"),
                             placement[n].get("why", "")] for n in order], id="placement"))
    return "fpga", "FPGA", Raw("".join(parts))


# --------------------------------------------------------------------------- quantization
def quantization(report: dict) -> Section | None:
    recs = [p for p in report.get("passes", []) if isinstance(p.get("details"), dict)
            and (p["details"].get("sensitivity") or p["details"].get("layers"))]
    if not recs:
        return None
    d = recs[-1]["details"]
    parts: list[Raw] = [_note(f"Scheme {d.get('scheme', '?')}, observer {d.get('observer', '?')}, activations "
                              f"{d.get('activations', '?')}, weights {d.get('weights', '?')}.")]
    floats = d.get("float_nodes") or {}
    if floats:
        parts.append(el("p", "Kept in float: ", "; ".join(f"{k} ({v})" for k, v in floats.items())))
    sens = d.get("sensitivity") or []
    if sens:
        parts.append(el("h3", "Sensitivity: each layer quantized alone"))
        parts.append(_note("SQNR of the model output when only this layer runs in int8 (higher is better: the layer "
                           "is less sensitive); top-1 accuracy of that model in the tooltip and table."))
        parts.append(_chart_box(Chart("chart-sensitivity", "Per-layer quantization sensitivity (SQNR)", [
            Row(f"{s['layer']} · {s.get('kind')}", [float(s["sqnr_db"]) if s.get("sqnr_db") is not None else 0.0],
                value_text=[_db(s.get("sqnr_db"))], node=s["layer"],
                tooltip=f"{s['layer']} alone in int8: SQNR {_db(s.get('sqnr_db'))}"
                        + (f", top-1 {fmt.pct(s['top1'], 2)}" if "top1" in s else ""))
            for s in sens], fmt=lambda v: f"{v:g} dB")))
        parts.append(table(["layer", "kind", Num("SQNR alone"), Num("top-1 alone")],
                           [[s["layer"], s.get("kind", ""), Num(_db(s.get("sqnr_db"))),
                             Num(fmt.pct(s.get("top1"), 2) if "top1" in s else "—")] for s in sens], id="sensitivity"))
    layer_rows = d.get("layers") or []
    if layer_rows:
        parts.append(el("h3", "Per-layer int8 output error (whole graph quantized)"))
        parts.append(_chart_box(Chart("chart-layer-sqnr", "Per-layer output SQNR", [
            Row(f"{r['layer']} · {r.get('kind')}", [float(r["output_sqnr_db"]) if r.get("output_sqnr_db") is not None
                                                     else 0.0], value_text=[_db(r.get("output_sqnr_db"))],
                tooltip=f"{r['layer']}: output SQNR {_db(r.get('output_sqnr_db'))} vs float")
            for r in layer_rows], fmt=lambda v: f"{v:g} dB")))
        parts.append(table(["layer", "kind", Num("input scale"), Num("output scale"), Num("weight scales"),
                            Num("shifts"), Num("output SQNR")],
                           [[r["layer"], r.get("kind", ""), Num(fmt.num(r.get("input_scale"))),
                             Num(fmt.num(r.get("output_scale"))),
                             Num(f"{fmt.num(r.get('weight_scale_min'))} … {fmt.num(r.get('weight_scale_max'))}"),
                             Num(f"{r.get('shift_min')} … {r.get('shift_max')}"), Num(_db(r.get("output_sqnr_db")))]
                            for r in layer_rows], id="quant-layers"))
    return "quantization", "Quantization", Raw("".join(parts))


# --------------------------------------------------------------------------- graphs
def graphs(report: dict) -> Section:
    g = report.get("graphs") or {}
    placement = _placement(report)
    panels = []
    for key, title in (("original", "Before the pipeline (captured graph)"), ("final", "After the pipeline")):
        nodes = g.get(key)
        if not nodes:
            panels.append(el("div", el("h3", title), _note("Not recorded in this report.json."), class_="graph-panel"))
            continue
        gid = f"graph-{key}"
        place = placement if key == "final" else None
        legend = ([("io", "input/output"), ("on-host", "host"), ("on-fpga", "fpga")] if place else
                  [("io", "input/output"), ("compute", "with FLOPs"), ("other", "data movement / other")])
        zoom = el("div", [el("button", label, type="button", data_zoom=z)
                          for z, label in (("out", "−"), ("in", "+"), ("fit", "fit"), ("reset", "1:1"))],
                  class_="zoom", data_target=gid)
        svg = graph_svg(nodes, id=gid, title=title, placement=place)
        panels.append(el("div", el("h3", f"{title}: {len(nodes)} nodes"), _legend(legend),
                         el("details", el("summary", "show / hide graph"), zoom, el("div", svg, class_="scroll"),
                            open=len(nodes) <= GRAPH_OPEN_MAX),
                         class_="graph-panel"))
    return "graphs", "Graphs", Raw(_note("Layered top to bottom in dependency order; hover a node for its name, FLOPs "
                                         "and params (and placement), click a bar in a chart to find its node.")
                                   + el("div", panels, class_="graphs"))
