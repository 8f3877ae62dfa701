"""The Python API: ``compile``, ``load``, ``CompiledModel``."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.analysis.cost import graph_cost, graph_summary
from accelc.compiler.artifact import read_manifest, read_report, write_artifact
from accelc.compiler.batching import dataset_batches
from accelc.compiler.capture import LoadedModel, capture, load_model
from accelc.compiler.context import CompileContext
from accelc.compiler.data import Dataset, load_dataset
from accelc.compiler.inputs import InputSpec, dtype_name
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.compiler.verify import compare, flat_outputs, run_samples, top1_accuracy
from accelc.errors import AccelcError, UsageError
from accelc.progress import progress
from accelc.targets.base import Runner, get_target_class, make_target


class CompiledModel:
    """A compiled artifact, callable like the model: ``compiled(x)``.

    Accepts torch tensors or numpy arrays (one per model input) and returns the same kind;
    several outputs come back as a tuple. ``.save(dir)`` copies the artifact directory.
    """

    def __init__(self, path: Path, manifest: dict, runner: Runner | None = None, *, temporary: bool = False):
        self.path = Path(path)
        self.manifest = manifest
        self._runner = runner
        if temporary:
            weakref.finalize(self, shutil.rmtree, str(self.path.parent), True)

    @property
    def report(self) -> dict:
        return read_report(self.path)

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = get_target_class(self.manifest["target"]).load(self.path, self.manifest)
        return self._runner

    def __call__(self, *inputs):
        as_torch = any(isinstance(x, torch.Tensor) for x in inputs)
        arrays = [x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x) for x in inputs]
        outs = self.runner.run(arrays)
        if as_torch:
            outs = [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def save(self, out_dir: str | Path) -> Path:
        """Copy the artifact to ``out_dir`` (atomically; replaces an older artifact there)."""
        src = self.path

        def fill(tmp: Path) -> dict:
            for f in sorted(src.rglob("*")):
                # report.html (`accelc report`) describes this copy's source, not a payload file
                if f.is_file() and f.name not in ("manifest.json", "report.json", "report.html"):
                    dst = tmp / f.relative_to(src)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dst)
            return {k: v for k, v in self.manifest.items() if k not in ("format", "format_version", "tools", "files")}

        write_artifact(out_dir, fill, read_report(src))
        return Path(out_dir)

    def __repr__(self) -> str:
        return f"CompiledModel(target={self.manifest['target']!r}, path={str(self.path)!r})"


def load(path: str | Path) -> CompiledModel:
    """Open an artifact directory written by ``accelc compile``/``CompiledModel.save``."""
    manifest = read_manifest(path)
    return CompiledModel(Path(path), manifest)


# --------------------------------------------------------------------------- compile
def _example_inputs(loaded: LoadedModel, example_inputs, input_shapes) -> tuple[torch.Tensor, ...]:
    if example_inputs is not None:
        if isinstance(example_inputs, torch.Tensor):
            example_inputs = (example_inputs,)
        return tuple(torch.as_tensor(x) for x in example_inputs)
    if input_shapes:
        specs = [s if isinstance(s, InputSpec) else InputSpec.parse(str(s)) for s in input_shapes]
        if loaded.example_inputs is not None and len(specs) != len(loaded.example_inputs):
            raise UsageError(f"--input-shape given {len(specs)} time(s), the model takes {len(loaded.example_inputs)} inputs")
        return tuple(s.example(seed=i) for i, s in enumerate(specs))
    if loaded.example_inputs is not None:
        return loaded.example_inputs
    raise UsageError(f"the input shape of {loaded.source} is unknown",
                     hint="pass --input-shape, e.g. --input-shape 1x1x28x28 (repeat it for several inputs)")


def _resolve_model(model, entry, weights, trust_pickle) -> LoadedModel:
    if isinstance(model, (nn.Module, torch.export.ExportedProgram)):
        ex = None
        if isinstance(model, torch.export.ExportedProgram):
            from accelc.compiler.capture import _exported_example_inputs
            ex = _exported_example_inputs(model)
        return LoadedModel(model, ex, type(model).__name__)
    return load_model(model, entry=entry, weights=weights, trust_pickle=trust_pickle)


def _io_specs(gm: fx.GraphModule, example_inputs) -> tuple[list[dict], list[dict]]:
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    inputs = [{"name": n.name, "shape": list(t.shape), "dtype": dtype_name(t.dtype)}
              for n, t in zip(placeholders, example_inputs)]
    with torch.no_grad():
        outs = flat_outputs(gm(*example_inputs))
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    outputs = [{"name": nm, "shape": list(o.shape), "dtype": dtype_name(o.dtype)} for nm, o in zip(names, outs)]
    return inputs, outputs


def _runner_outputs(runner: Runner, batches) -> list[list[torch.Tensor]]:
    return [[torch.from_numpy(o) for o in runner.run([b.numpy() for b in batch])] for batch in batches]


def _accuracy(ds: Dataset, batch: int, fns: dict[str, Any], quiet: bool) -> dict:
    labels = torch.from_numpy(ds.labels)
    result = {"dataset": ds.source, "samples": len(ds)}
    for name, fn in fns.items():
        batches = list(ds.batches(batch, pad=True)) if isinstance(fn, Runner) else dataset_batches(fn, ds, batch)
        it = progress(batches, desc=f"eval {name}", quiet=quiet)
        outs = _runner_outputs(fn, it) if isinstance(fn, Runner) else run_samples(fn, it)
        result[name] = round(top1_accuracy(outs, labels), 6)
    return result


def _tuning_options(target: str, tune: int, tuning_db, tune_budget, seed: int) -> dict[str, Any]:
    if not tune and tuning_db is None:
        if tune_budget is not None:
            raise UsageError("--tune-budget needs --tune TRIALS")
        return {}
    if target not in ("cpu", "cuda"):
        raise UsageError(f"--tune/--tuning-db apply to the cpu and cuda targets, not {target}")
    from accelc.targets.tvm_backend.tuning import TuningOptions

    return {"tuning": TuningOptions(trials=int(tune), db=None if tuning_db is None else str(tuning_db),
                                    budget_s=None if tune_budget is None else float(tune_budget), seed=seed)}


def compile(model: Any = None, example_inputs: Sequence[torch.Tensor] | torch.Tensor | None = None,
            target: str = "cpu", pipeline: str | Pipeline | None = None, *,
            output: str | Path | None = None, entry: str | None = None, weights: str | Path | None = None,
            trust_pickle: bool = False, input_shapes: Sequence[str | InputSpec] | None = None,
            target_options: dict[str, Any] | None = None, calib: str | Path | None = None,
            eval: str | Path | None = None, train: str | Path | None = None, verify_each: bool = True,
            print_after: Sequence[str] | None = None, print_format: str = "code", seed: int = 0,
            quiet: bool = True, reproducible: bool = False, printer=print, tune: int = 0,
            tuning_db: str | Path | None = None, tune_budget: float | None = None) -> CompiledModel:
    """Compile a model for ``target`` and return the callable artifact.

    ``model`` is an ``nn.Module``, an ``ExportedProgram``, or a path (``.pt2``; a pickled
    module only with ``trust_pickle``); or pass ``entry="file.py:factory"``. The artifact is
    written to ``output`` when given, else to a temporary directory (``.save(dir)`` keeps it).
    ``reproducible`` records no wall-clock times, making report.json byte-identical as well.
    ``tune`` (trials per task), ``tuning_db`` and ``tune_budget`` (seconds) tune the cpu/cuda
    code with MetaSchedule and a persistent database (see ``targets/tvm_backend/tuning.py``).
    """
    torch.manual_seed(seed)
    tgt = make_target(target, target_options)
    pipe = pipeline if isinstance(pipeline, Pipeline) else Pipeline.parse(
        tgt.default_pipeline if pipeline is None else pipeline)
    tgt.check_pipeline(pipe)
    loaded = _resolve_model(model, entry, weights, trust_pickle)
    examples = _example_inputs(loaded, example_inputs, input_shapes)
    specs = [InputSpec.of(t) for t in examples]
    ctx = CompileContext(
        examples, target=target, seed=seed, quiet=quiet,
        calib=load_dataset(calib, specs, option="--calib", role="calib") if calib is not None else None,
        eval=load_dataset(eval, specs, option="--eval", role="eval") if eval is not None else None,
        train=load_dataset(train, specs, option="--train", role="train") if train is not None else None,
        options={"target_options": tgt.options_dict(), "reproducible": reproducible,
                 **_tuning_options(target, tune, tuning_db, tune_budget, seed)})
    if ctx.eval is not None and ctx.eval.labels is None:
        raise UsageError(f"--eval {eval}: has no 'labels' array; accuracy needs labels")
    gm = capture(loaded.model, examples)
    original_cost = graph_cost(gm, examples)
    gm = PassManager(pipe, verify_each=verify_each, print_after=list(print_after or []), print_format=print_format,
                     printer=printer).run(gm, ctx)
    final_cost = graph_cost(gm, examples)
    if reproducible:  # wall-clock times are the one non-deterministic thing in report.json
        for r in ctx.records:
            r.seconds = 0.0
    inputs, outputs = _io_specs(gm, examples)

    # what `accelc export DIR` replays; only paths as the user gave them (no timestamps, no cwd)
    recipe = {"model": str(model) if isinstance(model, (str, Path)) else None, "entry": entry,
              "weights": str(weights) if weights is not None else None, "trust_pickle": trust_pickle,
              "input_shapes": [str(s) for s in input_shapes] if input_shapes else None,
              "calib": str(calib) if calib is not None else None, "seed": seed}
    temporary = output is None
    out_dir = Path(tempfile.mkdtemp(prefix="accelc-")) / "artifact" if temporary else Path(output)
    state: dict[str, Any] = {}

    def fill(tmp: Path) -> dict:
        fields = {"target": target, "target_options": tgt.options_dict(), "pipeline": str(pipe),
                  "source": loaded.source, "inputs": inputs, "outputs": outputs, "recipe": recipe}
        fields.update(tgt.lower(gm, ctx, tmp))
        state["fields"] = fields
        state["tmp"] = tmp
        return fields

    def report() -> dict:
        rep = {"target": target, "target_options": tgt.options_dict(), "pipeline": str(pipe),
               "passes": [r.to_dict() for r in ctx.records],
               "graph": {"original": original_cost.totals(), "final": final_cost.totals()},
               "graphs": {"original": graph_summary(ctx.reference, examples), "final": graph_summary(gm, examples)}}
        rep.update(tgt.report_extras())
        try:
            runner = type(tgt).load(state["tmp"], state["fields"])
        except AccelcError as e:
            rep["artifact_check"] = {"skipped": str(e).splitlines()[0]}
            runner = None
        if runner is not None:
            samples = ctx.samples()
            art = _runner_outputs(runner, samples)
            rep["artifact_check"] = {
                "samples": sum(int(s[0].shape[0]) for s in samples),
                "vs_final_graph": compare(run_samples(gm, samples), art).to_dict(),
                "vs_original": compare(run_samples(ctx.reference, samples), art).to_dict()}
            state["runner"] = runner
            rep.update(tgt.runtime_report(runner))
        if ctx.eval is not None:
            fns = {"original": ctx.reference, "final_graph": gm}
            if runner is not None:
                fns["artifact"] = runner
            rep["accuracy"] = _accuracy(ctx.eval, ctx.batch_size, fns, quiet)
        return rep

    manifest = write_artifact(out_dir, fill, report)
    return CompiledModel(out_dir, manifest, state.get("runner"), temporary=temporary)
