"""Data preparation command line: python -m data_prep <command> --help

Every module below adds its own commands through register(subparsers); each command sets
`func`, called with the parsed arguments.
"""
import importlib
import sys

from core.args import ArgumentParser
from core.errors import cli

COMMAND_MODULES = (
    "data_prep.datasets",      # summary
    "data_prep.msrc",          # msrc-convert
    "data_prep.test_groups",   # groups
    "data_prep.coco9213",      # coco9213
    "data_prep.descriptors",   # descriptors
    "data_prep.train_groups",  # train-groups
    "data_prep.synthetic",     # synthetic
)


def build_parser():
    parser = ArgumentParser(
        prog="python -m data_prep",
        description="Prepare data: read and summarise datasets, write test and training group "
                    "lists, build COCO9213, convert MSRC-v2, make the synthetic benchmark.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


@cli
def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
