"""Argument types that reject settings that make no sense, up front and with the valid range
(argparse then prints "error: argument --workers: ... got 0" and exits with status 2), and the
parser every command uses (ArgumentParser)."""
import argparse
import math


def non_empty(text):
    """The type of every option that takes text (a path, a name): an empty value, which a path
    would take as the current folder (`--out ""`, a make variable left empty), is refused."""
    if text == "":
        raise argparse.ArgumentTypeError("must not be empty")
    return text


non_empty.__name__ = "a non-empty value"


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose options without a type of their own are `non_empty`; its
    sub-commands' parsers and argument groups share the rule."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register("type", None, non_empty)    # what argparse calls for an option of no type

    def add_subparsers(self, **kwargs):
        commands = super().add_subparsers(**kwargs)
        commands.type = str     # it is given the rest of the command line, the sub-command's to check
        return commands


def number_in(lo=None, hi=None, kind=int, lo_open=False):
    """An argparse type: `kind` (int or float) in [lo, hi] (lo excluded when lo_open)."""
    lo_sign = ">" if lo_open else ">="
    if lo is not None and hi is not None:
        want = f"{'(' if lo_open else '['}{lo}, {hi}]"
    elif lo is not None:
        want = f"{lo_sign} {lo}"
    else:
        want = f"<= {hi}"
    name = "an integer" if kind is int else "a number"

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {name} {want}, got {text!r}") from None
        bad = (kind is float and not math.isfinite(v)) or \
            (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi)
        if bad:
            raise argparse.ArgumentTypeError(f"must be {name} {want}, got {text}")
        return v
    parse.__name__ = f"{kind.__name__} {want}"
    return parse


positive_int = number_in(1)
non_negative_int = number_in(0)
positive_float = number_in(0, kind=float, lo_open=True)

# What Caffe's fields hold: iteration counts are 32-bit ints, the seed an unsigned one, rates
# 32-bit floats. A larger value overflows in protobuf (a ValueError) or turns into inf; a rate
# below float32's smallest normal number (1.1754944e-38, rounded up) becomes 0 or loses its
# precision there.
iterations = number_in(0, 2 ** 31 - 1)
positive_iterations = number_in(1, 2 ** 31 - 1)
caffe_seed = number_in(0, 2 ** 32 - 1)
caffe_rate = number_in(1.1754944e-38, 3.4e38, kind=float)


def switch(make_variable):
    """An argparse type for an on/off option given a value, as the Makefile passes RESUME=...
    and DRY_RUN=...: 1, yes, true are on; 0, no, false and nothing are off; anything else is
    refused (a make variable is 'set' by any value, 0 included)."""
    def parse(text):
        value = text.strip().lower()
        if value in ("1", "yes", "true"):
            return True
        if value in ("0", "no", "false", ""):
            return False
        raise argparse.ArgumentTypeError(f"must be 1 or 0 (yes or no; make: {make_variable}=1 or "
                                         f"{make_variable}=0), got {text!r}")
    parse.__name__ = "1 or 0"
    return parse
