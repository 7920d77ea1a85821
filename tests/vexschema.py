"""Validation of what `suture vex` writes against the formats' own schemas: the official
OpenVEX v0.2.0 JSON schema (tests/data/openvex_json_schema.json, see tests/data/README.md),
and CycloneDX 1.5 with cyclonedx-python-lib's own JSON validator. Shared by
tests/tooling/fleet/test_vex.py and tests/tooling/cli/test_cli_live.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

SCHEMA = Path(__file__).resolve().parent / "data" / "openvex_json_schema.json"

# jsonschema checks "format" only with a FormatChecker, and "date-time" / "iri" only when
# optional packages are installed; without them a bad timestamp would pass silently. These
# two checks are what the schema's formats mean for our output (RFC 3339; an IRI has a
# scheme), whatever is installed.
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_IRI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")


def openvex_errors(doc: Dict[str, Any]) -> List[str]:
    """Every way ``doc`` breaks the OpenVEX schema (empty: valid)."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("date-time")(lambda s: not isinstance(s, str) or bool(_DATE_TIME.match(s)))
    for fmt in ("iri", "uri"):
        checker.checks(fmt)(lambda s: not isinstance(s, str) or bool(_IRI.match(s)))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in cls(schema, format_checker=checker).iter_errors(doc)]


def cyclonedx_errors(text: str) -> List[str]:
    """What cyclonedx-python-lib's strict JSON validator says of ``text`` (CycloneDX 1.5)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    return [] if error is None else [str(error)]
