"""One module per subcommand: each has NAME, add_parser(subparsers) and run(args)."""

from accelc.cli.commands import (compile_cmd, export_cmd, fpga_cmd, inspect_cmd, list_cmd, partition_cmd,
                                 report_cmd, run_cmd, train_cmd)

ALL = [compile_cmd, run_cmd, inspect_cmd, export_cmd, partition_cmd, train_cmd, fpga_cmd, report_cmd, list_cmd]
BY_NAME = {m.NAME: m for m in ALL}
