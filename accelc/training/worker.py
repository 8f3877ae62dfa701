"""``python -m accelc.training.worker CONFIG.json``: one training process, as started by
``accelc train`` through torch.distributed.run (see :mod:`accelc.training.launch`)."""

import sys

from torch.distributed.elastic.multiprocessing.errors import record

from accelc.training.runtime import worker_main


@record
def main() -> None:
    sys.exit(worker_main(sys.argv[1]))


if __name__ == "__main__":
    main()
