"""Model capture: load a model safely, then trace it into a canonical fx GraphModule.

Inputs accepted (see :func:`load_model`):

1. ``model.pt2`` — a ``torch.export.save`` program; carries its example inputs.
2. ``--entry file.py:factory`` (or ``package.module:factory``) building an ``nn.Module``,
   optionally with ``--weights state.pt`` loaded with ``weights_only=True``.
3. A pickled module (``torch.save(model)``) — only with ``trust_pickle=True``, because
   unpickling runs arbitrary code from the file.

Tracing (:func:`capture`): ``torch.fx.symbolic_trace`` first; if it fails, or the traced graph
disagrees with the model, ``torch.export`` and the same canonicalization. The result is checked
against the eager model on the example inputs.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import importlib.util
import pickle
import sys
import traceback
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.fx as fx
import torch.nn as nn

from accelc.compiler.canonicalize import canonicalize
from accelc.errors import ModelLoadError, TraceError, UnsafeModelError

SAFE_ALTERNATIVES = (
    "safe alternatives: save the program with torch.export.save(torch.export.export(model, example_inputs), "
    "'model.pt2') and pass model.pt2, or pass --entry file.py:factory --weights state_dict.pt; "
    "if you wrote this file yourself and trust it, pass --trust-pickle"
)


@dataclass
class LoadedModel:
    """A loaded model: an ``nn.Module`` or an ``ExportedProgram``, plus what we know of its inputs."""

    model: nn.Module | torch.export.ExportedProgram
    example_inputs: tuple[torch.Tensor, ...] | None
    source: str  # how it was loaded, for the manifest ("model.pt2", "models.py:lenet + w.pt")


# --------------------------------------------------------------------------- loading
def _zip_names(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def _is_exported_program(names: list[str]) -> bool:
    return any(n.endswith("serialized_exported_program.json") or n.endswith("/models/model.json")
               or n.endswith("archive_format") for n in names)


def _is_torchscript(names: list[str]) -> bool:
    return any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names)


def load_model(path: str | Path | None = None, *, entry: str | None = None, weights: str | Path | None = None,
               trust_pickle: bool = False) -> LoadedModel:
    """Load a model from a file or an entry point; never unpickles code unless trusted."""
    if entry is not None:
        if path is not None:
            raise ModelLoadError(f"both a model file ({path}) and --entry ({entry}) were given",
                                 hint="pass one of them")
        module = _load_entry(entry)
        source = entry
        if weights is not None:
            _load_weights(module, Path(weights))
            source += f" + {weights}"
        return LoadedModel(module.eval(), None, source)
    if path is None:
        raise ModelLoadError("no model given", hint="pass a model file (model.pt2) or --entry file.py:factory")
    if weights is not None:
        raise ModelLoadError("--weights needs --entry", hint="--weights loads a state_dict into the module that "
                             "--entry file.py:factory builds")
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist" if not path.exists() else f"{path} is not a file")
    names = _zip_names(path)
    if _is_exported_program(names) or (path.suffix == ".pt2" and names):
        try:
            ep = torch.export.load(str(path))
        except Exception as e:  # corrupt or incompatible archive
            raise ModelLoadError(f"{path}: not a readable torch.export program ({type(e).__name__}: {e})",
                                 hint="re-create it with torch.export.save(torch.export.export(model, inputs), path)") from e
        return LoadedModel(ep, _exported_example_inputs(ep), str(path))
    if _is_torchscript(names):
        raise ModelLoadError(
            f"{path} is a TorchScript archive, which accelc does not read",
            hint="export the eager model instead: torch.export.save(torch.export.export(model, example_inputs), "
                 "'model.pt2'), or pass --entry file.py:factory --weights state_dict.pt")
    if path.suffix == ".onnx":
        raise ModelLoadError(f"{path} is an ONNX model; accelc compiles PyTorch models",
                             hint="pass the PyTorch model (model.pt2 or --entry file.py:factory)")
    return _load_pickled(path, trust_pickle)


def _load_pickled(path: Path, trust_pickle: bool) -> LoadedModel:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise UnsafeModelError(
                f"refusing to load {path}: it is a pickled Python object (torch.save(model)), and unpickling it "
                "would run code from the file", hint=SAFE_ALTERNATIVES) from e
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e2:
            raise ModelLoadError(f"{path}: could not be unpickled: {type(e2).__name__}: {e2}",
                                 hint="the classes it refers to must be importable; run from the project "
                                      "that defines them") from e2
    except Exception as e:
        raise ModelLoadError(f"{path}: not a model file accelc can read ({type(e).__name__}: {e})",
                             hint="pass a torch.export program (.pt2), or --entry file.py:factory") from e
    if isinstance(obj, nn.Module):
        return LoadedModel(obj.eval(), None, str(path))
    if isinstance(obj, dict):
        raise ModelLoadError(f"{path} holds a state_dict (weights only), not a model",
                             hint=f"pass --entry file.py:factory --weights {path}")
    raise ModelLoadError(f"{path} holds a {type(obj).__name__}, not an nn.Module")


def _load_entry(entry: str) -> nn.Module:
    target, sep, attr = entry.rpartition(":")
    if not sep or not target or not attr:
        raise ModelLoadError(f"--entry {entry!r} is not of the form path/to/file.py:factory or package.module:factory")
    try:
        if target.endswith(".py") or "/" in target:
            file = Path(target)
            if not file.is_file():
                raise ModelLoadError(f"--entry: file {file} does not exist")
            mod_name = f"accelc_entry_{abs(hash(str(file.resolve())))}"
            spec = importlib.util.spec_from_file_location(mod_name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            sys.path.insert(0, str(file.resolve().parent))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(file.resolve().parent))
        else:
            module = importlib.import_module(target)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"--entry {entry}: importing {target} failed: {type(e).__name__}: {e}") from e
    factory = getattr(module, attr, None)
    if factory is None:
        raise ModelLoadError(f"--entry {entry}: {target} has no attribute {attr!r}",
                             hint="name a function (or class) that returns the nn.Module")
    try:
        model = factory()
    except Exception as e:
        raise ModelLoadError(f"--entry {entry}: calling {attr}() failed: {type(e).__name__}: {e}") from e
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"--entry {entry}: {attr}() returned a {type(model).__name__}, not an nn.Module")
    return model


def _load_weights(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise ModelLoadError(f"--weights {path} does not exist")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeModelError(f"--weights {path} is not a plain state_dict (it pickles code objects)",
                               hint="save weights with torch.save(model.state_dict(), path)") from e
    except Exception as e:
        raise ModelLoadError(f"--weights {path}: unreadable ({type(e).__name__}: {e})") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelLoadError(f"--weights {path} holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"--weights {path} does not fit the model: {e}",
                             hint="the state_dict must come from the same architecture the factory builds") from e


def _exported_example_inputs(ep: torch.export.ExportedProgram) -> tuple[torch.Tensor, ...] | None:
    ex = getattr(ep, "example_inputs", None)
    if ex is None:
        return None
    args, kwargs = ex
    leaves = [a for a in args if isinstance(a, torch.Tensor)]
    return tuple(leaves) if leaves and not kwargs else None


# --------------------------------------------------------------------------- tracing
def _user_frame(exc: BaseException) -> str | None:
    """The innermost traceback frame in user code (not torch/accelc): 'file:line: code'."""
    skip = (str(Path(torch.__file__).parent), str(Path(__file__).parents[1]), "<frozen", "<eval_with_key")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(skip)]
    if not frames:
        return None
    f = frames[-1]
    return f"{f.filename}:{f.lineno}: {(f.line or '').strip()}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _outputs_match(a, b) -> bool:
    fa, _ = torch.utils._pytree.tree_flatten(a)
    fb, _ = torch.utils._pytree.tree_flatten(b)
    return len(fa) == len(fb) and all(
        isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.shape == y.shape
        and torch.allclose(x.float(), y.float(), rtol=1e-4, atol=1e-5, equal_nan=True) for x, y in zip(fa, fb))


def from_exported(ep: torch.export.ExportedProgram) -> fx.GraphModule:
    """An ExportedProgram as a plain GraphModule: parameters as get_attr, user inputs as
    placeholders, outputs as the program returns them (no pytree wrapper)."""
    unlifted = ep.module()
    old = unlifted.graph
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    out_value = None
    for node in old.nodes:
        if node.op == "call_module" and node.target.startswith("_guards"):
            continue
        if node.op == "output":
            out_value = fx.node.map_arg(node.args[0], lambda n: env[n])
            continue
        env[node] = graph.node_copy(node, lambda n: env[n])
    spec = ep.call_spec.out_spec
    if spec is not None and spec.is_leaf() and isinstance(out_value, (tuple, list)) and len(out_value) == 1:
        out_value = out_value[0]  # the program returned one tensor, not a 1-tuple
    graph.output(out_value)
    gm = fx.GraphModule(unlifted, graph)
    return gm


def capture(model: nn.Module | torch.export.ExportedProgram, example_inputs: Sequence[torch.Tensor]) -> fx.GraphModule:
    """Trace ``model`` into a canonical GraphModule that computes the same outputs."""
    example_inputs = tuple(example_inputs)
    if isinstance(model, torch.export.ExportedProgram):
        gm = from_exported(model)
        reference = model.module()
    else:
        model.eval()
        reference = model
        gm = None
        fx_error: BaseException | None = None
        try:
            gm = fx.symbolic_trace(model)
            with torch.no_grad():
                if not _outputs_match(gm(*example_inputs), model(*example_inputs)):
                    fx_error, gm = RuntimeError("the fx trace computes different outputs than the model"), None
        except Exception as e:  # fx.proxy.TraceError and whatever user code raises on proxies
            fx_error = e
        if gm is None:
            gm = _export_fallback(model, example_inputs, fx_error)
    try:
        with torch.no_grad():
            expected = reference(*example_inputs)
    except Exception as e:
        raise TraceError(f"the model fails on the example inputs: {_first_line(e)}",
                         hint="check --input-shape (shape and dtype) against what the model expects") from e
    gm = canonicalize(gm, example_inputs)
    with torch.no_grad():
        got = gm(*example_inputs)
    if not _outputs_match(got, expected):
        raise TraceError("internal: the canonical graph disagrees with the model on the example inputs",
                         hint="please report this model; run with --debug for details")
    return gm


def _export_fallback(model: nn.Module, example_inputs: tuple, fx_error: BaseException | None) -> fx.GraphModule:
    # export logs whole graphs when it fails; the TraceError below says it better
    loggers = [logging.getLogger(n) for n in ("torch", "torch.fx.experimental.symbolic_shapes", "torch.export")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # it also prints the partial graph to stderr
            ep = torch.export.export(model, example_inputs, strict=False)
    except Exception as ex_error:
        where = _user_frame(ex_error) or (_user_frame(fx_error) if fx_error else None)
        msg = ("could not capture the model: torch.fx failed with "
               f"{_first_line(fx_error) if fx_error else 'an error'}; torch.export failed with {_first_line(ex_error)}")
        if where:
            msg += f"\n  stopped at {where}"
        raise TraceError(msg, hint="data-dependent Python control flow (if/for on tensor values) cannot be compiled "
                                   "ahead of time; rewrite it with torch.where / torch.cond, or move it out of "
                                   "forward()") from ex_error
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return from_exported(ep)
