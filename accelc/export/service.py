"""``accelc export``: rebuild the final graph (from a model, or from an artifact's recorded
recipe), write ONNX, and check it in ONNX Runtime against accelc's integer reference."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch

from accelc.compiler.artifact import MANIFEST, read_manifest
from accelc.compiler.capture import capture, load_model
from accelc.compiler.context import CompileContext
from accelc.compiler.data import load_dataset
from accelc.compiler.inputs import InputSpec
from accelc.compiler.pass_manager import PassManager
from accelc.compiler.pipeline import Pipeline
from accelc.compiler.verify import compare, run_samples
from accelc.errors import ArtifactError, UsageError
from accelc.export.agreement import ort_agreement
from accelc.export.onnx_qdq import OPSET, export_onnx, int8_probes

DEFAULT_PIPELINE = "fuse,quantize"


def _recipe_from_artifact(art: Path) -> tuple[dict, dict]:
    manifest = read_manifest(art)
    recipe = manifest.get("recipe") or {}
    if not recipe.get("model") and not recipe.get("entry"):
        raise ArtifactError(f"{art} was compiled from an in-memory model, so its recipe cannot be replayed",
                            hint="export from the model instead: accelc export MODEL --pipeline ... --calib ...")
    return recipe, manifest


def export_model(model: str | None, *, entry: str | None = None, weights: str | None = None, trust_pickle: bool = False,
                 input_shapes: Sequence[str] | None = None, pipeline: str | None = None, calib: str | None = None,
                 output: Path, samples: int = 64, quiet: bool = True) -> dict:
    manifest, art_dir = None, None
    if model is not None and Path(model).is_dir() and (Path(model) / MANIFEST).is_file():
        art_dir = Path(model)
        if any(v is not None for v in (entry, weights, input_shapes, pipeline, calib)):
            raise UsageError("export from an artifact replays its recorded recipe; model options are not allowed",
                             hint="drop --entry/--weights/--input-shape/--pipeline/--calib, or export from the model")
        recipe, manifest = _recipe_from_artifact(art_dir)
        model, entry, weights = recipe.get("model"), recipe.get("entry"), recipe.get("weights")
        trust_pickle, input_shapes = recipe.get("trust_pickle", False), recipe.get("input_shapes")
        pipeline, calib = manifest["pipeline"], recipe.get("calib")
    loaded = load_model(model, entry=entry, weights=weights, trust_pickle=trust_pickle)
    from accelc.api import _example_inputs

    examples = _example_inputs(loaded, None, input_shapes)
    specs = [InputSpec.of(t) for t in examples]
    ctx = CompileContext(examples, quiet=quiet, num_samples=samples,
                         calib=load_dataset(calib, specs, option="--calib", role="calib") if calib else None)
    gm = capture(loaded.model, examples)
    pipe = Pipeline.parse(DEFAULT_PIPELINE if pipeline is None else pipeline)
    gm = PassManager(pipe, verify_each=False).run(gm, ctx)
    batches = ctx.samples()
    probes = int8_probes(gm)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".onnx")
    os.close(fd)
    try:
        export_onnx(gm, examples, tmp, probes=probes)
        result = {"format": "onnx", "opset": OPSET, "pipeline": str(pipe), "output": str(output),
                  "agreement": ort_agreement(tmp, gm, batches, probes)}
        if art_dir is not None:
            result["artifact_match"] = _artifact_match(art_dir, manifest, gm, batches)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    report = output.with_name(output.name + ".report.json")
    report.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def _artifact_match(art: Path, manifest: dict, gm, batches) -> dict:
    """The replayed graph against the artifact's own outputs (it must be the same model)."""
    from accelc.errors import AccelcError
    from accelc.targets.base import get_target_class

    try:
        runner = get_target_class(manifest["target"]).load(art, manifest)
    except AccelcError as e:
        return {"skipped": str(e).splitlines()[0]}
    art_out = [[torch.from_numpy(o) for o in runner.run([t.numpy() for t in b])] for b in batches]
    return compare(run_samples(gm, batches), art_out).to_dict()
