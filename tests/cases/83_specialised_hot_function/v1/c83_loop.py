"""Not changed by the patch: its call sites keep the specialisations (and, on a build
with the JIT enabled, the traces) they got before it."""
import c83_rules
from c83_rules import allowed


def run(values):
    count = 0
    for v in values:
        if allowed(v):
            count += 1
        if c83_rules.Box(v).ok():
            count += 1000
    return count


def each(values, check):
    return [check(v) for v in values]
