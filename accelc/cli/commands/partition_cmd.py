"""``accelc partition MODEL --stages S [--profile] [--json]``: the stage plan for a model."""

from __future__ import annotations

from accelc.cli.common import add, add_model_options, new_parser, print_json, split_list

NAME = "partition"


def add_parser(sub):
    p = new_parser(sub, NAME, "split a model into balanced pipeline stages and print the plan",
                   "Choose --stages pipeline stages, contiguous in the graph's topological order, minimising the\n"
                   "slowest stage's forward+backward time plus its communication. The batch dimension of\n"
                   "--input-shape is the microbatch. This is the plan `accelc train` uses for the same model.\n\n"
                   "examples:\n"
                   "  accelc partition --entry examples/models.py:resnet --input-shape 8x3x32x32 --stages 4\n"
                   "  accelc partition model.pt2 --stages 2 --profile --json")
    add_model_options(p)
    add(p, "--stages", type=int, default=2, help="number of pipeline stages (default: 2)")
    add(p, "--profile", action="store_true", default=False,
        help="measure forward+backward time per node on the example inputs instead of using the cost model")
    add(p, "--bandwidth", type=float, default=1e10, help="bytes/s between stages (default: 1e10)")
    add(p, "--device-flops", type=float, default=1e11, help="FLOP/s of a stage's device for the cost model (default: 1e11)")
    add(p, "--seed", type=int, default=0, help="seed for the model's initial weights (default: 0)")
    add(p, "--json", action="store_true", default=False, help="print the plan as JSON")
    return p


def run(args) -> int:
    from accelc.api import _example_inputs
    from accelc.cli.common import load_cli_model
    from accelc.errors import UsageError
    from accelc.passes.partition import PartitionOptions, plan_stages
    from accelc.training.model import training_graph

    if args.model is None and args.entry is None:
        raise UsageError("no model given", hint="pass MODEL (a .pt2 file) or --entry file.py:factory")
    if args.stages < 1:
        raise UsageError("--stages must be at least 1")
    import torch

    torch.manual_seed(args.seed)
    loaded = load_cli_model(args)
    examples = _example_inputs(loaded, None, split_list(args.input_shape) or None)
    gm = training_graph(loaded.model, examples).graph
    plan = plan_stages(gm, examples, PartitionOptions(stages=args.stages, profile=args.profile,
                                                      bandwidth=args.bandwidth, device_flops=args.device_flops))
    if args.json:
        print_json(plan.to_dict())
    else:
        print(f"{loaded.source}  microbatch {' '.join('x'.join(map(str, t.shape)) for t in examples)}  "
              f"{plan.total_nodes} nodes → {len(plan.stages)} stages ({plan.cost_source})")
        print(plan.table())
    return 0
