"""``accelc train --entry model.py:net --train data.npz --stages 2 --dp 2 --microbatches 4``"""

from __future__ import annotations

from accelc.cli.common import add, add_model_options, new_parser, split_list

NAME = "train"


def add_parser(sub):
    p = new_parser(sub, NAME, "train a model pipeline-parallel (and data-parallel) on torch.distributed",
                   "Split the model into --stages balanced pipeline stages and train them with\n"
                   "torch.distributed.pipelining, --dp data-parallel replicas of the pipeline and --microbatches\n"
                   "microbatches per step. Outside torchrun it starts stages × dp local processes itself; under\n"
                   "torchrun (e.g. several nodes) every process runs its part.\n\n"
                   "examples:\n"
                   "  accelc train --entry examples/models.py:lenet --train digits --input-shape 1x1x28x28 \\\n"
                   "      --stages 2 --microbatches 4 --steps 200 --checkpoint build/lenet.pt\n"
                   "  accelc train --entry net.py:make --train data.npz --stages 2 --dp 2 --schedule gpipe \\\n"
                   "      --resume build/net.pt --steps 400 --checkpoint build/net.pt\n"
                   "  torchrun --nnodes 2 --nproc-per-node 4 ... -m accelc train --stages 4 --dp 2 ...")
    add_model_options(p)
    add(p, "--train", metavar="DATA", help="training data: .npz with inputs and labels, or digits (needs --input-shape)")
    add(p, "--batch-size", type=int, default=32, help="global batch per step, over replicas and microbatches (default: 32)")
    add(p, "--steps", type=int, help="total optimizer steps (a resumed run continues up to this)")
    add(p, "--epochs", type=int, help="passes over the data instead of --steps (default: 1)")
    add(p, "--stages", type=int, default=1, help="pipeline stages (default: 1, plain data parallelism)")
    add(p, "--dp", type=int, default=1, help="data-parallel replicas of the pipeline (default: 1)")
    add(p, "--microbatches", type=int, default=1, help="microbatches per replica per step (default: 1)")
    add(p, "--schedule", default="1f1b", choices=["gpipe", "1f1b"], help="pipeline schedule (default: 1f1b)")
    add(p, "--loss", default="auto", choices=["auto", "cross-entropy", "nll", "mse"],
        help="loss (default: auto: nll after log-softmax, mse for float labels, else cross-entropy)")
    add(p, "--optimizer", default="sgd", choices=["sgd", "adam"], help="optimizer (default: sgd)")
    add(p, "--lr", type=float, default=0.01, help="learning rate (default: 0.01)")
    add(p, "--momentum", type=float, default=0.0, help="SGD momentum (default: 0)")
    add(p, "--weight-decay", type=float, default=0.0, help="weight decay (default: 0)")
    add(p, "--seed", type=int, default=0, help="seed for weights, data order and dropout (default: 0)")
    add(p, "--profile", action="store_true", default=False,
        help="place stage boundaries by measured per-node time instead of the cost model")
    add(p, "--bandwidth", type=float, default=1e10, help="bytes/s between stages, for placing cuts (default: 1e10)")
    add(p, "--device-flops", type=float, default=1e11, help="FLOP/s of a stage's device for the cost model (default: 1e11)")
    add(p, "--checkpoint", metavar="PATH", help="write the whole model's state_dict here (and PATH.train) at the end")
    add(p, "--checkpoint-every", type=int, metavar="N", help="also write the checkpoint every N steps")
    add(p, "--resume", metavar="PATH", help="continue from a checkpoint (weights, optimizer state and step)")
    add(p, "--metrics", metavar="FILE", help="append JSON lines: the plan, each step's loss and time, the bubble")
    add(p, "--timeout", type=float, default=300.0, help="seconds to wait for a peer before failing (default: 300)")
    return p


def config_from_args(args):
    from accelc.training.config import TrainConfig

    return TrainConfig(
        model=args.model, entry=args.entry, weights=args.weights, trust_pickle=args.trust_pickle,
        input_shapes=split_list(args.input_shape) or None, train=args.train, batch_size=args.batch_size,
        steps=args.steps, epochs=args.epochs, stages=args.stages, dp=args.dp, microbatches=args.microbatches,
        schedule=args.schedule, loss=args.loss, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, seed=args.seed, profile=args.profile, bandwidth=args.bandwidth,
        device_flops=args.device_flops, checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
        resume=args.resume, metrics=args.metrics, timeout=args.timeout, quiet=args.quiet, debug=args.debug)


def run(args) -> int:
    from accelc.training import train

    train(config_from_args(args))
    return 0
