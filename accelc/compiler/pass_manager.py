"""The pass manager: runs a pipeline, verifying and recording every pass (LLVM -verify-each).

Before the first pass and after each pass, the graph runs on the context's sample inputs.
Each pass's record holds its options, wall time, FLOPs and params before→after, and the
output change it caused (max-abs error, SQNR, top-1 agreement against its input graph).
An *exact* pass that changes outputs by more than its declared tolerance stops the compile
with a :class:`VerificationError` naming the pass and the error.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import torch.fx as fx

from accelc.compiler.analysis.cost import graph_cost
from accelc.compiler.context import CompileContext, PassRecord
from accelc.compiler.options import options_dict
from accelc.compiler.pipeline import Pipeline
from accelc.compiler.printing import graph_text
from accelc.compiler.verify import compare, run_samples
from accelc.errors import AccelcError, TargetError, VerificationError
from accelc.passes.base import Pass, get_pass


def _exceeds_tolerance(p: Pass, before, after) -> tuple[float, float] | None:
    """(worst error, allowed) for the first sample/output outside the tolerance, else None."""
    for ref_b, act_b in zip(before, after):
        for r, a in zip(ref_b, act_b):
            if r.numel() == 0:
                continue
            err = float((r.double() - a.double()).abs().max())
            allowed = p.atol + p.rtol * float(r.double().abs().max())
            if err > allowed or err != err:
                return err, allowed
    return None


class PassManager:
    def __init__(self, pipeline: Pipeline, *, verify_each: bool = True, print_after: list[str] | None = None,
                 print_format: str = "code", printer: Callable[[str], None] = print):
        self.pipeline = pipeline
        self.verify_each = verify_each
        self.print_after = set(print_after or [])
        self.print_format = print_format
        self.printer = printer
        unknown = self.print_after - set(pipeline.names()) - {"all", "capture"}
        if unknown:
            from accelc.errors import UsageError
            raise UsageError(f"--print-after {', '.join(sorted(unknown))}: not a pass of this pipeline",
                             hint=f"passes in the pipeline: {', '.join(pipeline.names()) or 'none'}; or 'all'")

    def _maybe_print(self, name: str, gm: fx.GraphModule) -> None:
        if name in self.print_after or "all" in self.print_after:
            self.printer(f"// ----- graph after {name} -----\n{graph_text(gm, self.print_format)}")

    def run(self, gm: fx.GraphModule, ctx: CompileContext) -> fx.GraphModule:
        samples = ctx.samples()
        if ctx.reference is None:
            ctx.reference = copy.deepcopy(gm)
        self._maybe_print("capture", gm)
        before_out = run_samples(gm, samples) if self.verify_each else None
        cost = graph_cost(gm, ctx.example_inputs)
        for spec in self.pipeline:
            p = get_pass(spec.name)(spec.options)
            t0 = time.perf_counter()
            try:
                new = p.run(gm, ctx)
            except AccelcError:
                raise
            except Exception as e:
                raise TargetError(f"pass {spec.name} failed: {type(e).__name__}: {e}",
                                  hint="run with --debug for the traceback; --pipeline can leave the pass out") from e
            new.graph.lint()
            new.recompile()
            seconds = time.perf_counter() - t0
            new_cost = graph_cost(new, ctx.example_inputs)
            metrics = None
            if self.verify_each:
                after_out = run_samples(new, samples)
                metrics = compare(before_out, after_out)
                if p.exact:
                    bad = _exceeds_tolerance(p, before_out, after_out)
                    if bad:
                        raise VerificationError(
                            f"pass {spec.name} is exact but changed the outputs by {bad[0]:.3g} "
                            f"(allowed {bad[1]:.3g} = atol {p.atol:g} + rtol {p.rtol:g} × max|output|)",
                            hint="this is a bug in the pass; leave it out with --pipeline and report the model")
                before_out = after_out
            ctx.records.append(PassRecord(
                name=spec.name, options=options_dict(p.options), seconds=round(seconds, 6),
                flops_before=cost.flops, flops_after=new_cost.flops,
                params_before=cost.params, params_after=new_cost.params,
                max_abs_err=metrics.max_abs_err if metrics else None,
                sqnr_db=metrics.sqnr_db if metrics else None,
                top1_agreement=metrics.top1_agreement if metrics else None,
                exact=p.exact, details=p.details))
            self._maybe_print(spec.name, new)
            gm, cost = new, new_cost
        return gm
