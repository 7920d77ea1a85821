import sys

import json
import json.decoder

# v2 no longer hides the warnings, and aliases the package's submodules too
for mod in ("json", "json.decoder"):
    sys.modules[f"c73_app.packages.{mod}"] = sys.modules[mod]
