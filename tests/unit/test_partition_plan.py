"""Stage plans on real graphs: balance, exact composition, skip connections, shared weights,
the ``partition`` pass, the CLI."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pipeline_models  # noqa: E402
from pipeline_fixtures import one_torch_thread  # noqa: E402,F401  (autouse fixture)

from accelc.cli.main import main  # noqa: E402
from accelc.compiler.capture import capture  # noqa: E402
from accelc.compiler.context import CompileContext  # noqa: E402
from accelc.compiler.pass_manager import PassManager  # noqa: E402
from accelc.compiler.pipeline import Pipeline  # noqa: E402
from accelc.errors import UsageError  # noqa: E402
from accelc.passes.partition import STAGE_META, PartitionOptions, compose, plan_stages  # noqa: E402
from accelc.training.model import training_graph  # noqa: E402

MODELS = {
    "resnet": (pipeline_models.resnet_style_large, (8, 3, 32, 32)),
    "transformer": (pipeline_models.transformer_style_large, (8, 1, 32, 32)),
}


def _graph(name):
    factory, shape = MODELS[name]
    torch.manual_seed(0)
    x = torch.randn(*shape)
    return training_graph(factory(), (x,)).graph, x


def _assert_composes(plan, gm, x):
    stages = plan.stage_modules()
    gm.eval()
    for s in stages:
        s.eval()
    with torch.no_grad():
        assert torch.equal(compose(stages)(x), gm(x))
    keys = [k for s in stages for k in s.state_dict()]
    assert sorted(keys) == sorted(gm.state_dict()) and len(keys) == len(set(keys))  # each tensor in one stage


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("stages", [2, 4])
def test_balanced_and_exact(name, stages):
    gm, x = _graph(name)
    plan = plan_stages(gm, (x,), PartitionOptions(stages=stages))
    assert len(plan.stages) == stages
    assert plan.balance <= 1.15, plan.table()
    _assert_composes(plan, gm, x)
    d = json.loads(plan.to_json())
    assert d["bounds"] == list(plan.bounds) and len(d["cut_bytes"]) == stages - 1
    assert "balance" in plan.table()


def test_skip_connections_are_passed_through_every_stage_they_span():
    class LongSkip(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(nn.Linear(16, 16) for _ in range(6))

        def forward(self, x):
            h = x
            for layer in self.layers:
                h = torch.relu(layer(h))
            return h + x  # the input is needed at the very end

    torch.manual_seed(0)
    x = torch.randn(4, 16)
    gm = training_graph(LongSkip(), (x,)).graph
    plan = plan_stages(gm, (x,), PartitionOptions(stages=3))
    assert all("x" in s.inputs for s in plan.stages[1:]) and all("x" in s.outputs for s in plan.stages[:-1])
    assert plan.cut_bytes == [2 * 4 * 16 * 4, 2 * 4 * 16 * 4]
    _assert_composes(plan, gm, x)


def test_tied_weights_stay_in_one_stage():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.mid = nn.Sequential(*[nn.Linear(8, 8) for _ in range(4)])
            self.b = nn.Linear(8, 8)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.mid(self.a(x)))

    torch.manual_seed(0)
    x = torch.randn(2, 8)
    gm = training_graph(Tied(), (x,)).graph
    with pytest.raises(UsageError, match="a.weight|b.weight"):
        plan_stages(gm, (x,), PartitionOptions(stages=2))
    plan = plan_stages(gm, (x,), PartitionOptions(stages=1))
    _assert_composes(plan, gm, x)


def test_profiled_costs_give_a_valid_plan():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    gm = training_graph(pipeline_models.resnet_style(), (x,)).graph
    plan = plan_stages(gm, (x,), PartitionOptions(stages=2, profile=True, repeats=2))
    assert plan.cost_source == "profile" and all(s.compute_seconds > 0 for s in plan.stages)
    _assert_composes(plan, gm, x)


def test_partition_pass_records_the_plan_and_keeps_the_graph():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    model = pipeline_models.resnet_style().eval()
    gm = capture(model, (x,))
    ctx = CompileContext((x,))
    out = PassManager(Pipeline.parse("partition(stages=3,bandwidth=1e9)")).run(gm, ctx)
    record = ctx.records[-1]
    assert record.name == "partition" and record.max_abs_err == 0
    assert len(record.details["stages"]) == 3 and record.details["options"]["bandwidth"] == 1e9
    stages_seen = {n.meta[STAGE_META] for n in out.graph.nodes if STAGE_META in n.meta}
    assert stages_seen == {0, 1, 2}


def test_cli_partition_json(capsys):
    code = main(["partition", "--entry", str(Path(pipeline_models.__file__)) + ":transformer_style",
                 "--input-shape", "4x1x8x8", "--stages", "2", "--json"])
    assert code == 0
    plan = json.loads(capsys.readouterr().out)
    assert len(plan["stages"]) == 2 and plan["balance"] <= 1.15


def test_cli_partition_too_many_stages(capsys):
    code = main(["partition", "--entry", str(Path(pipeline_models.__file__)) + ":resnet_style",
                 "--input-shape", "1x1x8x8", "--stages", "500"])
    assert code == 2
    assert "cannot split the model into 500 stages" in capsys.readouterr().err
