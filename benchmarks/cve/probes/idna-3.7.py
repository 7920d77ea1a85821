"""Probe for idna 3.7 (CVE-2024-3651), which ships no regression test of its own.

The denial of service came from ``valid_contextj`` scanning past characters that end the
joining context (quadratic on crafted labels); 3.7 stops at the first one. The observable
difference, without timing anything: in ARABIC BEH, "a", ZWNJ, BEH, the "a" ends the
context, so 3.7 rejects the joiner that 3.6 accepted. Exit 0 when fixed, 1 when not.
"""

import sys

import idna.core

accepted = idna.core.valid_contextj("\u0628a\u200c\u0628", 2)
print("ZWNJ after a non-joining character accepted:", accepted)
sys.exit(1 if accepted else 0)
